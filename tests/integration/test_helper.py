"""The warm helper (issue #12, docs/helper.md): every requirement, on real containers.

Each test gets a private helper (its own OCIRUN_HELPER_DIR, started by the first
call of the `ocirun` front end) and checks at the end that nothing of it is left
running. "Served by the helper" is observable: a container init cloned by the front
end is a copy of the front end until it execs (comm "ocirun"); on the direct path
it is a copy of Python.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import DIRECT, FRONT_END, reap_orphans, wait_until, written

pytestmark = pytest.mark.skipif(not FRONT_END.exists(), reason="the ocirun front end is not installed")


class Helper:
    """A private helper: its directory, the environment that points calls at it."""

    def __init__(self, directory: str, idle: str = "60") -> None:
        self.dir = directory
        self.env = {k: v for k, v in os.environ.items() if k not in ("OCIRUN_HELPER",)}
        # OCIRUN_HELPER_TIMEOUT: tests that a call was served must not see the front end
        # give up on a worker slowed down by a busy machine (5 s) and go direct
        self.env.update(OCIRUN_HELPER_DIR=directory, OCIRUN_HELPER_IDLE=idle, OCIRUN_HELPER_TIMEOUT="60000")

    def run(self, *args: str, env: dict | None = None, **kw) -> subprocess.CompletedProcess:
        kw.setdefault("stdin", subprocess.DEVNULL)
        kw.setdefault("timeout", 60)
        if "stdout" not in kw and "capture_output" not in kw:
            kw["capture_output"] = True
        p = subprocess.run([str(FRONT_END), *args], env=env or self.env, **kw)
        reap_orphans()
        return p

    def status(self) -> dict | None:
        for name in os.listdir(self.dir):
            if name.endswith(".json"):
                try:
                    return json.loads(Path(self.dir, name).read_text())
                except (OSError, ValueError):
                    return None
        return None

    def start(self, timeout: float = 30) -> int:
        """Make sure it runs (the first call starts it); its pid."""
        self.run("--version")
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            st = self.status()
            if st and Path(st["socket"]).exists() and _alive(st["pid"]):
                return st["pid"]
            time.sleep(0.05)
        raise AssertionError("the helper did not start")

    def processes(self) -> list[int]:
        out = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    cmd = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
                except OSError:
                    continue
                if b"serve" in cmd and os.fsencode(self.dir) in cmd and not _zombie(int(entry)):
                    out.append(int(entry))
        return out

    def stop(self) -> None:
        subprocess.run([str(DIRECT), "helper", "stop"], env=self.env, capture_output=True, timeout=60)


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists() and not _zombie(pid)


def _zombie(pid: int) -> bool:
    try:
        stat_line = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat_line[stat_line.rfind(")") + 2] in "ZX"


def _wait_gone(pids, timeout: float = 10) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        reap_orphans()
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def helper() -> Helper:
    d = tempfile.mkdtemp(prefix="ocirun-h.")  # short: a socket path has 108 bytes
    h = Helper(d)
    try:
        yield h
    finally:
        h.stop()
        _wait_gone(h.processes())  # its spare worker leaves when it does
        left = h.processes()
        if left:
            for pid in left:
                os.kill(pid, signal.SIGKILL)
            _wait_gone(left)
        shutil.rmtree(d, ignore_errors=True)
        assert not left, f"helper processes left running: {left}"


def init_comm(pid: int) -> str:
    return Path(f"/proc/{pid}/comm").read_text().strip()


def created(h: Helper, ocirun, bundle, cid: str, *extra: str, env: dict | None = None) -> int:
    """`ocirun create` through the front end; the init's pid. (Its stderr to a file, not
    a pipe: the init keeps the caller's stdio, as with runc.)"""
    with tempfile.TemporaryFile() as err:
        p = h.run(*extra, "--root", str(ocirun.root), "create", "--bundle", str(bundle.path), cid, env=env,
                  stdout=subprocess.DEVNULL, stderr=err)
        err.seek(0)
        assert p.returncode == 0, err.read()
    return json.loads(h.run("--root", str(ocirun.root), "state", cid).stdout)["pid"]


# --------------------------------------------------------------------- parentage


PARENT = r"""
import ctypes, json, os, subprocess, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)   # PR_SET_CHILD_SUBREAPER, as conmon and containerd's shim
front, root, bundle, cid = sys.argv[1:5]   # root "": the default state root
def run(*a, **kw):
    return subprocess.run([front, *(["--root", root] if root else []), *a], stdin=subprocess.DEVNULL, **kw)
run("create", "--bundle", bundle, cid, stdout=subprocess.DEVNULL, check=True)
try:   # a failing step leaves nothing either
    init = json.loads(run("state", cid, capture_output=True, check=True).stdout)["pid"]
    def stat(pid):
        s = open(f"/proc/{pid}/stat").read()
        return s[s.rfind(")") + 2:].split()
    comm = open(f"/proc/{init}/comm").read().strip()
    run("start", cid, check=True)
    pidfile = os.path.join(os.path.dirname(bundle), cid + ".pid")
    run("exec", "-d", "--pid-file", pidfile, cid, "sleep", "30", check=True)
    proc = int(open(pidfile).read())
    os.unlink(pidfile)
    print(json.dumps({"me": os.getpid(), "init": init, "init_ppid": int(stat(init)[1]), "init_comm": comm,
                      "exec": proc, "exec_ppid": int(stat(proc)[1])}))
finally:
    run("delete", "--force", cid, check=True)
while True:   # reap what was reparented to us
    try:
        os.waitpid(-1, 0)
    except ChildProcessError:
        break
"""


def test_init_and_exec_are_children_of_the_caller(helper, ocirun, bundle):
    """Under a PR_SET_CHILD_SUBREAPER parent (conmon, containerd-shim), the init and an
    exec'd process are reparented to it when `ocirun` exits: the front end cloned them."""
    helper.start()
    bundle.set_args("sleep", "30")
    cid = ocirun.new_id()
    p = subprocess.run([sys.executable, "-c", PARENT, str(FRONT_END), str(ocirun.root), str(bundle.path), cid],
                       env=helper.env, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    facts = json.loads(p.stdout)
    assert facts["init_ppid"] == facts["me"]
    assert facts["exec_ppid"] == facts["me"]
    assert facts["init_comm"] == "ocirun"  # cloned by the front end, i.e. served by the helper


def test_foreground_run_gets_the_exit_status_and_signals(helper, ocirun, bundle):
    helper.start()
    bundle.set_args("sh", "-c", "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done")
    p = subprocess.Popen([str(FRONT_END), "--root", str(ocirun.root), "run", "--bundle", str(bundle.path),
                          ocirun.new_id()], env=helper.env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert p.stdout.readline() == b"ready\n"
        p.send_signal(signal.SIGTERM)
        out, err = p.communicate(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    reap_orphans()
    assert out == b"got-term\n" and p.returncode == 7, err


# --------------------------------------------------------------- the caller's context


def test_bundle_and_root_only_in_a_private_mount_namespace(helper, ocirun, bundle, tmp_path):
    """The worker joins the caller's mount namespace: a bundle and a state root that
    exist only there are found, and the container is made there."""
    helper.start()
    bundle.set_args("sleep", "30")
    script = r"""
set -e
mount -t tmpfs tmpfs "$1"
cp -a "$2" "$1/bundle"
"$3" --root "$1/root" create --bundle "$1/bundle" "$4" >/dev/null 2>"$1/create.err" || { cat "$1/create.err" >&2; exit 1; }
pid=$("$3" --root "$1/root" state "$4" | sed -n 's/.*"pid": *\([0-9]*\).*/\1/p')
cat /proc/$pid/comm
"$3" --root "$1/root" start "$4"
"$3" --root "$1/root" state "$4" | grep -o '"status": *"[a-z]*"' | tr -d ' '
"$3" --root "$1/root" delete --force "$4"
ls "$1/root"
umount "$1"
"""
    private = tmp_path / "private"
    private.mkdir()
    cid = ocirun.new_id()
    p = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", str(private),
                        str(bundle.path), str(FRONT_END), cid],
                       env=helper.env, capture_output=True, text=True, timeout=120)
    reap_orphans()
    assert p.returncode == 0, p.stderr
    assert p.stdout.split() == ["ocirun", '"status":"running"']
    assert not any(private.iterdir())  # never in our mount namespace


def test_relative_paths_umask_env_and_fds_are_the_callers(helper, ocirun, bundle, tmp_path):
    helper.start()
    bundle.set_args("sleep", "30")
    work = tmp_path / "cwd"
    work.mkdir()
    cid = ocirun.new_id()
    # a relative --pid-file and --log in our cwd, our umask for the files made
    script = 'umask 027; exec 3</dev/null; exec "$@"'
    with open(work / "err", "wb") as err:
        p = subprocess.run(["sh", "-c", script, "sh", str(FRONT_END), "--root", str(ocirun.root), "--log",
                            "log.json", "--log-format", "json", "create", "--pid-file", "pid", "--bundle",
                            str(bundle.path), "--preserve-fds", "1", cid], cwd=work, env=helper.env,
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, timeout=60)
    reap_orphans()
    assert p.returncode == 0, (work / "err").read_text()
    init = int((work / "pid").read_text())
    assert stat.S_IMODE((work / "pid").stat().st_mode) == 0o640
    assert init_comm(init) == "ocirun"
    # fd 3 (preserved) is the caller's /dev/null
    assert os.readlink(f"/proc/{init}/fd/3") == "/dev/null"
    # an error goes to the relative --log
    p = helper.run("--root", str(ocirun.root), "--log", "log.json", "--log-format", "json", "start", "nosuch",
                   cwd=work)
    assert p.returncode == 1 and p.stderr == b"container does not exist: nosuch\n"
    line = json.loads((work / "log.json").read_text().splitlines()[-1])
    assert line["level"] == "error" and line["msg"] == "container does not exist: nosuch"


def test_runtime_hooks_run_in_the_callers_cgroups_and_as_its_children(helper, ocirun, bundle, tmp_path):
    helper.start()
    hook = tmp_path / "hook.sh"
    hook.write_text('#!/bin/sh\ncat /proc/self/cgroup > "$1"; echo "$PPID" > "$1.ppid"\n')
    hook.chmod(0o755)
    out = tmp_path / "cgroups"

    def f(c):
        c["process"]["args"] = ["true"]
        c["hooks"] = {"createRuntime": [{"path": str(hook), "args": ["hook.sh", str(out)]}]}

    bundle.edit(f)
    cid = ocirun.new_id()
    script = f'echo "$$" > {tmp_path}/sh.pid; exec "$@"'
    p = subprocess.run(["sh", "-c", script, "sh", str(FRONT_END), "--root", str(ocirun.root), "run", "--bundle",
                        str(bundle.path), cid], env=helper.env, capture_output=True, timeout=60)
    reap_orphans()
    assert p.returncode == 0, p.stderr
    assert out.read_text() == Path("/proc/self/cgroup").read_text()  # ours (not the helper's roots)
    assert int((tmp_path / "cgroups.ppid").read_text()) == int((tmp_path / "sh.pid").read_text())


# ------------------------------------------------------------------- same results


def test_output_status_and_log_are_the_same_with_and_without_the_helper(helper, ocirun, bundle, tmp_path):
    helper.start()
    bundle.set_args("sleep", "30")
    cid = ocirun.new_id()
    created(helper, ocirun, bundle, cid)
    helper.run("--root", str(ocirun.root), "start", cid)
    root = str(ocirun.root)
    calls = [
        ("--root", root, "state", cid),
        ("--root", root, "list"),
        ("--root", root, "list", "--format", "json"),
        ("--root", root, "list", "-q"),
        ("--root", root, "state", "nosuch"),
        ("--root", root, "--log-format", "json", "--log", "LOG", "kill", "nosuch"),
        ("--root", root, "--log", "LOG", "delete", cid),
        ("--root", root, "kill", cid, "NOSIG"),
        ("--root", root, "exec", cid, "sh", "-c", "echo out; echo err >&2; exit 5"),
        ("--root", root, "exec", cid, "/nonexistent"),
        ("--root", root, "ps", "--format", "json", cid),
        ("--root", root, "create", "--bundle", str(tmp_path / "nobundle"), "x"),
        ("--root", root, "bogus-command",),
        ("--root", root, "state"),
        ("--root", root, "state", "--help"),
        ("--version",),
        ("features",),
        ("spec", "--help"),
    ]
    direct_env = dict(helper.env, OCIRUN_HELPER="off")
    for call in calls:
        results = []
        for env in (helper.env, direct_env):
            log = tmp_path / f"log-{len(results)}"
            args = [str(log) if a == "LOG" else a for a in call]
            p = helper.run(*args, env=env)
            log_text = log.read_text() if log.exists() else ""
            # the time in a log line is the only thing allowed to differ
            log_text = "\n".join(json.dumps({k: v for k, v in json.loads(x).items() if k != "time"})
                                 if x.startswith("{") else x.split(" msg=", 1)[-1] for x in log_text.splitlines())
            results.append((p.returncode, p.stdout, p.stderr, log_text))
        assert results[0] == results[1], call
    # the helper really served the first of each pair
    assert helper.processes()


def test_disabled_by_environment_and_by_flag(helper, ocirun, bundle):
    helper.start()
    bundle.set_args("sleep", "30")
    for how in ({"OCIRUN_HELPER": "off"}, {"OCIRUN_HELPER": "0"}):
        cid = ocirun.new_id()
        init = created(helper, ocirun, bundle, cid, env=dict(helper.env, **how))
        assert init_comm(init).startswith(("python", "memfd:python")), how  # the direct path made it (from a sealed copy: CVE-2019-5736)
        helper.run("--root", str(ocirun.root), "delete", "--force", cid)
    cid = ocirun.new_id()
    assert init_comm(created(helper, ocirun, bundle, cid, "--no-helper")).startswith(("python", "memfd:python"))
    cid = ocirun.new_id()
    assert init_comm(created(helper, ocirun, bundle, cid)) == "ocirun"


def test_list_piped_returns(helper, ocirun):
    """Nothing of the helper keeps the caller's stdout open: `ocirun list | cat` ends."""
    helper.start()
    p = subprocess.run(["sh", "-c", '"$0" --root "$1" list | cat; "$0" --root "$1" list | cat',
                        str(FRONT_END), str(ocirun.root)], env=helper.env, capture_output=True, timeout=20)
    assert p.returncode == 0
    assert [line.split()[0] for line in p.stdout.splitlines()] == [b"ID", b"ID"]


# ------------------------------------------------------------------- a good citizen


def test_the_helper_is_detached_from_its_first_caller(helper, tmp_path):
    r, w = os.pipe()  # an inherited fd of the first caller must not end up in the helper
    os.set_inheritable(w, True)
    pipe = f"pipe:[{os.fstat(r).st_ino}]"
    try:
        p = subprocess.run([str(FRONT_END), "--version"], env=helper.env, pass_fds=(w,), cwd=tmp_path,
                           capture_output=True, timeout=60)
        assert p.returncode == 0
        pid = helper.start()
    finally:
        os.close(w)
    try:
        # the pipe's write end is gone from everyone: EOF at once
        assert os.read(r, 1) == b""
    finally:
        os.close(r)
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
    assert os.getsid(pid) != os.getsid(0)
    for proc in (pid, *_children(pid)):  # the helper and its spare worker
        for fd in os.listdir(f"/proc/{proc}/fd"):
            assert os.readlink(f"/proc/{proc}/fd/{fd}") != pipe
    # the root cgroup of every hierarchy: it pins no one's cgroup
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        assert line.split(":", 2)[2] == "/", line
    # its directory is its user's alone
    assert stat.S_IMODE(os.stat(helper.dir).st_mode) == 0o700


def test_status_and_stop(helper):
    p = subprocess.run([str(DIRECT), "helper", "status"], env=helper.env, capture_output=True, text=True)
    assert p.returncode == 1 and p.stdout.startswith("helper: not running")
    pid = helper.start()
    p = subprocess.run([str(DIRECT), "helper", "status"], env=helper.env, capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.startswith(f"helper: running (pid {pid})\n"), p.stdout
    assert "memory (RSS): " in p.stdout
    # the front end never sends `helper` to a helper
    p = helper.run("helper", "status")
    assert p.returncode == 0 and p.stdout.decode().startswith(f"helper: running (pid {pid})")
    p = subprocess.run([str(DIRECT), "helper", "stop"], env=helper.env, capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout == f"helper: stopped (pid {pid})\n"
    assert _wait_gone([pid]) and _wait_gone(helper.processes())
    assert not [n for n in os.listdir(helper.dir) if n.endswith((".sock", ".json"))]


def test_helper_start_from_outside(helper, ocirun, tmp_path):
    """`ocirun helper start` (for callers that are all below a subreaper: start it at
    boot, docs/helper.md): detached, never idles out with --idle 0, serves the
    calls that follow; a second start finds it running."""
    trace = tmp_path / "trace.jsonl"
    env = dict(helper.env, OCIRUN_HELPER_TRACE=str(trace))
    p = subprocess.run([str(DIRECT), "helper", "start", "--idle", "0"], env=env, capture_output=True,
                       text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("helper: running (pid "), p.stdout
    assert "idle exit: never (started with --idle 0)\n" in p.stdout
    pid = helper.status()["pid"]
    assert os.getsid(pid) != os.getsid(0)  # a session of its own (not its leader: no tty can become its)
    assert helper.run("--root", str(ocirun.root), "list").returncode == 0
    lines = [json.loads(line) for line in trace.read_text().splitlines()]
    assert [line["argv"][2] for line in lines if "refused" not in line] == ["list"]
    p = subprocess.run([str(DIRECT), "helper", "start"], env=helper.env, capture_output=True, text=True)
    assert p.returncode == 0 and p.stdout.startswith(f"helper: running (pid {pid})\n")
    assert helper.processes() and helper.status()["pid"] == pid
    p = subprocess.run([str(DIRECT), "helper", "start", "--idle", "-1"], env=helper.env, capture_output=True,
                       text=True)
    assert p.returncode == 1 and "--idle" in p.stderr


def test_idle_exit(ocirun):
    d = tempfile.mkdtemp(prefix="ocirun-h.")
    h = Helper(d, idle="3")
    try:
        pid = h.start()
        assert h.run("--root", str(ocirun.root), "list").returncode == 0
        assert _wait_gone([pid], timeout=15), "the helper did not exit when idle"
        # (had the call come after the idle exit, it started a helper of its own: it idles out too)
        assert wait_until(lambda: not [n for n in os.listdir(d) if n.endswith((".sock", ".json"))], timeout=15)
    finally:
        h.stop()
        shutil.rmtree(d, ignore_errors=True)


def test_a_code_change_is_noticed(helper, ocirun):
    import ocirun as package

    pid = helper.start()
    probe = Path(package.__file__).parent / f"_helper_probe_{os.getpid()}.py"
    probe.write_text("")
    try:
        assert _wait_gone([pid]), "the helper did not notice the new file"
    finally:
        probe.unlink()
    # the next call is served (direct) and starts a new helper, which serves the one after
    assert helper.run("--root", str(ocirun.root), "list").returncode == 0
    assert helper.start() != pid


def test_fifty_parallel_calls(helper, ocirun, bundle):
    helper.start()
    bundle.set_args("sleep", "30")
    cid = ocirun.new_id()
    created(helper, ocirun, bundle, cid)
    want = helper.run("--root", str(ocirun.root), "state", cid).stdout
    procs = [subprocess.Popen([str(FRONT_END), "--root", str(ocirun.root), "state", cid], env=helper.env,
                              stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(50)]
    results = [(p.communicate(timeout=120), p.returncode) for p in procs]
    reap_orphans()
    assert all(rc == 0 and out == want and err == b"" for (out, err), rc in results)
    assert len(helper.processes()) >= 1


# ------------------------------------------------------------------------- failures


def test_helper_killed_mid_create_then_delete_force_leaves_nothing(helper, ocirun, bundle, tmp_path):
    pid = helper.start()
    hook = tmp_path / "slow.sh"
    hook.write_text("#!/bin/sh\nsleep 2\n")
    hook.chmod(0o755)

    def f(c):
        c["process"]["args"] = ["sleep", "30"]
        c["process"]["terminal"] = False
        c["hooks"] = {"createRuntime": [{"path": str(hook)}]}

    bundle.edit(f)
    cid = ocirun.new_id()
    err = tmp_path / "err"
    with open(err, "wb") as errf:
        p = subprocess.Popen([str(FRONT_END), "--root", str(ocirun.root), "create", "--bundle", str(bundle.path),
                              cid], env=helper.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=errf)
    time.sleep(1)  # in the hook
    os.kill(pid, signal.SIGKILL)
    p.wait(timeout=60)
    reap_orphans()
    # the call's worker is not the helper: the create finishes
    assert p.returncode == 0, err.read_text()
    assert helper.run("--root", str(ocirun.root), "delete", "--force", cid).returncode == 0
    assert not (ocirun.root / cid).exists()
    # and the next calls work, with a new helper
    assert helper.start() != pid


def test_a_dead_caller_takes_its_worker_along(helper, ocirun, bundle, tmp_path):
    helper_pid = helper.start()
    mark = tmp_path / "hook-ran"
    hook = tmp_path / "slow.sh"
    hook.write_text(f"#!/bin/sh\necho $$ > {mark}\nexec sleep 30\n")
    hook.chmod(0o755)

    def f(c):
        c["process"]["args"] = ["true"]
        c["hooks"] = {"createRuntime": [{"path": str(hook)}]}

    bundle.edit(f)
    cid = ocirun.new_id()
    cwd = tmp_path / "caller-cwd"
    cwd.mkdir()
    p = subprocess.Popen([str(FRONT_END), "--root", str(ocirun.root), "create", "--bundle", str(bundle.path), cid],
                         env=helper.env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, cwd=cwd)
    hook_pid = int(written(mark, timeout=30))
    # its worker: the one child of the helper in the caller's cwd (spares are in /)
    workers = [w for w in _children(helper_pid) if os.readlink(f"/proc/{w}/cwd") == str(cwd)]
    try:
        assert len(workers) == 1
        p.kill()  # the caller dies mid-create
        p.wait()
        assert _wait_gone(workers), "the worker outlived its caller"
    finally:
        os.kill(hook_pid, signal.SIGKILL)  # what a killed ocirun leaves: the hook, a half-made container
        _wait_gone([hook_pid])
        reap_orphans()
        helper.run("--root", str(ocirun.root), "delete", "--force", cid)
        _remove_cgroups(cid)


def _children(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


def _remove_cgroups(cid: str) -> None:
    """A killed create leaves its cgroup (the direct path's too): the test removes it."""
    for dirpath, dirs, _ in os.walk("/sys/fs/cgroup"):
        for d in dirs:
            if d == cid:
                try:
                    os.rmdir(os.path.join(dirpath, d))
                except OSError:
                    pass
        if dirpath.count("/") > 7:
            dirs[:] = []


# ------------------------------------------------------------------------- security


def test_an_unprivileged_user_cannot_use_roots_helper(helper, ocirun, bundle):
    pid = helper.start()
    bundle.set_args("sleep", "30")
    cid = ocirun.new_id()
    init = created(helper, ocirun, bundle, cid)
    st = helper.status()
    nobody = 65534

    def as_nobody():
        os.setgroups([])
        os.setgid(nobody)
        os.setuid(nobody)

    # a Python nobody can run (this checkout's venv may be in a directory only root enters)
    python = next((p for p in ("/usr/bin/python3", sys.executable) if os.access(p, os.X_OK)), sys.executable)
    # the socket's directory is root's alone
    probe = ("import socket, sys\ns = socket.socket(socket.AF_UNIX)\n"
             "try:\n    s.connect(sys.argv[1])\nexcept OSError as e:\n    print(e.errno)\n")
    p = subprocess.run([python, "-I", "-c", probe, st["socket"]], preexec_fn=as_nobody, capture_output=True,
                       text=True, timeout=30)
    assert p.stdout.strip() == "13", p.stdout + p.stderr  # EACCES
    # their own `ocirun` calls take the direct path, with their own rights: no state, no signal
    # (if nobody may run this installation at all)
    for args in (("state", cid), ("kill", cid, "KILL"), ("delete", "--force", cid)):
        p = subprocess.run([str(FRONT_END), "--root", str(ocirun.root), *args], env=helper.env,
                           preexec_fn=as_nobody, capture_output=True, timeout=60)
        assert p.returncode != 0, args
    assert _alive(init) and json.loads(helper.run("--root", str(ocirun.root), "state", cid).stdout)["status"] == "created"
    # and even with the socket reachable, the helper serves only its own user
    os.chmod(helper.dir, 0o755)
    os.chmod(st["socket"], 0o777)
    try:
        talk = ("import socket, struct, sys\ns = socket.socket(socket.AF_UNIX)\ns.connect(sys.argv[1])\n"
                "s.sendall(struct.pack('=IIQ', 1, 0, 24) + struct.pack('=6I', 1, 0, 0, 0, 0, 0))\n"
                "h = s.recv(16)\nprint(struct.unpack('=IIQ', h)[0])\n")
        p = subprocess.run([python, "-I", "-c", talk, st["socket"]], preexec_fn=as_nobody,
                           capture_output=True, text=True, timeout=30)
        assert p.stdout.strip() == "3", p.stdout + p.stderr  # REFUSE
    finally:
        os.chmod(helper.dir, 0o700)
    assert _alive(pid)


WAITING_PARENT = r"""
import ctypes, json, os, subprocess, sys, time
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)   # PR_SET_CHILD_SUBREAPER, as conmon
subprocess.run([sys.argv[1], "--version"], stdout=subprocess.DEVNULL, check=True)  # starts a helper: ours
end = time.monotonic() + 30
while time.monotonic() < end and not any(n.endswith(".sock") for n in os.listdir(sys.argv[2])):
    time.sleep(0.05)
pid = json.loads(open([os.path.join(sys.argv[2], n) for n in os.listdir(sys.argv[2])
                       if n.endswith(".json")][0]).read())["pid"]
parent = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]
start = time.monotonic()
while True:   # as conmon's exit: wait until no child is left
    try:
        os.waitpid(-1, 0)
    except ChildProcessError:
        break
print(json.dumps({"me": os.getpid(), "helper_parent": int(parent), "waited": time.monotonic() - start}))
"""


def test_a_subreaper_that_waits_for_all_children_is_not_kept_waiting(helper):
    """conmon waits for every child before it exits: a helper that is its child (the
    first caller's orphan) leaves as soon as it waits."""
    p = subprocess.run([sys.executable, "-c", WAITING_PARENT, str(FRONT_END), helper.dir], env=helper.env,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    facts = json.loads(p.stdout)
    assert facts["helper_parent"] == facts["me"]  # it was the subreaper's child
    assert facts["waited"] < 30  # not the helper's 60 s idle time (it is at nice 10 on a busy machine)
    assert not helper.processes()


def test_the_default_cgroup_is_below_the_callers_as_with_runc(helper, ocirun, bundle):
    """The runtime's own cgroup, which a default cgroups path is relative to, is the
    caller's (not the helper's, which sits at the roots)."""
    from ocirun.cgroups.hierarchy import detect_mode, v1_hierarchies

    if detect_mode() == "unified":
        pytest.skip("v1: the caller's own cgroup, with processes, cannot have children with controllers on v2")
    pids = next((h for h in v1_hierarchies() if h.controllers == ("pids",)), None)
    if pids is None:
        pytest.skip("no v1 pids hierarchy")
    helper.start()
    bundle.set_args("sleep", "30")

    def f(c):
        c["linux"].pop("cgroupsPath", None)

    bundle.edit(f)
    cid = ocirun.new_id()
    caller_cg = Path(pids.mountpoint) / f"{cid}-caller"
    caller_cg.mkdir()
    try:
        script = 'echo $$ > "$1/cgroup.procs" && exec "$2" --root "$3" create --bundle "$4" "$5"'
        with tempfile.TemporaryFile() as err:
            p = subprocess.run(["sh", "-c", script, "sh", str(caller_cg), str(FRONT_END), str(ocirun.root),
                                str(bundle.path), cid], env=helper.env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=err, timeout=60)
            err.seek(0)
            assert p.returncode == 0, err.read()
        reap_orphans()
        init = json.loads(helper.run("--root", str(ocirun.root), "state", cid).stdout)["pid"]
        assert init_comm(init) == "ocirun"
        line = next(x for x in Path(f"/proc/{init}/cgroup").read_text().splitlines() if x.split(":")[1] == "pids")
        assert line.split(":", 2)[2] == f"{pids.root.rstrip('/')}/{cid}-caller/{cid}".replace("//", "/")
    finally:
        helper.run("--root", str(ocirun.root), "delete", "--force", cid)
        caller_cg.rmdir()


def test_a_busy_helper_means_the_direct_path_and_the_call_runs_once(helper, ocirun, bundle, tmp_path):
    """No worker takes the call in time (the spare is stopped): the front end takes
    the commit token back and runs the direct path; the worker that takes the call
    later finds the token gone and does nothing."""
    from ocirun.helper.server import SPARES

    pid = helper.start()
    end = time.monotonic() + 30
    while len(_children(pid)) < SPARES and time.monotonic() < end:
        time.sleep(0.05)
    spares = _children(pid)
    assert len(spares) == SPARES
    mark = tmp_path / "ran"
    bundle.set_args("sh", "-c", "echo once >> /mnt/ran")

    def f(c):
        c["mounts"].append({"destination": "/mnt", "type": "bind", "source": str(tmp_path), "options": ["bind"]})

    bundle.edit(f)
    for spare in spares:
        os.kill(spare, signal.SIGSTOP)
    try:
        p = helper.run("--root", str(ocirun.root), "run", "--bundle", str(bundle.path), ocirun.new_id(),
                       env=dict(helper.env, OCIRUN_HELPER_TIMEOUT="300"))
    finally:
        for spare in spares:
            os.kill(spare, signal.SIGCONT)
    assert p.returncode == 0, p.stderr
    end = time.monotonic() + 10  # the one that took the call found no token, and left
    while time.monotonic() < end and all(_alive(s) for s in spares):
        time.sleep(0.05)
    assert not all(_alive(s) for s in spares)
    assert mark.read_text() == "once\n"

"""Rootless (issue #13): an unprivileged user of the tests' own runs ocirun.

The user (rootless_user.py) has subordinate uid and gid ranges, a HOME and an
XDG_RUNTIME_DIR of its own, and runs .venv-rootless/bin/ocirun. Its bundles are
made the way such a user makes them: the busybox rootfs its own (as umoci
--rootless unpacks it) and config.json written by `ocirun spec --rootless`.
Each test runs with the default state root ($XDG_RUNTIME_DIR/ocirun) or with
--root, and is followed by a leak check: no process of the user or of its
subordinate ranges, nothing in the state root, nothing mounted under its work
directory. runc (Debian's 1.1.5, run as the same user) is the oracle where it
runs the same bundle. The user is removed, with its /etc/subuid and
/etc/subgid lines, at the end of the session (checked), also when tests fail.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import reap_orphans
from rootless_user import RootlessUser, fresh_user, userns_disabled

HAVE_RUNC = shutil.which("runc") is not None
HAVE_NEWUIDMAP = shutil.which("newuidmap") is not None and shutil.which("newgidmap") is not None
REAL_CONFIGS = Path(__file__).resolve().parent / "real_configs"  # /work/shared/real-configs, in the repo
HOST_V1 = not os.path.exists("/sys/fs/cgroup/cgroup.controllers")


@pytest.fixture(scope="session")
def rootless_user(bundle_image) -> Iterator[RootlessUser]:
    why = userns_disabled()
    if why:
        pytest.skip(f"unprivileged user namespaces are disabled ({why})")
    try:
        with fresh_user() as user:
            yield user
    finally:
        reap_orphans()  # what remove() killed


class UserRuntime:
    """ocirun as the test user; ``root`` None: its default state root."""

    def __init__(self, user: RootlessUser, root: Path | None):
        self.user = user
        self.root = root
        self.ids: list[str] = []

    @property
    def state_root(self) -> Path:
        return self.root if self.root is not None else self.user.runtime_dir / "ocirun"

    def new_id(self) -> str:
        cid = f"ocitest-rl-{uuid.uuid4().hex[:10]}"
        self.ids.append(cid)
        return cid

    def __call__(self, *args: str, check: bool = True, env: dict[str, str] | None = None,
                 timeout: float = 60, binary: str = "ocirun", cwd: Path | None = None,
                 global_args: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
        root = ("--root", str(self.root)) if self.root is not None else ()
        p = self.user.run([binary, *root, *global_args, *args], env=env, timeout=timeout, cwd=cwd)
        reap_orphans()
        if check and p.returncode != 0:
            raise AssertionError(f"{binary} {' '.join(args)} exited {p.returncode}\n"
                                 f"stdout: {p.stdout.decode(errors='replace')}\n"
                                 f"stderr: {p.stderr.decode(errors='replace')}")
        return p

    def state(self, cid: str) -> dict:
        return json.loads(self("state", cid).stdout)


def _mounts_under(path: Path) -> list[str]:
    out = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4]
        if target == str(path) or target.startswith(str(path) + "/"):
            out.append(target)
    return out


@pytest.fixture(params=["default-root", "given-root"])
def rl(request, rootless_user) -> Iterator[UserRuntime]:
    """ocirun as the user, with the default state root or --root DIR (its own);
    afterwards its containers are deleted and nothing may be left."""
    user = rootless_user
    root = None
    if request.param == "given-root":
        root = user.home / f"state-{uuid.uuid4().hex[:6]}"
    rt = UserRuntime(user, root)
    yield rt
    for cid in rt.ids:
        rt("delete", "--force", cid, check=False)
    # the user's warm helper (its calls went through one unless OCIRUN_HELPER=off)
    leaks = user.stop_helpers()
    reap_orphans()
    if user.helper_dir.exists() and (left := [n for n in os.listdir(user.helper_dir) if not n.endswith(".lock")]):
        leaks.append(f"helper files: {left}")
    if procs := user.lasting_processes(reap=reap_orphans):
        leaks.append(f"processes: {procs}")
        user.kill_all()
        reap_orphans()
    if rt.state_root.exists() and (left := os.listdir(rt.state_root)):
        leaks.append(f"state dirs in {rt.state_root}: {left}")
    if mounted := _mounts_under(user.workdir):
        leaks.append(f"mounts: {mounted}")
    if root is not None:
        shutil.rmtree(root, ignore_errors=True)
    assert not leaks, "the rootless test left things behind: " + "; ".join(leaks)


def make_bundle(user: RootlessUser, bundle_image: Path, *args: str, spec: str = "ocirun",
                edit=None) -> Path:
    """The busybox rootfs, owned by the user, with the config.json `<spec> spec --rootless`
    writes as the user (terminal off, ``args`` as the process); ``edit(config)`` last."""
    path = user.home / f"bundle-{uuid.uuid4().hex[:8]}"
    shutil.copytree(bundle_image / "rootfs", path / "rootfs", symlinks=True)
    user.give(path)
    user.run([spec, "spec", "--rootless"], cwd=path, check=True)
    config = json.loads((path / "config.json").read_text())
    config["process"]["terminal"] = False
    if args:
        config["process"]["args"] = list(args)
    if edit is not None:
        edit(config)
    write_config(user, path, config)
    return path


def write_config(user: RootlessUser, bundle: Path, config: dict) -> None:
    (bundle / "config.json").write_text(json.dumps(config, indent=2))
    os.chown(bundle / "config.json", user.uid, user.gid)


def one_error_line(p: subprocess.CompletedProcess) -> str:
    """The single error line of a failed command (warnings aside); never an internal error."""
    assert p.returncode == 1, (p.returncode, p.stderr)
    lines = [ln for ln in p.stderr.decode().splitlines() if not ln.startswith("warning: ")]
    assert len(lines) == 1, p.stderr.decode()
    assert "internal error" not in lines[0] and "Traceback" not in lines[0], lines[0]
    return lines[0]


# ------------------------------------------------------------------ runs as runc does


def test_spec_rootless_runs_as_root_of_a_user_namespace(rl, bundle_image):
    """`ocirun spec --rootless`, then `ocirun run`: root in a user namespace that maps
    it to the user (what the issue tried first); runc gives the same."""
    user = rl.user
    script = ("id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map /proc/self/setgroups; "
              "stat -c '%t:%T %F' /dev/null; hostname")
    bundle = make_bundle(user, bundle_image, "sh", "-c", script)
    cid = rl.new_id()
    got = rl("run", "--bundle", str(bundle), cid).stdout.decode().split("\n")
    assert got[0:2] == ["0", "0"]
    assert got[2].split() == ["0", str(user.uid), "1"]
    assert got[3].split() == ["0", str(user.gid), "1"]
    assert got[4] == "deny"                     # the kernel's price for an unprivileged gid map
    assert got[5] == "1:3 character special file"  # the host's /dev/null, bound (no mknod)
    if rl.root is None:
        st = os.stat(rl.state_root)
        assert (st.st_uid, st.st_mode & 0o777) == (user.uid, 0o700)
    if HAVE_RUNC:
        runc_cid = rl.new_id()
        want = rl("run", "--bundle", str(bundle), runc_cid, binary="runc").stdout.decode().split("\n")
        assert got[:6] == want[:6]


def test_lifecycle_exec_kill_delete(rl, bundle_image):
    user = rl.user
    bundle = make_bundle(user, bundle_image, "sh", "-c", "trap 'exit 3' TERM; while :; do sleep 0.1; done")
    cid = rl.new_id()
    rl("create", "--bundle", str(bundle), cid)
    st = rl.state(cid)
    assert st["status"] == "created" and st["pid"] > 0
    assert os.stat(f"/proc/{st['pid']}").st_uid == user.uid  # the container's root is the user
    rl("start", cid)
    assert rl.state(cid)["status"] == "running"
    out = rl("exec", cid, "sh", "-c", "id -u; echo from-exec").stdout.decode().split()
    assert out == ["0", "from-exec"]
    assert rl("exec", cid, "sh", "-c", "exit 5", check=False).returncode == 5
    listed = json.loads(rl("list", "--format", "json").stdout)
    assert [c["id"] for c in listed] == [cid]
    # no cgroup of its own here (v1) or one in a delegated subtree: ps finds it either way
    pids = json.loads(rl("ps", "--format", "json", cid).stdout)
    assert st["pid"] in pids
    rl("kill", cid, "TERM")
    deadline = time.monotonic() + 10
    while rl.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rl.state(cid)["status"] == "stopped"
    rl("delete", cid)
    assert rl("state", cid, check=False).returncode == 1
    assert not (rl.state_root / cid).exists()


def test_kill_all_and_ps_find_the_processes_without_a_cgroup(rl, bundle_image):
    user = rl.user
    bundle = make_bundle(user, bundle_image, "sh", "-c", "sleep 1000 & sleep 1000 & wait")
    cid = rl.new_id()
    rl("run", "-d", "--bundle", str(bundle), cid)
    deadline = time.monotonic() + 10
    while len(json.loads(rl("ps", "--format", "json", cid).stdout)) < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    pids = json.loads(rl("ps", "--format", "json", cid).stdout)
    assert len(pids) == 3, pids
    table = rl("ps", cid).stdout.decode().splitlines()
    assert table[0].split()[:2] == ["UID", "PID"]
    assert sorted(int(line.split()[1]) for line in table[1:]) == sorted(pids)
    rl("kill", "--all", cid, "KILL")
    deadline = time.monotonic() + 10
    while rl.state(cid)["status"] != "stopped" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert rl.state(cid)["status"] == "stopped"
    assert not any(os.path.exists(f"/proc/{p}") and _state(p) != "Z" for p in pids)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "?"


def test_terminal_in_the_foreground(rl, bundle_image):
    """`ocirun run` of a terminal process, on the user's own terminal (a pty)."""
    user = rl.user
    bundle = make_bundle(user, bundle_image, "sh", "-c", "tty; stty -a | head -1; echo done",
                         edit=lambda c: c["process"].update(terminal=True))
    cid = rl.new_id()
    root = ("--root", str(rl.root)) if rl.root is not None else ()
    out, status = run_in_pty(user, ["ocirun", *root, "run", "--bundle", str(bundle), cid])
    text = out.decode(errors="replace").replace("\r", "")
    assert status == 0, text
    assert "/dev/pts/0" in text and "done" in text, text
    assert "speed 38400 baud" in text, text  # stty: a terminal


def test_exec_with_a_terminal(rl, bundle_image):
    user = rl.user
    bundle = make_bundle(user, bundle_image, "sleep", "1000")
    cid = rl.new_id()
    rl("run", "-d", "--bundle", str(bundle), cid)
    root = ("--root", str(rl.root)) if rl.root is not None else ()
    out, status = run_in_pty(user, ["ocirun", *root, "exec", "-t", cid, "sh", "-c", "tty; exit 4"])
    assert status == 4
    assert b"/dev/pts/" in out


def run_in_pty(user: RootlessUser, argv: list[str], timeout: float = 30) -> tuple[bytes, int]:
    import fcntl
    import struct
    import termios

    master, slave = os.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
    os.fchown(slave, user.uid, -1)
    p = subprocess.Popen(user.argv(argv), env=user.env(), cwd=user.home, stdin=slave, stdout=slave,
                         stderr=slave, start_new_session=True)
    os.close(slave)
    out = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            r, _, _ = select.select([master], [], [], 0.2)
            if r:
                try:
                    data = os.read(master, 65536)
                except OSError:
                    break
                if not data:
                    break
                out += data
            elif p.poll() is not None:
                break
        else:
            p.send_signal(signal.SIGKILL)
    finally:
        status = p.wait(timeout=10)
        os.close(master)
        reap_orphans()
    return out, status


# ------------------------------------------------------------------ the configs people use


@pytest.mark.parametrize("name", ["runc-spec-rootless.json", "crun-spec-rootless.json"])
def test_real_rootless_configs(rl, bundle_image, name):
    """`runc spec --rootless` and `crun spec --rootless` as written (crun's has no
    mappings: container root becomes the user, as crun does)."""
    source = REAL_CONFIGS / name
    if not source.exists():
        pytest.skip(f"{source} is not there")
    user = rl.user
    bundle = make_bundle(user, bundle_image)
    config = json.loads(source.read_text())
    config["root"]["path"] = "rootfs"
    config["process"]["terminal"] = False
    config["process"]["args"] = ["sh", "-c", "id -u; cat /proc/self/uid_map; grep -c ' /sys ' /proc/self/mounts"]
    for key, own in (("uidMappings", user.uid), ("gidMappings", user.gid)):
        for m in config["linux"].get(key) or ():
            m["hostID"] = own  # written by the generator's own uid
    write_config(user, bundle, config)
    cid = rl.new_id()
    p = rl("run", "--bundle", str(bundle), cid)
    out = p.stdout.decode().split("\n")
    assert out[0] == "0"
    assert out[1].split() == ["0", str(user.uid), "1"]
    assert int(out[2]) >= 1  # /sys: the host's bound (runc's) or a sysfs of its own netns (crun's)
    if "uidMappings" not in config["linux"]:
        assert "mapped to your own uid" in p.stderr.decode()


# ------------------------------------------------------------------ several ranges: newuidmap


@pytest.mark.skipif(not HAVE_NEWUIDMAP, reason="newuidmap/newgidmap (uidmap) are not installed")
def test_subordinate_ranges_through_newuidmap(rl, bundle_image):
    """What podman sends: root to the user, 1.. to its /etc/subuid range; a process
    of uid 1000 with additional groups (setgroups is allowed then)."""
    user = rl.user
    sub_u, sub_g = user.subuid[0], user.subgid[0]

    def edit(c):
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": user.uid, "size": 1},
                                     {"containerID": 1, "hostID": sub_u, "size": 65536}]
        c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": user.gid, "size": 1},
                                     {"containerID": 1, "hostID": sub_g, "size": 65536}]
        c["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 100]}
        c["process"]["cwd"] = "/tmp"
        c["root"]["readonly"] = False

    bundle = make_bundle(user, bundle_image, "sh", "-c",
                         "id -u; id -G; cat /proc/self/setgroups; touch /tmp/f; sleep 1000", edit=edit)
    cid = rl.new_id()
    rl("run", "-d", "--bundle", str(bundle), cid)
    st = rl.state(cid)
    deadline = time.monotonic() + 10
    while not (bundle / "rootfs/tmp/f").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    # uid 1000 in the container is subuid + 999 on the host, for files and processes
    assert os.stat(bundle / "rootfs/tmp/f").st_uid == sub_u + 999
    uid_map = Path(f"/proc/{st['pid']}/uid_map").read_text().split()
    assert uid_map == ["0", str(user.uid), "1", "1", str(sub_u), "65536"]
    out = rl("exec", cid, "sh", "-c", "id -u; id -G; cat /proc/self/setgroups").stdout.decode().split("\n")
    assert out[0] == "1000"
    assert sorted(out[1].split()) == ["100", "1000", "5"]
    assert out[2] == "allow"


# ------------------------------------------------------------------ bad input: one clear error


def test_no_xdg_runtime_dir_and_no_root(rootless_user, bundle_image):
    user = rootless_user
    bundle = make_bundle(user, bundle_image, "true")
    env = user.env()
    del env["XDG_RUNTIME_DIR"]
    p = user.run(["ocirun", "run", "--bundle", str(bundle), "ocitest-rl-noxdg"], env=env)
    line = one_error_line(p)
    assert "XDG_RUNTIME_DIR" in line and "--root" in line
    assert not (user.runtime_dir / "ocirun" / "ocitest-rl-noxdg").exists()
    # commands that need no state root do not care
    assert user.run(["ocirun", "features"], env=env).returncode == 0
    assert not user.lasting_processes(helpers=False, reap=reap_orphans)


def _fails_cleanly(rl, bundle: Path) -> str:
    cid = rl.new_id()
    line = one_error_line(rl("run", "--bundle", str(bundle), cid, check=False))
    assert not (rl.state_root / cid).exists()
    left = rl.user.lasting_processes(helpers=False, reap=reap_orphans)  # the failed run's killed ones may be exiting
    assert not left, [Path(f"/proc/{pid}/cmdline").read_bytes() for pid in left if Path(f"/proc/{pid}").exists()]
    return line


def test_bad_input_is_one_clear_error(rl, bundle_image):
    user = rl.user
    cases: list[tuple[str, object, str]] = []

    def no_userns(c):
        c["linux"]["namespaces"] = [ns for ns in c["linux"]["namespaces"] if ns["type"] != "user"]
        del c["linux"]["uidMappings"], c["linux"]["gidMappings"]

    cases.append(("no user namespace", no_userns, "needs a user namespace"))

    def memory_limit(c):
        c["linux"]["resources"] = {"memory": {"limit": 64 << 20}}

    if HOST_V1:
        cases.append(("a memory limit on cgroup v1", memory_limit, "linux.resources.memory"))

    def foreign_range(c):
        c["linux"]["uidMappings"] = [{"containerID": 0, "hostID": user.uid, "size": 1},
                                     {"containerID": 1, "hostID": 5000, "size": 10}]

    if HAVE_NEWUIDMAP:
        cases.append(("a range not in /etc/subuid", foreign_range, "newuidmap"))

    def tmpfs_uid(c):
        c["mounts"].append({"destination": "/data", "type": "tmpfs", "source": "tmpfs",
                            "options": ["uid=1000"]})

    cases.append(("uid= of an unmapped id", tmpfs_uid, "uid 1000 is not mapped"))

    def groups(c):
        c["process"]["user"]["additionalGids"] = [10]

    cases.append(("additionalGids with setgroups denied", groups, "additionalGids"))

    def unmapped_user(c):
        c["process"]["user"]["uid"] = 5

    cases.append(("a process uid the namespace does not map", unmapped_user, "uid 5 is not mapped"))

    def lower_oom(c):
        c["process"]["oomScoreAdj"] = -500

    own_oom = int(Path("/proc/self/oom_score_adj").read_text())
    if own_oom > -500:
        cases.append(("a lower oomScoreAdj", lower_oom, "can only be"))

    def raise_nofile(c):
        hard = int(subprocess.run(["sh", "-c", "ulimit -Hn"], capture_output=True, text=True).stdout)
        c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": hard + 1, "hard": hard + 1}]

    cases.append(("a hard rlimit above ours", raise_nofile, "CAP_SYS_RESOURCE"))

    def proc_without_pidns(c):
        c["linux"]["namespaces"] = [ns for ns in c["linux"]["namespaces"] if ns["type"] != "pid"]

    cases.append(("proc without a pid namespace", proc_without_pidns, "PID namespace of the container's own"))

    def real_time(c):
        c["process"]["scheduler"] = {"policy": "SCHED_FIFO", "priority": 10}

    if int(subprocess.run(["sh", "-c", "ulimit -Hr"], capture_output=True, text=True).stdout or 0) < 10:
        cases.append(("a real-time scheduler", real_time, "CAP_SYS_NICE in the host's user namespace"))

    def real_time_io(c):
        c["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_RT", "priority": 1}

    cases.append(("the real-time I/O class", real_time_io, "IOPRIO_CLASS_BE"))

    def missing_device(c):
        c["linux"]["devices"] = [{"path": "/dev/ocitest-none", "type": "c", "major": 1, "minor": 3}]

    cases.append(("a device the host has not", missing_device, "the host has none there"))

    def idmapped(c):
        c["mounts"].append({"destination": "/mnt", "type": "bind", "source": str(user.home),
                            "options": ["bind", "idmap"]})

    cases.append(("an id-mapped mount", idmapped, "id-mapped mount"))

    for what, edit, expected in cases:
        bundle = make_bundle(user, bundle_image, "true", edit=edit)
        line = _fails_cleanly(rl, bundle)
        assert expected in line, f"{what}: {line}"
        shutil.rmtree(bundle)


def test_verbs_that_need_a_cgroup_say_why(rl, bundle_image):
    if not HOST_V1:
        pytest.skip("on cgroup v2 the user may have a delegated cgroup (tests/cgroupv2)")
    user = rl.user
    bundle = make_bundle(user, bundle_image, "sleep", "1000")
    cid = rl.new_id()
    rl("run", "-d", "--bundle", str(bundle), cid)
    for args in (("pause", cid), ("update", "--memory", "64m", cid), ("events", "--stats", cid),
                 ("events", "--interval", "1s", cid)):
        line = one_error_line(rl(*args, check=False))
        assert "has no cgroup of its own" in line and "rootless" in line, line
    # never paused (pause above refused), so resume is refused for that first, as runc's
    assert one_error_line(rl("resume", cid, check=False)).endswith("container not paused")
    assert rl.state(cid)["status"] == "running"


def test_rootless_false_as_a_user_is_an_error_not_a_traceback(rl, bundle_image):
    """--rootless false forces the cgroup handling of root: the cgroup cannot be made."""
    user = rl.user
    bundle = make_bundle(user, bundle_image, "true")
    cid = rl.new_id()
    line = one_error_line(rl("run", "--bundle", str(bundle), cid, check=False,
                             global_args=("--rootless", "false")))
    assert "cgroup" in line and "permission denied" in line
    assert not (rl.state_root / cid).exists()


def test_files_the_user_cannot_use_are_clear_errors(rl, bundle_image):
    user = rl.user
    bundle = make_bundle(user, bundle_image, "sleep", "1000")
    cid = rl.new_id()
    line = one_error_line(rl("create", "--bundle", str(bundle), "--pid-file", "/root/ocitest.pid", cid,
                             check=False))
    assert line == "open /root/ocitest.pid: permission denied"
    assert not (rl.state_root / cid).exists()
    assert not user.lasting_processes(helpers=False, reap=reap_orphans)
    line = one_error_line(rl("create", "--bundle", "/root", rl.new_id(), check=False))
    assert line == "cannot read /root/config.json: permission denied"


def test_exec_right_after_start_enters_the_container(rl, bundle_image):
    """`start` returns once the container's process runs (the exec fifo is read to
    EOF), so the init can be entered without privilege at once (it failed now and
    then: the init was still the runtime's non-dumpable copy)."""
    bundle = make_bundle(rl.user, bundle_image, "sleep", "1000")
    for _ in range(5):
        cid = rl.new_id()
        rl("create", "--bundle", str(bundle), cid)
        rl("start", cid)
        assert rl("exec", cid, "echo", "ok").stdout == b"ok\n"
        rl("delete", "--force", cid)


def test_exec_into_a_created_container_says_to_start_it(rl, bundle_image):
    """Its init stays non-dumpable until it execs (ocirun's choice; runc's init is
    dumpable): without privilege it cannot be entered before `start`."""
    user = rl.user
    bundle = make_bundle(user, bundle_image, "sleep", "1000")
    cid = rl.new_id()
    rl("create", "--bundle", str(bundle), cid)
    p = rl("exec", cid, "true", check=False)
    assert p.returncode == 255  # runc's exit status for a failed exec
    err = [ln for ln in p.stderr.decode().splitlines() if not ln.startswith("warning: ")]
    assert len(err) == 1 and "once the container is started" in err[0] and "internal error" not in err[0]
    rl("start", cid)
    assert rl("exec", cid, "echo", "ok").stdout == b"ok\n"
    # an id the single mapping does not map: the kernel's EINVAL, with the reason
    p = rl("exec", "--user", "5:5", cid, "true", check=False)
    assert p.returncode == 255
    err = [ln for ln in p.stderr.decode().splitlines() if not ln.startswith("warning: ")]
    assert len(err) == 1 and "gid 5 is not mapped in the container's user namespace" in err[0], err


def test_sysfs_without_a_network_namespace_and_a_higher_oom_score(rl, bundle_image):
    """A sysfs mount where the container has no network namespace of its own is the
    host's /sys bound (the kernel refuses a new sysfs there); oomScoreAdj upward works."""
    def edit(c):
        for m in c["mounts"]:
            if m["destination"] == "/sys":
                m.update(type="sysfs", source="sysfs", options=["nosuid", "noexec", "nodev", "ro"])
        c["process"]["oomScoreAdj"] = 500

    bundle = make_bundle(rl.user, bundle_image, "sh", "-c",
                         "cat /proc/self/oom_score_adj; test -d /sys/kernel && echo sys", edit=edit)
    out = rl("run", "--bundle", str(bundle), rl.new_id()).stdout.decode().split()
    assert out == ["500", "sys"]


def test_no_pid_namespace_and_no_proc_mount(rl, bundle_image):
    """Without a pid namespace of its own a rootless container cannot mount proc, so
    its config leaves /proc out; the init then has no procfs of its own to name its
    fds through (fsopen is refused where its user namespace does not own the pid
    namespace) and uses the runtime's /proc, opened before any mount: the masked and
    read-only paths are still applied (was: `mask /sys/firmware: no such file or directory`)."""
    def edit(c):
        c["linux"]["namespaces"] = [ns for ns in c["linux"]["namespaces"] if ns["type"] != "pid"]
        c["mounts"] = [m for m in c["mounts"] if m["type"] != "proc"]
        c["linux"]["maskedPaths"] = ["/sys/firmware"]
        c["linux"]["readonlyPaths"] = ["/etc"]

    bundle = make_bundle(rl.user, bundle_image, "sh", "-c",
                         "ls -A /sys/firmware | wc -l; touch /etc/x 2>/dev/null || echo etc-ro; "
                         "ls -A /proc | wc -l", edit=edit)
    assert any(os.scandir("/sys/firmware")), "the test needs a non-empty /sys/firmware on the host"
    out = rl("run", "--bundle", str(bundle), rl.new_id()).stdout.decode().split()
    assert out == ["0", "etc-ro", "0"]  # masked (an empty tmpfs), read-only, and no /proc


def test_explain_says_what_a_rootless_create_would_do(rl, bundle_image):
    import jsonschema

    bundle = make_bundle(rl.user, bundle_image, "true")
    cid = rl.new_id()
    doc = json.loads(rl("explain", "--format", "json", "--bundle", str(bundle), cid).stdout)
    jsonschema.validate(doc, json.loads((Path(__file__).resolve().parents[2] / "docs" / "explain.schema.json")
                                        .read_text()))
    steps = [s["step"] for s in doc["steps"]]
    assert "userns-dumpable" in steps and "setgroups" in steps
    if HOST_V1:
        assert doc["cgroup"]["version"] == 0 and "may not create cgroups" in doc["cgroup"]["none"]
    assert doc["stateDir"]["path"] == str(rl.state_root / cid)
    assert not (rl.state_root / cid).exists()  # explain made nothing


@pytest.mark.parametrize("mode", ["true", "false"])
def test_rootless_forced_as_root_keeps_the_cgroup_root_may_create(ocirun, bundle, mode):
    """--rootless true as the host's root changes only the cgroup handling (runc's
    rootless managers: what root may create is still used, device rules are best
    effort): a memory limit is applied either way."""
    bundle.set_args("sleep", "1000")
    bundle.edit(lambda c: c["linux"].update(resources={"memory": {"limit": 64 << 20}}))
    cid = ocirun.new_id()
    ocirun("create", "--bundle", str(bundle.path), cid, global_args=("--rootless", mode))
    pid = json.loads(ocirun("state", cid).stdout)["pid"]
    lines = Path(f"/proc/{pid}/cgroup").read_text().splitlines()
    if HOST_V1:
        path = next(ln.split(":", 2)[2] for ln in lines if ln.split(":")[1] == "memory")
        limit = Path(f"/sys/fs/cgroup/memory{path}/memory.limit_in_bytes").read_text()
    else:
        path = next(ln.split(":", 2)[2] for ln in lines if ln.startswith("0::"))
        limit = Path(f"/sys/fs/cgroup{path}/memory.max").read_text()
    assert cid in path and int(limit) == 64 << 20
    ocirun("delete", "--force", cid)

"""`ocirun exec`: namespaces, cgroup, process settings, exit status, states,
security (no leaked fds, runtime unreachable), and runc as the oracle."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import pytest
from conftest import OCIRUN, program_args, reap_orphans
from kernel_probes import namespace

#: Every namespace kind this kernel has (time: CONFIG_TIME_NS, cgroup: CONFIG_CGROUPS).
NS = tuple(n for n in ("cgroup", "ipc", "mnt", "net", "pid", "time", "user", "uts") if namespace(n))


def _running(ocirun, bundle, *args: str) -> tuple[str, int]:
    bundle.set_args(*(args or ("sleep", "1000")))
    cid = ocirun.new_id()
    ocirun("run", "-d", "--bundle", str(bundle.path), cid)
    return cid, ocirun.state(cid)["pid"]


def _ns(pid: int) -> dict[str, str]:
    return {n: os.readlink(f"/proc/{pid}/ns/{n}") for n in NS}


def _cgroups(pid: int) -> str:
    with open(f"/proc/{pid}/cgroup") as f:
        return f.read()


def test_exec_joins_every_namespace_and_the_cgroup_of_the_init(ocirun, bundle, tmp_path):
    cid, init = _running(ocirun, bundle)
    pid_file = tmp_path / "exec.pid"
    ocirun("exec", "--detach", "--pid-file", str(pid_file), cid, "sleep", "1000")
    pid = int(pid_file.read_text())
    try:
        assert _ns(pid) == _ns(init)
        assert _ns(pid)["mnt"] != os.readlink("/proc/self/ns/mnt")
        assert _cgroups(pid) == _cgroups(init)
        with open(f"/proc/{pid}/status") as f:
            nspid = next(line.split()[1:] for line in f if line.startswith("NSpid:"))
        assert nspid[0] == str(pid) and len(nspid) == 2 and nspid[1] != "1"  # inside the pid ns
        assert program_args(pid, b"sleep\x001000\x00") == b"sleep\x001000\x00"
    finally:
        os.kill(pid, 9)


def test_delete_force_does_not_wait_for_an_init_held_by_an_unreaped_exec(ocirun, bundle):
    """The exec'd process is the caller's child (reparented to us, a subreaper). Killed
    with the container, it stays a zombie until we reap it, and until then the init of
    its pid namespace waits inside its exit. A caller that reaps only once delete has
    returned (as this one) must not make delete wait: it waited its whole 10 s."""
    cid, init = _running(ocirun, bundle)
    ocirun("exec", "--detach", cid, "sleep", "1000")
    start = time.monotonic()
    p = subprocess.run([*OCIRUN, "--root", str(ocirun.root), "delete", "--force", cid],
                       capture_output=True, timeout=60)
    took = time.monotonic() - start
    assert (p.returncode, p.stderr) == (0, b"")
    assert took < 9, took  # not its 10 s wait for the init
    reap_orphans()
    assert ocirun("state", cid, check=False).returncode == 1
    end = time.monotonic() + 5
    while os.path.exists(f"/proc/{init}") and time.monotonic() < end:
        reap_orphans()
        time.sleep(0.02)
    assert not os.path.exists(f"/proc/{init}")


def test_exec_exit_status_and_death_by_signal(ocirun, bundle):
    cid, _ = _running(ocirun, bundle)
    assert ocirun("exec", cid, "sh", "-c", "exit 7", check=False).returncode == 7
    assert ocirun("exec", cid, "sh", "-c", "kill -TERM $$", check=False).returncode == 128 + 15
    assert ocirun("exec", cid, "true").returncode == 0


def test_exec_user_env_cwd_flags(ocirun, bundle):
    cid, _ = _running(ocirun, bundle)
    out = ocirun("exec", "-u", "1000:1001", "-g", "10", "-g", "11", "--cwd", "/tmp", "-e", "FOO=bar",
                 cid, "sh", "-c", "id; pwd; echo $FOO; echo $PATH").stdout.decode().splitlines()
    assert out[0] == "uid=1000 gid=1001 groups=10,11"
    assert out[1:3] == ["/tmp", "bar"]
    assert out[3] == bundle.config()["process"]["env"][0].split("=", 1)[1]  # the config's PATH


def test_exec_inherits_the_containers_process(ocirun, bundle):
    def f(c):
        c["process"]["env"].append("FROM_CONFIG=1")
        c["process"]["cwd"] = "/etc"
        c["process"]["user"] = {"uid": 5, "gid": 6}
        c["process"]["noNewPrivileges"] = False

    bundle.edit(f)
    cid, _ = _running(ocirun, bundle)
    out = ocirun("exec", cid, "sh", "-c", "id -u; id -g; pwd; echo $FROM_CONFIG; grep NoNewPrivs /proc/self/status"
                 ).stdout.decode().split()
    assert out[:4] == ["5", "6", "/etc", "1"]
    assert out[-1] == "0"
    out = ocirun("exec", "--no-new-privs", cid, "grep", "NoNewPrivs", "/proc/self/status").stdout.decode()
    assert out.split()[-1] == "1"


def test_exec_cap_adds_to_the_containers_capabilities(ocirun, bundle):
    cid, _ = _running(ocirun, bundle)
    probe = ("grep", "CapEff", "/proc/self/status")
    base = int(ocirun("exec", cid, *probe).stdout.split()[-1], 16)
    added = int(ocirun("exec", "--cap", "CAP_SYS_ADMIN", "--cap", "net_admin", cid, *probe).stdout.split()[-1], 16)
    assert not base & (1 << 21)
    assert added == base | (1 << 21) | (1 << 12)
    amb = ocirun("exec", "--cap", "CAP_SYS_ADMIN", cid, "grep", "CapAmb", "/proc/self/status").stdout.split()[-1]
    assert not int(amb, 16) & (1 << 21)  # as runc 1.1: not added to the ambient set


def test_exec_process_file(ocirun, bundle, tmp_path):
    cid, _ = _running(ocirun, bundle)
    proc = {"args": ["sh", "-c", "id; pwd; echo $ONLY"], "cwd": "/var", "env": ["ONLY=here", "PATH=/bin"],
            "user": {"uid": 7, "gid": 8}}
    (tmp_path / "p.json").write_text(json.dumps(proc))
    out = ocirun("exec", "--process", str(tmp_path / "p.json"), cid).stdout.decode().splitlines()
    assert out == ["uid=7 gid=8", "/var", "here"]


def test_exec_process_file_is_validated(ocirun, bundle, tmp_path):
    cid, _ = _running(ocirun, bundle)
    (tmp_path / "p.json").write_text(json.dumps({"args": ["true"], "cwd": "/", "user": {"uid": "x"}}))
    p = ocirun("exec", "--process", str(tmp_path / "p.json"), cid, check=False)
    assert p.returncode == 255
    assert b"exec failed: " in p.stderr and b"$.process.user.uid" in p.stderr


def test_exec_of_a_missing_binary_is_runcs_error(ocirun, bundle):
    cid, _ = _running(ocirun, bundle)
    p = ocirun("exec", cid, "nosuch", check=False)
    assert p.returncode == 255
    assert p.stderr.decode().strip() == (
        'exec failed: unable to start container process: exec: "nosuch": executable file not found in $PATH')
    p = ocirun("exec", cid, "/nosuch", check=False)
    assert p.returncode == 255 and b'exec: "/nosuch": stat /nosuch: no such file or directory' in p.stderr
    p = ocirun("exec", "--cwd", "/nonexist", cid, "true", check=False)
    assert p.returncode == 255 and b'chdir to cwd ("/nonexist") set in config.json failed' in p.stderr


def test_exec_needs_args_and_a_terminal_for_tty(ocirun, bundle):
    cid, _ = _running(ocirun, bundle)
    p = ocirun("exec", cid, check=False)
    assert p.returncode == 1 and b"exec args cannot be empty" in p.stderr
    # -t in the foreground proxies our terminal: none here (stdio are files), as runc says
    p = ocirun("exec", "-t", cid, "true", check=False)
    assert p.returncode == 255 and b"open /dev/tty: no such device or address" in p.stderr


def test_exec_into_stopped_created_and_paused_containers(ocirun, bundle):
    bundle.set_args("sleep", "1000")
    cid = ocirun.new_id()
    ocirun("create", "--bundle", str(bundle.path), cid)
    # runc allows exec into a created container
    assert ocirun("exec", cid, "true").returncode == 0
    ocirun("start", cid)
    ocirun("pause", cid)
    p = ocirun("exec", cid, "true", check=False)
    assert p.returncode == 255
    assert p.stderr.decode().strip() == "exec failed: cannot exec in a paused container (use --ignore-paused to override)"
    # --ignore-paused: allowed; the process is frozen with the rest until resume (as with runc)
    with tempfile.TemporaryFile() as err:
        child = subprocess.Popen([*OCIRUN, "--root", str(ocirun.root), "exec", "--ignore-paused", "-d", cid, "true"],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        ocirun("resume", cid)
        assert child.wait(timeout=60) == 0
    ocirun("kill", cid, "KILL")
    assert ocirun.wait_status(cid, "stopped") == "stopped"
    p = ocirun("exec", cid, "true", check=False)
    assert p.returncode == 255
    assert p.stderr.decode().strip() == "exec failed: cannot exec in a stopped container"


def test_exec_holds_no_fd_of_the_caller(ocirun, bundle, tmp_path):
    cid, _ = _running(ocirun, bundle)
    secret = tmp_path / f"leak-{uuid.uuid4().hex}"
    secret.write_text("host file")
    fd = os.open(secret, os.O_RDONLY)  # inheritable: no O_CLOEXEC
    os.set_inheritable(fd, True)
    try:
        p = subprocess.run([*OCIRUN, "--root", str(ocirun.root), "exec", cid, "sh", "-c",
                            "ls -l /proc/$$/fd"],
                           capture_output=True, pass_fds=(fd,), stdin=subprocess.DEVNULL, timeout=60)
    finally:
        os.close(fd)
    reap_orphans()
    assert p.returncode == 0, p.stderr
    out = p.stdout.decode()
    assert secret.name not in out
    fds = sorted(line.split("->")[0].split()[-1] for line in out.splitlines() if "->" in line)
    assert fds == ["0", "1", "2"], out


def test_exec_preserve_fds(ocirun, bundle, tmp_path):
    cid, _ = _running(ocirun, bundle)
    (tmp_path / "msg").write_text("passed along\n")
    # fd 3 of `ocirun exec` only (a shell redirection): this process's fd 3 is pytest's
    p = subprocess.run(["sh", "-c", 'exec "$@" 3<"$0"', str(tmp_path / "msg"), *OCIRUN, "--root", str(ocirun.root),
                        "exec", "--preserve-fds", "1", cid, "sh", "-c", "cat <&3"],
                       capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    reap_orphans()
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"passed along\n"


def test_exec_process_cannot_see_the_runtime(ocirun, bundle):
    cid, _ = _running(ocirun, bundle)
    out = ocirun("exec", cid, "sh", "-c",
                 "echo PPid: $PPID; for p in /proc/[0-9]*; do readlink $p/exe; done").stdout.decode()
    lines = out.split("\n")
    assert lines[0].split() == ["PPid:", "0"]  # the parent (runtime) is outside the pid namespace
    exes = {line for line in lines[1:] if line}
    assert exes and all("python" not in e for e in exes), exes
    assert sys.executable not in out


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")
def test_exec_sees_what_runc_exec_shows(ocirun, bundle, tmp_path):
    probe = "id; grep -E '^(Cap|NoNewPrivs|Seccomp:)' /proc/self/status; env; pwd; ulimit -n"
    bundle.set_args("sleep", "1000")
    theirs = bundle.copy(tmp_path / "runc-bundle")
    cid, _ = _running(ocirun, bundle, "sleep", "1000")
    flags = ("-e", "X=1", "-e", "HOME=/x", "-e", "TERM=dumb", "-e", "X=2", "-u", "1000")
    ours = ocirun("exec", *flags, cid, "sh", "-c", probe).stdout
    root = tmp_path / "runc-root"
    rid = f"runc-{uuid.uuid4().hex[:8]}"
    subprocess.run(["runc", "--root", str(root), "run", "-d", "--bundle", str(theirs.path), rid],
                   check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   timeout=60)
    try:
        reference = subprocess.run(["runc", "--root", str(root), "exec", *flags, rid,
                                    "sh", "-c", probe], capture_output=True, timeout=60, check=True).stdout
    finally:
        subprocess.run(["runc", "--root", str(root), "delete", "-f", rid], capture_output=True, timeout=60)
        time.sleep(0)
        reap_orphans()
    assert ours == reference


@pytest.mark.parametrize("nnp", [True, False])
def test_exec_gets_the_containers_seccomp_filter(ocirun, bundle, nnp):
    def f(c):
        c["process"]["noNewPrivileges"] = nnp
        c["linux"]["seccomp"] = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}

    bundle.edit(f)
    cid, _ = _running(ocirun, bundle)
    out = ocirun("exec", cid, "sh", "-c", "grep -E '^Seccomp:' /proc/self/status; mkdir /tmp/x 2>&1; echo $?",
                 ).stdout.decode().splitlines()
    assert out[0].split() == ["Seccomp:", "2"]
    assert "Operation not permitted" in out[1] and out[2] == "1"


def test_exec_into_a_user_namespace_container(ocirun, bundle):
    def f(c):
        c["mounts"] = [m for m in c["mounts"] if m["destination"] not in ("/sys", "/sys/fs/cgroup")]

    bundle.edit(f)
    bundle.add_user_namespace()
    cid, init = _running(ocirun, bundle)
    pid_file = bundle.path / "exec.pid"
    ocirun("exec", "-d", "--pid-file", str(pid_file), "-u", "5:5", cid, "sleep", "1000")
    pid = int(pid_file.read_text())
    try:
        assert _ns(pid) == _ns(init) and _ns(pid)["user"] != os.readlink("/proc/self/ns/user")
        with open(f"/proc/{pid}/status") as st:
            uids = next(line.split()[1:] for line in st if line.startswith("Uid:"))
        assert uids == ["100005"] * 4  # container uid 5 through the map
    finally:
        os.kill(pid, 9)


def test_exec_in_a_user_namespace_grants_what_the_host_lacks(ocirun, bundle):
    # CAP_SYS_RESOURCE (24) is not in this host's bounding set, but a user namespace
    # can grant it: no "unavailable" warning, and the exec'd process has it.
    def f(c):
        c["mounts"] = [m for m in c["mounts"] if m["destination"] not in ("/sys", "/sys/fs/cgroup")]
        c["process"]["capabilities"] = {s: ["CAP_KILL", "CAP_SYS_RESOURCE"] for s in
                                        ("bounding", "effective", "permitted", "inheritable")}

    bundle.edit(f)
    bundle.add_user_namespace()
    cid, _ = _running(ocirun, bundle)
    p = ocirun("exec", cid, "grep", "CapEff", "/proc/self/status")
    assert b"unavailable" not in p.stderr
    assert int(p.stdout.split()[1], 16) == (1 << 5) | (1 << 24)


def test_foreground_exec_forwards_signals(ocirun, bundle):
    cid, _ = _running(ocirun, bundle)
    p = subprocess.Popen([*OCIRUN, "--root", str(ocirun.root), "exec", cid, "sh", "-c",
                          "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done"],
                         stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout is not None
    assert p.stdout.readline() == b"ready\n"
    p.send_signal(15)
    out, _ = p.communicate(timeout=30)
    assert out == b"got-term\n"
    assert p.returncode == 7


def test_exec_cwd_through_a_leaked_host_fd_does_not_escape(ocirun, bundle, tmp_path):
    """CVE-2024-21626: a host directory fd left open by the caller, named as the
    cwd through /proc/self/fd, must not become the process's cwd."""
    cid, _ = _running(ocirun, bundle)
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    os.set_inheritable(fd, True)
    try:
        for n in (fd, *range(3, 12)):
            p = subprocess.run([*OCIRUN, "--root", str(ocirun.root), "exec", "--cwd", f"/proc/self/fd/{n}",
                                cid, "pwd"], capture_output=True, pass_fds=(fd,), stdin=subprocess.DEVNULL,
                               timeout=60)
            assert p.returncode == 255, (n, p.stdout)
            assert str(tmp_path).encode() not in p.stdout
    finally:
        os.close(fd)
    reap_orphans()


def test_exec_process_settings_from_the_process_file(ocirun, bundle, tmp_path):
    # execCPUAffinity (exec'd processes only), ioPriority and scheduler, as the init gets them
    cid, _ = _running(ocirun, bundle)
    # it stays until its stdin closes (read), so its /proc can be looked at however late
    proc = {"args": ["sh", "-c", "grep Cpus_allowed_list /proc/self/status; read x || true"],
            "cwd": "/", "env": ["PATH=/bin"], "user": {"uid": 0, "gid": 0},
            "execCPUAffinity": {"initial": "0", "final": "0"},
            "ioPriority": {"class": "IOPRIO_CLASS_IDLE"},
            "scheduler": {"policy": "SCHED_BATCH", "nice": 5}}
    (tmp_path / "p.json").write_text(json.dumps(proc))
    pid_file = tmp_path / "exec.pid"
    p = subprocess.Popen([*OCIRUN, "--root", str(ocirun.root), "exec", "--pid-file", str(pid_file),
                          "--process", str(tmp_path / "p.json"), cid], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    try:
        assert p.stdout.readline().split() == [b"Cpus_allowed_list:", b"0"]
        # exec writes the pid file once the process runs (as runc): it may print first
        deadline = time.monotonic() + 10
        while not pid_file.exists() and time.monotonic() < deadline:
            time.sleep(0.01)
        pid = int(pid_file.read_text())
        stat = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        assert int(stat[16]) == 5 and int(stat[38]) == 3  # nice; policy SCHED_BATCH
        libc = __import__("ctypes").CDLL(None, use_errno=True)
        ioprio = libc.syscall(252 if os.uname().machine == "x86_64" else 31, 1, pid)  # ioprio_get(WHO_PROCESS)
        assert ioprio >> 13 == 3  # IOPRIO_CLASS_IDLE
    finally:
        p.stdin.close()
        assert p.wait(timeout=20) == 0
        p.stdout.close()

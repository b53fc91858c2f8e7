"""runtime.md's lifecycle with real containers: create, start, state, kill, delete, run."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest
from conftest import OCIRUN, program_args, wait_until, written


def test_run_passes_stdout_and_exit_status(ocirun, bundle):
    bundle.set_args("sh", "-c", "echo hello from $(hostname); exit 3")
    bundle.edit(lambda c: c.__setitem__("hostname", "box"))
    p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id(), check=False)
    assert p.stdout == b"hello from box\n"
    assert p.returncode == 3
    assert not list(ocirun.root.iterdir())  # run without --keep deletes the container


def test_run_reports_death_by_signal_as_128_plus_signal(ocirun, bundle):
    # sh is pid 1 of its pid namespace, where it cannot kill itself; a child can be killed
    bundle.edit(lambda c: c["linux"].__setitem__(
        "namespaces", [n for n in c["linux"]["namespaces"] if n["type"] != "pid"]))
    bundle.set_args("sh", "-c", "kill -9 $$")
    p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id(), check=False)
    assert p.returncode == 128 + 9


def test_create_start_state_delete(ocirun, bundle, tmp_path):
    bundle.set_args("sh", "-c", "echo started > /tmp/marker; sleep 30")
    cid = ocirun.new_id()
    pid_file = tmp_path / "init.pid"
    ocirun("create", "--bundle", str(bundle.path), "--pid-file", str(pid_file), cid)

    st = ocirun.state(cid)
    assert st["status"] == "created"
    assert st["id"] == cid
    assert st["bundle"] == str(bundle.path)
    assert st["ociVersion"]
    pid = st["pid"]
    assert int(pid_file.read_text()) == pid
    assert Path(f"/proc/{pid}").exists()
    # the user process has not run yet
    assert not (bundle.rootfs / "tmp" / "marker").exists()

    ocirun("start", cid)
    assert ocirun.state(cid)["status"] == "running"
    assert written(bundle.rootfs / "tmp" / "marker") == "started\n"

    p = ocirun("delete", cid, check=False)
    assert p.returncode == 1 and b"not stopped" in p.stderr

    ocirun("kill", cid, "KILL")
    assert ocirun.wait_status(cid, "stopped") == "stopped"
    ocirun("delete", cid)
    p = ocirun("state", cid, check=False)
    assert p.returncode == 1 and b"does not exist" in p.stderr


def test_start_returns_once_the_containers_process_runs(ocirun, bundle):
    """As runc's: the init holds the exec fifo open until its execve and `start`
    reads it to EOF, so when `start` returns the process is the container's, not
    the runtime's copy that cannot be entered without privilege (an unprivileged
    `exec` right after `start` failed now and then)."""
    bundle.set_args("sleep", "1000")
    for _ in range(10):
        cid = ocirun.new_id()
        ocirun("create", "--bundle", str(bundle.path), cid)
        pid = ocirun.state(cid)["pid"]
        ocirun("start", cid)
        assert program_args(pid, b"sleep\x001000\x00") == b"sleep\x001000\x00"
        ocirun("delete", "--force", cid)


def test_state_is_valid_against_the_state_schema(ocirun, bundle):
    import jsonschema
    import referencing
    import referencing.jsonschema

    schemas = Path(__file__).parents[2] / "schemas"
    registry = referencing.Registry().with_resources(
        (p.name, referencing.Resource.from_contents(json.loads(p.read_text()),
                                                     default_specification=referencing.jsonschema.DRAFT4))
        for p in schemas.glob("*.json"))
    schema = json.loads((schemas / "state-schema.json").read_text())
    bundle.set_args("sleep", "30")
    bundle.edit(lambda c: c.__setitem__("annotations", {"org.example.key": "v"}))
    cid = ocirun.new_id()
    ocirun("create", "--bundle", str(bundle.path), cid)
    st = ocirun.state(cid)
    jsonschema.Draft4Validator(schema, registry=registry).validate(st)
    assert st["annotations"] == {"org.example.key": "v"}


# pid 1 of its pid namespace ignores a signal it has no handler for: TERM reaches it
# once the trap is set (/tmp/trapped: ":" is a built-in, written after the trap)
TRAPPING = "trap 'exit 0' TERM; : > /tmp/trapped; while :; do sleep 0.1; done"


def _wait_trapped(bundle) -> None:
    assert wait_until((bundle.rootfs / "tmp" / "trapped").exists, timeout=30), "the shell never set its trap"


@pytest.mark.parametrize("sig", ["9", "KILL", "SIGKILL", "TERM"])
def test_kill_signal_forms(ocirun, bundle, sig):
    bundle.set_args("sh", "-c", TRAPPING)
    cid = ocirun.new_id()
    ocirun("run", "--detach", "--bundle", str(bundle.path), cid)
    assert ocirun.state(cid)["status"] == "running"
    _wait_trapped(bundle)
    ocirun("kill", cid, sig)
    assert ocirun.wait_status(cid, "stopped") == "stopped"
    ocirun("delete", cid)


def test_kill_defaults_to_sigterm(ocirun, bundle):
    bundle.set_args("sh", "-c", TRAPPING)
    cid = ocirun.new_id()
    ocirun("run", "-d", "--bundle", str(bundle.path), cid)
    _wait_trapped(bundle)
    ocirun("kill", cid)
    assert ocirun.wait_status(cid, "stopped") == "stopped"


def test_lifecycle_errors(ocirun, bundle):
    bundle.set_args("true")
    cid = ocirun.new_id()
    p = ocirun("start", cid, check=False)
    assert p.returncode == 1 and b"does not exist" in p.stderr
    ocirun("create", "--bundle", str(bundle.path), cid)
    p = ocirun("create", "--bundle", str(bundle.path), cid, check=False)
    assert p.returncode == 1 and b"exists" in p.stderr
    ocirun("start", cid)
    assert ocirun.wait_status(cid, "stopped") == "stopped"
    p = ocirun("start", cid, check=False)
    assert p.returncode == 1
    p = ocirun("kill", cid, "KILL", check=False)
    assert p.returncode == 1 and b"container not running" in p.stderr
    ocirun("delete", cid)
    # containerd and podman rely on this
    assert ocirun("delete", "--force", cid).returncode == 0


def test_missing_process_is_an_error_at_start_not_create(ocirun, bundle):
    bundle.edit(lambda c: c.pop("process"))
    cid = ocirun.new_id()
    ocirun("create", "--bundle", str(bundle.path), cid)
    p = ocirun("start", cid, check=False)
    assert p.returncode == 1 and b"process" in p.stderr
    ocirun("delete", "--force", cid)


def test_missing_binary_fails_create_with_runc_wording(ocirun, bundle):
    bundle.set_args("no-such-binary")
    cid = ocirun.new_id()
    p = ocirun("create", "--bundle", str(bundle.path), cid, check=False)
    assert p.returncode == 1
    assert b'exec: "no-such-binary": executable file not found in $PATH' in p.stderr
    assert not (ocirun.root / cid).exists()


def test_bad_config_leaves_nothing_and_logs_one_json_line(ocirun, bundle, tmp_path):
    bundle.edit(lambda c: c["process"].__setitem__("args", []))
    log = tmp_path / "log.json"
    cid = ocirun.new_id()
    p = ocirun("create", "--bundle", str(bundle.path), cid, check=False,
               global_args=("--log", str(log), "--log-format", "json"))
    assert p.returncode == 1
    assert b"Traceback" not in p.stderr
    lines = log.read_text().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["level"] == "error" and "process.args" in entry["msg"]
    assert not ocirun.root.exists() or not list(ocirun.root.iterdir())


def test_failed_mount_rolls_back_everything(ocirun, bundle):
    bundle.edit(lambda c: c["mounts"].append(
        {"destination": "/mnt/x", "type": "nonexistentfs", "source": "none"}))
    cid = ocirun.new_id()
    p = ocirun("create", "--bundle", str(bundle.path), cid, check=False)
    assert p.returncode == 1
    assert b"/mnt/x" in p.stderr
    assert not (ocirun.root / cid).exists()


def test_namespaces_hostname_and_pid_one(ocirun, bundle):
    bundle.set_args("sh", "-c", "echo $$; hostname; cat /proc/sys/kernel/domainname; readlink /proc/self/ns/net; readlink /proc/self/ns/uts")
    bundle.edit(lambda c: (c.__setitem__("hostname", "h1"), c.__setitem__("domainname", "d1"),
                           c["linux"]["namespaces"].append({"type": "uts"}) if not any(
                               n["type"] == "uts" for n in c["linux"]["namespaces"]) else None))
    p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id())
    lines = p.stdout.decode().split()
    assert lines[0] == "1"
    assert lines[1] == "h1" and lines[2] == "d1"
    assert lines[3] != os.readlink("/proc/self/ns/net")
    assert lines[4] != os.readlink("/proc/self/ns/uts")


def test_only_stdio_reaches_the_container(ocirun, bundle):
    bundle.set_args("ls", "/proc/self/fd")
    r, w = os.pipe()  # inheritable fds in the caller, like containerd's shim socket on fd 3
    os.set_inheritable(r, True)
    try:
        import subprocess

        p = subprocess.run([*OCIRUN, "--root", str(ocirun.root), "run",
                            "--bundle", str(bundle.path), ocirun.new_id()],
                           capture_output=True, pass_fds=(r,))
    finally:
        os.close(r)
        os.close(w)
    assert p.returncode == 0, p.stderr
    # 0, 1, 2 and the fd ls itself opens
    assert sorted(p.stdout.split()) == [b"0", b"1", b"2", b"3"]


def test_preserve_fds_passes_fd_3(ocirun, bundle, tmp_path):
    bundle.set_args("cat", "/proc/self/fd/3")
    secret = tmp_path / "passed"
    secret.write_text("through fd 3\n")
    import subprocess

    # the shell opens fd 3 in the child only: this process's fd 3 (pytest's) is untouched
    p = subprocess.run(["sh", "-c", 'exec 3<"$0"; exec "$@"', str(secret),
                        *OCIRUN, "--root", str(ocirun.root), "run",
                        "--preserve-fds", "1", "--bundle", str(bundle.path), ocirun.new_id()],
                       capture_output=True)
    assert p.returncode == 0, p.stderr
    assert p.stdout == b"through fd 3\n"


def test_readonly_root(ocirun, bundle):
    bundle.set_args("sh", "-c", "touch /x 2>/dev/null && echo writable || echo readonly")
    bundle.edit(lambda c: c["root"].__setitem__("readonly", True))
    assert ocirun("run", "--bundle", str(bundle.path), ocirun.new_id()).stdout == b"readonly\n"


def test_mount_options_reach_the_kernel(ocirun, bundle):
    bundle.set_args("sh", "-c", "grep ' /scratch ' /proc/mounts")
    bundle.edit(lambda c: c["mounts"].append({
        "destination": "/scratch", "type": "tmpfs", "source": "tmpfs",
        "options": ["nosuid", "nodev", "noexec", "size=1m", "mode=750"]}))
    line = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id()).stdout.decode()
    assert "tmpfs /scratch tmpfs" in line
    opts = line.split()[3].split(",")
    assert {"nosuid", "nodev", "noexec", "mode=750", "size=1024k"} <= set(opts)


def test_bind_mount_read_only(ocirun, bundle, tmp_path):
    src = tmp_path / "shared"
    src.mkdir()
    (src / "f").write_text("host file\n")
    bundle.set_args("sh", "-c", "cat /data/f; touch /data/g 2>/dev/null && echo rw || echo ro")
    bundle.edit(lambda c: c["mounts"].append({
        "destination": "/data", "type": "bind", "source": str(src), "options": ["rbind", "ro"]}))
    out = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id()).stdout
    assert out == b"host file\nro\n"
    assert not (src / "g").exists()


def test_symlink_mount_destination_stays_inside_rootfs(ocirun, bundle, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (bundle.rootfs / "escape").symlink_to(str(outside))
    bundle.set_args("true")
    bundle.edit(lambda c: c["mounts"].append({
        "destination": "/escape/sub", "type": "tmpfs", "source": "tmpfs", "options": []}))
    ocirun("run", "--bundle", str(bundle.path), ocirun.new_id())
    # the symlink was resolved inside the rootfs: nothing was created on the host side
    assert not (outside / "sub").exists()


def test_user_namespace_maps_ids(ocirun, bundle):
    bundle.set_args("sh", "-c", "cat /proc/self/uid_map; id -u")
    bundle.add_user_namespace()
    out = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id()).stdout.decode().split()
    assert out[:3] == ["0", "100000", "65536"]
    assert out[3] == "0"


def test_join_network_namespace_by_path(ocirun, bundle, tmp_path):
    first = bundle.copy(tmp_path / "first")
    first.set_args("sleep", "30")
    a = ocirun.new_id()
    ocirun("run", "-d", "--bundle", str(first.path), a)
    pid = ocirun.state(a)["pid"]
    bundle.set_args("readlink", "/proc/self/ns/net")
    def f(c):
        for ns in c["linux"]["namespaces"]:
            if ns["type"] == "network":
                ns["path"] = f"/proc/{pid}/ns/net"
    bundle.edit(f)
    out = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id()).stdout.decode().strip()
    assert out == os.readlink(f"/proc/{pid}/ns/net")
    ocirun("kill", a, "KILL")


LOOPBACK = "cat /sys/class/net/lo/operstate /sys/class/net/lo/flags"


@pytest.mark.parametrize("userns", [False, True])
def test_new_network_namespace_has_loopback_up(userns, ocirun, bundle):
    """As runc and crun (#11 item 13): lo is up (operstate "unknown", IFF_UP in flags)
    in a network namespace ocirun creates, with or without a user namespace."""
    bundle.set_args("sh", "-c", LOOPBACK)
    if userns:
        bundle.add_user_namespace()
    out = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id()).stdout.decode().split()
    assert out[0] == "unknown" and int(out[1], 16) & 0x1, out


def test_joined_network_namespace_loopback_is_left_alone(ocirun, bundle):
    """A joined namespace is someone else's to configure: its lo stays down."""
    import subprocess

    # a network namespace of a process of ours (not `ip netns add`: its /run/netns
    # mount would outlive the test)
    holder = subprocess.Popen(["unshare", "--net", "sleep", "60"])
    try:
        path = f"/proc/{holder.pid}/ns/net"
        assert wait_until(lambda: os.readlink(path) != os.readlink("/proc/self/ns/net"), timeout=30), \
            "unshare --net never ran"
        bundle.set_args("sh", "-c", LOOPBACK)
        bundle.edit(lambda c: [ns.__setitem__("path", path)
                               for ns in c["linux"]["namespaces"] if ns["type"] == "network"])
        out = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id()).stdout.decode().split()
        assert out[0] == "down" and not int(out[1], 16) & 0x1, out
        shown = subprocess.run(["nsenter", f"--net={path}", "ip", "-o", "link", "show", "lo"],
                               capture_output=True, text=True)
        assert "state DOWN" in shown.stdout, shown
    finally:
        holder.kill()
        holder.wait()


def test_join_namespace_of_wrong_type_is_an_error(ocirun, bundle):
    bundle.edit(lambda c: [ns.__setitem__("path", "/proc/self/ns/uts")
                           for ns in c["linux"]["namespaces"] if ns["type"] == "network"])
    p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id(), check=False)
    assert p.returncode == 1
    assert b"/proc/self/ns/uts" in p.stderr


def test_init_is_in_its_own_cgroup(ocirun, bundle):
    bundle.set_args("cat", "/proc/self/cgroup")
    cid = ocirun.new_id()
    out = ocirun("run", "--bundle", str(bundle.path), cid).stdout.decode()
    for line in out.splitlines():
        assert line.endswith("/" + cid) or line.endswith(":/"), line


def test_exec_fifo_blocks_until_start_and_kill_of_created_container(ocirun, bundle):
    bundle.set_args("true")
    cid = ocirun.new_id()
    ocirun("create", "--bundle", str(bundle.path), cid)
    assert (ocirun.root / cid / "exec.fifo").exists()
    ocirun("kill", cid, "KILL")
    assert ocirun.wait_status(cid, "stopped") == "stopped"
    ocirun("delete", cid)


@pytest.mark.parametrize("with_process", [True, False])
def test_sigterm_stops_a_created_container(ocirun, bundle, with_process):
    # pid 1 of a pid namespace ignores signals it has no handler for; runc's init
    # dies on TERM while it waits for start, and podman's stop relies on that.
    bundle.set_args("true")
    if not with_process:
        bundle.edit(lambda c: c.pop("process"))
    cid = ocirun.new_id()
    ocirun("create", "--bundle", str(bundle.path), cid)
    ocirun("kill", cid, "TERM")
    assert ocirun.wait_status(cid, "stopped") == "stopped"
    ocirun("delete", cid)


def test_signal_forwarding_in_foreground_run(ocirun, bundle):
    import subprocess

    bundle.set_args("sh", "-c", "trap 'echo got-term; exit 7' TERM; echo ready; while :; do sleep 0.1; done")
    p = subprocess.Popen([*OCIRUN, "--root", str(ocirun.root), "run",
                          "--bundle", str(bundle.path), ocirun.new_id()],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline() == b"ready\n"
    p.send_signal(signal.SIGTERM)
    out, err = p.communicate(timeout=20)
    assert out == b"got-term\n"
    assert p.returncode == 7


def test_concurrent_creates_of_one_id_exactly_one_wins(ocirun, bundle, tmp_path):
    """Eight `ocirun create` of the same id at once: one container, seven clean refusals,
    and the losers touch nothing of the winner's."""
    import subprocess
    import tempfile

    bundle.set_args("sleep", "30")
    cid = ocirun.new_id()
    outs, procs = [], []
    for _ in range(8):
        err = tempfile.TemporaryFile()
        outs.append(err)
        procs.append(subprocess.Popen([*OCIRUN, "--root", str(ocirun.root), "create", "--bundle",
                                       str(bundle.path), cid], stdin=subprocess.DEVNULL,
                                      stdout=subprocess.DEVNULL, stderr=err))
    codes = [p.wait(timeout=60) for p in procs]
    messages = []
    for err in outs:
        err.seek(0)
        messages.append(err.read().decode())
        err.close()
    assert sorted(codes) == [0] + [1] * 7, list(zip(codes, messages, strict=True))
    for code, message in zip(codes, messages, strict=True):
        assert message == ("" if code == 0 else f"container with id exists: {cid}\n")
    st = ocirun.state(cid)
    assert st["status"] == "created" and st["pid"] > 0
    assert sorted(os.listdir(ocirun.root / cid)) == ["exec.fifo", "state.json"]
    ocirun("start", cid)
    ocirun("kill", cid, "KILL")
    assert ocirun.wait_status(cid, "stopped") == "stopped"
    ocirun("delete", cid)

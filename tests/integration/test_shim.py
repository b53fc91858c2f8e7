"""The C shim driven directly with hand-made LaunchPlans (root; real namespaces).

Every test gets a fresh busybox rootfs and exec fifo (``box``), and is followed
by a leak check: no process, mount or fd of ours left behind.
"""

from __future__ import annotations

import errno
import os
import re
import resource
import stat
import time
import uuid
from pathlib import Path

import pytest
from shim_fixtures import (  # noqa: F401  (_box_fixture provides the `box` fixture)
    CLONE_NEWNET,
    CLONE_NEWPID,
    CLONE_NEWTIME,
    CLONE_NEWUSER,
    CLONE_NEWUTS,
    DEFAULT_NS,
    DEV,
    DEV_FD,
    DEVPTS,
    PROC,
    Box,
    _box_fixture,
    live_children,
    mounts,
    with_process,
)

from ocirun.errors import SetupError
from ocirun.plan.model import (
    Capabilities,
    DeviceNode,
    MountStep,
    NamespaceJoin,
    Rlimit,
)

pytestmark = pytest.mark.root

SH = b"sh", b"-c"


def ns_link(pid: int | str, kind: str) -> str:
    return os.readlink(f"/proc/{pid}/ns/{kind}")


def wait_sleeping(pid: int, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        st = Path(f"/proc/{pid}/stat").read_text()
        if st[st.rfind(")") + 2] == "S":
            return True
        time.sleep(0.01)
    return False


def assert_nothing_left(mounts_before: set[str], rootfs: Path) -> None:
    assert mounts() == mounts_before
    assert not any(str(rootfs) in m for m in mounts())
    assert live_children() == []


# ---- the happy path -------------------------------------------------------------


def test_ready_init_is_alive_in_new_namespaces_and_waits_for_start(box: Box):
    pid = box.spawn(box.plan(b"true"))
    assert wait_sleeping(pid)  # blocked on the exec fifo, not running `true`
    assert Path(f"/proc/{pid}/wchan").read_text() in ("wait_for_partner", "0")  # fifo open
    for kind in ("pid", "mnt", "uts", "ipc", "net"):
        assert ns_link(pid, kind) != ns_link("self", kind), kind
    for kind in ("user", "cgroup"):  # not asked for: shared with us
        assert ns_link(pid, kind) == ns_link("self", kind), kind
    assert Path(f"/proc/{pid}/cmdline").read_bytes() != b"true\0"  # not exec'd yet
    # the init is our child (CLONE_PARENT from stage-1), and pid 1 inside
    assert Path(f"/proc/{pid}/status").read_text().split("PPid:\t")[1].split()[0] == str(os.getpid())
    assert Path(f"/proc/{pid}/status").read_text().split("NSpid:\t")[1].split("\n")[0].split()[-1] == "1"
    code, out = box.start(pid)
    assert (code, out) == (0, "")


def test_start_runs_the_process_as_pid_1_with_hostname_and_no_new_privs(box: Box):
    plan = box.plan(*SH, b"echo $$; hostname; grep NoNewPrivs /proc/self/status; exit 3")
    code, out = box.run(plan)
    assert code == 3
    assert out == "1\nshimtest\nNoNewPrivs:\t1\n"


def test_mounts_devices_and_symlinks_are_in_place(box: Box):
    plan = box.plan(*SH, b"cat /proc/self/mountinfo; stat -c '%n %t:%T %a' /dev/null /dev/zero;"
                    b" readlink /dev/fd; echo x > /dev/null && echo written")
    code, out = box.run(plan)
    assert code == 0, out
    lines = out.splitlines()
    fstypes = {line.split(" - ")[1].split()[0]: line.split()[4] for line in lines if " - " in line}
    assert {"proc": "/proc", "tmpfs": "/dev", "devpts": "/dev/pts"}.items() <= fstypes.items()
    assert sum(" - " in line for line in lines) == 4  # /, /proc, /dev, /dev/pts: no host mounts
    assert "/dev/null 1:3 666" in lines
    assert "/dev/zero 1:5 666" in lines
    assert "/proc/self/fd" in lines
    assert "written" in lines


def test_umask_cwd_and_user(box: Box):
    plan = with_process(box.plan(*SH, b"umask; pwd; id -u; id -g; id -G; cd /tmp && touch f && stat -c %a f"),
                        cwd=b"/tmp/work/dir", umask=0o027, uid=1000, gid=1000,
                        additional_gids=(10, 20))
    (box.rootfs / "tmp").chmod(0o1777)
    code, out = box.run(plan)
    assert code == 0, out
    # the cwd did not exist in the image: it was created
    assert out.splitlines() == ["0027", "/tmp/work/dir", "1000", "1000", "1000 10 20", "640"]


def test_capabilities_are_applied(box: Box):
    chown, net_bind = 1 << 0, 1 << 10
    caps = Capabilities(bounding=chown | net_bind, effective=chown, permitted=chown | net_bind,
                        inheritable=net_bind, ambient=net_bind)
    plan = with_process(box.plan(*SH, b"grep Cap /proc/self/status"), capabilities=caps,
                        uid=1000, gid=1000, no_new_privileges=False)
    code, out = box.run(plan)
    assert code == 0, out
    got = {line.split(":")[0]: int(line.split()[1], 16) for line in out.splitlines()}
    # after exec as non-root: ambient caps become permitted+effective
    assert got == {"CapInh": net_bind, "CapPrm": net_bind, "CapEff": net_bind,
                   "CapBnd": chown | net_bind, "CapAmb": net_bind}


def test_only_stdio_reaches_the_container(box: Box):
    leaked = os.open("/dev/null", os.O_RDONLY)
    os.set_inheritable(leaked, True)  # as containerd's socket would be
    try:
        code, out = box.run(box.plan(*SH, b"ls /proc/$$/fd; true"))
    finally:
        os.close(leaked)
    assert code == 0
    assert out.split() == ["0", "1", "2"]


def _is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
        return True
    except OSError:
        return False


def test_preserve_fds_passes_fd_3(box: Box):
    target = box.base / "via-fd3"
    if box.fifo_fd == 3:
        # fd 3 is about to be taken over by the preserved file; move the fifo fd
        # out of the way (a real caller's preserved fds are open before ocirun starts)
        box.fifo_fd = os.dup(3)
        os.close(3)
    saved = os.dup(3) if _is_open(3) else None
    fd = os.open(target, os.O_WRONLY | os.O_CREAT, 0o666)
    if fd == 3:
        fd = os.dup(3)  # keep a second reference so fd 3 can be closed afterwards
    try:
        os.dup2(fd, 3)  # inheritable
        pid = box.spawn(with_process(box.plan(*SH, b"echo hello >&3; ls /proc/$$/fd; true"),
                                     preserve_fds=1))
    finally:
        if saved is None:
            os.close(3)
        else:
            os.dup2(saved, 3)
            os.close(saved)
        os.close(fd)
    code, out = box.start(pid)
    assert code == 0
    assert out.split() == ["0", "1", "2", "3"]
    assert target.read_text() == "hello\n"


def test_signal_dispositions_are_reset(box: Box):
    # Python ignores SIGPIPE: the container must not inherit that.
    code, out = box.run(box.plan(*SH, b"grep -E 'Sig(Ign|Blk)' /proc/self/status"))
    assert code == 0
    fields = dict(line.split(":\t") for line in out.splitlines())
    assert int(fields["SigBlk"], 16) == 0
    assert int(fields["SigIgn"], 16) & (1 << (13 - 1)) == 0  # SIGPIPE


def test_masked_and_readonly_paths(box: Box):
    plan = box.plan(*SH, b"cat /etc/hostname; echo [; ls /proc/driver; echo ];"
                    b" echo x > /proc/sys/kernel/domainname 2>&1 && echo writable;"
                    b" touch /etc/new 2>/dev/null && echo etc-writable; exit 0",
                    masked_paths=(b"/etc/hostname", b"/proc/driver", b"/no/such/path"),
                    readonly_paths=(b"/proc/sys", b"/nope"))
    code, out = box.run(plan)
    assert code == 0
    assert out.startswith("[\n]\n")  # hostname file reads empty, /proc/driver is an empty tmpfs
    assert "Read-only file system" in out
    assert "writable" not in out.replace("etc-writable", "")
    assert "etc-writable" in out


def test_root_readonly(box: Box):
    code, out = box.run(box.plan(*SH, b"touch /x 2>&1; grep -c ' / ro' /proc/self/mountinfo",
                                 root_readonly=True))
    assert "Read-only file system" in out
    assert out.splitlines()[-1] == "1"


def test_no_pivot(box: Box):
    code, out = box.run(box.plan(b"ls", b"/", no_pivot=True))
    assert code == 0
    assert "busybox" not in out and "bin" in out.split()


def test_user_namespace_maps_ids(box: Box):
    null = DeviceNode(b"/dev/null", stat.S_IFCHR | 0o666, 1, 3, 0, 0, bind_from_host=True)
    plan = box.plan(*SH, b"id -u; id -g; cat /proc/self/uid_map /proc/self/gid_map; echo x >/dev/null && echo ok",
                    new_namespaces=DEFAULT_NS | CLONE_NEWUSER,
                    devices=(null,), uid_map=b"0 100000 65536", gid_map=b"0 100000 65536")
    seen = {}

    def ready(pid):
        seen["uid_map"] = Path(f"/proc/{pid}/uid_map").read_text().split()

    pid = box.spawn(plan, on_namespaces_ready=ready)
    assert seen["uid_map"] == ["0", "100000", "65536"]
    status = Path(f"/proc/{pid}/status").read_text()
    assert status.split("Uid:\t")[1].split()[0] == "100000"  # root inside, 100000 outside
    assert ns_link(pid, "user") != ns_link("self", "user")
    code, out = box.start(pid)
    assert code == 0, out
    lines = [line.split() for line in out.splitlines()]
    assert lines == [["0"], ["0"], ["0", "100000", "65536"], ["0", "100000", "65536"], ["ok"]]


def test_time_namespace_offsets(box: Box):
    from kernel_probes import namespace

    if not namespace("time"):
        pytest.skip("no time namespaces in this kernel (CONFIG_TIME_NS)")
    plan = box.plan(b"cat", b"/proc/uptime", new_namespaces=DEFAULT_NS | CLONE_NEWTIME,
                    timens_offsets=b"boottime 864000 0")
    code, out = box.run(plan)
    assert code == 0
    assert float(out.split()[0]) >= 864000


def test_callbacks_order_cgroup_placement_and_oom_score_adj(box: Box):
    cg = Path(f"/sys/fs/cgroup/pids/ocirun-shimtest-{uuid.uuid4().hex[:8]}")
    if not cg.parent.is_dir():
        pytest.skip("no v1 pids hierarchy")
    cg.mkdir()
    calls = []
    try:
        def created(pid):
            calls.append(("created", pid))
            (cg / "cgroup.procs").write_text(str(pid))

        def before_pivot(pid):
            calls.append(("before_pivot", pid))
            # mounts are in place, the root is not pivoted yet
            assert f"{box.rootfs}/proc" in Path(f"/proc/{pid}/mountinfo").read_text()

        plan = box.plan(b"true", sync_before_pivot=True, oom_score_adj=345)
        pid = box.spawn(plan, on_child_created=created,
                        on_namespaces_ready=lambda p: calls.append(("ns", p)),
                        on_before_pivot=before_pivot)
        stage1 = calls[0][1]
        assert calls == [("created", stage1), ("ns", stage1), ("before_pivot", pid)]
        assert stage1 != pid and not Path(f"/proc/{stage1}").exists()  # reaped
        assert f":pids:/{cg.name}\n" in Path(f"/proc/{pid}/cgroup").read_text()
        assert Path(f"/proc/{pid}/oom_score_adj").read_text() == "345\n"
        assert box.start(pid) == (0, "")
    finally:
        cg.rmdir()


def test_clone_into_cgroup_v2(box: Box):
    cg = Path(f"/sys/fs/cgroup/unified/ocirun-shimtest-{uuid.uuid4().hex[:8]}")
    if not cg.parent.is_dir():
        pytest.skip("no cgroup2 hierarchy")
    cg.mkdir()
    fd = os.open(cg, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        pid = box.spawn(box.plan(b"true"), cgroup_fd=fd)
        assert f"0::/{cg.name}\n" in Path(f"/proc/{pid}/cgroup").read_text()
        assert box.start(pid) == (0, "")
    finally:
        os.close(fd)
        cg.rmdir()


def test_no_process_waits_forever(box: Box):
    pid = box.spawn(box.plan(process=None))
    assert Path(f"/proc/{pid}").exists()
    assert ns_link(pid, "mnt") != ns_link("self", "mnt")


def test_exec_failure_after_start_goes_to_stderr(box: Box):
    (box.rootfs / "bin" / "notelf").write_text("garbage\n")
    (box.rootfs / "bin" / "notelf").chmod(0o755)
    code, out = box.run(box.plan(b"notelf"))
    assert code == 127
    assert out == "ocirun: exec /bin/notelf: exec format error\n"


# ---- errors ---------------------------------------------------------------------


def test_bad_mount_names_the_mount_and_leaves_nothing(box: Box):
    before = mounts()
    bad = MountStep(b"/mnt/x", b"none", b"nonexistentfs", 0, None, describe=b"mount none to /mnt/x")
    with pytest.raises(SetupError) as e:
        box.spawn(box.plan(b"true", mounts=(PROC, DEV, bad)))
    assert str(e.value) == "mount none to /mnt/x: no such device"
    assert e.value.errno == errno.ENODEV
    assert_nothing_left(before, box.rootfs)


def test_mount_without_describe_is_named_from_the_plan(box: Box):
    bad = MountStep(b"/mnt", None, b"nonexistentfs", 0, None)
    with pytest.raises(SetupError, match=r"^mount nonexistentfs to /mnt: no such device$"):
        box.spawn(box.plan(b"true", mounts=(bad,)))


def test_missing_binary_uses_runc_wording(box: Box):
    before = mounts()
    with pytest.raises(SetupError) as e:
        box.spawn(box.plan(b"foo"))
    assert str(e.value) == 'exec: "foo": executable file not found in $PATH'
    assert_nothing_left(before, box.rootfs)


def test_missing_binary_by_path(box: Box):
    with pytest.raises(SetupError, match=r'^exec: "/bin/foo": stat /bin/foo: no such file or directory$'):
        box.spawn(box.plan(b"/bin/foo"))


def test_non_executable_binary(box: Box):
    (box.rootfs / "bin" / "noexec").write_text("#!/bin/sh\n")
    with pytest.raises(SetupError, match=r'^exec: "/bin/noexec": permission denied$'):
        box.spawn(with_process(box.plan(b"/bin/noexec"), uid=1000))


def test_rlimit_above_hard_limit(box: Box):
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    rl = Rlimit(resource.RLIMIT_NOFILE, hard + 1, hard + 1)
    with pytest.raises(SetupError) as e:
        box.spawn(with_process(box.plan(b"true"), rlimits=(rl,)))
    # runc's words, then why (docs/rootless.md)
    assert str(e.value).startswith("error setting rlimit type 7: operation not permitted (the runtime's "
                                   f"hard limit is {hard}; raising it needs CAP_SYS_RESOURCE")


def test_rlimits_are_set(box: Box):
    rl = Rlimit(resource.RLIMIT_NOFILE, 123, 456)
    code, out = box.run(with_process(box.plan(*SH, b"grep 'open files' /proc/self/limits"),
                                     rlimits=(rl,)))
    assert out.split()[3:5] == ["123", "456"]


def test_join_namespace_of_wrong_type(box: Box):
    before = mounts()
    uts = f"/proc/{os.getpid()}/ns/uts".encode()  # a uts namespace given as the network one
    plan = box.plan(b"true", new_namespaces=DEFAULT_NS & ~CLONE_NEWNET,
                    join_namespaces=(NamespaceJoin(CLONE_NEWNET, uts),))
    with pytest.raises(SetupError) as e:
        box.spawn(plan)
    assert str(e.value) == f"setns to {uts.decode()}: invalid argument"
    assert_nothing_left(before, box.rootfs)


def test_join_namespace_by_path(box: Box):
    holder = box.spawn(box.plan(process=None))  # an init whose net and uts we join
    plan = box.plan(*SH, b"hostname", new_namespaces=DEFAULT_NS & ~(CLONE_NEWNET | CLONE_NEWUTS),
                    hostname=None,
                    join_namespaces=(NamespaceJoin(CLONE_NEWNET, f"/proc/{holder}/ns/net".encode()),
                                     NamespaceJoin(CLONE_NEWUTS, f"/proc/{holder}/ns/uts".encode())))
    pid = box.spawn(plan)
    assert ns_link(pid, "net") == ns_link(holder, "net")
    assert ns_link(pid, "pid") != ns_link(holder, "pid")
    assert box.start(pid) == (0, "shimtest\n")


def test_missing_namespace_path(box: Box):
    plan = box.plan(b"true", join_namespaces=(NamespaceJoin(CLONE_NEWPID, b"/proc/0/ns/pid"),),
                    new_namespaces=DEFAULT_NS & ~CLONE_NEWPID)
    with pytest.raises(SetupError, match=r"^open /proc/0/ns/pid: no such file or directory$"):
        box.spawn(plan)


def test_masked_path_refuses_a_replaced_dev_null(box: Box):
    before = mounts()
    (box.rootfs / "etc" / "secret").write_text("secret\n")
    os.symlink("/etc/secret", box.rootfs / "dev" / "null")  # the image's own /dev, no tmpfs
    plan = box.plan(b"true", mounts=(PROC,), devices=(), symlinks=(),
                    masked_paths=(b"/etc/hostname",))
    with pytest.raises(SetupError) as e:
        box.spawn(plan)
    assert str(e.value).startswith("mask /etc/hostname: refusing to bind /dev/null")
    assert_nothing_left(before, box.rootfs)


def test_masked_path_refuses_a_regular_dev_null(box: Box):
    (box.rootfs / "dev" / "null").write_text("")
    plan = box.plan(b"true", mounts=(PROC,), devices=(), symlinks=(),
                    masked_paths=(b"/etc/hostname",))
    with pytest.raises(SetupError, match="refusing to bind /dev/null"):
        box.spawn(plan)


def test_mount_target_symlink_stays_inside_the_rootfs(box: Box):
    outside = box.base / "outside"
    outside.mkdir()
    os.symlink(str(outside), box.rootfs / "escape")  # absolute: inside the root it is rootfs/<base>/outside
    tmp = MountStep(b"/escape/sub", b"tmpfs", b"tmpfs", 0, None, describe=b"mount tmpfs to /escape/sub")
    code, _ = box.run(box.plan(b"true", mounts=(PROC, DEV, DEVPTS, tmp)))
    assert code == 0
    assert list(outside.iterdir()) == []
    assert (box.rootfs / str(outside).lstrip("/") / "sub").is_dir()


def test_callback_exception_kills_everything(box: Box):
    before = mounts()

    def boom(pid):
        raise RuntimeError("hook failed")

    with pytest.raises(RuntimeError, match="hook failed"):
        box.spawn(box.plan(b"true", sync_before_pivot=True), on_before_pivot=boom)
    assert_nothing_left(before, box.rootfs)


def test_sethostname_error_is_named(box: Box):
    with pytest.raises(SetupError, match=r"^sethostname: invalid argument$"):
        box.spawn(box.plan(b"true", hostname=b"x" * 100))


def test_step_table_covers_every_c_step():
    from ocirun.shim import STEPS, _c_step_names

    assert set(_c_step_names().values()) == set(STEPS)



def test_child_killed_before_ready_is_reported(box: Box):
    before = mounts()

    def kill_stage1(pid):
        os.kill(pid, 9)

    with pytest.raises(SetupError, match=r"^container init exited before it was ready \(last: NS_READY\)$"):
        box.spawn(box.plan(b"true"), on_namespaces_ready=kill_stage1)
    assert_nothing_left(before, box.rootfs)


def test_session_keyring(box: Box):
    if not Path("/proc/keys").exists():
        pytest.skip("kernel without /proc/keys")
    code, out = box.run(box.plan(b"cat", b"/proc/keys", session_keyring=b"_ses.shimtest"))
    assert code == 0
    assert re.search(r"keyring +_ses\.shimtest: ", out), out


@pytest.mark.parametrize("drop, message", [
    (0x20000, "container setup: a new or joined mount namespace is required"),
    (CLONE_NEWUTS, "sethostname: unable to set hostname without a private UTS namespace"),
])
def test_refuses_plans_that_would_change_the_host(box: Box, drop, message):
    hostname = Path("/proc/sys/kernel/hostname").read_text()
    with pytest.raises(SetupError) as e:
        box.spawn(box.plan(b"true", new_namespaces=DEFAULT_NS & ~drop))
    assert str(e.value) == message
    assert Path("/proc/sys/kernel/hostname").read_text() == hostname


def test_init_does_not_hold_the_runtimes_fds(box: Box):
    # e.g. the state lock: an flock lives as long as any fd to it, and `start` takes it again
    lock_path = box.base / "lock"
    lock = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        import fcntl

        fcntl.flock(lock, fcntl.LOCK_EX)
        pid = box.spawn(box.plan(b"true"))
        held = {os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")}
    finally:
        os.close(lock)
    assert str(lock_path) not in held
    other = os.open(lock_path, os.O_RDWR | os.O_CLOEXEC)
    try:
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again once we closed ours
    finally:
        os.close(other)
    assert box.start(pid) == (0, "")


# ---- restore: the rootfs without the process ------------------------------------------


def test_prepare_rootfs_makes_the_mount_points_and_leaves_no_mount_or_process(box: Box, tmp_path):
    """``prepare_rootfs`` (restore) runs the init's mount sequence and exits: the
    mount points it made on the rootfs and inside a bind-mounted host directory
    stay (as after create), the mounts and the processes do not."""
    from ocirun.shim import prepare_rootfs

    host_dir = tmp_path / "host-data"
    host_dir.mkdir()
    bind = MountStep(b"/data", str(host_dir).encode(), None, 0x1000 | 0x4000, None,
                     describe=b"bind mount host-data to /data")
    nested = MountStep(b"/data/inner", b"tmpfs", b"tmpfs", 0, None, describe=b"mount tmpfs to /data/inner")
    plan = box.plan(b"true", mounts=(PROC, DEV, DEVPTS, bind, nested), hostname=b"prepared",
                    process=with_process(box.plan(b"true"), cwd=b"/work/dir").process)
    mounts_before = mounts()
    with box.stdio():
        prepare_rootfs(plan, cgroup_fd=None, on_child_created=lambda pid: None)
    assert (box.rootfs / "data").is_dir()
    assert (host_dir / "inner").is_dir()  # made through the bind, in the host directory
    assert (box.rootfs / "work" / "dir").is_dir()
    assert not (box.rootfs / "data" / "inner").exists()  # the bind is gone again
    assert not (box.rootfs / "dev" / "null").exists()  # the node went with the /dev tmpfs
    assert_nothing_left(mounts_before, box.rootfs)
    assert not box.fifo.stat().st_size  # nothing touched the exec fifo


def test_prepare_rootfs_reports_a_failed_mount_and_leaves_nothing(box: Box):
    from ocirun.shim import prepare_rootfs

    bad = MountStep(b"/nope", b"/does/not/exist", None, 0x1000, None, describe=b"bind mount /does/not/exist to /nope")
    mounts_before = mounts()
    with pytest.raises(SetupError, match="bind mount /does/not/exist to /nope: no such file or directory"):
        with box.stdio():
            prepare_rootfs(box.plan(b"true", mounts=(PROC, bad)), cgroup_fd=None,
                           on_child_created=lambda pid: None)
    assert_nothing_left(mounts_before, box.rootfs)

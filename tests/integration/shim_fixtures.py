"""Helpers for tests/integration/test_shim.py: a busybox rootfs, hand-made
LaunchPlans, the exec fifo, stdio capture and a per-test leak check.

The shim is driven directly (no CLI, no planner): every plan here is written
out by hand, so a failure points at the shim.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import stat
import tempfile
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from procs import my_children

from ocirun.plan.model import DeviceNode, LaunchPlan, MountStep, ProcessPlan, Symlink

MS_NOSUID, MS_NODEV, MS_NOEXEC = 0x2, 0x4, 0x8
MS_REC, MS_SLAVE, MS_STRICTATIME = 0x4000, 1 << 19, 1 << 24
CLONE_NEWTIME, CLONE_NEWNS, CLONE_NEWUTS = 0x80, 0x20000, 0x04000000
CLONE_NEWIPC, CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET = 0x08000000, 0x10000000, 0x20000000, 0x40000000
DEFAULT_NS = CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWPID | CLONE_NEWNET

APPLETS = ("sh", "cat", "ls", "id", "hostname", "mount", "echo", "true", "sleep", "grep",
           "readlink", "stat", "touch", "test")

PROC = MountStep(b"/proc", b"proc", b"proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, None,
                 describe=b"mount proc to /proc")
DEV = MountStep(b"/dev", b"tmpfs", b"tmpfs", MS_NOSUID | MS_STRICTATIME, b"mode=755,size=65536k",
                describe=b"mount tmpfs to /dev")
DEVPTS = MountStep(b"/dev/pts", b"devpts", b"devpts", MS_NOSUID | MS_NOEXEC,
                   b"newinstance,ptmxmode=0666,mode=0620", describe=b"mount devpts to /dev/pts")
NULL = DeviceNode(b"/dev/null", stat.S_IFCHR | 0o666, 1, 3, 0, 0)
ZERO = DeviceNode(b"/dev/zero", stat.S_IFCHR | 0o666, 1, 5, 0, 0)
DEV_FD = Symlink(b"/dev/fd", b"/proc/self/fd")


def busybox() -> str:
    path = shutil.which("busybox")
    if path is None:
        pytest.skip("busybox is not installed (apt-get install -y busybox-static)")
    return path


def make_rootfs(parent: Path) -> Path:
    """A minimal busybox rootfs, in 0700 directories like pytest's tmp dirs and
    bundles (the shim must reach it without a mapped root walking the host path)."""
    root = parent / "rootfs"
    (root / "bin").mkdir(parents=True)
    shutil.copy2(busybox(), root / "bin" / "busybox")
    for applet in APPLETS:
        os.symlink("busybox", root / "bin" / applet)
    for d in ("proc", "dev", "etc", "tmp", "sys"):
        (root / d).mkdir()
    (root / "etc" / "hostname").write_text("from-the-image\n")
    parent.parent.chmod(0o700)
    parent.chmod(0o700)
    root.chmod(0o755)
    return root


def process(*args: bytes, **kw) -> ProcessPlan:
    base = dict(
        args=args,
        env=(b"PATH=/bin", b"HOME=/"),
        cwd=b"/",
        search_path=(b"/bin",),
        uid=0,
        gid=0,
        additional_gids=(),
        umask=None,
        capabilities=None,
        rlimits=(),
        no_new_privileges=True,
    )
    base.update(kw)
    return ProcessPlan(**base)


def make_plan(rootfs: Path, *args: bytes, **kw) -> LaunchPlan:
    base = dict(
        rootfs=str(rootfs).encode(),
        new_namespaces=DEFAULT_NS,
        join_namespaces=(),
        root_propagation=MS_SLAVE | MS_REC,
        rootfs_propagation=0,
        root_readonly=False,
        no_pivot=False,
        mounts=(PROC, DEV, DEVPTS),
        devices=(NULL, ZERO),
        symlinks=(DEV_FD,),
        hostname=b"shimtest",
        process=process(*(args or (b"true",))),
    )
    base.update(kw)
    return LaunchPlan(**base)


def with_process(plan: LaunchPlan, **kw) -> LaunchPlan:
    assert plan.process is not None
    return replace(plan, process=replace(plan.process, **kw))


class Box:
    """One test's container: rootfs, exec fifo, output file; spawns and runs it."""

    def __init__(self, base: Path):
        self.base = base
        self.rootfs = make_rootfs(base / "bundle")
        self.state = base / "state"
        self.state.mkdir()
        self.fifo = self.state / "exec.fifo"
        old = os.umask(0)
        try:
            os.mkfifo(self.fifo, 0o622)
        finally:
            os.umask(old)
        self.fifo_fd = os.open(self.fifo, os.O_PATH | os.O_CLOEXEC)
        self.out = base / "out"
        self.pids: list[int] = []

    def plan(self, *args: bytes, **kw) -> LaunchPlan:
        return make_plan(self.rootfs, *args, **kw)

    def spawn(self, plan: LaunchPlan, *, cgroup_fd: int | None = None,
              on_child_created=lambda pid: None, on_namespaces_ready=lambda pid: None,
              on_before_pivot=None) -> int:
        """Spawn with the container's stdout/stderr going to self.out (it inherits
        our fds 0-2 at clone time)."""
        from ocirun.shim import spawn

        with self.stdio():
            pid = spawn(plan, exec_fifo_fd=self.fifo_fd, cgroup_fd=cgroup_fd,
                        on_child_created=on_child_created,
                        on_namespaces_ready=on_namespaces_ready,
                        on_before_pivot=on_before_pivot)
        self.pids.append(pid)
        return pid

    @contextlib.contextmanager
    def stdio(self) -> Iterator[None]:
        saved = [os.dup(fd) for fd in (0, 1, 2)]
        out = os.open(self.out, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o666)
        null = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.dup2(null, 0)
            os.dup2(out, 1)
            os.dup2(out, 2)
            yield
        finally:
            for fd, s in zip((0, 1, 2), saved, strict=True):
                os.dup2(s, fd)
                os.close(s)
            os.close(out)
            os.close(null)

    def start(self, pid: int, timeout: float = 10.0) -> tuple[int, str]:
        """What `ocirun start` does (read the fifo), then wait: (exit code, output)."""
        fd = os.open(self.fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            ready, _, _ = select.select([fd], [], [], timeout)
            assert ready, "the init never opened the exec fifo"
            assert os.read(fd, 1) == b"0"
        finally:
            os.close(fd)
        code = wait_exit(pid, timeout)
        self.pids.remove(pid)
        return code, self.output()

    def run(self, plan: LaunchPlan, **kw) -> tuple[int, str]:
        return self.start(self.spawn(plan, **kw))

    def output(self) -> str:
        return self.out.read_text() if self.out.exists() else ""

    def close(self) -> None:
        for pid in self.pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        os.close(self.fifo_fd)


def wait_exit(pid: int, timeout: float) -> int:
    end = time.monotonic() + timeout
    while True:
        got, status = os.waitpid(pid, os.WNOHANG)
        if got:
            return os.waitstatus_to_exitcode(status)
        if time.monotonic() > end:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise AssertionError(f"container init {pid} did not exit in {timeout}s")
        time.sleep(0.01)


def mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {" ".join(line.split()[3:5]) for line in f}


def fds() -> set[int]:
    return {int(fd) for fd in os.listdir("/proc/self/fd")}


def live_children() -> list[str]:
    """Our child processes that are not zombies (and zombies, which are leaks too)."""
    return [f"{pid} {stat[:40]!r}" for pid, _, stat in my_children()]


@pytest.fixture(name="box")
def _box_fixture() -> Iterator[Box]:
    """A container to spawn; afterwards, a leak check: no process, mount or fd left."""
    if os.geteuid() != 0:
        pytest.skip("the shim tests need root")
    base = Path(tempfile.mkdtemp(prefix="ocirun-shim-", dir="/tmp"))
    mounts_before = mounts()
    children_before = set(live_children())
    b = Box(base)
    fds_before = fds()
    try:
        yield b
    finally:
        b.close()
        leaks = []
        if mounts() - mounts_before:
            leaks.append(f"mounts: {sorted(mounts() - mounts_before)}")
        if set(live_children()) - children_before:
            leaks.append(f"processes: {sorted(set(live_children()) - children_before)}")
        if fds() - fds_before - {b.fifo_fd}:
            leaks.append(f"fds: {sorted(fds() - fds_before)}")
        shutil.rmtree(base, ignore_errors=True)
        assert not leaks, "test left things behind: " + "; ".join(leaks)

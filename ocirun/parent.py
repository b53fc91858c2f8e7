"""The process that parents what ocirun starts: the seam between the direct path
and the warm helper (docs/helper.md).

Everything ocirun starts (the container's stage-1 and init, exec'd processes,
hooks) must be a child of the process the caller ran, as with runc: conmon's and
containerd-shim's subreapers inherit them, and a foreground ``run``/``exec`` waits
for them. On the direct path that process is this one. In a helper's worker it
is the calling front end (``bin/ocirun``'s C), which performs each clone, reaps
its children and receives the caller's signals; the worker asks it over its
connection (:class:`ocirun.helper.frontend.FrontEnd`). The lifecycle code calls
only the functions here, so both paths run the same code and differ only in
where a clone, a wait and a signal happen.

``current`` is :class:`Direct` unless a helper's worker installs its own.
Cheap to import (``os`` only).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence


class CloneResult:
    """What ``ocirun_spawn``/``ocirun_exec`` report (struct ocirun_spawn_result)."""

    __slots__ = ("rc", "pid", "sock", "used_clone3", "step", "err")

    def __init__(self, rc: int, pid: int, sock: int, used_clone3: int, step: int, err: int) -> None:
        self.rc, self.pid, self.sock, self.used_clone3, self.step, self.err = (
            rc, pid, sock, used_clone3, step, err)


class Direct:
    """This process is the parent (the direct path, and ``python -m ocirun``)."""

    def clone(self, kind: str, cplan, *, exec_fifo_fd: int = -1, cgroup_fd: int = -1,
              stdio: tuple[int, int, int] = (-1, -1, -1)) -> CloneResult:
        """``kind`` "spawn" (ocirun_spawn: a container's stage-1) or "exec"
        (ocirun_exec: a process joining one), with ``cplan`` (an
        ocirun.shim._CPlan); the C's result, fds in our own fd table."""
        from ocirun.shim import load

        ffi, lib = load()
        res = ffi.new("struct ocirun_spawn_result *")
        if kind == "spawn":
            rc = lib.ocirun_spawn(cplan.plan, exec_fifo_fd, cgroup_fd, res)
        else:
            rc = lib.ocirun_exec(cplan.plan, ffi.new("int[3]", list(stdio)), cgroup_fd, res)
        return CloneResult(rc, res.pid, res.sock, res.used_clone3, res.step, res.err)

    def posix_spawn(self, path: str, args: list[str], env: Mapping[str, str], *,
                    file_actions: Sequence[tuple[int, ...]], setsigdef: Sequence[int]) -> int:
        """os.posix_spawn with these file actions (DUP2 and CLOSE only)."""
        return os.posix_spawn(path, args, env, file_actions=file_actions, setsigdef=setsigdef)

    def waitpid(self, pid: int, options: int) -> tuple[int, int]:
        """os.waitpid of a child (ChildProcessError if it is none)."""
        return os.waitpid(pid, options)

    def open_tty(self) -> int:
        """/dev/tty: the caller's controlling terminal (OSError without one)."""
        return os.open("/dev/tty", os.O_RDWR | os.O_NOCTTY | os.O_CLOEXEC)

    def set_child_subreaper(self) -> None:
        # through the shim, which `run` loads anyway (ctypes would cost ~3 ms more)
        from ocirun.shim._shim import lib

        lib.ocirun_set_child_subreaper()

    def forward_signals(self, signals: Sequence[int]) -> None:
        """The caller's signals in ``signals`` reach this process's handlers (they do
        already here); ``()`` ends that."""

    def raise_signal(self, signum: int) -> None:
        """Act on ``signum`` as if it had been sent to the caller now."""
        import _signal

        _signal.raise_signal(signum)


#: Where children are made, waited for and signals come from (see the module docstring).
current: Direct = Direct()


def waitpid(pid: int, options: int = 0) -> tuple[int, int]:
    """waitpid of one of the caller's children (or of ours: a helper's worker reaps
    what it started itself, e.g. ``ps``)."""
    return current.waitpid(pid, options)


def kill_and_reap(pid: int | None) -> None:
    """SIGKILL a child and reap it; no error if it is gone already."""
    if pid is None:
        return
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
    try:
        current.waitpid(pid, 0)
    except ChildProcessError:
        pass


__all__ = ["CloneResult", "Direct", "current", "kill_and_reap", "waitpid"]

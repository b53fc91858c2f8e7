"""The fds a caller passes to the container beyond stdio: socket activation
(LISTEN_FDS) and ``--preserve-fds N``, as runc and crun take them.

runc (utils_linux.go, ``runner.run``): with LISTEN_FDS in its environment and
LISTEN_PID its own pid (go-systemd's ``activation.Files``), fds 3..3+L-1 go to
the container's init and its environment gets ``LISTEN_FDS=L`` and
``LISTEN_PID=1`` appended; the ``--preserve-fds N`` fds follow them, at
3+L..3+L+N-1. ``exec`` passes no listen fds, only its own ``--preserve-fds``.

A number in that range the caller did not open is passed as nothing (crun;
runc 1.1.5 stats each preserved fd, but its own internal fds usually sit on
the free numbers and leak into the container instead). ocirun fills such a
hole with a placeholder at once, before it opens anything of its own, so no fd
of the runtime (the state lock, the exec fifo, a namespace fd) can land on a
number the container keeps; the shim closes the placeholders before exec
(``ProcessPlan.absent_fds``).
"""

from __future__ import annotations

import os

#: the first fd passed beyond stdio (SD_LISTEN_FDS_START)
FIRST = 3


def listen_fds(environ: os._Environ[str] | dict[str, str] | None = None, pid: int | None = None) -> int:
    """How many socket-activation fds the caller passes (LISTEN_FDS when LISTEN_PID
    is our pid, as go-systemd's activation.Files that runc uses); 0 for none."""
    env = os.environ if environ is None else environ
    try:
        listen_pid = int(env.get("LISTEN_PID", ""))
        count = int(env.get("LISTEN_FDS", ""))
    except ValueError:
        return 0
    if listen_pid != (os.getpid() if pid is None else pid):
        return 0
    return max(count, 0)


def fill_holes(count: int, first: int = FIRST) -> tuple[int, ...]:
    """Put a close-on-exec placeholder (/dev/null) on every number in
    [first, first+count) that is not an open fd; return those numbers. Call it
    before the runtime opens anything it keeps: the lowest free number is where
    the kernel puts the next fd."""
    import fcntl
    import resource

    # A number at or above RLIMIT_NOFILE can hold no fd (dup2: EBADF): bad input, said so.
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if count > 0 and limit != resource.RLIM_INFINITY and first + count > limit:
        from ocirun.errors import UsageError

        raise UsageError(f"--preserve-fds: fd {first + count - 1} is beyond this process's "
                         f"limit of {limit} open files (RLIMIT_NOFILE)")
    holes = []
    for fd in range(first, first + count):
        try:
            fcntl.fcntl(fd, fcntl.F_GETFD)
        except OSError:
            holes.append(fd)
    if not holes:
        return ()
    src = os.open("/dev/null", os.O_RDONLY | os.O_CLOEXEC)  # lands on the first hole
    for fd in holes:
        if fd != src:
            os.dup2(src, fd, inheritable=False)
    if src not in holes:
        os.close(src)
    return tuple(holes)


__all__ = ["FIRST", "listen_fds", "fill_holes"]

"""What /proc says about a process, and signalling it without racing pid reuse.

A container's init is named by its host pid *and* its start time (field 22
of ``/proc/PID/stat``, in clock ticks since boot): once the init has exited
and been reaped, its pid may be given to an unrelated process, and only the
start time tells them apart. Signals go through a pidfd opened first and
checked second, so the process signalled is the one whose start time was
checked (a pidfd keeps naming its process even if the pid is reused).

Cheap to import (``os`` and ``_signal`` only): ``state`` and ``kill`` use it.
"""

from __future__ import annotations

# The C module `signal` wraps: `signal` builds IntEnums at import, which costs (with
# `enum`) every call ~6 ms here. Same constants and functions, plain ints.
import _signal
import errno
import os

from ocirun.errors import UsageError

#: States in /proc/PID/stat of a process that has exited (zombie, dead).
_EXITED_STATES = frozenset({"Z", "X", "x"})
#: include/linux/sched.h: the task is in do_exit() (field 9 of /proc/PID/stat)
_PF_EXITING = 0x4

#: The /proc entry of the process ocirun acts for: "self", or in a warm helper's
#: worker the caller's pid (docs/helper.md). What is the caller's own and not the
#: same for the worker (its cgroups) is read there.
CALLER = "self"


def unescape_mount_path(field: str) -> str:
    """A path field of /proc/PID/mountinfo: space, tab, newline and backslash are
    escaped there as \\ooo (octal)."""
    if "\\" not in field:
        return field
    import re

    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def caller_pid() -> int:
    """The pid of the process ocirun acts for (ours on the direct path)."""
    return os.getpid() if CALLER == "self" else int(CALLER)


class ProcStat:
    """The fields of ``/proc/PID/stat`` that ocirun uses.

    (A plain class, not a dataclass: ``state`` and ``kill`` import this module.)
    """

    __slots__ = ("pid", "comm", "state", "ppid", "start_time", "flags")

    def __init__(self, pid: int, comm: str, state: str, ppid: int, start_time: int, flags: int = 0) -> None:
        self.pid = pid
        self.comm = comm
        self.state = state
        self.ppid = ppid
        self.start_time = start_time
        self.flags = flags

    @property
    def exited(self) -> bool:
        """True for a zombie (exited, not yet reaped) or a dead task."""
        return self.state in _EXITED_STATES

    @property
    def exiting(self) -> bool:
        """Exited, or inside its exit (it never runs its own code again): e.g. the
        init of a pid namespace waiting there for its last processes to be reaped."""
        return self.exited or bool(self.flags & _PF_EXITING)

    def __repr__(self) -> str:
        return (f"ProcStat(pid={self.pid}, comm={self.comm!r}, state={self.state!r}, "
                f"ppid={self.ppid}, start_time={self.start_time})")


def parse_stat(data: bytes) -> ProcStat:
    """Parse the contents of ``/proc/PID/stat``.

    Field 2, ``comm``, is the executable's name in parentheses and may itself
    contain spaces and parentheses (``a) (b``), so the fields after it are
    found from the *last* ``)``, never by splitting the whole line.
    Raises ValueError if the text is not a stat line.
    """
    try:
        open_paren = data.index(b"(")
        close_paren = data.rindex(b")")
        if close_paren < open_paren:
            raise ValueError("')' before '('")
        pid = int(data[:open_paren])
        comm = data[open_paren + 1 : close_paren].decode("utf-8", "replace")
        rest = data[close_paren + 1 :].split()
        # rest[0] is field 3 (state); field N is rest[N - 3]
        state = rest[0].decode("ascii")
        ppid = int(rest[1])
        flags = int(rest[9 - 3])
        start_time = int(rest[22 - 3])
    except (ValueError, IndexError, UnicodeDecodeError) as exc:
        raise ValueError(f"malformed /proc/PID/stat: {data[:200]!r}") from exc
    return ProcStat(pid, comm, state, ppid, start_time, flags)


def read_proc(path: str) -> bytes:
    """A /proc file's bytes, without a file object (a warm helper's worker reads
    several on every call)."""
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks)


def read_stat(pid: int) -> ProcStat | None:
    """``/proc/PID/stat`` parsed, or None if there is no such process."""
    if pid <= 0:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        # ESRCH: the process went away between open and read
        return None
    return parse_stat(data)


def start_time(pid: int) -> int | None:
    """The process's start time (field 22 of /proc/PID/stat), or None if it does not exist."""
    st = read_stat(pid)
    return None if st is None else st.start_time


def is_zombie(pid: int) -> bool:
    """True if the process has exited but is not yet reaped (or is dead)."""
    st = read_stat(pid)
    return st is not None and st.exited


def open_pidfd(pid: int, expected_start_time: int | None) -> int | None:
    """A pidfd (CLOEXEC) for ``pid`` if it is still the process that started at
    ``expected_start_time``; None if it is gone or the pid now names another process.

    The start time is checked *after* the pidfd is open: checking first would
    leave a window in which the pid could be recycled. ``expected_start_time``
    None skips the check (only for a child of ours, which cannot be recycled
    before we reap it).
    """
    if pid <= 0:
        return None
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return None
    except OSError as err:
        if err.errno == errno.EINVAL:  # pid names a thread, not a process: not our init
            return None
        raise
    if expected_start_time is not None and start_time(pid) != expected_start_time:
        os.close(fd)
        return None
    return fd


def send_signal(pidfd: int, sig: int) -> None:
    """Signal the process behind ``pidfd``. ProcessLookupError if it has exited."""
    _signal.pidfd_send_signal(pidfd, sig)


def _names() -> dict[str, int]:
    # what signal.Signals.__members__ holds (aliases such as SIGIOT included)
    return {name: value for name, value in vars(_signal).items()
            if name.isupper() and name.startswith("SIG") and not name.startswith("SIG_")
            and isinstance(value, int)}


def parse_signal(text: str) -> int:
    """A signal number from a command-line argument, as ``kill(1)`` and runc read it.

    Accepts a number (``9``), a name with or without ``SIG`` in any case
    (``KILL``, ``SIGKILL``, ``sigkill``), and real-time signals relative to
    the C library's bounds (``SIGRTMIN``, ``RTMIN+3``, ``SIGRTMAX-2``).
    Anything else: UsageError ``unknown signal: TEXT``.
    """
    s = text.strip()
    rtmin, rtmax = int(_signal.SIGRTMIN), int(_signal.SIGRTMAX)
    if s.isascii() and s.isdigit():
        num = int(s)
        if num <= rtmax:
            return num
        raise UsageError(f"unknown signal: {text}")
    name = s.upper()
    if not name.startswith("SIG"):
        name = "SIG" + name
    for base_name, base, sign in (("SIGRTMIN", rtmin, "+"), ("SIGRTMAX", rtmax, "-")):
        if name.startswith(base_name) and name != base_name:
            offset = name[len(base_name) :]
            if offset[:1] == sign and offset[1:].isascii() and offset[1:].isdigit():
                num = base + int(offset[1:]) if sign == "+" else base - int(offset[1:])
                if rtmin <= num <= rtmax:
                    return num
            raise UsageError(f"unknown signal: {text}")
    num_or_none = _names().get(name)
    if num_or_none is None:
        raise UsageError(f"unknown signal: {text}")
    return num_or_none

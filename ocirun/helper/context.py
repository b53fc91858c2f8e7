"""The caller's context, as /proc and the front end show it, and a worker adopting it.

A worker must act as the calling process would have (issue #12, requirement 2):
its namespaces, root and cwd, environment, umask, rlimits, signal mask and
ignored signals, its stdio and every fd it has, argv. What cannot be reproduced
faithfully is refused (:class:`Refused`), and the front end runs the direct path:
other credentials than the helper's (uid, gids, groups, capability sets,
no_new_privs, seccomp, LSM label, personality), another user or pid namespace,
a Python configuration the helper's interpreter does not have (PYTHONPATH, a
non-UTF-8 locale, ...), rlimits above the helper's hard limits.
"""

from __future__ import annotations

import ctypes
import os
import resource
import signal
import sys
from typing import Any

from ocirun.linux import proc
from ocirun.linux.namespaces import (
    CLONE_NEWCGROUP,
    CLONE_NEWIPC,
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWTIME,
    CLONE_NEWUTS,
)

#: Namespaces a worker joins when the caller's differ from its own (setns takes them
#: all at once through the caller's pidfd; the mount namespace is entered last
#: by the kernel, which resets root and cwd: set again from the caller's fds).
JOINED = (("net", CLONE_NEWNET), ("ipc", CLONE_NEWIPC), ("uts", CLONE_NEWUTS),
          ("cgroup", CLONE_NEWCGROUP), ("time", CLONE_NEWTIME), ("mnt", CLONE_NEWNS))

#: /proc/PID/status lines that must be equal for a worker to act for the caller.
CREDENTIALS = ("Uid", "Gid", "Groups", "CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb",
               "NoNewPrivs", "Seccomp", "Seccomp_filters")

#: PYTHON* variables the worker reproduces (or that change nothing it prints);
#: any other in the caller's environment (PYTHONPATH, PYTHONWARNINGS, ...) would make
#: the direct path's interpreter differ from the helper's: refused.
PYTHON_VARS_OK = frozenset({"PYTHONDONTWRITEBYTECODE", "PYTHONUNBUFFERED", "PYTHONHASHSEED",
                            "PYTHONIOENCODING", "PYTHONUTF8", "PYTHONCOERCECLOCALE",
                            "PYTHONNODEBUGRANGES", "PYTHONPYCACHEPREFIX"})

RLIMITS = tuple(getattr(resource, n) for n in dir(resource) if n.startswith("RLIMIT_"))

_libc = ctypes.CDLL(None, use_errno=True)


class Refused(Exception):
    """The worker cannot act as the caller; the front end takes the direct path."""


def read_status(pid: int | str) -> dict[str, str]:
    text = proc.read_proc(f"/proc/{pid}/status").decode(errors="replace")
    return {k: v.strip() for k, _, v in (line.partition(":") for line in text.splitlines())}


def _read(path: str) -> str:
    try:
        return proc.read_proc(path).decode(errors="replace").strip("\0\n")
    except OSError:
        return ""


class Own:
    """What a worker compares the caller with: the helper's own, read once."""

    def __init__(self) -> None:
        status = read_status("self")
        self.credentials = {k: status.get(k, "") for k in CREDENTIALS}
        self.label = _read("/proc/self/attr/current")
        self.personality = _read("/proc/self/personality")
        self.env_python = {k: v for k, v in os.environ.items() if k.startswith("PYTHON")}
        self.fs_encoding = sys.getfilesystemencoding()
        #: a worker has the helper's until it joins the caller's (the helper never
        #: changes its own), and compares them before it does
        self.namespaces = namespace_ids("self")


NAMESPACE_KINDS = ("user", "pid", "pid_for_children", "time", "time_for_children",
                   *(name for name, _ in JOINED if name != "time"))


def namespace_ids(pid: int | str) -> dict[str, tuple[int, int]]:
    """(device, inode) of each namespace of a process; (0, 0) for a kind this kernel
    lacks (time: before 5.6)."""
    ids = {}
    for name in NAMESPACE_KINDS:
        try:
            st = os.stat(f"/proc/{pid}/ns/{name}")
        except FileNotFoundError:
            ids[name] = (0, 0)
        else:
            ids[name] = (st.st_dev, st.st_ino)
    return ids


class Caller:
    """What /proc says about the calling process (the front end)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.status = read_status(pid)

    def check_credentials(self, own: Own) -> None:
        for key in CREDENTIALS:
            if self.status.get(key, "") != own.credentials[key]:
                raise Refused(f"{key} differs")
        if _read(f"/proc/{self.pid}/attr/current") != own.label:
            raise Refused("LSM label differs")
        if _read(f"/proc/{self.pid}/personality") != own.personality:
            raise Refused("personality differs")

    def namespaces_to_join(self, own: Own) -> int:
        """CLONE_NEW* flags of the namespaces to join. Refused for another user or
        pid namespace (ids and pids would not mean the same)."""
        theirs = namespace_ids(self.pid)
        mine = own.namespaces
        for name in ("user", "pid"):
            if theirs[name] != mine[name]:
                raise Refused(f"{name} namespace differs")
        if theirs["pid_for_children"] != theirs["pid"]:
            raise Refused("pid_for_children differs from the pid namespace")
        if theirs["time_for_children"] != theirs["time"]:
            raise Refused("time_for_children differs from the time namespace")
        flags = 0
        for name, flag in JOINED:
            if theirs[name] != mine[name]:
                flags |= flag
        return flags

    def umask(self) -> int:
        return int(self.status["Umask"], 8)

    def signal_mask(self, key: str) -> set[int]:
        bits = int(self.status.get(key, "0"), 16)
        return {sig + 1 for sig in range(64) if bits >> sig & 1}

    def rlimits(self) -> dict[int, tuple[int, int]]:
        return {r: resource.prlimit(self.pid, r) for r in RLIMITS}

    def scheduling(self) -> tuple[int, object, int, set[int]]:
        """Its scheduling policy and parameters, nice value, CPU affinity."""
        return (os.sched_getscheduler(self.pid), os.sched_getparam(self.pid),
                os.getpriority(os.PRIO_PROCESS, self.pid), os.sched_getaffinity(self.pid))


def setns(fd: int, flags: int) -> None:
    if _libc.setns(fd, flags) < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def join(caller: Caller, pidfd: int, flags: int, root_fd: int, cwd_fd: int) -> None:
    """The caller's namespaces (those in ``flags``), root and cwd."""
    if flags:
        try:
            setns(pidfd, flags)  # Linux >= 5.8: all of them at once, atomically
        except OSError as e:
            if e.errno != 22:  # EINVAL: a kernel without setns on pidfds
                raise Refused(f"setns: {e.strerror}") from None
            for name, flag in JOINED:  # mnt last
                if flags & flag:
                    fd = os.open(f"/proc/{caller.pid}/ns/{name}", os.O_RDONLY | os.O_CLOEXEC)
                    try:
                        setns(fd, flag)
                    except OSError as e2:
                        raise Refused(f"setns {name}: {e2.strerror}") from None
                    finally:
                        os.close(fd)
    os.fchdir(root_fd)
    try:
        os.chroot(".")
    except PermissionError:
        # a rootless worker (no CAP_SYS_CHROOT): fine if the caller's root is ours
        if not _same_root(root_fd):
            raise Refused("the caller's root differs from ours (chroot needs CAP_SYS_CHROOT)") from None
    os.fchdir(cwd_fd)


def _mount_id(fd: int) -> str:
    with open(f"/proc/self/fdinfo/{fd}") as f:
        return next((line.split()[1] for line in f if line.startswith("mnt_id:")), "")


def _same_root(root_fd: int) -> bool:
    """``root_fd`` is our own root: the same inode on the same mount."""
    ours = os.open("/", os.O_PATH | os.O_CLOEXEC)
    try:
        a, b = os.fstat(root_fd), os.fstat(ours)
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino) and _mount_id(root_fd) == _mount_id(ours) != ""
    finally:
        os.close(ours)


def adopt_rlimits(caller: Caller) -> None:
    for r, (soft, hard) in caller.rlimits().items():
        mine = resource.getrlimit(r)
        if mine == (soft, hard):
            continue
        try:
            resource.setrlimit(r, (soft, hard))
        except (ValueError, OSError):
            raise Refused(f"cannot take the caller's rlimit {r}") from None


def python_signals() -> None:
    """Every disposition as a Python just started with none ignored has it (SIGPIPE,
    SIGXFSZ ignored, SIGINT raising KeyboardInterrupt, the rest default): what a spare
    worker sets up before a call, so that adopt_signals changes only a few."""
    for sig in signal.valid_signals():
        if sig in (signal.SIGKILL, signal.SIGSTOP):
            continue
        _set(sig, _python_default(sig, ignored=False))


def _python_default(sig: int, *, ignored: bool) -> object:
    if sig in (signal.SIGPIPE, signal.SIGXFSZ) or ignored:
        return signal.SIG_IGN
    if sig == signal.SIGINT:
        return signal.default_int_handler
    return signal.SIG_DFL


def _set(sig: int, handler: object) -> None:
    try:
        if signal.getsignal(sig) is not handler:
            signal.signal(sig, handler)  # type: ignore[arg-type]
    except (OSError, ValueError):
        pass


def adopt_scheduling(caller: Caller) -> None:
    """The caller's scheduling policy, nice value and CPU affinity (a spare worker
    waits at a low priority: it must not compete with the call before it)."""
    policy, param, nice, cpus = caller.scheduling()
    try:
        if os.sched_getscheduler(0) != policy or os.sched_getparam(0) != param:
            os.sched_setscheduler(0, policy, param)  # type: ignore[arg-type]
        if os.getpriority(os.PRIO_PROCESS, 0) != nice:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
        if os.sched_getaffinity(0) != cpus:
            os.sched_setaffinity(0, cpus)
    except OSError as e:
        raise Refused(f"cannot take the caller's scheduling: {e.strerror}") from None


def adopt_signals(caller: Caller) -> None:
    """As a Python started by the caller: its blocked signals, its ignored ones (and
    SIGPIPE, SIGXFSZ ignored, SIGINT raising KeyboardInterrupt unless ignored).
    Expects python_signals() done."""
    for sig in caller.signal_mask("SigIgn"):
        if sig in signal.valid_signals() and sig not in (signal.SIGKILL, signal.SIGSTOP):
            _set(sig, signal.SIG_IGN)
    blocked = caller.signal_mask("SigBlk")
    if blocked:
        signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


# ------------------------------------------------------------------ the environment


#: Read by the direct path at start-up (ocirun.testhooks): a worker would not see them.
DIRECT_ONLY_VARS = ("OCIRUN_TEST_KILL_AT", "OCIRUN_TEST_STOP_AT")


def check_python_env(env: dict[str, str], own: Own) -> None:
    if any(env.get(k) for k in DIRECT_ONLY_VARS):
        raise Refused("fault injection (ocirun.testhooks) is the direct path's")
    theirs = {k: v for k, v in env.items() if k.startswith("PYTHON") and k not in PYTHON_VARS_OK}
    mine = {k: v for k, v in own.env_python.items() if k not in PYTHON_VARS_OK}
    if theirs != mine:
        raise Refused("a Python setting in the environment differs")


#: locale name -> its codeset, or None if setlocale refuses it (memo: the helper fills
#: it for the usual names, its workers add the rest for their call)
_CODESETS: dict[str, str | None] = {}


def _codeset(name: str) -> str | None:
    if name in _CODESETS:
        return _CODESETS[name]
    import locale

    old = locale.setlocale(locale.LC_CTYPE)
    try:
        locale.setlocale(locale.LC_CTYPE, name)
        codeset: str | None = locale.nl_langinfo(locale.CODESET)
    except locale.Error:
        codeset = None
    finally:
        locale.setlocale(locale.LC_CTYPE, old)
    _CODESETS[name] = codeset
    return codeset


def _locale_available(name: str) -> bool:
    return _codeset(name) is not None


def warm_locales() -> None:
    for name in ("C", "POSIX", "C.UTF-8", "C.utf8", "UTF-8", "en_US.UTF-8", "en_US.utf8"):
        _codeset(name)


_COERCION_TARGETS = ("C.UTF-8", "C.utf8", "UTF-8")


class StdioConfig:
    """What CPython (3.11, Linux) chooses at start-up for a given environment:
    stdio encoding and errors, the filesystem encoding, UTF-8 mode, and the
    LC_CTYPE its locale coercion (PEP 538) puts into the environment."""

    def __init__(self, env: dict[str, str]) -> None:
        import codecs

        lc_all = env.get("LC_ALL") or ""
        name = lc_all or env.get("LC_CTYPE") or env.get("LANG") or "C"
        if name not in ("C", "POSIX") and not _locale_available(name):
            name = "C"  # setlocale(LC_CTYPE, "") fails: the C locale stays
        legacy = name in ("C", "POSIX")
        utf8 = env.get("PYTHONUTF8", "")
        if utf8 not in ("", "0", "1"):
            raise Refused("PYTHONUTF8 has a value this helper does not reproduce")
        self.utf8_mode = utf8 == "1" or (utf8 == "" and legacy)
        self.coerced_ctype: str | None = None
        if legacy and env.get("PYTHONCOERCECLOCALE") != "0" and not lc_all:
            for target in _COERCION_TARGETS:
                if _locale_available(target):
                    self.coerced_ctype = name = target
                    legacy = False
                    break
        if self.utf8_mode:
            encoding = "utf-8"
        else:
            codeset = "ascii" if legacy else (_codeset(name) or "ascii")
            encoding = codecs.lookup(codeset).name
        self.fs_encoding = encoding
        errors = "surrogateescape" if (self.utf8_mode or legacy or name in _COERCION_TARGETS) else "strict"
        io = env.get("PYTHONIOENCODING")
        if io:
            enc, sep, err = io.partition(":")
            if enc:
                encoding = codecs.lookup(enc).name
                errors = err if sep and err else "strict"
            elif sep and err:
                errors = err
        self.encoding = encoding
        self.errors = errors
        self.unbuffered = bool(env.get("PYTHONUNBUFFERED"))
        self.locale = name


def make_stdio(fd: int, write: bool, name: str, cfg: StdioConfig):
    """sys.stdin/stdout/stderr as CPython's create_stdio makes them (None if the fd
    is not open)."""
    import io

    try:
        os.fstat(fd)
    except OSError:
        return None
    buffering = 0 if (cfg.unbuffered and write) else -1
    buf: Any = open(fd, "wb" if write else "rb", buffering, closefd=False)
    raw = buf.raw if buffering else buf
    raw.name = name
    isatty = raw.isatty()
    line_buffering = not cfg.unbuffered and (isatty or fd == 2)
    errors = "backslashreplace" if fd == 2 else cfg.errors
    stream = io.TextIOWrapper(buf, cfg.encoding, errors, "\n", line_buffering, cfg.unbuffered)
    stream.mode = "w" if write else "r"  # type: ignore[misc]
    return stream


def adopt_environment(env: dict[str, str], cfg: StdioConfig) -> None:
    import locale
    import time

    tz = os.environ.get("TZ")
    if cfg.coerced_ctype is not None:
        env = dict(env, LC_CTYPE=cfg.coerced_ctype)
    replace_environ(env)
    try:
        if locale.setlocale(locale.LC_CTYPE) != cfg.locale:
            locale.setlocale(locale.LC_CTYPE, cfg.locale)
    except locale.Error:
        pass
    if env.get("TZ") != tz:
        time.tzset()
    sys.stdin = sys.__stdin__ = make_stdio(0, False, "<stdin>", cfg)  # type: ignore[misc]
    sys.stdout = sys.__stdout__ = make_stdio(1, True, "<stdout>", cfg)  # type: ignore[misc]
    sys.stderr = sys.__stderr__ = make_stdio(2, True, "<stderr>", cfg)  # type: ignore[misc]


_environ_keep: list[object] = []


def replace_environ(env: dict[str, str]) -> None:
    """os.environ and the C library's environ become ``env``, at once: one array for
    environ (setenv per variable would cost ~0.7 ms and ~190 page faults of a fresh
    fork for a shell's 40 variables: glibc grows its array one by one); glibc copies
    it into its own if anything sets a variable later."""
    items = [os.fsencode(k) + b"=" + os.fsencode(v) for k, v in env.items()]
    arr = (ctypes.c_char_p * (len(items) + 1))(*items, None)
    ctypes.c_void_p.in_dll(_libc, "environ").value = ctypes.addressof(arr)
    _environ_keep[:] = [arr, items]  # glibc points into them from now on (the old go)
    environ: Any = os.environ
    data = environ._data
    data.clear()
    for k, v in env.items():
        data[environ.encodekey(k)] = environ.encodevalue(v)


def parse_env(strings: list[bytes]) -> dict[str, str]:
    """os.environ as CPython builds it from envp: the first of duplicate names wins,
    entries without '=' are skipped."""
    env: dict[str, str] = {}
    for s in strings:
        k, sep, v = s.partition(b"=")
        if not sep or not k:
            continue
        env.setdefault(os.fsdecode(k), os.fsdecode(v))
    return env


# --------------------------------------------------------------------------- fds


def place_fds(table: list[int], received: list[int], keep: list[int],
              reserved: int | None = None) -> list[int]:
    """Make our fd table the caller's: received[i] at number table[i] (inheritable, as
    the caller's are), nothing else below; ``keep`` (our own fds) moved above it,
    CLOEXEC. ``reserved``: the numbers below it are the call's (3 + its --preserve-fds),
    None if unknown. Returns keep's new numbers."""
    import fcntl

    hi = max([2, *table]) + 1
    # Ours above every --preserve-fds range too: a number in such a range that the
    # caller left free must look free (ocirun.linux.fds.fill_holes). Not knowing the
    # range, near the limit; knowing it, just above (a table of ~1M slots, for a
    # caller with a high RLIMIT_NOFILE as containerd's shims have, costs ms to make).
    if reserved is not None:
        hi = max(hi, reserved) + 64
    else:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft == resource.RLIM_INFINITY or soft - 64 > hi:
            hi = max(hi, min(soft, 1 << 20) - 64)
    moved = []
    for fd in keep:
        if fd >= hi:
            moved.append(fd)
            continue
        new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, hi)
        os.close(fd)
        moved.append(new)
    high_received = []
    for fd in received:
        if fd >= hi:
            high_received.append(fd)
            continue
        new = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, hi)
        os.close(fd)
        high_received.append(new)
    os.closerange(0, hi)  # the helper's stdio (/dev/null) and anything else low
    for src, num in zip(high_received, table, strict=True):
        os.dup2(src, num, inheritable=True)
        os.close(src)
    # Whatever else is open above is not the caller's: close it.
    mine = set(moved)
    for name in os.listdir("/proc/self/fd"):
        fd = int(name)
        if fd >= hi and fd not in mine:
            try:
                os.close(fd)
            except OSError:
                pass  # listdir's own
    return moved

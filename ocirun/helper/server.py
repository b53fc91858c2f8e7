"""The helper process: ``ocirun helper serve`` (started by the front end; docs/helper.md).

It leaves the caller's cgroups, imports all of ocirun, binds its socket and keeps
``SPARES`` *spare* workers: forks that rehearse a call, then wait in accept().
The spare that takes a connection tells the helper (TAKEN) and becomes that
call's worker (ocirun.helper.worker); the helper forks the next spare meanwhile,
so a call never waits for a fork. The helper itself never touches a caller's fds.

It watches: each busy worker's caller (a pidfd: if the caller dies, its worker
is killed), the installed code (inotify on the package's directories: a change
and it exits, so that the next call starts a helper with the new code), its idle
time (no call for ``idle`` seconds and none running: it exits), SIGTERM
(``ocirun helper stop``: it exits), and its parent. Exiting, it removes its
socket and status file; running workers finish their calls on their own.

Its parent: the front end starts it detached (double fork), so it is reparented
to init, or to the nearest child subreaper above the first caller: conmon,
containerd's shim, a test runner. Some of those wait for every child before they
exit (conmon runs its exit command, then waits until it has none): a helper
that is their child would keep them alive. So a helper whose parent is not
init looks at it every ``PARENT_POLL`` seconds and exits as soon as it is
blocked waiting for any child (or for us): /proc/PID/syscall shows wait4 or
waitid on -1, P_ALL or our pid, without WNOHANG. The next call starts a new
helper, from wherever it comes (podman's own calls: their orphans go to init).
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import select
import signal
import socket
import struct
import sys
import time

from ocirun.helper import context, paths, worker
from ocirun.helper.paths import Files

DEFAULT_IDLE = 60.0
PARENT_POLL = 0.02
SPARE_NICE = 10  # the helper and its spares, relative to the helper's start
#: Two: calls in a row (create, start, delete) find one that has rehearsed while
#: the next one forks and rehearses.
SPARES = 2

_IN_MODIFY = 0x2
_IN_ATTRIB = 0x4
_IN_CLOSE_WRITE = 0x8
_IN_MOVED_FROM = 0x40
_IN_MOVED_TO = 0x80
_IN_CREATE = 0x100
_IN_DELETE = 0x200
_IN_DELETE_SELF = 0x400
_IN_MOVE_SELF = 0x800
_IN_WATCH = (_IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_MOVED_FROM | _IN_MOVED_TO | _IN_CREATE
             | _IN_DELETE | _IN_DELETE_SELF | _IN_MOVE_SELF)
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000
_INOTIFY_EVENT = struct.Struct("=iIII")


def warm_up() -> None:
    """Import what any call may need, once (this is the point of the helper)."""
    import pkgutil

    import ocirun

    skip = ("ocirun.__main__", "ocirun.frontend.build_frontend", "ocirun.shim.build_shim",
            "ocirun.seccomp._build_ffi", "ocirun.spec._codegen")
    for info in pkgutil.walk_packages(ocirun.__path__, "ocirun."):
        if info.name in skip:
            continue
        with contextlib.suppress(ImportError):
            __import__(info.name)
    # Not jsonschema (only for listing a bad config's every problem) nor pyroute2 (only
    # for linux.netDevices): together 23 of the 41 MB a helper would hold, which every
    # fork copies the page tables of; a call that needs one imports it, as directly.
    for name in ("json", "argparse", "ast", "traceback", "termios", "tty", "fcntl", "array", "select",
                 "socket", "subprocess", "decimal"):
        with contextlib.suppress(ImportError):
            __import__(name)
    from ocirun.shim import load

    load()


def leave_caller_cgroups(ident: str) -> str | None:
    """Out of the cgroups of whoever started us (ocirun.helper.cgroup): root's helper
    into the root cgroups (SystemExit if it cannot), a rootless one into a cgroup of
    its own (returned: removed when it exits) or nowhere (None); CannotLeave if it
    cannot leave the caller's cgroup on the hierarchy that tracks processes."""
    from ocirun.helper import cgroup

    if not paths.rootless():
        cgroup.leave_as_root()
        return None
    return cgroup.leave_rootless(ident)


def _package_dirs() -> list[str]:
    import ocirun

    top = os.path.dirname(os.path.abspath(ocirun.__file__))
    out = []
    for dirpath, dirs, _ in os.walk(top):
        dirs[:] = [d for d in dirs if d != "__pycache__" and not d.startswith(".")]
        out.append(dirpath)
    return out


def _watch_code() -> int:
    """An inotify fd that becomes readable when a file of the package changes."""
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
    if fd < 0:
        return -1
    for d in _package_dirs():
        libc.inotify_add_watch(fd, os.fsencode(d), _IN_WATCH)
    return fd


def _code_changed(fd: int) -> bool:
    """Read the pending events; True if one is about code (not bytecode caches)."""
    changed = False
    while True:
        try:
            data = os.read(fd, 65536)
        except BlockingIOError:
            return changed
        if not data:
            return changed
        at = 0
        while at + _INOTIFY_EVENT.size <= len(data):
            _, mask, _, length = _INOTIFY_EVENT.unpack_from(data, at)
            name = data[at + _INOTIFY_EVENT.size: at + _INOTIFY_EVENT.size + length].rstrip(b"\0")
            at += _INOTIFY_EVENT.size + length
            if name == b"__pycache__" or name.endswith((b".pyc", b".swp", b"~")) or name.startswith(b".#"):
                continue
            if mask & 0x8000:  # IN_IGNORED: a watch went away (its directory did)
                changed = True
                continue
            changed = True


#: (wait4, waitid) by machine
_WAIT_SYSCALLS = {"x86_64": (61, 247), "aarch64": (260, 95)}.get(os.uname().machine, (-1, -1))
_WNOHANG = 1
_P_ALL, _P_PID = 0, 1


def waits_for_me(syscall: str, me: int) -> bool:
    """/proc/PID/syscall of a process blocked in a wait that our exit would end."""
    fields = syscall.split()
    if len(fields) < 5 or not fields[0].isdigit():
        return False  # "running", or not in a syscall
    nr = int(fields[0])
    args = [int(f, 16) for f in fields[1:7]]

    def s32(v: int) -> int:
        v &= 0xFFFFFFFF
        return v - (1 << 32) if v >= 1 << 31 else v

    if nr == _WAIT_SYSCALLS[0]:  # wait4(pid, status, options, rusage)
        return s32(args[0]) in (-1, me) and not args[2] & _WNOHANG
    if nr == _WAIT_SYSCALLS[1]:  # waitid(idtype, id, info, options, rusage)
        return (args[0] == _P_ALL or (args[0] == _P_PID and args[1] == me)) and not args[3] & _WNOHANG
    return False


class Helper:
    def __init__(self, files: Files, lock_fd: int, idle: float, nice: int | None = None) -> None:
        self.files = files
        self.lock_fd = lock_fd
        self.idle = idle
        self.own = context.Own()
        #: spare workers: forked, rehearsing or waiting in accept()
        self.spares: set[int] = set()
        self.workers: dict[int, int] = {}          # pid -> its pidfd (busy ones and the spares)
        self.callers: dict[int, int] = {}          # worker pid -> caller's pidfd
        self.last_call = time.monotonic()
        self.stopping = False
        #: the subreaper we were reparented to, watched (None: init, nothing to watch)
        self.reaper: int | None = None
        self.trace = os.environ.get("OCIRUN_HELPER_TRACE") or None
        self.nice = os.getpriority(os.PRIO_PROCESS, 0) if nice is None else nice
        #: a rootless helper's own cgroup (ocirun.helper.cgroup), removed when it exits
        self.cgroup: str | None = None
        #: root in the initial user namespace: the only one whose workers can take
        #: back a higher priority (CAP_SYS_NICE) after waiting at a lower one
        self.renice = not paths.rootless()

    # -------------------------------------------------------------- set up

    def bind(self) -> None:
        old = os.umask(0o077)
        try:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.files.sock)  # a dead helper's (we hold the lock: no live one)
            self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
            self.listener.bind(self.files.sock)
            self.listener.listen(256)
            self.listener.setblocking(False)  # spares poll it; one of them gets each call
        finally:
            os.umask(old)
        self.sock_ino = os.stat(self.files.sock).st_ino
        self.notify_r, self.notify_w = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET | socket.SOCK_CLOEXEC)
        self.ctrl_r, self.ctrl_w = os.pipe2(os.O_CLOEXEC)
        self.stale_r, self.stale_w = os.pipe2(os.O_CLOEXEC)
        self.inotify = _watch_code()
        self.wake_r, self.wake_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        signal.set_wakeup_fd(self.wake_w)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)

    def _on_term(self, _signum, _frame) -> None:
        self.stopping = True

    def write_status(self) -> None:
        import ocirun
        from ocirun.linux.proc import start_time

        status = {
            "pid": os.getpid(), "startTime": start_time(os.getpid()),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "idle": self.idle, "protocol": worker.protocol.PROTOCOL, "socket": self.files.sock,
            "package": os.path.dirname(os.path.abspath(ocirun.__file__)), "launcher": sys.argv[0],
        }
        if self.cgroup:
            status["cgroup"] = self.cgroup  # a rootless helper's own (ocirun.helper.cgroup)
        tmp = f"{self.files.status}.{os.getpid()}"
        with open(tmp, "w") as f:
            json.dump(status, f)
        os.rename(tmp, self.files.status)

    # -------------------------------------------------------------- workers

    def fork_spare(self) -> None:
        pid = os.fork()
        if pid == 0:
            self._spare_main()  # never returns
        self.spares.add(pid)
        self.workers[pid] = os.pidfd_open(pid)

    def _spare_main(self) -> None:
        try:
            signal.set_wakeup_fd(-1)
            context.python_signals()
            keep = {self.listener.fileno(), self.ctrl_r, self.notify_w.fileno(), self.stale_r, self.inotify}
            for fd in (self.lock_fd, self.ctrl_w, self.stale_w, self.wake_r, self.wake_w,
                       self.notify_r.fileno(), *self.workers.values(), *self.callers.values()):
                if fd not in keep:
                    with contextlib.suppress(OSError):
                        os.close(fd)
            # EPOLLEXCLUSIVE: a connection wakes one spare that is waiting, not every
            # spare (the others would wake for nothing, and compete for the CPU the
            # call needs); one that is rehearsing is skipped by the kernel and sees it
            # between two steps.
            poller = select.epoll(2)
            try:
                poller.register(self.listener.fileno(), select.EPOLLIN | select.EPOLLEXCLUSIVE)
            except OSError:  # before Linux 4.5: every waiting spare wakes, one accepts
                poller.register(self.listener.fileno(), select.EPOLLIN)
            poller.register(self.ctrl_r, select.EPOLLIN)
            for step in self._rehearsal():
                step()
                if poller.poll(0):
                    break  # a call (or the end): it goes first, rehearsed or not
            # Rehearsed (below the calls); waiting costs nothing, and a spare that wakes
            # at nice 10 does not preempt a busy CPU's task: it would start the call
            # late, by up to a time slice. So it waits at the callers' priority.
            if self.renice and os.getpriority(os.PRIO_PROCESS, 0) != self.nice:
                with contextlib.suppress(OSError):
                    os.setpriority(os.PRIO_PROCESS, 0, self.nice)
            while True:
                events = dict(poller.poll(-1, 2))
                if self.ctrl_r in events:
                    os._exit(0)  # the helper is going: take no more calls
                try:
                    conn_fd, _ = self.listener._accept()  # type: ignore[attr-defined]
                except (BlockingIOError, InterruptedError):
                    continue
                break
            poller.close()
            self.listener.close()
            os.close(self.ctrl_r)
            stale = [self.stale_r] + ([self.inotify] if self.inotify >= 0 else [])
            session = worker.Session(notify=self.notify_w.detach(), stale=stale, own=self.own,
                                     nice=self.nice, trace=self.trace)
            worker.handle(conn_fd, session)
        except BaseException:  # noqa: BLE001 - never back into the helper's loop
            pass
        os._exit(0)

    def _rehearsal(self) -> list:
        """Before a call arrives, in steps (a call that comes meanwhile goes first): go
        through what a call goes through, on nothing (a state root that does not
        exist; output to the helper's /dev/null). A fork shares the helper's memory
        until it writes to it, and CPython writes to every object it uses (reference
        counts): this makes the copies now, while the spare waits, instead of on the
        call's time."""
        from ocirun import cli

        def caller() -> None:
            c = context.Caller(os.getpid())
            with contextlib.suppress(context.Refused):
                c.check_credentials(self.own)
            with contextlib.suppress(context.Refused):
                c.namespaces_to_join(self.own)
            c.rlimits()
            c.scheduling()
            c.umask()
            c.signal_mask("SigIgn")

        def stdio() -> None:
            cfg = context.StdioConfig(dict(os.environ))
            for fd in (1, 2):
                context.make_stdio(fd, True, "<rehearsal>", cfg)

        def request() -> None:
            # A request's way to the call, on our own values: our environment
            # taken again, our own pidfd, a plain command line.
            env = context.parse_env([f"{k}={v}".encode() for k, v in os.environ.items()])
            context.replace_environ(env)
            req = worker.Request()
            req.argv = [b"ocirun", b"--root", os.fsencode(root), b"state", b"rehearsal"]
            req.env, req.pid = env, os.getpid()
            worker.reserved_fds(req)
            pidfd = os.pidfd_open(os.getpid())
            try:
                worker.pid_of_pidfd(pidfd)
            finally:
                os.close(pidfd)

        def cli_call(*argv: str):
            def call() -> None:
                with contextlib.suppress(Exception):
                    cli.main(list(argv))
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
            return call

        root = "/nonexistent/ocirun-helper-rehearsal"
        # Not the free memory a call will allocate from (writing a little of every
        # size class): ~30 page faults fewer per call cost 680 more per spare, 2.6 ms
        # of CPU that calls in a row compete with (docs/performance.md).
        return [caller, stdio, request, cli_call("--root", root, "state", "rehearsal"),
                cli_call("--root", root, "list")]

    def _on_note(self) -> None:
        try:
            data, anc, _, _ = self.notify_r.recvmsg(worker.NOTE.size, socket.CMSG_SPACE(4),
                                                    socket.MSG_CMSG_CLOEXEC | socket.MSG_DONTWAIT)
        except BlockingIOError:
            return
        fd = None
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS and len(payload) >= 4:
                fd = struct.unpack("=i", payload[:4])[0]
        if len(data) != worker.NOTE.size:
            if fd is not None:
                os.close(fd)
            return
        kind, pid = worker.NOTE.unpack(data)
        if kind == worker.NOTE_TAKEN:
            self.last_call = time.monotonic()
            self.spares.discard(pid)
            if fd is not None and pid in self.workers:
                old = self.callers.pop(pid, None)
                if old is not None:
                    os.close(old)
                self.callers[pid] = fd
                fd = None
        if fd is not None:
            os.close(fd)

    def _reaper_waits(self) -> bool:
        """Our parent (not init) is blocked waiting for its children: us among them."""
        if self.reaper is None:
            return False
        ppid = os.getppid()
        if ppid != self.reaper:  # it exited: we have a new parent
            self.reaper = ppid if ppid > 1 else None
            if self.reaper is None:
                return False
        try:
            with open(f"/proc/{self.reaper}/syscall") as f:
                return waits_for_me(f.read(), os.getpid())
        except OSError:
            return False

    def _reap(self, pid: int) -> None:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, 0)
        os.close(self.workers.pop(pid))
        caller = self.callers.pop(pid, None)
        if caller is not None:
            os.close(caller)
        self.spares.discard(pid)

    # -------------------------------------------------------------- the loop

    def run(self) -> None:
        gc.freeze()  # what is imported now stays shared with every fork
        # Below the calls (a worker takes its caller's priority when it takes a call):
        # forking and rehearsing spares must not compete with the call that is running.
        # (Root only: a worker's way back up needs CAP_SYS_NICE in the initial user namespace.)
        if self.renice:
            with contextlib.suppress(OSError):
                os.setpriority(os.PRIO_PROCESS, 0, min(19, self.nice + SPARE_NICE))
        ppid = os.getppid()
        self.reaper = ppid if ppid > 1 else None
        while not self.stopping:
            if self._reaper_waits():
                return  # never keep a subreaper (conmon) from exiting
            while len(self.spares) < SPARES:
                self.fork_spare()
            busy = [p for p in self.workers if p not in self.spares]
            timeout = None
            if not busy and self.idle > 0:  # 0: never idle out (ocirun helper start --idle 0)
                timeout = self.last_call + self.idle - time.monotonic()
                if timeout <= 0:
                    return  # idle
            if self.reaper is not None:
                timeout = PARENT_POLL if timeout is None else min(timeout, PARENT_POLL)
            poller = select.poll()
            fixed = [self.notify_r.fileno(), self.wake_r] + ([self.inotify] if self.inotify >= 0 else [])
            for fd in fixed:
                poller.register(fd, select.POLLIN)
            by_fd: dict[int, tuple[str, int]] = {}
            for pid, fd in self.workers.items():
                by_fd[fd] = ("worker", pid)
                poller.register(fd, select.POLLIN)
            for pid, fd in self.callers.items():
                by_fd[fd] = ("caller", pid)
                poller.register(fd, select.POLLIN)
            try:
                events = poller.poll(None if timeout is None else max(0, int(timeout * 1000) + 1))
            except InterruptedError:
                continue
            for fd, _ in events:
                if fd == self.notify_r.fileno():
                    self._on_note()
                elif fd == self.wake_r:
                    with contextlib.suppress(BlockingIOError):
                        os.read(self.wake_r, 64)
                elif fd == self.inotify:
                    if _code_changed(self.inotify):
                        os.write(self.stale_w, b"x")  # workers that have not accepted yet refuse
                        return
                elif fd in by_fd:
                    what, pid = by_fd[fd]
                    if what == "worker" and pid in self.workers:
                        self._reap(pid)
                    elif what == "caller" and pid in self.callers:
                        # the caller is gone: its worker must not go on for it
                        with contextlib.suppress(ProcessLookupError):
                            signal.pidfd_send_signal(self.workers[pid], signal.SIGKILL)
                        os.close(self.callers.pop(pid))

    def shut_down(self, timeout: float = 5.0) -> None:
        """No new calls: the socket and status file go; the spares leave, and we wait
        (up to ``timeout``) until they have left; running workers finish on their own
        (they need nothing of ours)."""
        with contextlib.suppress(OSError):
            if os.stat(self.files.sock).st_ino == getattr(self, "sock_ino", None):
                os.unlink(self.files.sock)
        with contextlib.suppress(OSError):
            os.unlink(self.files.status)
        if hasattr(self, "ctrl_w"):
            self.listener.close()
            os.close(self.ctrl_w)  # the spares see POLLHUP and exit
            # Gone before us: whoever waits for our exit (`helper stop`, which then
            # removes a rootless helper's own cgroup) finds none of them still in it.
            deadline = time.monotonic() + timeout
            for pid in list(self.spares):
                left = deadline - time.monotonic()
                if pid in self.workers and left > 0:
                    select.select([self.workers[pid]], [], [], left)


def serve(directory: str, ident: str, lock_fd: int, idle: float | None = None,
          nice: int | None = None) -> int:
    """Run a helper. ``nice``: the first caller's nice value (the front end starts us
    SPARE_NICE below it, so that our start does not slow the call that started us;
    our workers take their caller's)."""
    if idle is None:
        try:
            idle = float(os.environ.get("OCIRUN_HELPER_IDLE", DEFAULT_IDLE))
        except ValueError:
            idle = DEFAULT_IDLE
    import fcntl

    try:
        fcntl.flock(lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held since the front end took it
    except OSError:
        return 1
    os.set_inheritable(lock_fd, False)
    from ocirun.helper import cgroup

    files = Files(directory, ident)
    with open("/proc/self/cgroup") as f:
        callers = f.read()  # (ours, inherited: the first caller's)
    try:
        own_cgroup = leave_caller_cgroups(ident)
    except cgroup.CannotLeave:
        # It would pin its caller's cgroup: no helper (its callers take the direct path).
        # The front end starts none from these cgroups for a while (frontend.c cgroups_refused).
        tmp = f"{files.nocgroup}.{os.getpid()}"
        with open(tmp, "w") as f:
            f.write(callers)
        os.rename(tmp, files.nocgroup)
        return 1
    with contextlib.suppress(FileNotFoundError):
        os.unlink(files.nocgroup)
    if own_cgroup:  # for `ocirun helper stop`: we cannot remove it ourselves (we are in it)
        with open(files.cgroup, "w") as f:
            f.write(own_cgroup + "\n")
    warm_up()
    context.warm_locales()
    if len(os.listdir("/proc/self/task")) != 1:
        return 1  # a thread (an import started one): fork and setns need one
    helper = Helper(files, lock_fd, idle, nice)
    helper.cgroup = own_cgroup
    helper.write_status()  # first: once the socket exists, so does the status
    try:
        helper.bind()
        helper.run()
    finally:
        helper.shut_down()
    return 0

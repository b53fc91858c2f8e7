"""One call, in a worker forked by the helper (docs/helper.md).

The worker reads the front end's REQUEST, checks that it may act for the caller,
adopts the caller's context (ocirun.helper.context), takes the commit token
(protocol.h: unless the front end, tired of waiting, took it first), answers
ACCEPT and runs exactly what the direct path runs (``ocirun.cli.main``)
with :class:`ocirun.helper.frontend.FrontEnd` as ocirun.parent: every clone,
wait and signal goes through the front end, which is the caller's own process.
Its output goes straight to the caller's fds. At the end it closes them and
sends EXIT with the status; the front end exits with it.
"""

from __future__ import annotations

import os
import socket
import struct
import sys

from ocirun.helper import context, protocol
from ocirun.helper.context import Refused

#: notify messages (worker -> helper, SOCK_SEQPACKET): kind, pid; TAKEN carries the
#: caller's pidfd when there is one (one message: each wakes the helper)
NOTE = struct.Struct("=ii")
NOTE_TAKEN = 1
MAX_FD = 2**31 - 1  # os.closerange's end: close_range(2) stops at the table's size


class Session:
    """What a worker gets from the helper that forked it."""

    def __init__(self, *, notify: int, stale: list[int], own: context.Own, nice: int = 0,
                 trace: str | None = None) -> None:
        self.notify = notify      # SOCK_SEQPACKET to the helper
        self.stale = stale        # readable when the installed code changed
        self.own = own
        self.nice = nice          # the helper's (a call runs at it until it has the caller's)
        self.trace = trace
        self.noted = False        # the helper knows we took a call        # OCIRUN_HELPER_TRACE of the helper: a file for timings


class _Trace:
    """OCIRUN_HELPER_TRACE=FILE (in the environment that starts the helper): one JSON
    line per call with the time to each step and the worker's CPU time and page
    faults (copy-on-write of the helper's memory), for docs/performance.md."""

    def __init__(self, path: str | None) -> None:
        import time

        self.fd = -1
        self.marks: list[tuple[str, float]] = [("accepted", time.perf_counter())]
        self.usage: list = []
        if path:
            import resource

            ru = resource.getrusage(resource.RUSAGE_SELF)
            self.usage.append(("accepted", round((ru.ru_utime + ru.ru_stime) * 1000, 2), ru.ru_minflt))
            try:
                self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            except OSError:
                self.fd = -1

    def mark(self, name: str) -> None:
        if self.fd >= 0:
            import resource
            import time

            ru = resource.getrusage(resource.RUSAGE_SELF)
            self.marks.append((name, time.perf_counter()))
            self.usage.append((name, round((ru.ru_utime + ru.ru_stime) * 1000, 2), ru.ru_minflt))

    def write(self, argv: list[bytes], refused: str | None = None) -> None:
        if self.fd < 0:
            return
        import json
        import resource

        ru = resource.getrusage(resource.RUSAGE_SELF)
        t0 = self.marks[0][1]
        line = {"argv": [os.fsdecode(a) for a in argv[1:6]],
                **({"refused": refused} if refused is not None else {}),
                **{n: round((t - t0) * 1000, 3) for n, t in self.marks[1:]},
                "cpu_ms": round((ru.ru_utime + ru.ru_stime) * 1000, 3), "minflt": ru.ru_minflt,
                "usage": self.usage}
        try:
            os.write(self.fd, (json.dumps(line) + "\n").encode())
        except OSError:
            pass


_trace = _Trace(None)


def note(fd: int, kind: int, pid: int, passed: int | None = None) -> None:
    s = socket.socket(fileno=os.dup(fd))
    try:
        anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, struct.pack("=i", passed))] if passed is not None else []
        s.sendmsg([NOTE.pack(kind, pid)], anc)
    except OSError:
        pass
    finally:
        s.close()


def _is_stale(fds: list[int]) -> bool:
    import select

    if not fds:
        return False
    return bool(select.select(fds, [], [], 0)[0])


def pid_of_pidfd(pidfd: int) -> int:
    from ocirun.linux.proc import read_proc

    for line in read_proc(f"/proc/self/fdinfo/{pidfd}").splitlines():
        if line.startswith(b"Pid:"):
            return int(line.split()[1])
    return -1


def handle(conn_fd: int, session: Session) -> None:
    """Serve one connection; never returns (os._exit)."""
    global _trace
    _trace = _Trace(session.trace)
    if os.getpriority(os.PRIO_PROCESS, 0) != session.nice:
        os.setpriority(os.PRIO_PROCESS, 0, session.nice)  # a spare waits below it
    conn = socket.socket(fileno=conn_fd)
    conn.settimeout(10)  # a peer that connects and sends nothing
    try:
        request = _receive(conn, session)
    except BaseException as e:
        if not session.noted:
            note(session.notify, NOTE_TAKEN, os.getpid())
        if isinstance(e, Refused):
            _refuse(conn, str(e))
        else:
            _trace.write([], refused=f"receiving the request: {e!r}")
        os._exit(0)
    _trace.mark("received")
    try:
        conn = _adopt(conn, request, session)
    except Refused as r:
        _refuse(conn, str(r), request.argv)
        os._exit(0)
    except (protocol.ProtocolError, OSError, ValueError) as e:
        _refuse(conn, f"adopting the caller's context: {e}", request.argv)
        os._exit(0)
    _run(conn, request)


class Request:
    def __init__(self) -> None:
        self.pid = 0
        self.pidfd = -1
        self.root = -1
        self.cwd = -1
        self.token = -1
        self.tty = -1
        self.table: list[int] = []
        self.received: list[int] = []
        self.argv: list[bytes] = []
        self.env: dict[str, str] = {}


def _receive(conn: socket.socket, session: Session) -> Request:
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    peer_pid, peer_uid, _ = struct.unpack("3i", creds)
    kind, payload, fds = protocol.recv_frame(conn)
    req = Request()
    try:
        if peer_uid != os.geteuid():
            raise Refused("not our user")
        if kind != protocol.REQUEST or len(payload) < protocol.REQUEST_HEAD.size:
            raise Refused("not a request")
        version, flags, argc, envc, nfds, _ = protocol.REQUEST_HEAD.unpack_from(payload)
        if version != protocol.PROTOCOL:
            session.stale.append(-1)  # another front end: this helper is out of date
            raise Refused(f"protocol {version}, not {protocol.PROTOCOL}")
        if len(fds) != 5:
            raise Refused("fds missing")
        req.pidfd, req.root, req.cwd, req.token, channel = fds
        # The caller's own fds, in the fd channel (protocol.h); not there: the front
        # end took them back (and the token with them): nothing to do.
        fds.remove(channel)
        ch = socket.socket(fileno=channel)
        try:
            fds_kind, _, passed = protocol.recv_frame(ch, nowait=True)
        except (BlockingIOError, protocol.ProtocolError):
            raise SystemExit(0) from None
        finally:
            ch.close()
        fds.extend(passed)
        tty = 1 if flags & protocol.REQUEST_HAS_TTY else 0
        if fds_kind != protocol.FDS or len(passed) != tty + nfds:
            raise Refused("fds missing")
        req.tty = passed[0] if tty else -1
        req.received = passed[tty:]
        at = protocol.REQUEST_HEAD.size
        req.table = list(struct.unpack_from(f"={nfds}i", payload, at))
        at += 4 * nfds
        req.argv, at = protocol.split_strings(payload, argc, at)
        env, at = protocol.split_strings(payload, envc, at)
        req.env = context.parse_env(env)
        # The pidfd is the peer's own (the front end opened it): pid reuse cannot fool us.
        req.pid = pid_of_pidfd(req.pidfd)
        if req.pid != peer_pid or req.pid <= 0:
            raise Refused("the pidfd is not the peer's")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    # The helper forks the next spare, and from now on kills us if the caller goes away.
    note(session.notify, NOTE_TAKEN, os.getpid(), req.pidfd)
    session.noted = True
    return req


def _refuse(conn: socket.socket, why: str, argv: list[bytes] | None = None) -> None:
    _trace.write(argv or [], refused=why)  # the direct path will run it: say why
    try:
        protocol.send_frame(conn, protocol.REFUSE, why.encode(errors="replace"))
    except OSError:
        pass


def _adopt(conn: socket.socket, req: Request, session: Session) -> socket.socket:
    """Check and take on the caller's context; ACCEPT. Returns the connection (at a
    new fd number, above the caller's fd table)."""
    own = session.own
    if _is_stale(session.stale) or -1 in session.stale:
        raise Refused("the installed ocirun changed")
    caller = context.Caller(req.pid)
    caller.check_credentials(own)
    context.check_python_env(req.env, own)
    cfg = context.StdioConfig(req.env)
    if cfg.fs_encoding != own.fs_encoding:
        raise Refused("the filesystem encoding would differ")
    flags = caller.namespaces_to_join(own)
    context.join(caller, req.pidfd, flags, req.root, req.cwd)
    from ocirun.linux import proc

    proc.CALLER = str(req.pid)  # its cgroups are the runtime's own (the default cgroup path)
    os.close(req.root)
    os.close(req.cwd)
    context.adopt_scheduling(caller)  # first: we waited at a low priority
    context.adopt_rlimits(caller)
    os.umask(caller.umask())
    # Our own fds: nothing of the helper's stays open (the notify socket, the
    # listener, the stale watch); the connection, the caller's pidfd and tty
    # move above the caller's fd table, which becomes ours.
    for fd in (session.notify, *[s for s in session.stale if s >= 0]):
        try:
            os.close(fd)
        except OSError:
            pass
    _trace.mark("checked_and_joined")
    keep = [conn.detach(), req.pidfd, req.token] + ([req.tty] if req.tty >= 0 else [])
    keep += [_trace.fd] if _trace.fd >= 0 else []
    moved = context.place_fds(req.table, req.received, keep, reserved_fds(req))
    conn = socket.socket(fileno=moved[0])
    req.pidfd, req.token = moved[1], moved[2]
    req.tty = moved[3] if req.tty >= 0 else -1
    if _trace.fd >= 0:
        _trace.fd = moved[-1]
    _trace.mark("fds")
    context.adopt_environment(req.env, cfg)
    _trace.mark("environment")
    context.adopt_signals(caller)
    _trace.mark("signals")
    # Commit: the token's byte is ours, or the front end took it (it runs the direct path).
    try:
        taken = os.read(req.token, 1)
    except BlockingIOError:
        taken = b""
    if not taken:
        os._exit(0)
    pidfd = os.pidfd_open(os.getpid())
    try:
        protocol.send_frame(conn, protocol.ACCEPT, b"", [pidfd])
    finally:
        os.close(pidfd)
    return conn


def reserved_fds(req: Request) -> int | None:
    """Above the numbers the call passes on: 3 + its socket-activation fds + its
    --preserve-fds, as the CLI will read them; None when the fast parser leaves the
    command line to argparse (help, abbreviations, errors)."""
    from ocirun import cli
    from ocirun.linux.fds import listen_fds

    try:
        ns = cli._fast_parse([os.fsdecode(a) for a in req.argv[1:]])
    except Exception:  # noqa: BLE001 - the CLI reports it; here only the range matters
        return None
    n = getattr(ns, "preserve_fds", 0)
    if ns is None or not isinstance(n, int) or n < 0:
        return None
    return 3 + listen_fds(req.env, req.pid) + n


def _run(conn: socket.socket, req: Request) -> None:
    from ocirun import cli, parent
    from ocirun.helper.frontend import FrontEnd

    conn.settimeout(None)
    os.close(req.token)
    _trace.mark("go")
    parent.current = FrontEnd(conn, tty=req.tty)
    # argv[0] stays the helper's: the launcher, as the direct path's
    sys.argv = [sys.argv[0], *(os.fsdecode(a) for a in req.argv[1:])]
    code = _main(cli, sys.argv[1:])
    _trace.mark("main")
    _finish(conn, code, req.argv)


def _main(cli, argv: list[str]) -> int:
    """cli.main, and what the interpreter would make of a SystemExit (argparse's -h)."""
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    if code is None:
        return 0
    if isinstance(code, int):
        return code & 0xFF
    try:
        sys.stderr.write(f"{code}\n")
    except Exception:  # noqa: BLE001
        pass
    return 1


def _finish(conn: socket.socket, code: int, argv: list[bytes]) -> None:
    """As cli.exit_now: flush (a failing flush is reported as the interpreter does
    at exit: "Exception ignored ...", status 120), close the caller's fds, EXIT."""
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        if stream is None:
            continue
        try:
            stream.flush()
        except Exception as e:  # noqa: BLE001
            code = 120
            try:
                sys.stderr.write(f"Exception ignored in: {stream!r}\n{type(e).__name__}: {e}\n")
                sys.stderr.flush()
            except Exception:  # noqa: BLE001
                pass
    mine = conn.fileno()
    _trace.mark("flushed")
    _trace.write(argv)
    # Every fd but the connection: the caller's, so that its pipes see EOF with
    # it (ours would go at our exit anyway). Two close_range calls.
    os.closerange(0, mine)
    os.closerange(mine + 1, MAX_FD)
    try:
        protocol.send_frame(conn, protocol.EXIT, struct.pack("=i", code))
    except OSError:
        pass
    os._exit(0)

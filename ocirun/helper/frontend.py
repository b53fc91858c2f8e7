"""A worker's :mod:`ocirun.parent`: the calling front end clones, waits and gets the
signals (docs/helper.md). The methods mirror :class:`ocirun.parent.Direct`; each
is one request to the front end over the call's connection and its REPLY.
"""

from __future__ import annotations

import errno as _errno
import os
import signal
import socket
import struct
from collections.abc import Mapping

from ocirun.helper import protocol
from ocirun.parent import CloneResult, Direct

#: Signals whose default action is to do nothing (raising them changes nothing).
_IGNORED_BY_DEFAULT = frozenset({signal.SIGCHLD, signal.SIGCONT, signal.SIGURG, signal.SIGWINCH})


class FrontEnd(Direct):
    def __init__(self, conn: socket.socket, tty: int = -1) -> None:
        self.conn = conn
        self.tty = tty
        #: requests whose REPLY was not read (an exception, e.g. KeyboardInterrupt,
        #: came while waiting): read before the next request
        self._unanswered: list[int] = []

    # ----------------------------------------------------------------- plumbing

    def _call(self, kind: int, payload: bytes = b"", fds: list[int] | tuple[int, ...] = ()
              ) -> tuple[tuple[int, int, int, int], list[int]]:
        self._drain()
        protocol.send_frame(self.conn, kind, payload, fds)
        self._unanswered.append(kind)
        reply, got = self._reply()
        self._unanswered.pop()
        return reply, got

    def _reply(self) -> tuple[tuple[int, int, int, int], list[int]]:
        kind, payload, fds = protocol.recv_frame(self.conn)
        if kind != protocol.REPLY or len(payload) != protocol.REPLY_BODY.size:
            for fd in fds:
                os.close(fd)
            raise protocol.ProtocolError(f"unexpected frame {kind} from the front end")
        return protocol.REPLY_BODY.unpack(payload), fds

    def _drain(self) -> None:
        while self._unanswered:
            kind = self._unanswered[0]
            reply, fds = self._reply()
            self._unanswered.pop(0)
            for fd in fds:
                os.close(fd)
            if kind == protocol.CLONE and reply[0] == 0 and reply[1] > 0:
                os.kill(reply[1], signal.SIGKILL)  # a stage-1 nobody drives: as a failed clone
                self.waitpid(reply[1], 0)

    # ------------------------------------------------------------------ parent

    def clone(self, kind: str, cplan, *, exec_fifo_fd: int = -1, cgroup_fd: int = -1,
              stdio: tuple[int, int, int] = (-1, -1, -1)) -> CloneResult:
        arena = cplan.arena
        relocs, slots = arena.tables()
        fds: list[int] = []

        def index(fd: int) -> int:
            if fd < 0:
                return -1
            if fd not in fds:
                fds.append(fd)
            return fds.index(fd)

        slot_bytes = b"".join(protocol.FD_SLOT.pack(off, index(fd), 0) for off, fd in slots)
        fifo, cgroup = index(exec_fifo_fd), index(cgroup_fd)
        io = [index(fd) for fd in stdio]
        process = cplan.plan.process
        floor = 3 + (process.preserve_fds if process else 0)
        head = protocol.CLONE_HEAD.pack(
            protocol.CLONE_SPAWN if kind == "spawn" else protocol.CLONE_EXEC, len(relocs), len(slots),
            floor, arena.base, arena.used, arena.offset_of(cplan.plan), fifo, cgroup, *io, 0)
        payload = b"".join((head, struct.pack(f"={len(relocs)}Q", *relocs), slot_bytes, arena.contents()))
        (rc, a, b, c), got = self._call(protocol.CLONE, payload, fds)
        if rc < 0:
            for fd in got:
                os.close(fd)
            return CloneResult(rc, -1, -1, 0, a, b)
        if len(got) != 1:
            raise protocol.ProtocolError("CLONE: no sync socket")
        return CloneResult(0, a, got[0], b, 0, 0)

    def posix_spawn(self, path: str, args: list[str], env: Mapping[str, str], *,
                    file_actions, setsigdef) -> int:
        fds: list[int] = []
        actions = []
        for action in file_actions:
            if action[0] == os.POSIX_SPAWN_DUP2:
                fds.append(action[1])
                actions.append(protocol.SPAWN_ACTION.pack(protocol.SPAWN_DUP2, len(fds) - 1, action[2], 0))
            elif action[0] == os.POSIX_SPAWN_CLOSE:
                actions.append(protocol.SPAWN_ACTION.pack(protocol.SPAWN_CLOSE, action[1], 0, 0))
            else:
                raise ValueError(f"file action {action[0]} is not supported")
        mask = 0
        for sig in setsigdef:
            mask |= 1 << (int(sig) - 1)
        envp = [f"{k}={v}" for k, v in env.items()]
        strings = b"".join(os.fsencode(s) + b"\0" for s in (path, *args, *envp))
        payload = protocol.SPAWN_HEAD.pack(len(actions), len(args), len(envp), 0, mask) + b"".join(actions) + strings
        (r, _, _, _), got = self._call(protocol.SPAWN, payload, fds)
        for fd in got:
            os.close(fd)
        if r < 0:
            raise OSError(-r, os.strerror(-r))
        return r

    def waitpid(self, pid: int, options: int) -> tuple[int, int]:
        # Our own children first (``ps``, a helper's child made in this process).
        local: tuple[int, int] | None = None
        try:
            local = os.waitpid(pid, options)
        except ChildProcessError:
            pass
        if local is not None and (pid > 0 or local[0] != 0):
            return local
        (r, status, _, _), got = self._call(protocol.WAITPID, struct.pack("=2i", pid, options))
        for fd in got:
            os.close(fd)
        if r < 0:
            if -r == _errno.ECHILD:
                if local is not None:
                    return local
                raise ChildProcessError(-r, os.strerror(-r))
            raise OSError(-r, os.strerror(-r))
        return r, status

    def open_tty(self) -> int:
        if self.tty < 0:
            raise OSError(_errno.ENXIO, os.strerror(_errno.ENXIO))
        return os.dup(self.tty)

    def set_child_subreaper(self) -> None:
        self._call(protocol.SUBREAPER)

    def forward_signals(self, signals) -> None:
        mask = 0
        for sig in signals:
            mask |= 1 << (int(sig) - 1)
        self._call(protocol.SIGNALS, struct.pack("=Q", mask))

    def raise_signal(self, signum: int) -> None:
        handler = signal.getsignal(signum)
        if callable(handler):
            signal.raise_signal(signum)  # ours, as in the direct path (KeyboardInterrupt)
        elif handler == signal.SIG_DFL and signum not in _IGNORED_BY_DEFAULT:
            # its default action is the caller's to take (it ends the front end; then us)
            self._call(protocol.RAISE, struct.pack("=i", signum))

"""The front end <-> helper frames (the C side and the table: ocirun/frontend/protocol.h).

One SOCK_STREAM connection per call; every message is a header (``FRAME``) sent
with its fds (SCM_RIGHTS), then its payload. tests/unit/test_helper_protocol.py
checks these numbers and layouts against the C header.
"""

from __future__ import annotations

import array
import socket
import struct

PROTOCOL = 2

REQUEST = 1
ACCEPT = 2
REFUSE = 3
FDS = 5
CLONE = 10
SPAWN = 11
WAITPID = 12
SUBREAPER = 13
SIGNALS = 14
RAISE = 15
REPLY = 20
EXIT = 21

REQUEST_HAS_TTY = 1
CLONE_SPAWN = 1
CLONE_EXEC = 2
SPAWN_DUP2 = 1
SPAWN_CLOSE = 2

#: struct ocirun_frame: type, nfds, len
FRAME = struct.Struct("=IIQ")
#: struct ocirun_request: version, flags, argc, envc, nfds, reserved
REQUEST_HEAD = struct.Struct("=6I")
#: struct ocirun_clone: kind, n_relocs, n_fd_slots, floor, base, arena_len, plan_offset,
#: fifo, cgroup, stdio[3], reserved
CLONE_HEAD = struct.Struct("=IIIiQQQiiiiii")
#: struct ocirun_fd_slot: offset, index, reserved
FD_SLOT = struct.Struct("=Qii")
#: struct ocirun_spawn: n_actions, argc, envc, reserved, sigdef
SPAWN_HEAD = struct.Struct("=IIIIQ")
#: struct ocirun_spawn_action: kind, a, b, reserved
SPAWN_ACTION = struct.Struct("=4i")
REPLY_BODY = struct.Struct("=4i")

MAX_FDS = 253  # SCM_MAX_FD


class ProtocolError(Exception):
    """The peer sent something this side does not understand, or went away."""


def send_frame(sock: socket.socket, kind: int, payload: bytes = b"", fds: list[int] | tuple[int, ...] = ()) -> None:
    header = FRAME.pack(kind, len(fds), len(payload))
    anc = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", fds).tobytes())] if fds else []
    sent = sock.sendmsg([header, payload], anc)
    total = len(header) + len(payload)
    if sent < total:
        rest = memoryview(header + payload)[sent:]
        sock.sendall(rest)


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got, socket.MSG_WAITALL)
        if k == 0:
            raise ProtocolError("connection closed")
        got += k
    return bytes(buf)


def recv_frame(sock: socket.socket, nowait: bool = False) -> tuple[int, bytes, list[int]]:
    """(type, payload, fds) of the next frame; the fds are CLOEXEC and ours to close.
    ProtocolError on EOF or a malformed frame; ``nowait``: BlockingIOError if none is there."""
    data, anc, flags, _ = sock.recvmsg(FRAME.size, socket.CMSG_SPACE(4 * MAX_FDS),
                                       socket.MSG_CMSG_CLOEXEC | (socket.MSG_DONTWAIT if nowait else 0))
    fds: list[int] = []
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            a = array.array("i")
            a.frombytes(payload[: len(payload) - len(payload) % 4])
            fds.extend(a)
    try:
        if not data:
            raise ProtocolError("connection closed")
        if flags & socket.MSG_CTRUNC:
            raise ProtocolError("too many fds")
        if len(data) < FRAME.size:
            data += _recv_exact(sock, FRAME.size - len(data))
        kind, nfds, length = FRAME.unpack(data)
        if nfds != len(fds) or length > 1 << 30:
            raise ProtocolError("malformed frame")
        payload = _recv_exact(sock, length) if length else b""
    except BaseException:
        for fd in fds:
            _close(fd)
        raise
    return kind, payload, fds


def _close(fd: int) -> None:
    import os

    try:
        os.close(fd)
    except OSError:
        pass


def split_strings(data: bytes, count: int, start: int = 0) -> tuple[list[bytes], int]:
    """``count`` NUL-terminated strings from data[start:]; and where they end."""
    out = []
    at = start
    for _ in range(count):
        end = data.index(b"\0", at)
        out.append(data[at:end])
        at = end + 1
    return out, at

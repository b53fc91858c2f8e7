"""The other end of a container's terminal, for the tests of every layer
(integration, robustness, the cgroup v2 guest's checkpoint tests): the console
socket's listener that receives the pty master, and reading the pty until a marker."""

from __future__ import annotations

import array
import os
import select
import socket
import time
from pathlib import Path


class ConsolePeer:
    """What containerd's shim or conmon does: listen on a unix socket, accept
    the runtime's connection, receive the pty master (SCM_RIGHTS) and its name."""

    def __init__(self, path: Path, timeout: float = 30.0):
        self.path = path
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self.sock.bind(str(path))
        self.sock.listen(1)

    def receive(self) -> tuple[bytes, int]:
        self.sock.settimeout(self.timeout)
        conn, _ = self.sock.accept()
        with conn:
            name, anc, _flags, _addr = conn.recvmsg(4096, socket.CMSG_SPACE(4 * 4),
                                                    socket.MSG_CMSG_CLOEXEC)
            rest = conn.recv(16)  # the runtime closes the connection after one message
        fds = array.array("i")
        for level, kind, data in anc:
            assert (level, kind) == (socket.SOL_SOCKET, socket.SCM_RIGHTS)
            fds.frombytes(data)
        assert len(fds) == 1, f"expected exactly one fd, got {list(fds)}"
        assert rest == b""
        return name, fds[0]

    def close(self) -> None:
        self.sock.close()


def read_until(master: int, marker: bytes, timeout: float = 30.0) -> bytes:
    """Read the pty master until ``marker`` has come (assert within ``timeout``)."""
    out = b""
    end = time.monotonic() + timeout
    while marker not in out:
        assert time.monotonic() < end, f"no {marker!r} from the pty; got: {out!r}"
        r, _, _ = select.select([master], [], [], 0.5)
        if r:
            out += os.read(master, 65536)
    return out

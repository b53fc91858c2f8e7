"""ocirun.console without containers: runc's flag checks, the console-socket
message, the proxy's copy loop on a pty pair made here."""

from __future__ import annotations

import array
import os
import socket
import tempfile

import pytest

from ocirun.console import (
    PTY_NAME,
    ConsoleSocket,
    KeepMaster,
    check_terminal_flags,
    copy_winsize,
    get_winsize,
    proxy,
)
from ocirun.errors import OcirunError, UsageError

ERR_TTY = "cannot allocate tty if runc will detach without setting console socket"
ERR_SOCK = "cannot use console socket if runc will not detach or allocate tty"


@pytest.mark.parametrize("terminal,detach,sock,expected", [
    (True, True, None, ERR_TTY),
    (True, True, "/s", None),
    (True, False, None, None),
    (True, False, "/s", ERR_SOCK),
    (False, True, "/s", ERR_SOCK),
    (False, False, "/s", ERR_SOCK),
    (False, True, None, None),
    (False, False, None, None),
])
def test_check_terminal_flags_is_runcs_check_terminal(terminal, detach, sock, expected):
    if expected is None:
        check_terminal_flags(terminal, detach=detach, console_socket=sock)
    else:
        with pytest.raises(UsageError) as e:
            check_terminal_flags(terminal, detach=detach, console_socket=sock)
        assert str(e.value) == expected


def test_console_socket_sends_the_name_and_the_fd_then_closes():
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        path = os.path.join(d, "s")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(1)
        master, slave = os.openpty()
        try:
            cs = ConsoleSocket(path)
            cs.deliver(1, master)
            conn, _ = listener.accept()
            data, anc, _, _ = conn.recvmsg(4096, socket.CMSG_SPACE(16))
            assert data == PTY_NAME == b"/dev/ptmx"
            fds = array.array("i")
            fds.frombytes(anc[0][2])
            assert len(fds) == 1
            got = os.fstat(fds[0])
            assert (got.st_dev, got.st_ino, got.st_rdev) == (
                os.fstat(master).st_dev, os.fstat(master).st_ino, os.fstat(master).st_rdev)
            os.close(fds[0])
            assert conn.recv(1) == b""  # closed after the one message
            conn.close()
        finally:
            listener.close()
            os.close(master)
            os.close(slave)


def test_console_socket_dial_error_reads_like_go():
    with tempfile.TemporaryDirectory(dir="/tmp") as d:
        path = os.path.join(d, "missing")
        with pytest.raises(OcirunError) as e:
            ConsoleSocket(path)
        assert str(e.value) == f"dial unix {path}: connect: no such file or directory"


def test_host_console_without_any_terminal_is_runcs_error():
    """No terminal on 0-2 and no controlling terminal: runc's initHostConsole error."""
    import subprocess
    import sys

    code = ("from ocirun.console import host_console\n"
            "from ocirun.errors import OcirunError\n"
            "try:\n    host_console()\nexcept OcirunError as e:\n    print(e)\n")
    p = subprocess.run([sys.executable, "-c", code], stdin=subprocess.DEVNULL, capture_output=True,
                       start_new_session=True, timeout=60)
    assert p.stdout.decode().strip() == "open /dev/tty: no such device or address"


def test_keep_master_holds_its_own_copy():
    master, slave = os.openpty()
    keep = KeepMaster()
    keep.deliver(1, master)
    os.close(master)
    assert keep.fd is not None
    os.write(keep.fd, b"x")  # still open after the original is closed
    keep.close()
    assert keep.fd is None
    os.close(slave)


def test_copy_winsize_sets_the_size_of_the_first_terminal():
    src_m, src_s = os.openpty()
    dst_m, dst_s = os.openpty()
    try:
        import fcntl
        import struct
        import termios

        fcntl.ioctl(src_m, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 81, 0, 0))
        r, w = os.pipe()  # not a terminal: skipped
        copy_winsize((r, src_s), dst_m)
        assert get_winsize(dst_s) == struct.pack("HHHH", 24, 81, 0, 0)
        os.close(r)
        os.close(w)
    finally:
        for fd in (src_m, src_s, dst_m, dst_s):
            os.close(fd)


def test_proxy_copies_both_ways_until_the_process_exits():
    """A child on a pty's slave echoes a line; the proxy feeds it from a pipe and
    copies its output to another pipe; it returns once the child exits."""
    master, slave = os.openpty()
    in_r, in_w = os.pipe()
    out_r, out_w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        os.dup2(slave, 0)
        os.dup2(slave, 1)
        line = os.read(0, 100)
        os.write(1, b"got:" + line.strip() + b"\n")
        os._exit(0)
    os.close(slave)
    pidfd = os.pidfd_open(pid)
    try:
        os.write(in_w, b"hello\n")
        os.close(in_w)
        proxy(master, pidfd, console=None, stdin=in_r, stdout=out_w)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        os.close(out_w)
        out = b""
        while chunk := os.read(out_r, 4096):
            out += chunk
        assert b"got:hello" in out
    finally:
        for fd in (master, pidfd, in_r, out_r):
            os.close(fd)

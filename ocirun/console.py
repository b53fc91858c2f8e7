"""Terminals on the runtime's side: the console socket and the foreground proxy.

The pty itself is made by the container's init in the container's own devpts
(``ocirun/shim/src/console.c``); the master arrives here over the sync socket
and goes to one of two places:

- ``--console-socket PATH`` (create, run -d): :class:`ConsoleSocket` connects
  before anything is created and sends the master as runc's
  ``utils.SendFile`` does: one ``sendmsg`` whose data is the pty's name
  (``/dev/ptmx``, what runc sends) and whose SCM_RIGHTS carries the fd. The
  peer (containerd's shim, conmon, ``recvtty``) reads the name and the fd.
- foreground ``run`` with no socket: :class:`KeepMaster` holds it and
  :func:`proxy` copies between our stdio and the master, with our terminal in
  raw mode and window-size changes passed on, until the process exits.

The checks of runc's ``checkTerminal`` (which flag combinations are errors)
are :func:`check_terminal_flags`.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager, nullcontext

from ocirun.errors import OcirunError, SetupError, UsageError

TYPE_CHECKING = False  # typing costs every call ~4 ms to import

if TYPE_CHECKING:
    import socket

# select, signal, socket, termios, fcntl, array are imported where used: `run`
# and `create` import this module for KeepMaster and the flag checks, and a
# container without a terminal should not pay for them (~8 ms).

#: The data of the message that carries the master: runc sends the master's
#: name (containerd/console's ``Name()`` of the file it opened, ``/dev/ptmx``).
PTY_NAME = b"/dev/ptmx"


def check_terminal_flags(terminal: bool, *, detach: bool, console_socket: str | None) -> None:
    """runc's checkTerminal: create always detaches; run detaches with -d."""
    if detach and terminal and not console_socket:
        raise UsageError("cannot allocate tty if runc will detach without setting console socket")
    if (not detach or not terminal) and console_socket:
        raise UsageError("cannot use console socket if runc will not detach or allocate tty")


def _dial_error(path: str, e: OSError) -> OcirunError:
    # Go's net.Dial wording, which runc prints: "dial unix PATH: connect: <strerror>"
    reason = os.strerror(e.errno).lower() if e.errno else str(e)
    return OcirunError(f"dial unix {path}: connect: {reason}")


class ConsoleSocket:
    """A connection to ``--console-socket``: made early (a bad path is an error
    before anything exists), used once to send the master, then closed."""

    def __init__(self, path: str) -> None:
        import socket

        self.path = path
        self._sock: socket.socket | None = socket.socket(socket.AF_UNIX,
                                                         socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            self._sock.connect(path)
        except OSError as e:
            self._sock.close()
            self._sock = None
            raise _dial_error(path, e) from None

    def deliver(self, _pid: int, master: int) -> None:
        """Send the master (SCM_RIGHTS, data = PTY_NAME) and close the connection.
        Our copy of the fd stays the caller's (the shim closes it)."""
        if self._sock is None:
            raise SetupError("send the pty master to the console socket", errno.EBADF)
        try:
            send_fd(self._sock, PTY_NAME, master)
        except OSError as e:
            raise SetupError(f"send the pty master to the console socket {self.path}",
                             e.errno or 0) from None
        finally:
            self.close()

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def send_fd(sock: socket.socket, name: bytes, fd: int) -> None:
    """runc's utils.SendFile: the name as the data, the fd in SCM_RIGHTS, one sendmsg."""
    import array
    import socket

    sock.sendmsg([name], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]).tobytes())])


def host_console() -> tuple[int, bool]:
    """The terminal a foreground proxy works with, found as runc's
    initHostConsole does: the first of stdin, stdout, stderr that is a
    terminal, else /dev/tty (our controlling terminal). Returns (fd, whether we
    opened it). Without any: runc's error, "open /dev/tty: no such device or
    address"."""
    for fd in (0, 1, 2):
        try:
            if os.isatty(fd):
                return fd, False
        except OSError:
            continue
    from ocirun import parent

    try:
        return parent.current.open_tty(), True
    except OSError as e:
        raise OcirunError(f"open /dev/tty: {os.strerror(e.errno or 0).lower()}") from None


class KeepMaster:
    """For a foreground ``run``/``exec``: our terminal (found before anything is
    created) and our own copy of the master (close-on-exec) once it arrives."""

    def __init__(self) -> None:
        self.fd: int | None = None
        self.console: int | None = None
        self._owned = False

    def find_console(self) -> None:
        if self.console is None:
            self.console, self._owned = host_console()

    def deliver(self, _pid: int, master: int) -> None:
        if self.fd is not None:
            os.close(self.fd)
        self.fd = os.dup(master)

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self._owned and self.console is not None:
            os.close(self.console)
        self.console, self._owned = None, False


# ----------------------------------------------------------------- the proxy

_WINSZ_SIZE = 8  # struct winsize: four unsigned shorts


def get_winsize(fd: int) -> bytes | None:
    import fcntl
    import termios

    try:
        return fcntl.ioctl(fd, termios.TIOCGWINSZ, bytes(_WINSZ_SIZE))
    except OSError:
        return None


def copy_winsize(src_fds: tuple[int, ...], master: int) -> None:
    """The size of the first terminal among src_fds, set on the master: the kernel
    then sends SIGWINCH to the container's foreground process group."""
    import fcntl
    import termios

    for fd in src_fds:
        ws = get_winsize(fd)
        if ws is not None:
            try:
                fcntl.ioctl(master, termios.TIOCSWINSZ, ws)
            except OSError:
                pass
            return


@contextmanager
def raw_mode(fd: int) -> Iterator[bool]:
    """Our terminal in raw mode (the container's pty does the line editing and
    echo); restored however we leave. Yields whether fd is a terminal."""
    import termios

    try:
        saved = termios.tcgetattr(fd)
    except (termios.error, OSError):
        yield False
        return
    import tty

    tty.setraw(fd, termios.TCSANOW)
    try:
        yield True
    finally:
        try:
            termios.tcsetattr(fd, termios.TCSADRAIN, saved)
        except termios.error:
            pass


def _write_all(fd: int, data: bytes) -> None:
    import select

    view = memoryview(data)
    while view:
        try:
            n = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [])
            continue
        view = view[n:]


def proxy(master: int, pidfd: int, *, console: int | None, stdin: int = 0, stdout: int = 1,
          forward: Callable[[int], None] | None = None,
          forwarded: tuple[int, ...] = ()) -> None:
    """Copy stdin → master and master → stdout until the process behind pidfd has
    exited and the master is drained. Our terminal ``console`` (host_console(),
    or None) is in raw mode meanwhile and its size is the pty's, also after
    each SIGWINCH; the other ``forwarded`` signals go to ``forward``. Returns
    once the process is gone (not reaped)."""
    import signal

    os.set_blocking(master, False)  # our own open file description (KeepMaster)
    handlers: dict[int, object] = {}
    sources = (console,) if console is not None else ()

    def on_signal(signum, _frame):
        if signum == signal.SIGWINCH:
            copy_winsize(sources, master)
        elif forward is not None:
            forward(signum)

    for sig in {signal.SIGWINCH, *forwarded}:
        handlers[sig] = signal.signal(sig, on_signal)
    try:
        with raw_mode(console) if console is not None else nullcontext(False):
            copy_winsize(sources, master)
            _copy_loop(master, pidfd, stdin, stdout)
    finally:
        for sig, old in handlers.items():
            signal.signal(sig, old)  # type: ignore[arg-type]


def _copy_loop(master: int, pidfd: int, stdin: int, stdout: int) -> None:
    import select

    poller = select.poll()
    poller.register(master, select.POLLIN)
    poller.register(pidfd, select.POLLIN)
    reading_stdin = True
    try:
        poller.register(stdin, select.POLLIN)
    except (OSError, ValueError):
        reading_stdin = False
    master_open = True

    def unregister(fd: int) -> None:
        try:
            poller.unregister(fd)
        except KeyError:  # not registered just now (waiting for POLLOUT)
            pass

    pending = b""  # read from stdin, not yet taken by the pty (its input queue is full)
    while True:
        events = dict(poller.poll())
        ev = events.get(master, 0)
        if master_open and ev & (select.POLLIN | select.POLLHUP | select.POLLERR):
            if not _pump_out(master, stdout):
                # Every slave fd is closed: nothing more comes and nothing can be
                # written; the process may still run (it closed its stdio).
                master_open = False
                pending = b""
                unregister(master)
                unregister(stdin)
                reading_stdin = False
        if master_open and ev & select.POLLOUT and pending:
            pending = _push_in(master, pending)
            if not pending:
                poller.modify(master, select.POLLIN)
                if reading_stdin:
                    poller.register(stdin, select.POLLIN)
        if reading_stdin and not pending and stdin in events:
            try:
                data = os.read(stdin, 65536)
            except OSError:
                data = b""
            if not data:
                # runc does not signal EOF to the pty either: the process just gets no more input.
                unregister(stdin)
                reading_stdin = False
            else:
                pending = _push_in(master, data)
                if pending:  # wait for POLLOUT; stop reading stdin meanwhile
                    unregister(stdin)
                    poller.modify(master, select.POLLIN | select.POLLOUT)
        if pidfd in events:
            if master_open:
                _drain(master, stdout)
            return


def _pump_out(master: int, stdout: int) -> bool:
    """Copy what the master has to stdout; False when the slave side is gone (EIO)."""
    while True:
        try:
            data = os.read(master, 65536)
        except BlockingIOError:
            return True
        except OSError as e:
            if e.errno == errno.EIO:
                return False
            raise
        if not data:
            return False
        _write_all(stdout, data)


def _push_in(master: int, data: bytes) -> bytes:
    """Write to the master what it takes now; return the rest."""
    try:
        n = os.write(master, data)
    except BlockingIOError:
        return data
    except OSError as e:
        if e.errno == errno.EIO:
            return b""
        raise
    return data[n:]


def _drain(master: int, stdout: int) -> None:
    """The process exited: what it wrote last is still in the pty."""
    try:
        _pump_out(master, stdout)
    except OSError:
        pass


__all__ = ["ConsoleSocket", "KeepMaster", "check_terminal_flags", "host_console", "proxy", "PTY_NAME",
           "send_fd"]

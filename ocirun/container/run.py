"""`ocirun run`: create + start; in the foreground, wait and return the exit status."""

from __future__ import annotations

import _signal as signal  # not `signal`: its enums cost ~7 ms per call
import os

from ocirun.cli import GlobalOptions
from ocirun.container.create import create_container, options_from_args
from ocirun.container.start import start_container

TYPE_CHECKING = False  # argparse is only for annotations (importing it costs a call ~5 ms)
if TYPE_CHECKING:
    import argparse

#: Signals a foreground `run` passes on to the container's init, as runc does.
FORWARDED = (
    signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
    signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT, signal.SIGALRM,
)


def cmd_run(g: GlobalOptions, args: argparse.Namespace) -> int:
    opts = options_from_args(args)
    if not args.detach and not args.no_subreaper:
        # Processes the container leaves behind (no pid namespace) are reparented
        # to us and reaped, not to the host's init.
        _set_child_subreaper()
    master = None
    forwarder = None
    if not args.detach:
        from ocirun.console import KeepMaster

        master = KeepMaster()  # process.terminal in the foreground: we proxy the pty
        # Before create: a signal sent once the process runs (it may say "ready"
        # before start returns) is queued and forwarded, not fatal to us.
        forwarder = SignalForwarder()
    try:
        try:
            record = create_container(g, args.id, opts, keep_master=master)
        except BaseException:
            if forwarder is not None:
                forwarder.restore()
            raise
        try:
            start_container(g, args.id)
        except BaseException:
            if forwarder is not None:
                forwarder.restore()
            _cleanup(g, args.id)
            raise
        if forwarder is None:
            return 0
        if master is not None and master.fd is not None:
            status = proxy_and_wait(record.pid, master, forwarder)
        else:
            status = _wait_forwarding_signals(record.pid, forwarder)
    finally:
        if master is not None:
            master.close()
    if not args.keep:
        _cleanup(g, args.id)
    return status


def proxy_and_wait(pid: int, master, forwarder: SignalForwarder) -> int:
    """Foreground with a terminal (``master``: a KeepMaster that has the pty):
    copy between our stdio and the pty until the process exits; SIGWINCH
    resizes the pty (runc does not forward it then). The process's status."""
    from ocirun.console import proxy

    assert master.fd is not None
    forwarder.attach(pid)
    if forwarder.pidfd is not None:
        proxy(master.fd, forwarder.pidfd, console=master.console, forward=forwarder.send,
              forwarded=tuple(s for s in FORWARDED if s != signal.SIGWINCH))
    return _wait_forwarding_signals(pid, forwarder)


class SignalForwarder:
    """Handlers for FORWARDED installed now; what arrives before attach() is
    queued and sent to the process once it is known."""

    def __init__(self) -> None:
        self.pidfd: int | None = None
        self.pending: list[int] = []
        self.old = {sig: signal.signal(sig, self._handle) for sig in FORWARDED}

    def _handle(self, signum, _frame) -> None:
        self.send(signum)

    def send(self, signum: int) -> None:
        if self.pidfd is None:
            self.pending.append(signum)
            return
        try:
            signal.pidfd_send_signal(self.pidfd, signum)
        except ProcessLookupError:
            pass

    def attach(self, pid: int) -> None:
        from ocirun.linux.proc import open_pidfd

        if self.pidfd is not None:
            return
        self.pidfd = open_pidfd(pid, None)
        pending, self.pending = self.pending, []
        for signum in pending:
            self._handle(signum, None)

    def restore(self) -> None:
        for sig, old in self.old.items():
            signal.signal(sig, old)
        pending, self.pending = self.pending, []
        for signum in pending:  # not forwarded: act on it as if it had come now
            signal.raise_signal(signum)


def _wait_forwarding_signals(pid: int, forwarder: SignalForwarder | None = None) -> int:
    if forwarder is None:
        forwarder = SignalForwarder()
    forwarder.attach(pid)
    pidfd = forwarder.pidfd
    while True:
        try:
            _, wstatus = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
        except ChildProcessError:
            return 255
    forwarder.pidfd = None
    if pidfd is not None:
        os.close(pidfd)
    # reap anything else that was reparented to us as subreaper
    while True:
        try:
            if os.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break
    if os.WIFSIGNALED(wstatus):
        return 128 + os.WTERMSIG(wstatus)
    return os.WEXITSTATUS(wstatus)


def _cleanup(g: GlobalOptions, container_id: str) -> None:
    from ocirun.container.delete import delete_container

    try:
        delete_container(g, container_id, force=True)
    except Exception:  # noqa: BLE001 - the run's own status or error matters more
        pass


def _set_child_subreaper() -> None:
    # through the shim, which create loads anyway (ctypes would cost ~3 ms more)
    from ocirun.shim._shim import lib

    lib.ocirun_set_child_subreaper()

"""A foreground `run` or `exec`: wait for the process, passing our signals on
(and, with a terminal, proxying the pty); the process's exit status."""

from __future__ import annotations

import _signal as signal  # not `signal`: its enums cost ~7 ms per call
import os

from ocirun import parent

#: Signals a foreground `run`/`exec` passes on to the process, as runc does.
FORWARDED = (
    signal.SIGHUP, signal.SIGINT, signal.SIGQUIT, signal.SIGTERM, signal.SIGUSR1,
    signal.SIGUSR2, signal.SIGWINCH, signal.SIGCONT, signal.SIGALRM,
)


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
    return wait_forwarding_signals(pid, forwarder)


class SignalForwarder:
    """Handlers for FORWARDED installed now; what arrives before attach() is
    queued and sent to the process once it is known. (In a helper's worker the
    caller's front end passes the caller's signals on to these handlers.)"""

    def __init__(self) -> None:
        self.pidfd: int | None = None
        self.pending: list[int] = []
        self.old = {sig: signal.signal(sig, self._handle) for sig in FORWARDED}
        parent.current.forward_signals(FORWARDED)

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
        parent.current.forward_signals(())
        for sig, old in self.old.items():
            signal.signal(sig, old)
        pending, self.pending = self.pending, []
        for signum in pending:  # not forwarded: act on it as if it had come now
            parent.current.raise_signal(signum)


def wait_in_foreground(pid: int, master, forwarder: SignalForwarder) -> int:
    """The foreground wait of run and restore: through the pty proxy when the
    process has a terminal (``master`` holds it), else forwarding signals."""
    if master is not None and master.fd is not None:
        return proxy_and_wait(pid, master, forwarder)
    return wait_forwarding_signals(pid, forwarder)


def wait_forwarding_signals(pid: int, forwarder: SignalForwarder | None = None) -> int:
    if forwarder is None:
        forwarder = SignalForwarder()
    forwarder.attach(pid)
    pidfd = forwarder.pidfd
    while True:
        try:
            _, wstatus = parent.waitpid(pid, 0)
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
            if parent.waitpid(-1, os.WNOHANG)[0] == 0:
                break
        except ChildProcessError:
            break
    if os.WIFSIGNALED(wstatus):
        return 128 + os.WTERMSIG(wstatus)
    return os.WEXITSTATUS(wstatus)

"""`ocirun run`: create + start; in the foreground, wait and return the exit status."""

from __future__ import annotations

import os
import signal

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
    record = create_container(g, args.id, opts)
    try:
        start_container(g, args.id)
    except BaseException:
        _cleanup(g, args.id)
        raise
    if args.detach:
        return 0
    status = _wait_forwarding_signals(record.pid)
    if not args.keep:
        _cleanup(g, args.id)
    return status


def _wait_forwarding_signals(pid: int) -> int:
    from ocirun.linux.proc import open_pidfd

    pidfd = open_pidfd(pid, None)

    def forward(signum, _frame):
        if pidfd is not None:
            try:
                signal.pidfd_send_signal(pidfd, signum)
            except ProcessLookupError:
                pass

    for sig in FORWARDED:
        signal.signal(sig, forward)
    while True:
        try:
            _, wstatus = os.waitpid(pid, 0)
            break
        except InterruptedError:
            continue
        except ChildProcessError:
            return 255
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
    import ctypes

    PR_SET_CHILD_SUBREAPER = 36
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)

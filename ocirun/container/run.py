"""`ocirun run`: create + start; in the foreground, wait and return the exit status."""

from __future__ import annotations

from ocirun.cli import GlobalOptions
from ocirun.container.create import create_container, options_from_args
from ocirun.container.foreground import SignalForwarder, wait_in_foreground
from ocirun.container.start import start_container

TYPE_CHECKING = False  # argparse is only for annotations (importing it costs a call ~5 ms)
if TYPE_CHECKING:
    import argparse


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
        status = wait_in_foreground(record.pid, master, forwarder)
    finally:
        if master is not None:
            master.close()
    if not args.keep:
        _cleanup(g, args.id)
    return status


def _cleanup(g: GlobalOptions, container_id: str) -> None:
    from ocirun.container.delete import delete_container

    try:
        delete_container(g, container_id, force=True)
    except Exception:  # noqa: BLE001 - the run's own status or error matters more
        pass


def _set_child_subreaper() -> None:
    from ocirun import parent

    parent.current.set_child_subreaper()

"""`ocirun kill`: signal the init (through a pidfd) or, with --all, every process."""

from __future__ import annotations

import os
from _signal import SIGKILL  # not `signal`: its enums cost every call ~6 ms to import

from ocirun.cli import GlobalOptions
from ocirun.container.common import cgroup_of, open_store, status_of
from ocirun.errors import InvalidStateError

TYPE_CHECKING = False  # argparse is only for annotations (importing it costs a call ~5 ms)
if TYPE_CHECKING:
    import argparse


def cmd_kill(g: GlobalOptions, args: argparse.Namespace) -> int:
    from ocirun.linux.proc import parse_signal

    kill_container(g, args.id, parse_signal(args.signal), all_processes=args.all)
    return 0


def kill_container(g: GlobalOptions, container_id: str, sig: int, *, all_processes: bool = False) -> None:
    from ocirun.linux.proc import open_pidfd, send_signal

    store = open_store(g)
    with store.lock(container_id):
        record = store.load(container_id)
        status = status_of(store, record)
        if status not in ("created", "running", "paused"):
            raise InvalidStateError("container not running")
        if all_processes:
            cg = cgroup_of(record)
            if cg is not None and cg.version != 0:
                signal_all(cg, sig)
                return
            if cg is not None:  # no cgroup of its own (rootless): its pid namespace
                from ocirun.cgroups.base import kill_pids
                from ocirun.container.common import container_pids

                kill_pids(container_pids(record, cg), sig)
                return
        pidfd = open_pidfd(record.pid, record.init_start_time)
        if pidfd is None:
            raise InvalidStateError("container not running")
        try:
            send_signal(pidfd, sig)
        except ProcessLookupError:
            raise InvalidStateError("container not running") from None
        finally:
            os.close(pidfd)


def signal_all(cg, sig: int) -> None:
    """Signal every process in the container's cgroup. A frozen cgroup is thawed
    after a SIGKILL so the kill can take effect (runc does the same)."""
    from ocirun.cgroups.base import kill_pids

    kill_pids(cg.pids(), sig)
    if sig == SIGKILL and cg.is_frozen():
        cg.thaw()

"""`ocirun events`: container stats and OOM notifications, as runc prints them.

``--stats``: one ``{"type":"stats","id":ID,"data":{...}}`` line and exit.
Otherwise a stats line every ``--interval`` (Go duration, default 5s) and an
``{"type":"oom","id":ID}`` line for each OOM kill (v1: memory.oom_control
through an eventfd; v2: memory.events), until the container stops.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import sys
import time

from ocirun.cli import GlobalOptions
from ocirun.container.common import cgroup_of, open_store, status_of
from ocirun.errors import InvalidStateError, UsageError


def _emit(event: dict) -> None:
    sys.stdout.write(json.dumps(event, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def cmd_events(g: GlobalOptions, args: argparse.Namespace) -> int:
    from ocirun.cgroups.convert import parse_go_duration

    try:
        interval = parse_go_duration(args.interval)
    except ValueError as exc:
        raise UsageError(f'invalid value "{args.interval}" for flag -interval: {exc}') from None
    if interval <= 0:
        raise UsageError("duration interval must be greater than 0")
    store = open_store(g)
    record = store.load(args.id)
    if status_of(store, record) == "stopped":
        raise InvalidStateError(f"container with id {args.id} is not running")
    cg = cgroup_of(record)
    if cg is None or cg.version == 0:
        from ocirun.container.common import no_cgroup_error

        raise no_cgroup_error(args.id, cg, "report statistics and OOM events of")
    if args.stats:
        _emit({"type": "stats", "id": args.id, "data": cg.stats()})
        return 0
    stream(args.id, record, cg, interval)
    return 0


def stream(container_id: str, record, cg, interval: float) -> None:
    from ocirun.linux.proc import open_pidfd

    pidfd = open_pidfd(record.pid, record.init_start_time)
    if pidfd is None:
        raise InvalidStateError(f"container with id {container_id} is not running")
    try:
        watch = cg.oom_watch()
    except Exception:  # noqa: BLE001 - no OOM events on this host; stats still flow
        watch = None
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    if watch is not None:
        poller.register(watch.fileno(), select.POLLIN | select.POLLPRI)
    next_stats = time.monotonic() + interval
    try:
        while True:
            timeout = max(0.0, next_stats - time.monotonic())
            ready = dict(poller.poll(int(timeout * 1000) + 1))
            if watch is not None and watch.fileno() in ready:
                for _ in range(watch.drain()):
                    _emit({"type": "oom", "id": container_id})
            if pidfd in ready:
                if watch is not None:
                    for _ in range(watch.drain()):
                        _emit({"type": "oom", "id": container_id})
                return  # the container stopped
            if time.monotonic() >= next_stats:
                try:
                    _emit({"type": "stats", "id": container_id, "data": cg.stats()})
                except OSError as exc:
                    _emit({"type": "error", "id": container_id, "data": str(exc)})
                next_stats += interval
    finally:
        if watch is not None:
            watch.close()
        os.close(pidfd)

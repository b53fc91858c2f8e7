"""`ocirun pause` / `ocirun resume`: freeze or thaw every process of a container.

v1: freezer.state FROZEN / THAWED; v2: cgroup.freeze 1 / 0. Both wait until
the kernel reports the new state, so `state` says "paused" as soon as
`pause` returns (the status derivation asks the cgroup whether it is frozen).
"""

from __future__ import annotations

import argparse

from ocirun.cli import GlobalOptions
from ocirun.container.common import cgroup_of, open_store, status_of


def cmd_pause(g: GlobalOptions, args: argparse.Namespace) -> int:
    set_frozen(g, args.id, True)
    return 0


def cmd_resume(g: GlobalOptions, args: argparse.Namespace) -> int:
    set_frozen(g, args.id, False)
    return 0


def set_frozen(g: GlobalOptions, container_id: str, frozen: bool) -> None:
    from ocirun.state import require

    store = open_store(g)
    with store.lock(container_id):
        record = store.load(container_id)
        require(status_of(store, record), "pause" if frozen else "resume", container_id)
        cg = cgroup_of(record)
        if cg is None or cg.version == 0:
            from ocirun.container.common import no_cgroup_error

            raise no_cgroup_error(container_id, cg, ("pause" if frozen else "resume")
                                  + " (the cgroup freezer stops and resumes its processes)")
        if frozen:
            cg.freeze()
        else:
            cg.thaw()

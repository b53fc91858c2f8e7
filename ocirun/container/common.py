"""Shared by the lifecycle verbs: open the store, load a container, refresh its status."""

from __future__ import annotations

from ocirun.cli import GlobalOptions


def open_store(g: GlobalOptions):
    from ocirun.store import Store

    return Store(g.root)


def is_frozen(record) -> bool:
    cg = (record.runtime or {}).get("cgroup")
    if not cg:
        return False
    from ocirun.cgroups import manager_from_record

    return manager_from_record(cg).is_frozen()


def status_of(store, record) -> str:
    from ocirun.state import current_status

    return current_status(store, record, is_frozen=is_frozen)


def cgroup_of(record):
    cg = (record.runtime or {}).get("cgroup")
    if not cg:
        return None
    from ocirun.cgroups import manager_from_record

    return manager_from_record(cg)

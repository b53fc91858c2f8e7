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


def container_pids(record, cg=None) -> list[int]:
    """Every process of the container: its cgroup's, or, for a container without a
    cgroup of its own (rootless: ocirun.cgroups.none), those in its init's pid
    namespace when it has one of its own, else the init alone."""
    cg = cg if cg is not None else cgroup_of(record)
    if cg is not None and cg.version != 0:
        return cg.pids()
    from ocirun.linux.proc import start_time

    if not record.pid or start_time(record.pid) != record.init_start_time:
        return []
    return pids_in_pid_namespace(record.pid)


def pids_in_pid_namespace(init: int) -> list[int]:
    """The processes whose pid namespace is ``init``'s, if that is not ours (else [init])."""
    import os

    try:
        target = os.stat(f"/proc/{init}/ns/pid")
        mine = os.stat("/proc/self/ns/pid")
    except OSError:
        return []
    if (target.st_dev, target.st_ino) == (mine.st_dev, mine.st_ino):
        return [init]
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            st = os.stat(f"/proc/{entry}/ns/pid")
        except OSError:  # gone, or not ours to look at
            continue
        if (st.st_dev, st.st_ino) == (target.st_dev, target.st_ino):
            found.append(int(entry))
    return sorted(found)


def no_cgroup_error(container_id: str, cg, what: str):
    """InvalidStateError for a verb that needs the container's cgroup (pause, resume,
    update, events) when it has none: why (rootless), in one message."""
    from ocirun.errors import InvalidStateError

    why = getattr(cg, "reason", "") if cg is not None else ""
    reason = f" ({why})" if why else ""
    return InvalidStateError(f"cannot {what} container {container_id}: it has no cgroup of its own{reason}")

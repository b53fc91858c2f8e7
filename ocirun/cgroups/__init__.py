"""Cgroups: one manager interface, a v1 and a v2 driver, chosen by what the host mounts.

Knows nothing of containers: a manager is made from a cgroups path (as in
config.json's ``linux.cgroupsPath``) and a default name, and is saved to /
restored from a plain dict so later commands need not recompute anything.
See docs/cgroups.md for what is applied where.
"""

from __future__ import annotations

import os

from ocirun.cgroups.base import CgroupSettingError
from ocirun.cgroups.hierarchy import CGROUP2_ROOT, Host, detect_mode

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirun.cgroups.manager import Manager

__all__ = [
    "Manager", "Host", "detect_mode", "new_manager", "manager_from_record", "CGROUP2_ROOT",
    "unsupported_resources", "CgroupSettingError", "SYSTEMD_RUNNING",
]

#: present when systemd is the init (sd_booted(3))
SYSTEMD_RUNNING = "/run/systemd/system"


def unsupported_resources(resources, host: Host | None = None) -> list:
    """Problems for linux.resources entries that this host's hierarchy cannot express
    (found before anything is created). Files a kernel lacks are found when written."""
    from ocirun.errors import Problem

    if detect_mode(host) == "unified":
        from ocirun.cgroups.v2 import v2_problems

        return [Problem(path, why) for path, why in v2_problems(resources)]
    problems = []
    if resources.unified:
        problems.append(Problem("$.linux.resources.unified",
                                "cgroup v2 settings cannot be applied: this host uses cgroup v1"))
    return problems


def new_manager(cgroups_path: str | None, default_name: str, systemd: bool = False,
                host: Host | None = None, rootless: bool = False) -> Manager:
    """The manager for a new container: ``cgroups_path`` as runc's cgroupfs driver
    reads it (absolute: from each hierarchy's root; relative or empty: below the
    runtime's own cgroup in each hierarchy, empty meaning ``default_name``).
    ``systemd``: the global --systemd-cgroup flag. ``rootless`` (ocirun.rootless):
    see :func:`_rootless_manager`."""
    if systemd:
        if not os.path.isdir(SYSTEMD_RUNNING):
            raise CgroupSettingError(
                "systemd cgroup driver not available: systemd is not running on this host "
                f"({SYSTEMD_RUNNING} does not exist); run without --systemd-cgroup"
            )
        from ocirun.errors import NotImplementedYet

        raise NotImplementedYet("the systemd cgroup driver (--systemd-cgroup)")
    host = host or Host.current()
    path = cgroups_path or default_name
    manager: Manager
    if host.mode() == "unified":
        from ocirun.cgroups.v2 import V2Manager

        manager = V2Manager.for_path(path, host)
    else:
        from ocirun.cgroups.v1 import V1Manager

        manager = V1Manager.for_path(path, host)
    if rootless:
        manager = _rootless_manager(manager, host, explicit=bool(cgroups_path))
    return manager


def _rootless_manager(manager, host: Host, *, explicit: bool):
    """runc's rootless cgroups: a cgroup the user may not create is done without,
    unless config.json names one (``explicit``: then create's error stands, as in
    runc). v1: each hierarchy where the user may not create it is skipped (the
    container stays in the caller's cgroup there); with none left, or on v2, the
    container has no cgroup (ocirun.cgroups.none.NoCgroup) and resources it asks
    for are an error naming them. Device rules are best effort, as runc's (no
    device nodes can be made in the user namespace anyway)."""
    manager.rootless = True
    if explicit:
        return manager
    uid = os.geteuid()
    if manager.version == 2:
        problem = _not_writable(manager.path, manager.root)
        if problem is None:
            return manager
        reason = (f"ocirun runs rootless and uid {uid} may not create cgroups in {problem}: no cgroup "
                  f"subtree is delegated to it")
        return _none(host, reason)
    skipped: dict[str, str] = {}
    for key, path in list(manager.paths.items()):
        problem = _not_writable(path, manager.mountpoints[key])
        if problem is not None:
            skipped[key] = problem
            del manager.paths[key]
    if not manager.paths:
        where = ", ".join(sorted(skipped.values())) if len(skipped) <= 2 else \
            f"{sorted(skipped.values())[0]} and the other hierarchies"
        reason = (f"ocirun runs rootless and uid {uid} may not create cgroups in {where}: on a cgroup v1 "
                  f"host only root creates cgroups")
        return _none(host, reason)
    manager.skipped = {k: f"ocirun runs rootless and uid {uid} may not create cgroups in {v}"
                       for k, v in skipped.items()}
    return manager


def _not_writable(path: str, stop_at: str) -> str | None:
    """None if the user may make (or use) the cgroup directory ``path``; else the
    directory that stops it."""
    if os.path.isdir(path):
        procs = os.path.join(path, "cgroup.procs")
        return None if os.access(procs, os.W_OK) else path
    parent = os.path.dirname(path)
    while parent != stop_at and len(parent) > len(stop_at) and not os.path.isdir(parent):
        parent = os.path.dirname(parent)
    return None if os.access(parent, os.W_OK | os.X_OK) else parent


def _none(host: Host, reason: str):
    """The NoCgroup of a container on this host: it shows the caller's own cgroups."""
    from ocirun.cgroups.hierarchy import resolve
    from ocirun.cgroups.none import NoCgroup

    own = host.own_cgroups()
    if host.mode() == "unified":
        mountpoint, mount_root = host.v2_mount()
        return NoCgroup(reason, 2, {"unified": resolve(mountpoint, mount_root, "/", own.get("unified", "/"))},
                        {"unified": mountpoint})
    paths, mountpoints = {}, {}
    for h in host.v1_hierarchies():
        paths[h.key] = resolve(h.mountpoint, h.root, "/", own.get(h.key, "/"))
        mountpoints[h.key] = h.mountpoint
    return NoCgroup(reason, 1, paths, mountpoints)


def manager_from_record(record: dict) -> Manager:
    if record.get("version") == 0:
        from ocirun.cgroups.none import NoCgroup

        return NoCgroup.from_record(record)
    if record.get("version") == 2:
        from ocirun.cgroups.v2 import V2Manager

        return V2Manager.from_record(record)
    from ocirun.cgroups.v1 import V1Manager

    return V1Manager.from_record(record)

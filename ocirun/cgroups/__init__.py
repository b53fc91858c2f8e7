"""Cgroups: one manager interface, a v1 and a v2 driver, chosen by what the host mounts.

Knows nothing of containers: a manager is made from a cgroups path (as in
config.json's ``linux.cgroupsPath``) and a default name, and is saved to /
restored from a plain dict so later commands need not recompute anything.
"""

from __future__ import annotations

from ocirun.cgroups.base import Manager
from ocirun.cgroups.hierarchy import CGROUP2_ROOT, detect_mode

__all__ = [
    "Manager", "detect_mode", "new_manager", "manager_from_record", "CGROUP2_ROOT",
    "unsupported_resources",
]


def unsupported_resources(resources) -> list:
    """Problems for linux.resources entries this cgroup code cannot apply yet."""
    from ocirun.errors import Problem

    problems = []
    for name, key in (("memory", "memory"), ("cpu", "cpu"), ("pids", "pids"),
                      ("block_io", "blockIO"), ("hugepage_limits", "hugepageLimits"),
                      ("network", "network"), ("rdma", "rdma"), ("unified", "unified")):
        if getattr(resources, name):
            problems.append(Problem(f"$.linux.resources.{key}", "not implemented yet"))
    if resources.devices and detect_mode() == "unified":
        problems.append(Problem("$.linux.resources.devices", "device rules on cgroup v2 are not implemented yet"))
    return problems


def new_manager(cgroups_path: str | None, default_name: str) -> Manager:
    """The manager for a new container: ``cgroups_path`` as runc's cgroupfs driver
    reads it (absolute: from each hierarchy's root; relative or empty: below the
    runtime's own cgroup in each hierarchy, empty meaning ``default_name``)."""
    path = cgroups_path or default_name
    if detect_mode() == "unified":
        from ocirun.cgroups.v2 import V2Manager

        return V2Manager.for_path(path)
    from ocirun.cgroups.v1 import V1Manager

    return V1Manager.for_path(path)


def manager_from_record(record: dict) -> Manager:
    if record.get("version") == 2:
        from ocirun.cgroups.v2 import V2Manager

        return V2Manager.from_record(record)
    from ocirun.cgroups.v1 import V1Manager

    return V1Manager.from_record(record)

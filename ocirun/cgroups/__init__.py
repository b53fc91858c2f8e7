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
                host: Host | None = None) -> Manager:
    """The manager for a new container: ``cgroups_path`` as runc's cgroupfs driver
    reads it (absolute: from each hierarchy's root; relative or empty: below the
    runtime's own cgroup in each hierarchy, empty meaning ``default_name``).
    ``systemd``: the global --systemd-cgroup flag."""
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
    if host.mode() == "unified":
        from ocirun.cgroups.v2 import V2Manager

        return V2Manager.for_path(path, host)
    from ocirun.cgroups.v1 import V1Manager

    return V1Manager.for_path(path, host)


def manager_from_record(record: dict) -> Manager:
    if record.get("version") == 2:
        from ocirun.cgroups.v2 import V2Manager

        return V2Manager.from_record(record)
    from ocirun.cgroups.v1 import V1Manager

    return V1Manager.from_record(record)

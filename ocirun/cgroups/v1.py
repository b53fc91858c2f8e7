"""cgroup v1 driver: one directory per hierarchy (and the hybrid cgroup2 mount)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ocirun.cgroups import base
from ocirun.cgroups.hierarchy import own_cgroups, resolve, v1_hierarchies
from ocirun.errors import CgroupError


@dataclass
class V1Manager:
    #: controllers key ("cpu", "memory", "name=systemd", "unified") -> directory
    paths: dict[str, str]
    #: mountpoint of each hierarchy, for removing only what lies below it
    mountpoints: dict[str, str]
    created: list[str] = field(default_factory=list)
    version: int = 1

    @classmethod
    def for_path(cls, path: str) -> V1Manager:
        own = own_cgroups()
        paths: dict[str, str] = {}
        mountpoints: dict[str, str] = {}
        for h in v1_hierarchies():
            own_path = own.get(h.key, "/")
            paths[h.key] = resolve(h.mountpoint, h.root, own_path, path)
            mountpoints[h.key] = h.mountpoint
        return cls(paths, mountpoints)

    @classmethod
    def from_record(cls, record: dict) -> V1Manager:
        return cls(dict(record["paths"]), dict(record["mountpoints"]), list(record.get("created", [])))

    def to_record(self) -> dict:
        return {"version": 1, "paths": self.paths, "mountpoints": self.mountpoints, "created": self.created}

    def create(self) -> None:
        for key, path in self.paths.items():
            made = base.make_dirs(path, self.mountpoints[key])
            self.created.extend(made)
            if "cpuset" in key.split(","):
                for d in made:
                    _inherit_cpuset(d)

    def set_device_rules(self, rules) -> None:
        """Write the rules in order; a leading deny-all ("a") resets the list first."""
        path = self.paths.get("devices")
        if path is None:
            raise CgroupError("/sys/fs/cgroup/devices", "find the devices hierarchy at")
        for rule in rules:
            name = "devices.allow" if rule.allow else "devices.deny"
            base.write_file(os.path.join(path, name), rule.v1_line())

    def place(self, pid: int) -> None:
        for path in self.paths.values():
            base.write_file(os.path.join(path, "cgroup.procs"), str(pid))

    def clone_into_fd(self) -> int | None:
        return None

    def pids(self) -> list[int]:
        # the pids hierarchy (or memory, or any) holds every process of the container
        for key in ("pids", "memory", "freezer"):
            if key in self.paths:
                return base.read_pids(self.paths[key])
        path = next(iter(self.paths.values()), None)
        return base.read_pids(path) if path else []

    def is_frozen(self) -> bool:
        path = self.paths.get("freezer")
        if not path:
            return False
        try:
            with open(os.path.join(path, "freezer.state")) as f:
                return f.read().strip() in ("FROZEN", "FREEZING")
        except OSError:
            return False

    def destroy(self) -> None:
        freezer = self.paths.get("freezer")
        if freezer and self.is_frozen():
            # a frozen task cannot die; thaw so SIGKILL takes effect
            base.kill_pids(self.pids())
            base.write_file(os.path.join(freezer, "freezer.state"), "THAWED")
        base.kill_pids(self.pids())
        base.remove_dirs(self.created)


def _inherit_cpuset(directory: str) -> None:
    """A new v1 cpuset cgroup starts with no cpus and mems; give it its parent's
    (runc does the same), or no task can join it."""
    parent = os.path.dirname(directory)
    for name in ("cpuset.cpus", "cpuset.mems"):
        try:
            with open(os.path.join(directory, name)) as f:
                if f.read().strip():
                    continue
            with open(os.path.join(parent, name)) as f:
                value = f.read().strip()
        except OSError as err:
            raise CgroupError(os.path.join(directory, name), "read", err) from None
        base.write_file(os.path.join(directory, name), value)

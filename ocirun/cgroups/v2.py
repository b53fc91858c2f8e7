"""cgroup v2 driver: one directory in the unified hierarchy."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ocirun.cgroups import base
from ocirun.cgroups.hierarchy import CGROUP2_ROOT, own_cgroups, resolve


@dataclass
class V2Manager:
    path: str
    created: list[str] = field(default_factory=list)
    version: int = 2

    @classmethod
    def for_path(cls, path: str) -> V2Manager:
        own = own_cgroups().get("unified", "/")
        return cls(resolve(CGROUP2_ROOT, "/", own, path))

    @classmethod
    def from_record(cls, record: dict) -> V2Manager:
        return cls(record["path"], list(record.get("created", [])))

    def to_record(self) -> dict:
        return {"version": 2, "path": self.path, "created": self.created}

    def create(self) -> None:
        self.created.extend(base.make_dirs(self.path, CGROUP2_ROOT))
        self._enable_controllers()

    def _enable_controllers(self) -> None:
        """Delegate every available controller down to the container's cgroup, as runc
        does, so resource files exist in it. Best effort: a controller that cannot be
        enabled (e.g. a parent with processes) simply stays off."""
        try:
            with open(os.path.join(CGROUP2_ROOT, "cgroup.controllers")) as f:
                available = f.read().split()
        except OSError:
            return
        rel = os.path.relpath(self.path, CGROUP2_ROOT)
        cur = CGROUP2_ROOT
        for part in rel.split("/")[:-1] if rel != "." else []:
            self._enable_in(cur, available)
            cur = os.path.join(cur, part)
        self._enable_in(cur, available)

    @staticmethod
    def _enable_in(directory: str, controllers: list[str]) -> None:
        path = os.path.join(directory, "cgroup.subtree_control")
        for c in controllers:
            try:
                base.write_file(path, "+" + c)
            except Exception:  # noqa: BLE001 - best effort, see _enable_controllers
                pass

    def set_device_rules(self, rules) -> None:
        # cgroup v2 has no devices files: rules need an eBPF program (cgroups issue).
        from ocirun.errors import NotImplementedYet

        raise NotImplementedYet("linux.resources.devices on cgroup v2")

    def place(self, pid: int) -> None:
        base.write_file(os.path.join(self.path, "cgroup.procs"), str(pid))

    def clone_into_fd(self) -> int | None:
        return os.open(self.path, os.O_DIRECTORY | os.O_CLOEXEC)

    def pids(self) -> list[int]:
        return base.read_pids(self.path)

    def is_frozen(self) -> bool:
        try:
            with open(os.path.join(self.path, "cgroup.freeze")) as f:
                return f.read().strip() == "1"
        except OSError:
            return False

    def destroy(self) -> None:
        kill = os.path.join(self.path, "cgroup.kill")
        if os.path.exists(kill):
            try:
                base.write_file(kill, "1")
            except Exception:  # noqa: BLE001 - fall back to signalling each pid
                base.kill_pids(self.pids())
        else:
            base.kill_pids(self.pids())
        base.remove_dirs(self.created)

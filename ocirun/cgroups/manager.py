"""The cgroup manager interface (for type checking and documentation; the drivers
do not inherit from it, and the runtime path never imports this module)."""

from __future__ import annotations

from typing import Protocol


class Manager(Protocol):
    version: int
    #: directories create() made (destroy() removes them)
    created: list[str]

    def planned_record(self) -> dict:
        """to_record() as it will be once create() made the directories missing now."""

    def create(self) -> None:
        """Make the container's cgroup directories (and remember which were new)."""

    def apply(self, resources, rules=None, *, update: bool = False) -> None:
        """Write ``linux.resources`` (``ocirun.spec.model.Resources``; None fields are
        left alone) and the device ``rules`` (None: leave the device access alone)."""

    def set_device_rules(self, rules) -> None:
        """Apply device access rules (``ocirun.plan.device_rules.DeviceRule``), in order."""

    def place(self, pid: int) -> None:
        """Move ``pid`` into the cgroup (v1: every hierarchy; v2: cgroup.procs)."""

    def clone_into_fd(self) -> int | None:
        """An O_DIRECTORY fd for clone3(CLONE_INTO_CGROUP), or None (v1)."""

    def pids(self) -> list[int]:
        """Every pid in the cgroup (and its descendants)."""

    def all_pids(self) -> list[int]:
        """Every pid in the container's cgroup in any hierarchy."""

    def is_frozen(self) -> bool: ...

    def freeze(self, timeout: float = 10.0) -> None:
        """Freeze every process, returning once the kernel reports them frozen."""

    def thaw(self, timeout: float = 10.0) -> None: ...

    def stats(self) -> dict:
        """runc's ``events --stats`` data object."""

    def oom_watch(self):
        """An object with fileno() (poll it), drain() -> new OOM events, close(); or None."""

    def destroy(self) -> None:
        """Kill what is left and remove every directory create() made."""

    def to_record(self) -> dict: ...

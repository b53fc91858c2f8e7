"""No cgroup of its own: a rootless container where the user may not create one.

runc's rootless cgroup handling (libcontainer/cgroups/fs and fs2, Rootless):
when the user cannot create the container's cgroup and the config names no
``cgroupsPath``, the container runs in the caller's own cgroups, unless it
asks for resources, which then cannot be applied: an error naming them. That
is the everyday case on a cgroup v1 host (only root creates cgroups there) and
on a v2 host without a subtree delegated to the user.

:class:`NoCgroup` is the manager of such a container: creating, placing and
destroying do nothing; resources are an error naming the property (device
rules are left to the user namespace: an unprivileged user can neither make
device nodes nor attach a device program, and runc ignores them too); pause, resume, update
and events say why they cannot work (ocirun.container.*). ``ps`` and
``kill --all`` find the container's processes by its pid namespace instead
(ocirun.container.common.container_pids). The record keeps the caller's own
cgroups (``own``), which is what the container's cgroup mount shows.
"""

from __future__ import annotations

from ocirun.cgroups.base import CgroupSettingError


class NoCgroup:
    version = 0

    def __init__(self, reason: str, host_version: int, own: dict[str, str],
                 mountpoints: dict[str, str] | None = None) -> None:
        #: why there is no cgroup ("uid 1000 may not create cgroups in ...")
        self.reason = reason
        #: the host's cgroup version (1: legacy or hybrid, 2: unified)
        self.host_version = host_version
        #: the caller's own cgroup directory in each hierarchy (v2: key "unified")
        self.own = own
        self.mountpoints = dict(mountpoints or {})
        self.created: list[str] = []

    @classmethod
    def from_record(cls, record: dict) -> NoCgroup:
        return cls(record.get("reason", ""), int(record.get("hostVersion", 1)), dict(record.get("own", {})),
                   dict(record.get("mountpoints", {})))

    def to_record(self) -> dict:
        return {"version": 0, "reason": self.reason, "hostVersion": self.host_version, "own": self.own,
                "mountpoints": self.mountpoints, "created": []}

    def planned_record(self) -> dict:
        return self.to_record()

    def why(self, what: str) -> str:
        """"cannot <what>: the container has no cgroup of its own (<reason>)"."""
        return f"cannot {what}: the container has no cgroup of its own ({self.reason})"

    def create(self) -> None:
        pass

    def apply(self, resources, rules=None, *, update: bool = False) -> None:
        """Resources cannot be applied: an error naming the first one asked for.
        Device rules are ignored (runc's rootless fs/fs2 managers do the same)."""
        asked = requested_resources(resources)
        if asked:
            raise CgroupSettingError(
                self.why(f"apply linux.resources.{asked[0]}" + (f" (nor {', '.join(asked[1:])})" if asked[1:] else ""))
                + "; remove the resource limits from config.json, or run where you may create "
                  "cgroups (cgroup v2 with a subtree delegated to you; docs/rootless.md)")

    def set_device_rules(self, rules) -> None:
        pass

    def place(self, pid: int) -> None:
        pass

    def clone_into_fd(self) -> int | None:
        return None

    def pids(self) -> list[int]:
        return []

    all_pids = pids

    def is_frozen(self) -> bool:
        return False

    def freeze(self, timeout: float = 10.0) -> None:
        raise CgroupSettingError(self.why("pause it (the freezer is a cgroup's)"))

    def thaw(self, timeout: float = 10.0) -> None:
        raise CgroupSettingError(self.why("resume it (the freezer is a cgroup's)"))

    def stats(self) -> dict:
        raise CgroupSettingError(self.why("read its statistics (they are a cgroup's)"))

    def oom_watch(self):
        return None

    def destroy(self) -> None:
        pass


def requested_resources(resources) -> list[str]:
    """The linux.resources properties (JSON names) that ask for something: a
    value other than absent, 0, false or empty (as runc, which writes nothing
    for those); devices are not among them (see NoCgroup.apply)."""
    if resources is None:
        return []
    out = []
    for key, value in resources.to_dict().items():
        if key == "devices":
            continue
        if key == "memory" and isinstance(value, dict) and value.get("swappiness") == -1:
            value = {k: v for k, v in value.items() if k != "swappiness"}
        if _asks(value):
            out.append(key)
    return out


def _asks(value) -> bool:
    if isinstance(value, dict):
        return any(_asks(v) for v in value.values())
    if isinstance(value, list):
        return any(_asks(v) if isinstance(v, (dict, list)) else True for v in value)
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return value != 0
    return value not in (None, "")

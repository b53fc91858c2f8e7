"""What the host mounts: cgroup v2 only (unified), or v1 controllers (legacy or hybrid)."""

from __future__ import annotations

import os
from dataclasses import dataclass

CGROUP2_ROOT = "/sys/fs/cgroup"
CGROUP2_SUPER_MAGIC = 0x63677270


def detect_mode() -> str:
    """"unified" when /sys/fs/cgroup is a cgroup2 mount, else "legacy" (v1, maybe hybrid)."""
    for line in _mountinfo():
        fields = line.split()
        if fields[4] == CGROUP2_ROOT:
            fstype = fields[fields.index("-") + 1]
            if fstype == "cgroup2":
                return "unified"
    return "legacy"


@dataclass(frozen=True)
class V1Hierarchy:
    mountpoint: str
    root: str  # the cgroup path the mount shows as its root ("/" on the host)
    controllers: tuple[str, ...]  # e.g. ("cpu",), ("name=systemd",); () for the unified mount
    unified: bool = False

    @property
    def key(self) -> str:
        return "unified" if self.unified else ",".join(self.controllers)


def _mountinfo() -> list[str]:
    with open("/proc/self/mountinfo") as f:
        return f.read().splitlines()


def v1_hierarchies() -> list[V1Hierarchy]:
    """Every cgroup v1 hierarchy mounted, plus a hybrid host's cgroup2 mount."""
    seen: dict[tuple[str, ...] | str, V1Hierarchy] = {}
    for line in _mountinfo():
        fields = line.split()
        sep = fields.index("-")
        fstype, super_opts = fields[sep + 1], fields[sep + 3]
        root, mountpoint = fields[3], fields[4]
        if fstype == "cgroup":
            ctrls = tuple(
                sorted(o for o in super_opts.split(",") if o not in ("rw", "ro") and not o.startswith(("release_agent", "clone_children", "noprefix", "xattr", "cpuset_v2_mode")))
            )
            if ctrls and ctrls not in seen:
                seen[ctrls] = V1Hierarchy(mountpoint, root, ctrls)
        elif fstype == "cgroup2" and "unified" not in seen:
            seen["unified"] = V1Hierarchy(mountpoint, root, (), unified=True)
    return list(seen.values())


def own_cgroups() -> dict[str, str]:
    """/proc/self/cgroup as {controllers key: path}; the v2 entry is keyed "unified"."""
    result: dict[str, str] = {}
    with open("/proc/self/cgroup") as f:
        for line in f:
            hid, ctrls, path = line.rstrip("\n").split(":", 2)
            if hid == "0" and ctrls == "":
                result["unified"] = path
            else:
                result[",".join(sorted(ctrls.split(",")))] = path
    return result


def resolve(mountpoint: str, mount_root: str, own: str, path: str) -> str:
    """The directory of cgroup ``path`` in one hierarchy (runc's cgroupfs rules)."""
    if not path.startswith("/"):
        path = os.path.join(own, path)
    path = os.path.normpath(path)
    if mount_root != "/" and (path == mount_root or path.startswith(mount_root + "/")):
        path = path[len(mount_root):] or "/"
    return os.path.normpath(mountpoint + "/" + path.lstrip("/"))

"""What the host mounts: cgroup v2 only (unified), or v1 controllers (legacy or hybrid).

Everything here reads two texts: the mount table (/proc/self/mountinfo) and our
own cgroup membership (/proc/self/cgroup). A :class:`Host` holds both, so tests
can describe a fake cgroupfs in a temp dir (``Host.from_text``) and the drivers
never look at the real /proc or /sys/fs/cgroup unless told to.
"""

from __future__ import annotations

import os

from ocirun.linux.proc import unescape_mount_path

CGROUP2_ROOT = "/sys/fs/cgroup"
CGROUP2_SUPER_MAGIC = 0x63677270

#: v1 mount options that are not controller names
_NOT_CONTROLLERS = ("rw", "ro")
_NOT_CONTROLLER_PREFIXES = ("release_agent", "clone_children", "noprefix", "xattr", "cpuset_v2_mode",
                            "favordynmods", "memory_", "nsdelegate")


class V1Hierarchy:
    """One mounted hierarchy. (Plain classes here: dataclasses costs every
    ``state`` call ~8 ms to import.)"""

    __slots__ = ("mountpoint", "root", "controllers", "unified")

    def __init__(self, mountpoint: str, root: str, controllers: tuple[str, ...], unified: bool = False) -> None:
        self.mountpoint = mountpoint
        self.root = root  # the cgroup path the mount shows as its root ("/" on the host)
        self.controllers = controllers  # e.g. ("cpu",), ("name=systemd",); () for the unified mount
        self.unified = unified

    def __repr__(self) -> str:
        return f"V1Hierarchy({self.mountpoint!r}, {self.root!r}, {self.controllers!r}, {self.unified!r})"

    @property
    def key(self) -> str:
        return "unified" if self.unified else ",".join(self.controllers)


class Host:
    """The mount table and our own cgroups, as text (see the module docstring).
    ``root``: where the cgroup filesystems live; unified mode iff it is a cgroup2
    mount (runc's test)."""

    __slots__ = ("mountinfo", "proc_cgroup", "root")

    def __init__(self, mountinfo: str, proc_cgroup: str, root: str = CGROUP2_ROOT) -> None:
        self.mountinfo = mountinfo
        self.proc_cgroup = proc_cgroup
        self.root = root

    @classmethod
    def current(cls) -> Host:
        """The mount table, and the cgroups of the process ocirun acts for (its
        caller's in a warm helper's worker: the runtime's own cgroup is the
        caller's, as with runc)."""
        from ocirun.linux.proc import CALLER

        with open("/proc/self/mountinfo") as f:
            mountinfo = f.read()
        with open(f"/proc/{CALLER}/cgroup") as f:
            proc_cgroup = f.read()
        return cls(mountinfo, proc_cgroup)

    @classmethod
    def from_text(cls, mountinfo: str, proc_cgroup: str = "0::/\n", root: str = CGROUP2_ROOT) -> Host:
        return cls(mountinfo, proc_cgroup, root)

    def _mounts(self) -> list[tuple[str, str, str, str]]:
        """(fstype, mountpoint, root, super options) of every cgroup/cgroup2 mount."""
        out = []
        for line in self.mountinfo.splitlines():
            fields = line.split()
            if "-" not in fields:
                continue
            sep = fields.index("-")
            fstype = fields[sep + 1]
            if fstype in ("cgroup", "cgroup2"):
                out.append((fstype, unescape_mount_path(fields[4]), unescape_mount_path(fields[3]), fields[sep + 3]))
        return out

    def mode(self) -> str:
        """"unified" when the cgroup root (/sys/fs/cgroup) is itself a cgroup2 mount
        (runc's test), else "legacy" (v1 controllers, maybe a hybrid cgroup2 mount)."""
        fstype = ""
        for t, mountpoint, _, _ in self._mounts():
            if mountpoint == self.root:
                fstype = t  # the last mount on a path is the visible one
        return "unified" if fstype == "cgroup2" else "legacy"

    def v2_mount(self) -> tuple[str, str]:
        """(mountpoint, root) of the cgroup2 mount; the cgroup root preferred."""
        found = [(mp, root) for fstype, mp, root, _ in self._mounts() if fstype == "cgroup2"]
        for mp, root in found:
            if mp == self.root:
                return mp, root
        return found[0] if found else (self.root, "/")

    def v1_hierarchies(self) -> list[V1Hierarchy]:
        """Every cgroup v1 hierarchy mounted, plus a hybrid host's cgroup2 mount."""
        seen: dict[tuple[str, ...] | str, V1Hierarchy] = {}
        for fstype, mountpoint, root, opts in self._mounts():
            if fstype == "cgroup":
                ctrls = _controllers(opts)
                if ctrls and ctrls not in seen:
                    seen[ctrls] = V1Hierarchy(mountpoint, root, ctrls)
            elif "unified" not in seen:
                seen["unified"] = V1Hierarchy(mountpoint, root, (), unified=True)
        return list(seen.values())

    def own_cgroups(self) -> dict[str, str]:
        """/proc/self/cgroup as {controllers key: path}; the v2 entry is keyed "unified"."""
        result: dict[str, str] = {}
        for line in self.proc_cgroup.splitlines():
            if not line.strip():
                continue
            hid, ctrls, path = line.split(":", 2)
            if hid == "0" and ctrls == "":
                result["unified"] = path
            else:
                result[",".join(sorted(ctrls.split(",")))] = path
        return result


def _controllers(super_opts: str) -> tuple[str, ...]:
    return tuple(sorted(
        o for o in super_opts.split(",")
        if o not in _NOT_CONTROLLERS and not o.startswith(_NOT_CONTROLLER_PREFIXES)
    ))


def detect_mode(host: Host | None = None) -> str:
    """"unified" (pure cgroup v2) or "legacy" (v1, maybe hybrid); see :meth:`Host.mode`."""
    return (host or Host.current()).mode()


def v1_hierarchies(host: Host | None = None) -> list[V1Hierarchy]:
    return (host or Host.current()).v1_hierarchies()


def own_cgroups(host: Host | None = None) -> dict[str, str]:
    return (host or Host.current()).own_cgroups()


def clean_path(path: str) -> str:
    """runc's utils.CleanPath: normalised, and a relative path cannot climb out
    with ".." ("../../x" -> "x")."""
    if not path:
        return ""
    path = os.path.normpath(path)
    if not path.startswith("/"):
        path = os.path.relpath(os.path.normpath("/" + path), "/")
    return path


def resolve(mountpoint: str, mount_root: str, own: str, path: str) -> str:
    """The directory of cgroup ``path`` in one hierarchy (runc's cgroupfs rules):
    absolute from the hierarchy's root, relative below ``own`` (which the v2
    driver passes as the parent of its own cgroup, as runc's fs2 does)."""
    path = clean_path(path)
    if not path.startswith("/"):
        path = os.path.join(own, path)
    path = os.path.normpath(path)
    if mount_root != "/" and (path == mount_root or path.startswith(mount_root + "/")):
        path = path[len(mount_root):] or "/"
    return os.path.normpath(mountpoint + "/" + path.lstrip("/"))


def shown_directory(mountpoint: str, mount_root: str, path: str) -> str | None:
    """The directory of cgroup ``path`` (absolute, as /proc/PID/cgroup shows it) in a
    mount at ``mountpoint`` of the hierarchy's ``mount_root``; None if that mount does
    not show it (a cgroup outside the mounted subtree)."""
    if mount_root == "/":
        return os.path.normpath(mountpoint + "/" + path.lstrip("/"))
    root = mount_root.rstrip("/")
    if path == root or path.startswith(root + "/"):
        return os.path.normpath(mountpoint + "/" + path[len(root):].lstrip("/"))
    return None


def move_into(directory: str, pid: int | None = None) -> None:
    """Move process ``pid`` (this one by default) into the cgroup at ``directory``
    (its cgroup.procs; v1 and v2 alike). OSError as the kernel refuses."""
    fd = os.open(os.path.join(directory, "cgroup.procs"), os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, str(os.getpid() if pid is None else pid).encode())
    finally:
        os.close(fd)

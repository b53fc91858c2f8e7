"""Paths as the init will see them, decided from the rootfs and the host without
touching either: a target resolved inside the root (symlinks followed, never out
of it) with the mounts before it in place, where a container path lies on the
host, the host's mount table."""

from __future__ import annotations

import os
import stat
from typing import Any

from ocirun.plan import mount_options as mo

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirun.plan.model import MountStep

#: The host's procfs and sysfs: what a container's own proc and sysfs mounts
#: show (same kernel) when deciding whether a masked or read-only path exists.
HOST_PROC = "/proc"
HOST_SYS = "/sys"
HOST_MOUNTINFO = "/proc/self/mountinfo"


def executable_by(st: os.stat_result, uid: int, gid: int, groups: tuple[int, ...]) -> bool:
    mode = st.st_mode
    if uid == 0:
        return bool(mode & 0o111)
    if st.st_uid == uid:
        return bool(mode & 0o100)
    if st.st_gid == gid or st.st_gid in groups:
        return bool(mode & 0o010)
    return bool(mode & 0o001)


def resolve_in_root(rootfs: str, path: str, earlier: tuple[MountStep, ...]) -> tuple[str, dict[str, Any] | None]:
    """``path`` as the init resolves it inside the root (symlinks followed, never
    out of it; ``..`` stops at /), with the mounts before it in place. Returns the
    resolved container path, and where the walk entered an earlier non-bind
    mount ({"mountPoint", "type"}; the rest is then taken as written: it is made
    in that fresh filesystem) or None."""
    pending = [c for c in path.split("/") if c not in ("", ".")]
    done: list[str] = []
    links = 0
    while pending:
        name = pending.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        cur = "/" + "/".join(done + [name])
        over = mount_at(cur, earlier)
        if over is not None and not (over.flags & mo.MS_BIND or over.idmap is not None):
            return "/".join([cur] + pending) if pending else cur, {
                "mountPoint": cur, "type": (over.fstype or b"").decode()}
        host = host_path_of_prefix(rootfs, cur, earlier)
        try:
            st = os.lstat(host)
        except OSError:
            done.append(name)
            done.extend(c for c in pending if c not in ("", "."))
            break
        if stat.S_ISLNK(st.st_mode) and over is None:
            links += 1
            if links > 40:
                break
            target = os.readlink(host)
            if target.startswith("/"):
                done = []
            pending[:0] = [c for c in target.split("/") if c not in ("", ".")]
            continue
        done.append(name)
    return "/" + "/".join(done), None


def mount_at(path: str, mounts: tuple[MountStep, ...]) -> MountStep | None:
    """The last of ``mounts`` whose target is exactly ``path`` (remounts not counted)."""
    for m in reversed(mounts):
        if m.target.decode() == path and not (m.flags & mo.MS_REMOUNT and not m.flags & mo.MS_BIND):
            return m
    return None


def host_path_of_prefix(rootfs: str, path: str, mounts: tuple[MountStep, ...]) -> str:
    """Where a container path lies on the host, going through bind mounts."""
    best = None
    for m in mounts:
        t = m.target.decode()
        if (path == t or path.startswith(t.rstrip("/") + "/")) and (m.flags & mo.MS_BIND or m.idmap is not None):
            if not (m.flags & mo.MS_REMOUNT) and (best is None or len(t) >= len(best.target.decode())):
                best = m
    if best is not None:
        t = best.target.decode()
        return os.path.join((best.source or b"").decode(), path[len(t):].lstrip("/"))
    return os.path.join(rootfs, path.lstrip("/"))


def host_path(rootfs: str, path: str, mounts: tuple[MountStep, ...]) -> str | None:
    """A container path once every mount is in place, on the host: in the rootfs, a
    bind source, or the host's procfs/sysfs for the container's own proc/sysfs;
    None when it lies in a filesystem made at create (a tmpfs, devpts...)."""
    resolved, under = resolve_in_root(rootfs, path, mounts)
    if under is None:
        return host_path_of_prefix(rootfs, resolved, mounts)
    rest = resolved[len(under["mountPoint"]):].lstrip("/")
    if under["type"] == "proc":
        return os.path.join(HOST_PROC, rest)
    if under["type"] == "sysfs":
        return os.path.join(HOST_SYS, rest)
    return None


def host_mounts() -> list[tuple[str, str, bool]]:
    """(mount point, fstype, read-only) of this process's mounts, in mountinfo order."""
    from ocirun.linux.proc import unescape_mount_path

    out: list[tuple[str, str, bool]] = []
    try:
        with open(HOST_MOUNTINFO) as f:
            text = f.read()
    except OSError:
        return out
    for line in text.splitlines():
        fields = line.split()
        if "-" not in fields:
            continue
        sep = fields.index("-")
        out.append((unescape_mount_path(fields[4]), fields[sep + 1], "ro" in fields[5].split(",")))
    return out


def containing_mount(mounts: list[tuple[str, str, bool]], path: str) -> tuple[str, str, bool] | None:
    best = None
    for m in mounts:
        mp = m[0]
        if path == mp or path.startswith(mp.rstrip("/") + "/") or mp == "/":
            if best is None or len(mp) >= len(best[0]):
                best = m
    return best

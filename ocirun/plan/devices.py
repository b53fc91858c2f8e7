"""The container's /dev: default devices, config devices, standard symlinks."""

from __future__ import annotations

import os
import stat

from ocirun.plan.model import DeviceNode, Symlink

#: Created in every container with a fresh /dev, as runc does (path, major, minor).
DEFAULT_DEVICES: tuple[tuple[str, int, int], ...] = (
    ("/dev/null", 1, 3),
    ("/dev/zero", 1, 5),
    ("/dev/full", 1, 7),
    ("/dev/tty", 5, 0),
    ("/dev/urandom", 1, 9),
    ("/dev/random", 1, 8),
)

_TYPE_BITS = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK, "p": stat.S_IFIFO}


def device_nodes(config_devices, *, in_user_ns: bool) -> tuple[DeviceNode, ...]:
    """Default devices then linux.devices; a config entry replaces a default of the same path.

    Inside a user namespace mknod is refused, so character and block devices are
    bind-mounted from the host's node of the same path instead (runc does the same).
    """
    nodes: dict[str, DeviceNode] = {}
    for path, major, minor in DEFAULT_DEVICES:
        nodes[path] = DeviceNode(path.encode(), stat.S_IFCHR | 0o666, major, minor, 0, 0, in_user_ns)
    for d in config_devices or ():
        mode = d.file_mode if d.file_mode is not None else 0o666
        kind = _TYPE_BITS[d.type]
        nodes[d.path] = DeviceNode(
            d.path.encode(),
            kind | (mode & 0o7777),
            d.major or 0,
            d.minor or 0,
            d.uid if d.uid is not None else 0,
            d.gid if d.gid is not None else 0,
            in_user_ns and kind != stat.S_IFIFO,
            must_match=True,
        )
    return tuple(nodes.values())


def dev_symlinks(has_devpts: bool) -> tuple[Symlink, ...]:
    links = [
        Symlink(b"/dev/fd", b"/proc/self/fd"),
        Symlink(b"/dev/stdin", b"/proc/self/fd/0"),
        Symlink(b"/dev/stdout", b"/proc/self/fd/1"),
        Symlink(b"/dev/stderr", b"/proc/self/fd/2"),
    ]
    if os.path.exists("/proc/kcore"):
        links.append(Symlink(b"/dev/core", b"/proc/kcore"))
    if has_devpts:
        links.append(Symlink(b"/dev/ptmx", b"pts/ptmx"))
    return tuple(links)

"""Namespace kinds: the spec's names, clone flags and /proc/PID/ns link names."""

from __future__ import annotations

CLONE_NEWTIME = 0x00000080
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000

#: config.json namespace type -> clone flag
CLONE_FLAGS: dict[str, int] = {
    "pid": CLONE_NEWPID,
    "network": CLONE_NEWNET,
    "mount": CLONE_NEWNS,
    "ipc": CLONE_NEWIPC,
    "uts": CLONE_NEWUTS,
    "user": CLONE_NEWUSER,
    "cgroup": CLONE_NEWCGROUP,
    "time": CLONE_NEWTIME,
}

#: config.json namespace type -> name of its link under /proc/PID/ns/
PROC_NS_NAMES: dict[str, str] = {
    "pid": "pid",
    "network": "net",
    "mount": "mnt",
    "ipc": "ipc",
    "uts": "uts",
    "user": "user",
    "cgroup": "cgroup",
    "time": "time",
}

#: Order in which namespaces given by path are joined. The user namespace comes
#: first, so that the others are joined with the privileges it grants; the mount
#: namespace comes last, because joining it changes how later paths resolve.
JOIN_ORDER: tuple[str, ...] = ("user", "cgroup", "ipc", "uts", "network", "pid", "time", "mount")

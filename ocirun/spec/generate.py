"""`ocirun spec`: write a starter config.json, as `runc spec` does.

The content is runc's (1.1) default spec, key for key and in runc's order, so
the two can be diffed; only ``ociVersion`` differs: ocirun writes the version
of the runtime spec it implements (``ocirun.SPEC_VERSION``, 1.3.0) where runc
writes the version of the spec module it was built with. ``--rootless`` is
runc's rootless conversion: a user namespace mapping container root to the
caller's euid/egid, no network namespace, ``/sys`` bind-mounted instead of a
new sysfs, no ``uid=``/``gid=`` mount options and no cgroup resources.
"""

from __future__ import annotations

import argparse
import json
import os
from typing import TYPE_CHECKING, Any

from ocirun import SPEC_VERSION
from ocirun.errors import BundleError

if TYPE_CHECKING:
    from ocirun.cli import GlobalOptions

_CAPS = ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]


def default_spec() -> dict[str, Any]:
    """runc's default config.json (root container), as a dict in runc's key order."""
    return {
        "ociVersion": SPEC_VERSION,
        "process": {
            "terminal": True,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm",
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": list(_CAPS),
                "effective": list(_CAPS),
                "permitted": list(_CAPS),
                "ambient": list(_CAPS),
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": True,
        },
        "root": {"path": "rootfs", "readonly": True},
        "hostname": "runc",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/dev/mqueue",
                "type": "mqueue",
                "source": "mqueue",
                "options": ["nosuid", "noexec", "nodev"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
            {
                "destination": "/sys/fs/cgroup",
                "type": "cgroup",
                "source": "cgroup",
                "options": ["nosuid", "noexec", "nodev", "relatime", "ro"],
            },
        ],
        "linux": {
            "resources": {"devices": [{"allow": False, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"},
                {"type": "network"},
                {"type": "ipc"},
                {"type": "uts"},
                {"type": "mount"},
            ],
            "maskedPaths": [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/sys/firmware",
                "/proc/scsi",
            ],
            "readonlyPaths": [
                "/proc/bus",
                "/proc/fs",
                "/proc/irq",
                "/proc/sys",
                "/proc/sysrq-trigger",
            ],
        },
    }


def to_rootless(spec: dict[str, Any], uid: int, gid: int) -> dict[str, Any]:
    """runc's specconv.ToRootless: the same spec for an unprivileged caller (uid, gid)."""
    linux = spec["linux"]
    namespaces = [ns for ns in linux.get("namespaces", []) if ns["type"] not in ("network", "user")]
    namespaces.append({"type": "user"})
    new_linux: dict[str, Any] = {
        "uidMappings": [{"containerID": 0, "hostID": uid, "size": 1}],
        "gidMappings": [{"containerID": 0, "hostID": gid, "size": 1}],
    }
    for key, value in linux.items():
        if key in ("uidMappings", "gidMappings", "resources"):
            continue  # mappings replaced above; cgroup settings removed
        new_linux[key] = namespaces if key == "namespaces" else value
    mounts = []
    for m in spec.get("mounts", []):
        if os.path.normpath(m["destination"]) == "/sys":
            mounts.append({
                "destination": "/sys",
                "type": "none",
                "source": "/sys",
                "options": ["rbind", "nosuid", "noexec", "nodev", "ro"],
            })
            continue
        m = dict(m)
        if "options" in m:
            m["options"] = [o for o in m["options"] if not o.startswith(("gid=", "uid="))]
        mounts.append(m)
    return {**spec, "mounts": mounts, "linux": new_linux}


def render(spec: dict[str, Any]) -> str:
    """JSON as runc writes it: tab-indented, no trailing newline."""
    return json.dumps(spec, indent="\t")


def write_spec(bundle: str, rootless: bool) -> str:
    """Write ``<bundle>/config.json``; refuse to overwrite. Returns the path written."""
    spec = default_spec()
    if rootless:
        spec = to_rootless(spec, os.geteuid(), os.getegid())
    if not os.path.isdir(bundle):
        raise BundleError(f"bundle {os.path.abspath(bundle)} is not a directory")
    path = os.path.join(bundle, "config.json")
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)
    except FileExistsError:
        raise BundleError("File config.json exists. Remove it first") from None
    except OSError as exc:
        raise BundleError(f"cannot create {path}: {os.strerror(exc.errno or 0).lower()}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(render(spec))
    return path


def cmd_spec(g: GlobalOptions, args: argparse.Namespace) -> int:
    write_spec(args.bundle, args.rootless)
    return 0

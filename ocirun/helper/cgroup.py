"""The helper's own cgroup (issue #12, requirement 4: it must never pin the cgroup
of whoever started it: a conmon scope, a containerd shim, a systemd scope).

Root's helper moves into the root cgroup of every hierarchy (of its cgroup
namespace); if it cannot, it does not run (:func:`leave_as_root`).

A rootless helper cannot (only root writes the root cgroup). What matters is the
hierarchy that *tracks* processes: the cgroup2 one (the unified host's, or the
hybrid host's /sys/fs/cgroup/unified), or on a v1-only host ``name=systemd``:
systemd removes a unit's cgroup, and waits for it to empty, there. On it the
helper makes a cgroup of its own, ``ocirun-helper-<id>``, directly below the
highest ancestor of the caller's cgroup that the user may write (what systemd
delegates to it: ``user@UID.service``; a subtree made for it), moves into it,
and removes it when it exits (:func:`leave_rootless`, :func:`remove`). A caller
in that hierarchy's root cgroup is pinned by nobody: the helper stays. If it
cannot leave the caller's cgroup there (nothing above it is the user's), the
helper does not run: it exits quietly, and its callers keep the direct path.

In the v1 controller hierarchies (and ``name=systemd`` on a hybrid host) it moves
to the highest ancestor whose ``cgroup.procs`` it may write, and otherwise stays
(a rootless user can write none on a v1 host). That pins nothing that matters:
no manager waits for a controller hierarchy's cgroup to empty (systemd tracks
units in the unified or name=systemd hierarchy; runc and podman remove theirs
there with the container, whose processes are the front end's, not the
helper's); a cgroup that keeps the helper merely cannot be rmdir'ed until it
exits (idle: 60 s by default).
"""

from __future__ import annotations

import contextlib
import os

from ocirun.cgroups.base import remove_dirs
from ocirun.cgroups.hierarchy import Host, move_into, shown_directory
from ocirun.errors import CgroupError

PREFIX = "ocirun-helper-"


class CannotLeave(Exception):
    """The helper cannot leave its caller's cgroup on the tracking hierarchy."""


def leave_as_root(host: Host | None = None) -> None:
    """Into the root cgroup of every hierarchy (of our cgroup namespace).
    SystemExit if it cannot."""
    host = host or Host.current()
    own = host.own_cgroups()
    if host.mode() == "unified":
        mountpoint, root = host.v2_mount()
        targets = [(mountpoint, root, own.get("unified"))]
    else:
        targets = [(h.mountpoint, h.root, own.get(h.key)) for h in host.v1_hierarchies()]
    for mountpoint, root, path in targets:
        if path is None or path == root:
            continue
        try:
            move_into(mountpoint)
        except OSError as e:
            raise SystemExit(f"ocirun helper: cannot leave cgroup {path} ({mountpoint}): {e.strerror}") from None


def _ancestors(mountpoint: str, directory: str) -> list[str]:
    """The directories strictly above ``directory``, up to the mount's root, highest first."""
    out = []
    d = directory
    while d != mountpoint and d.startswith(mountpoint + "/"):
        d = os.path.dirname(d)
        out.append(d)
    return out[::-1]


def _writable(directory: str) -> bool:
    return os.access(directory, os.W_OK | os.X_OK) and os.access(os.path.join(directory, "cgroup.procs"), os.W_OK)


def leave_rootless(ident: str, host: Host | None = None) -> str | None:
    """As the module docstring says. Returns the cgroup directory made (to be
    removed when the helper exits), or None (none needed). Raises CannotLeave."""
    host = host or Host.current()
    own = host.own_cgroups()
    hierarchies = host.v1_hierarchies() if host.mode() == "legacy" else []
    tracking: tuple[str, str, str | None] | None = None
    if host.mode() == "unified":
        mountpoint, root = host.v2_mount()
        tracking = (mountpoint, root, own.get("unified"))
    else:
        pick = ([h for h in hierarchies if h.unified] or [h for h in hierarchies if h.controllers == ("name=systemd",)])
        if pick:
            tracking = (pick[0].mountpoint, pick[0].root, own.get(pick[0].key))
            hierarchies.remove(pick[0])
    made = None
    if tracking is not None and tracking[2] is not None and tracking[2] != tracking[1]:
        mountpoint, root, path = tracking[0], tracking[1], tracking[2]
        current = shown_directory(mountpoint, root, path)
        if current is None:
            raise CannotLeave(f"cgroup {path} is not under {mountpoint}")
        above = [d for d in _ancestors(mountpoint, current) if _writable(d)]
        if not above:
            raise CannotLeave(f"no cgroup above {path} ({mountpoint}) is ours")
        made = os.path.join(above[0], PREFIX + ident)
        try:
            with contextlib.suppress(FileExistsError):
                os.mkdir(made, 0o755)
            move_into(made)
        except OSError as e:
            with contextlib.suppress(OSError):
                os.rmdir(made)
            raise CannotLeave(f"cannot move into {made}: {e.strerror}") from None
    for h in hierarchies:  # move up where we may; else stay (see the module docstring)
        v1_path = own.get(h.key)
        if v1_path is None or v1_path == h.root:
            continue
        v1_dir = shown_directory(h.mountpoint, h.root, v1_path)
        if v1_dir is None:
            continue
        for d in _ancestors(h.mountpoint, v1_dir):
            if os.access(os.path.join(d, "cgroup.procs"), os.W_OK):
                with contextlib.suppress(OSError):
                    move_into(d)
                    break
    return made


def remove(directory: str | None, timeout: float = 1.0) -> bool:
    """rmdir the helper's own cgroup once it is empty (its spares take a moment to
    exit; a worker still running a call keeps it: it stays, and the next helper of
    this id takes it again). True if it is gone."""
    if not directory or not os.path.basename(directory).startswith(PREFIX):
        return False
    try:
        remove_dirs([directory], deadline=timeout)  # retried while busy
    except CgroupError:
        return False
    return True

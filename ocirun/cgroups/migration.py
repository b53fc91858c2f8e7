"""The kernel's wait before a cgroup migration, paid while create does other work.

Moving a process into a cgroup by writing its cgroup.procs (every v1 hierarchy;
v2 only where clone3's CLONE_INTO_CGROUP is not used) takes the kernel's global
``cgroup_threadgroup_rwsem`` for writing. The first writer after a quiet spell
waits for an RCU grace period (~10 ms on the development VM; runc's create
waits too); writers that follow within about one grace period do not. So
create starts, in a thread, a migration that moves nothing (this process into
the cgroup it is already in) as soon as it begins, and the container's first
real migration, after validation and planning, finds the wait paid or partly
paid (docs/performance.md).
"""

from __future__ import annotations

import _thread  # not threading: ~6 ms to import on the direct path

from ocirun.cgroups.hierarchy import Host, move_into, shown_directory
from ocirun.linux.proc import read_proc


def warm_up() -> None:
    """Start the moving-nothing migration in a thread of its own (it ends by itself
    within a grace period); nothing where there is nothing to gain (cgroup v2: the
    container is cloned into its cgroup) or no cgroup of our own can be found.
    Failures are ignored: it only saves time."""
    try:
        mountinfo = read_proc("/proc/self/mountinfo").decode(errors="replace")
        own = read_proc("/proc/self/cgroup").decode(errors="replace")
    except OSError:
        return
    host = Host(mountinfo, own)  # our own cgroups (not the caller's: Host.current)
    if host.mode() == "unified":
        return
    directory = own_directory(host)
    if directory is not None:
        _thread.start_new_thread(_move_self, (directory,))


def own_directory(host: Host) -> str | None:
    """The directory of the cgroup this process is in, on the first v1 hierarchy
    whose membership /proc/self/cgroup shows (and its mount shows)."""
    own = host.own_cgroups()
    for h in host.v1_hierarchies():
        if h.unified:
            continue
        path = own.get(h.key)
        if path is not None:
            return shown_directory(h.mountpoint, h.root, path)
    return None


def _move_self(directory: str) -> None:
    # nothing may escape a bare thread: _thread would print it on stderr
    try:
        move_into(directory)  # where we are: the kernel moves nothing
    except Exception:  # noqa: BLE001
        pass

"""Helpers for the pure cgroup-v2 tests (tests/cgroupv2; see README.md there)."""

from __future__ import annotations

import os
import time
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
IN_GUEST = os.environ.get("CGROUPV2_GUEST") == "1"
# Cgroups made by these tests are named ocitest-*: scripts/test looks for leftovers.
PREFIX = "ocitest-cgv2-"


def _mounts() -> list[tuple[str, str]]:
    """(mount point, fs type) of every mount, from /proc/self/mountinfo."""
    result = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            result.append((left.split()[4], right.split()[0]))
    return result


def pure_v2_problem() -> str | None:
    """Why this host is not a pure cgroup-v2 host, or None if it is."""
    mounts = _mounts()
    types = [t for p, t in mounts if p == str(CGROUP_ROOT)]
    if not types or types[-1] != "cgroup2":
        return f"{CGROUP_ROOT} is not a cgroup2 mount ({types[-1] if types else 'not mounted'})"
    v1 = [p for p, t in mounts if t == "cgroup"]
    if v1:
        return f"cgroup v1 hierarchies are mounted: {', '.join(v1[:3])}"
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    if len(lines) != 1 or not lines[0].startswith("0::"):
        return f"/proc/self/cgroup is not a single 0:: line: {lines[:3]}"
    return None


def enable_controllers(cgroup: Path, wanted: set[str]) -> set[str]:
    """Enable the wanted controllers for cgroup's children; return those now enabled."""
    available = set((cgroup / "cgroup.controllers").read_text().split())
    enabled = set((cgroup / "cgroup.subtree_control").read_text().split())
    for c in sorted((wanted & available) - enabled):
        try:
            (cgroup / "cgroup.subtree_control").write_text(f"+{c}")
        except OSError:
            pass
    return set((cgroup / "cgroup.subtree_control").read_text().split())


def kill_and_remove(path: Path, timeout: float = 10.0) -> None:
    """Kill every process in the cgroup tree at path, then remove it (children first)."""
    if not path.exists():
        return
    for child in sorted((p for p in path.rglob("*") if p.is_dir()), reverse=True):
        kill_and_remove(child, timeout)
    kill = path / "cgroup.kill"
    deadline = time.monotonic() + timeout
    while True:
        pids = [int(p) for p in (path / "cgroup.procs").read_text().split()]
        if not pids:
            break
        if kill.exists():
            kill.write_text("1")
        else:
            for pid in pids:
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"processes {pids} stay in {path}")
        time.sleep(0.05)
    deadline = time.monotonic() + timeout
    while True:
        try:
            path.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError:  # EBUSY while the last exiting tasks are released
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)

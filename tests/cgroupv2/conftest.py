"""Fixtures for tests that need a pure cgroup-v2 host (see README.md beside this file).

Every test here is skipped unless /sys/fs/cgroup is a cgroup2 mount and no
cgroup-v1 hierarchy is mounted anywhere, and unless we are root.  Inside the
guest of scripts/cgroupv2-guest (CGROUPV2_GUEST=1) a host that is not pure v2
is a failure, not a skip, so a broken guest cannot pass silently.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cgroupv2_helpers import (
    CGROUP_ROOT,
    IN_GUEST,
    PREFIX,
    enable_controllers,
    kill_and_remove,
    pure_v2_problem,
)


@pytest.fixture(autouse=True)
def _require_pure_v2() -> None:
    problem = pure_v2_problem()
    if problem is None:
        if os.geteuid() != 0:
            pytest.skip("cgroup-v2 tests need root")
        return
    if IN_GUEST:
        pytest.fail(f"inside the cgroupv2 guest but not pure cgroup v2: {problem}")
    pytest.skip(f"not a pure cgroup-v2 host ({problem}); run scripts/cgroupv2-guest")


@pytest.fixture
def child_cgroup(request) -> Iterator[Path]:
    """A fresh child of the root cgroup (memory, pids, cpu, io enabled), removed after."""
    enable_controllers(CGROUP_ROOT, {"cpu", "io", "memory", "pids"})
    test = "".join(c if c.isalnum() or c in "_-" else "-" for c in request.node.name[:40])
    name = f"{PREFIX}{test}-{uuid.uuid4().hex[:8]}"
    path = CGROUP_ROOT / name
    path.mkdir()
    try:
        yield path
    finally:
        kill_and_remove(path)

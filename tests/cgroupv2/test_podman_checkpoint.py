"""podman container checkpoint/restore (and --export/--import) with ocirun as
its runtime, runc 1.1.5 beside it: what docs/checkpoint.md tells podman users.

Opt-in (OCIRUN_SLOW_GUEST_TESTS=1; about 3 minutes of guest time, podman and
conmon under emulation), in the cgroup v2 guest where CRIU works:

    scripts/cgroupv2-guest --env OCIRUN_SLOW_GUEST_TESTS -- \\
        .venv/bin/pytest -q tests/cgroupv2/test_podman_checkpoint.py
"""

from __future__ import annotations

import os
import shutil
import sys
import time
import uuid
from pathlib import Path

import pytest
from checkpoint_helpers import REPO, criu_problem

sys.path.insert(0, str(REPO / "tests" / "e2e"))

from engines import IMAGE, Podman, become_subreaper, image_layout, reap_orphans, until  # noqa: E402

pytestmark = [
    pytest.mark.root,
    pytest.mark.skipif(os.environ.get("OCIRUN_SLOW_GUEST_TESTS") != "1",
                       reason="slow: set OCIRUN_SLOW_GUEST_TESTS=1 (see the module docstring)"),
    pytest.mark.skipif(shutil.which("podman") is None or shutil.which("conmon") is None,
                       reason="podman and conmon are not installed"),
]

RUNTIMES = {"ocirun": REPO / ".venv" / "bin" / "ocirun", "runc": Path("/usr/sbin/runc")}
COUNTER = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i; sleep 0.2; done"]


@pytest.fixture(params=sorted(RUNTIMES))
def podman(request, tmp_path):
    problem = criu_problem()
    if problem:
        pytest.skip(problem)
    become_subreaper()
    p = Podman(Path(f"/tmp/ocitest-pmck-{uuid.uuid4().hex[:8]}"), RUNTIMES[request.param])
    p.load_image(image_layout())
    yield p
    leaks = p.close()
    reap_orphans()
    # runc 1.1.5 under podman leaves the checkpointed container's cgroup behind; ocirun must not
    leaks = [leak for leak in leaks if request.param == "ocirun" or "cgroup left" not in leak]
    assert not leaks, leaks


def _last(podman: Podman, cid: str) -> int:
    lines = podman("logs", "--tail", "1", cid).stdout.split()
    return int(lines[-1]) if lines else 0


def test_checkpoint_restore_export_import(podman, tmp_path):
    cid = podman.run("--detach", IMAGE, *COUNTER).stdout.strip()
    until(lambda: _last(podman, cid) > 3, timeout=120, what="the counter")
    podman("container", "checkpoint", cid, timeout=600)
    status = podman("inspect", "--format", "{{.State.Status}}", cid).stdout.strip()
    assert status == "exited"
    stopped = _last(podman, cid)
    time.sleep(1)
    assert _last(podman, cid) == stopped
    podman("container", "restore", cid, timeout=600)
    assert podman("inspect", "--format", "{{.State.Status}}", cid).stdout.strip() == "running"
    until(lambda: _last(podman, cid) > stopped + 3, timeout=120, what="the restored counter")
    logs = [int(n) for n in podman("logs", cid).stdout.split()]
    assert logs == list(range(1, len(logs) + 1))  # one log, nothing lost or counted twice

    archive = tmp_path / "export.tar.gz"
    podman("container", "checkpoint", "--export", str(archive), cid, timeout=600)
    exported = _last(podman, cid)
    podman("container", "restore", "--import", str(archive), "--name", "copy", timeout=600)
    until(lambda: _last(podman, "copy") > exported, timeout=120, what="the imported counter")

"""Smoke tests of a pure cgroup-v2 system (normally the scripts/cgroupv2-guest guest).

They check the kernel and the hierarchy themselves, not ocirun: that the
hierarchy is pure v2, that a child cgroup can be made, entered and removed,
that pids.max is enforced, and that runc can run a container there.  They are
skipped on a host that is not pure cgroup v2 (see conftest.py).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from cgroupv2_helpers import CGROUP_ROOT, IN_GUEST, PREFIX, kill_and_remove

pytestmark = pytest.mark.root

BUSYBOX = shutil.which("busybox")


def test_hierarchy_is_pure_v2() -> None:
    fstype = subprocess.run(
        ["stat", "-fc", "%T", str(CGROUP_ROOT)], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert fstype == "cgroup2fs"
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    assert len(lines) == 1 and lines[0].startswith("0::"), lines
    controllers = set((CGROUP_ROOT / "cgroup.controllers").read_text().split())
    assert {"memory", "pids", "cpu", "io"} <= controllers, controllers
    if IN_GUEST:
        # The guest's stage 2 enables every controller for the root's children
        # and the kernel runs with cgroup_no_v1=all.
        enabled = set((CGROUP_ROOT / "cgroup.subtree_control").read_text().split())
        assert {"memory", "pids", "cpu", "io", "cpuset"} <= enabled, enabled
        assert "cgroup_no_v1=all" in Path("/proc/cmdline").read_text().split()


def test_child_cgroup_enter_and_remove(child_cgroup: Path) -> None:
    controllers = set((child_cgroup / "cgroup.controllers").read_text().split())
    assert {"memory", "pids", "cpu", "io"} <= controllers, controllers
    proc = subprocess.Popen(["sleep", "60"])
    try:
        (child_cgroup / "cgroup.procs").write_text(str(proc.pid))
        assert str(proc.pid) in (child_cgroup / "cgroup.procs").read_text().split()
        own = Path(f"/proc/{proc.pid}/cgroup").read_text().strip()
        assert own == f"0::/{child_cgroup.name}"
        assert int((child_cgroup / "pids.current").read_text()) == 1
        (child_cgroup / "memory.max").write_text(str(64 << 20))
        assert int((child_cgroup / "memory.max").read_text()) == 64 << 20
    finally:
        proc.kill()
        proc.wait()
    assert (child_cgroup / "cgroup.procs").read_text().split() == []
    child_cgroup.rmdir()
    assert not child_cgroup.exists()


@pytest.mark.skipif(BUSYBOX is None, reason="busybox not installed")
def test_pids_max_enforced(child_cgroup: Path) -> None:
    limit = 5
    (child_cgroup / "pids.max").write_text(str(limit))
    # The shell moves itself into the cgroup, then tries to start 20 sleepers.
    script = (
        f"echo $$ > {child_cgroup}/cgroup.procs; i=0; "
        "while [ $i -lt 20 ]; do sleep 30 >/dev/null 2>&1 & echo started; i=$((i+1)); done; echo finished"
    )
    result = subprocess.run(
        [BUSYBOX, "sh", "-c", script], capture_output=True, text=True, timeout=60
    )
    started = result.stdout.split().count("started")
    assert started < 20, (result.stdout, result.stderr)
    assert "fork" in result.stderr, result.stderr
    current = int((child_cgroup / "pids.current").read_text())
    assert current <= limit
    events = dict(line.split() for line in (child_cgroup / "pids.events").read_text().splitlines())
    assert int(events["max"]) >= 1, events
    kill_and_remove(child_cgroup)
    assert not child_cgroup.exists()


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc not installed")
@pytest.mark.skipif(BUSYBOX is None, reason="busybox not installed")
def test_runc_runs_a_container(tmp_path: Path) -> None:
    bundle = tmp_path / "bundle"
    bin_dir = bundle / "rootfs" / "bin"
    bin_dir.mkdir(parents=True)
    shutil.copy2(BUSYBOX, bin_dir / "busybox")
    for applet in ("sh", "cat"):
        (bin_dir / applet).symlink_to("busybox")
    subprocess.run(["runc", "spec"], cwd=bundle, check=True)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    config["process"]["args"] = ["cat", "/proc/self/cgroup"]
    cid = f"{PREFIX}runc-{uuid.uuid4().hex[:8]}"
    config["linux"]["cgroupsPath"] = f"/{cid}"
    (bundle / "config.json").write_text(json.dumps(config))
    state = tmp_path / "runc-state"
    try:
        result = subprocess.run(
            ["runc", "--root", str(state), "run", "--bundle", str(bundle), cid],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
        # runc's default spec has a cgroup namespace: the container is at its root.
        assert result.stdout.splitlines() == ["0::/"], result.stdout
    finally:
        subprocess.run(
            ["runc", "--root", str(state), "delete", "--force", cid], capture_output=True
        )
        kill_and_remove(CGROUP_ROOT / cid)
    assert not (CGROUP_ROOT / cid).exists()
    assert os.listdir(state) == [] if state.exists() else True


def test_host_pseudo_filesystems_are_not_shared(tmp_path: Path) -> None:
    """The guest's root is the host's root filesystem alone (a non-recursive bind
    made by scripts/cgroupv2-guest): under a non-recursive bind of the guest's own
    / (the overlay, whose lower layer is that share), the host's /proc and /sys
    are empty directories and /dev has no device nodes: not the host's proc,
    sysfs and devtmpfs."""
    if not IN_GUEST:
        pytest.skip("a property of the scripts/cgroupv2-guest harness")
    view = tmp_path / "root"
    view.mkdir()
    script = (f"mount --bind / {view} && echo proc $(ls -A {view}/proc | wc -l) && "
              f"echo sys $(ls -A {view}/sys | wc -l) && echo null $(ls -A {view}/dev | grep -cx null)")
    out = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                         capture_output=True, text=True, check=True).stdout
    counts = dict(line.split() for line in out.splitlines())
    assert counts == {"proc": "0", "sys": "0", "null": "0"}, out

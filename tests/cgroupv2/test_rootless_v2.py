"""Rootless on pure cgroup v2 (issue #13): with a delegated subtree the resources apply.

An unprivileged user of the tests' own (tests/integration/rootless_user.py)
gets a cgroup subtree delegated the way systemd's Delegate= does it: a
directory under the root (named ocitest-cgv2-*) that it owns, with its
cgroup.procs, cgroup.subtree_control and cgroup.threads, and a leaf in it
where its commands run. `ocirun run` as the user then makes the container's
cgroup next to that leaf (runc's default path: below the parent of the
caller's own cgroup), enables the controllers it needs, and applies the memory
and pids limits; update, pause and resume work too. Without a delegated
subtree the container has no cgroup of its own: it runs when it asks for no
resources, and asking for a memory limit is an error naming it.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from cgroupv2_helpers import CGROUP_ROOT, PREFIX, enable_controllers, kill_and_remove

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from rootless_user import REPO, RootlessUser, fresh_user  # noqa: E402

pytestmark = pytest.mark.root


@pytest.fixture(scope="module")
def user() -> Iterator[RootlessUser]:
    with fresh_user() as u:
        yield u


@pytest.fixture
def delegated(user) -> Iterator[Path]:
    """A subtree delegated to the user (as systemd's Delegate=), and the leaf its
    commands run in (``leaf / "cgroup.procs"``)."""
    enable_controllers(CGROUP_ROOT, {"memory", "pids", "cpu", "io"})
    top = CGROUP_ROOT / f"{PREFIX}rootless-{uuid.uuid4().hex[:8]}"
    top.mkdir()
    leaf = top / "session"
    try:
        leaf.mkdir()
        for p in (top, top / "cgroup.procs", top / "cgroup.subtree_control", top / "cgroup.threads",
                  leaf, leaf / "cgroup.procs", leaf / "cgroup.threads"):
            os.chown(p, user.uid, user.gid)
        yield leaf
        assert not user.stop_helpers()  # the user's warm helper (docs/helper.md), if its calls started one
    finally:
        user.kill_all()
        kill_and_remove(top)


@pytest.fixture
def bundle(user, tmp_path_factory) -> Iterator[Path]:
    """The busybox rootfs (the user's) with `ocirun spec --rootless`'s config.json."""
    path = user.home / f"bundle-{uuid.uuid4().hex[:8]}"
    subprocess.run([str(REPO / "bundles" / "make-busybox-bundle"), "--no-image", str(path)], check=True,
                   stdout=subprocess.DEVNULL)
    (path / "config.json").unlink()
    user.give(path)
    user.run(["ocirun", "spec", "--rootless"], cwd=path, check=True)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def configure(user: RootlessUser, bundle: Path, args: list[str], resources: dict | None = None) -> None:
    c = json.loads((bundle / "config.json").read_text())
    c["process"]["terminal"] = False
    c["process"]["args"] = args
    if resources is not None:
        c["linux"]["resources"] = resources
    (bundle / "config.json").write_text(json.dumps(c))
    os.chown(bundle / "config.json", user.uid, user.gid)


def ocirun(user: RootlessUser, *args: str, leaf: Path | None = None, check: bool = True):
    return user.run(["ocirun", *args], cgroup_procs=leaf / "cgroup.procs" if leaf else None, check=check,
                    timeout=300)


def test_memory_limit_applied_in_a_delegated_subtree(user, delegated, bundle):
    configure(user, bundle, ["sh", "-c", "cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max; "
                                         "cat /proc/self/cgroup; sleep 1000"],
              {"memory": {"limit": 64 << 20}, "pids": {"limit": 50}})
    cid = f"ocitest-rl-{uuid.uuid4().hex[:8]}"
    ocirun(user, "run", "-d", "--bundle", str(bundle), cid, leaf=delegated)
    try:
        cg = delegated.parent / cid  # next to the caller's own cgroup, as runc's fs2
        assert cg.is_dir() and cg.stat().st_uid == user.uid
        assert int((cg / "memory.max").read_text()) == 64 << 20
        assert (cg / "pids.max").read_text().strip() == "50"
        state = json.loads(ocirun(user, "state", cid).stdout)
        assert str(state["pid"]) in (cg / "cgroup.procs").read_text().split()
        # live changes and the freezer: the user owns the container's cgroup
        ocirun(user, "update", "--memory", "128m", cid)
        assert int((cg / "memory.max").read_text()) == 128 << 20
        ocirun(user, "pause", cid)
        assert json.loads(ocirun(user, "state", cid).stdout)["status"] == "paused"
        ocirun(user, "resume", cid)
        assert json.loads(ocirun(user, "state", cid).stdout)["status"] == "running"
        stats = json.loads(ocirun(user, "events", "--stats", cid).stdout)
        assert stats["data"]["memory"]["usage"]["limit"] == 128 << 20
    finally:
        ocirun(user, "delete", "--force", cid, check=False)
    assert not (delegated.parent / cid).exists()
    assert not (user.runtime_dir / "ocirun" / cid).exists()


def test_container_sees_its_limit(user, delegated, bundle):
    configure(user, bundle, ["sh", "-c", "cat /sys/fs/cgroup/memory.max"], {"memory": {"limit": 32 << 20}})
    out = ocirun(user, "run", "--bundle", str(bundle), f"ocitest-rl-{uuid.uuid4().hex[:8]}", leaf=delegated)
    assert out.stdout.decode().strip() == str(32 << 20)
    assert [p.name for p in delegated.parent.iterdir() if p.is_dir()] == ["session"]


def test_without_delegation_no_cgroup_and_limits_are_an_error(user, bundle):
    configure(user, bundle, ["sh", "-c", "echo ok"])
    cid = f"ocitest-rl-{uuid.uuid4().hex[:8]}"
    assert ocirun(user, "run", "--bundle", str(bundle), cid).stdout == b"ok\n"
    configure(user, bundle, ["true"], {"memory": {"limit": 64 << 20}})
    p = ocirun(user, "run", "--bundle", str(bundle), cid, check=False)
    lines = [ln for ln in p.stderr.decode().splitlines() if not ln.startswith("warning: ")]
    assert p.returncode == 1 and len(lines) == 1, p.stderr
    assert "linux.resources.memory" in lines[0] and "no cgroup subtree is delegated" in lines[0], lines[0]
    assert not (user.runtime_dir / "ocirun" / cid).exists()
    assert not user.lasting_processes(helpers=False)

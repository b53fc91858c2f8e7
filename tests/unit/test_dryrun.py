"""ocirun.util.dryrun: the cgroup drivers' operations recorded (explain), on the
fake cgroupfs of test_cgroups_drivers; and the per-thread settings it rests on."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from test_cgroups_drivers import V1_FILES, FakeV1, FakeV2, res

from ocirun.cgroups import base, new_manager
from ocirun.cgroups.base import CgroupSettingError
from ocirun.errors import warn
from ocirun.plan.device_rules import ALWAYS_ALLOWED
from ocirun.util import dryrun
from ocirun.util.dryrun import Recording
from ocirun.util.scoped import WARNINGS


def _v1_with_root_files(tmp: Path) -> FakeV1:
    fake = FakeV1(tmp)
    for key, files in V1_FILES.items():
        d = fake.root / key.removeprefix("name=")
        for name, value in files.items():
            (d / name).write_text(value)
    return fake


def _tree(root: Path) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for dirpath, dirs, files in os.walk(root):
        for name in dirs:
            out[os.path.join(dirpath, name)] = None
        for name in files:
            out[os.path.join(dirpath, name)] = Path(dirpath, name).read_text()
    return out


def test_a_dry_run_records_and_touches_nothing_v1(tmp_path):
    fake = _v1_with_root_files(tmp_path)
    before = _tree(tmp_path)
    mgr = new_manager(None, "c1", host=fake.host)
    with Recording() as rec:
        mgr.create()
        mgr.apply(res({"memory": {"limit": 1048576}, "pids": {"limit": 7}, "cpu": {"shares": 256}}),
                  ALWAYS_ALLOWED)
    assert _tree(tmp_path) == before
    mkdirs = [a["path"] for a in rec.actions if a["op"] == "mkdir"]
    assert mkdirs == mgr.created and set(mgr.paths.values()) <= set(mkdirs)  # memory/own too
    writes = [(os.path.relpath(a["path"], fake.root), a["value"]) for a in rec.actions if a["op"] == "write"]
    # the new cpuset inherits its parent's cpus and mems (read from the hierarchy's root), as create does
    assert writes[:2] == [("cpuset/c1/cpuset.cpus", "0-1"), ("cpuset/c1/cpuset.mems", "0")]
    assert ("devices/c1/devices.deny", "a") in writes
    assert ("memory/own/c1/memory.limit_in_bytes", "1048576") in writes
    assert ("pids/c1/pids.max", "7") in writes and ("cpu/c1/cpu.shares", "256") in writes
    assert all("for" in a for a in rec.actions if a["op"] == "write" and "cpuset" not in a["path"])


def test_a_dry_run_v2_enables_controllers_and_records_the_device_program(tmp_path):
    fake = FakeV2(tmp_path)
    before = _tree(tmp_path)
    mgr = new_manager("/a/c2", "c2", host=fake.host)
    with Recording() as rec:
        mgr.create()
        mgr.apply(res({"pids": {"limit": 5}, "memory": {"limit": 2097152}}), ALWAYS_ALLOWED)
    assert _tree(tmp_path) == before
    assert [a["path"] for a in rec.actions if a["op"] == "mkdir"] == [str(fake.root / "a"), str(fake.root / "a/c2")]
    enabled = [(os.path.relpath(a["path"], fake.root), a["value"]) for a in rec.actions
               if a["op"] == "write" and a["path"].endswith("subtree_control")]
    assert ("cgroup.subtree_control", "+memory") in enabled and ("a/cgroup.subtree_control", "+pids") in enabled
    # so the new cgroup has the controllers and the writes go through
    assert {"op": "write", "path": str(fake.root / "a/c2/pids.max"), "value": "5",
            "for": "linux.resources.pids.limit"} in rec.actions
    program = [a for a in rec.actions if a["op"] == "device-program"]
    assert len(program) == 1 and program[0]["defaultAllow"] is False
    assert {"type": "c", "major": 136, "minor": None, "access": "rwm"} in program[0]["exceptions"]
    assert mgr.device_prog == 0  # nothing attached


def test_fresh_cgroup_reads_and_a_missing_file(tmp_path):
    fake = _v1_with_root_files(tmp_path)
    mgr = new_manager(None, "c3", host=fake.host)
    memory = mgr.dir_of("memory")
    with Recording() as rec:
        mgr.create()
        # a new v1 cgroup reads as a fresh one: unlimited (the root's value), an empty cpuset
        assert base.read_file(memory, "memory.limit_in_bytes") == V1_FILES["memory"]["memory.limit_in_bytes"]
        assert rec.read(os.path.join(mgr.dir_of("cpuset"), "cpuset.cpus")) == "0-1"  # written by create
        base.set_file(memory, "memory.swappiness", "10")
        assert base.read_file(memory, "memory.swappiness") == "10"
        # blkio has no blkio.weight in the fake: the file create would not find, create's error
        with pytest.raises(CgroupSettingError, match="blkio.weight does not exist"):
            base.set_file(mgr.dir_of("blkio"), "blkio.weight", "500", "linux.resources.blockIO.weight")


def test_without_a_recording_nothing_changes(tmp_path):
    assert dryrun.current() is None
    d = tmp_path / "cg"
    d.mkdir()
    (d / "x.max").write_text("")
    base.set_file(str(d), "x.max", "1")
    assert (d / "x.max").read_text() == "1"


def test_a_recording_that_does_it_too(tmp_path):
    d = tmp_path / "cg"
    d.mkdir()
    (d / "x.max").write_text("")
    with Recording(dry_run=False) as rec:
        made = base.make_dirs(str(d / "a/b"), str(d))
        base.set_file(str(d), "x.max", "2", "why")
    assert made == [str(d / "a"), str(d / "a/b")] and (d / "a/b").is_dir()
    assert (d / "x.max").read_text() == "2"
    assert rec.actions == [{"op": "mkdir", "path": str(d / "a")}, {"op": "mkdir", "path": str(d / "a/b")},
                           {"op": "write", "path": str(d / "x.max"), "value": "2", "for": "why"}]


def test_recordings_and_warning_sinks_are_per_thread():
    seen: dict[str, object] = {}
    got: list[str] = []

    def other():
        seen["recording"] = dryrun.current()
        seen["sink"] = WARNINGS.get()

    with Recording(), WARNINGS.set(got.append):
        t = threading.Thread(target=other)
        t.start()
        t.join()
        warn("to the sink")
    assert seen == {"recording": None, "sink": None}
    assert got == ["to the sink"]
    assert dryrun.current() is None and WARNINGS.get() is None


def test_bfq_files_without_a_template(monkeypatch, tmp_path):
    sysblock = tmp_path / "block"
    (sysblock / "vda/queue").mkdir(parents=True)
    real_listdir, real_read = os.listdir, dryrun._read_real
    monkeypatch.setattr(dryrun.os, "listdir", lambda p: real_listdir(sysblock) if p == "/sys/block" else real_listdir(p))
    monkeypatch.setattr(dryrun, "_read_real", lambda p: real_read(str(sysblock / p[len("/sys/block/"):]))
                        if p.startswith("/sys/block/") else real_read(p))
    (sysblock / "vda/queue/scheduler").write_text("[none] mq-deadline kyber\n")
    assert dryrun._kernel_provides("io.bfq.weight") is False
    assert dryrun._kernel_provides("io.weight") is True
    (sysblock / "vda/queue/scheduler").write_text("mq-deadline [bfq] none\n")
    assert dryrun._kernel_provides("io.bfq.weight") is True

"""Both cgroup drivers on a fake cgroupfs in a temp dir (no root needed).

The fake is a directory tree with the files the kernel would show and a
mountinfo text describing it (``Host.from_text``). Every write the drivers
make is recorded in order, so multi-line files (devices.allow, io.max) and
write ordering can be checked.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocirun.cgroups import base, new_manager, unsupported_resources
from ocirun.cgroups.base import CgroupSettingError
from ocirun.cgroups.hierarchy import Host
from ocirun.plan.device_rules import ALWAYS_ALLOWED, DeviceRule
from ocirun.spec.model import Resources

MAX = "9223372036854771712"

V1_FILES = {
    "cpu": {"cpu.shares": "1024", "cpu.cfs_period_us": "100000", "cpu.cfs_quota_us": "-1",
            "cpu.cfs_burst_us": "0", "cpu.idle": "0", "cpu.rt_period_us": "1000000",
            "cpu.rt_runtime_us": "0", "cpu.stat": "nr_periods 3\nnr_throttled 1\nthrottled_time 500\n"},
    "cpuacct": {"cpuacct.usage": "12345", "cpuacct.usage_percpu": "12000 345 ",
                "cpuacct.usage_all": "cpu user system\n0 8000 4000\n1 300 45\n",
                "cpuacct.stat": "user 2\nsystem 1\n"},
    "cpuset": {"cpuset.cpus": "0-1", "cpuset.mems": "0", "cpuset.cpu_exclusive": "0",
               "cpuset.sched_load_balance": "1", "cpuset.sched_relax_domain_level": "-1"},
    "memory": {"memory.limit_in_bytes": MAX, "memory.memsw.limit_in_bytes": MAX,
               "memory.soft_limit_in_bytes": MAX, "memory.kmem.limit_in_bytes": MAX,
               "memory.kmem.tcp.limit_in_bytes": MAX, "memory.swappiness": "60",
               "memory.oom_control": "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
               "memory.use_hierarchy": "1", "memory.usage_in_bytes": "1048576",
               "memory.max_usage_in_bytes": "2097152", "memory.failcnt": "0",
               "memory.memsw.usage_in_bytes": "1048576", "memory.stat": "cache 4096\nrss 8192\n",
               "cgroup.event_control": ""},
    "devices": {"devices.allow": "", "devices.deny": "", "devices.list": "a *:* rwm"},
    "freezer": {"freezer.state": "THAWED"},
    # no blkio.weight: as on this kernel (BFQ not the scheduler)
    "blkio": {"blkio.throttle.read_bps_device": "", "blkio.throttle.write_bps_device": "",
              "blkio.throttle.read_iops_device": "", "blkio.throttle.write_iops_device": "",
              "blkio.throttle.io_service_bytes_recursive": "8:0 Read 4096\n8:0 Write 0\nTotal 4096\n",
              "blkio.throttle.io_serviced_recursive": "8:0 Read 1\nTotal 1\n"},
    "pids": {"pids.max": "max", "pids.current": "2"},
    "name=systemd": {},
}


def _mountinfo(mounts: list[tuple[str, str, str]]) -> str:
    """mountinfo lines for (mountpoint, fstype, super options)."""
    lines = []
    for i, (mp, fstype, opts) in enumerate(mounts):
        lines.append(f"{30 + i} 23 0:{40 + i} / {mp} rw,relatime shared:{i} - {fstype} {fstype} {opts}")
    return "\n".join(lines) + "\n"


class FakeV1:
    def __init__(self, tmp: Path, controllers=tuple(V1_FILES), hybrid: bool = True):
        self.root = tmp / "sys/fs/cgroup"
        self.controllers = controllers
        mounts = [(str(self.root), "tmpfs", "rw,mode=755")]
        for c in controllers:
            name = c.removeprefix("name=")
            mounts.append((str(self.root / name), "cgroup", f"rw,{c}"))
            (self.root / name).mkdir(parents=True)
        if hybrid:
            (self.root / "unified").mkdir(parents=True)
            mounts.append((str(self.root / "unified"), "cgroup2", "rw,nsdelegate"))
        # our own cgroup: "/" everywhere but memory (as on this host)
        own = "".join(f"{i + 1}:{c}:{'/own' if c == 'memory' else '/'}\n" for i, c in enumerate(controllers))
        self.host = Host.from_text(_mountinfo(mounts), own + "0::/\n", root=str(self.root))

    def populate(self, mgr) -> None:
        """Make the container's directories with the kernel's files (as mkdir would)."""
        for key, path in mgr.paths.items():
            os.makedirs(path, exist_ok=True)
            for name, value in V1_FILES.get(key, {}).items():
                Path(path, name).write_text(value)
            Path(path, "cgroup.procs").write_text("")


class FakeV2:
    CONTROLLERS = "cpuset cpu io memory hugetlb pids rdma"

    def __init__(self, tmp: Path):
        self.root = tmp / "sys/fs/cgroup"
        self.root.mkdir(parents=True)
        (self.root / "cgroup.controllers").write_text(self.CONTROLLERS + "\n")
        (self.root / "cgroup.subtree_control").write_text("")
        self.host = Host.from_text(_mountinfo([(str(self.root), "cgroup2", "rw,nsdelegate")]), "0::/user/me/session.scope\n",
                                   root=str(self.root))

    FILES = {
        "cgroup.controllers": CONTROLLERS, "cgroup.procs": "", "cgroup.freeze": "0",
        "cgroup.events": "populated 1\nfrozen 0\n", "cgroup.subtree_control": "",
        "pids.max": "max", "pids.current": "3",
        "memory.max": "max", "memory.swap.max": "max", "memory.low": "0", "memory.high": "max", "memory.current": "4096",
        "memory.swap.current": "0", "memory.events": "low 0\nhigh 0\nmax 2\noom 0\noom_kill 0\n",
        "memory.stat": "anon 100\nfile 200\nkernel 300\nsock 0\n", "memory.peak": "8192",
        "io.weight": "default 100", "io.max": "", "io.stat": "8:0 rbytes=4096 wbytes=512 rios=2 wios=1 dbytes=0 dios=0\n",
        "cpu.weight": "100", "cpu.max": "max 100000", "cpu.max.burst": "0", "cpu.idle": "0",
        "cpu.stat": "usage_usec 10\nuser_usec 6\nsystem_usec 4\nnr_periods 0\nnr_throttled 0\nthrottled_usec 0\n",
        "cpuset.cpus": "", "cpuset.mems": "", "cpuset.cpus.effective": "0-1", "cpuset.mems.effective": "0",
        "hugetlb.2MB.max": "max", "hugetlb.2MB.rsvd.max": "max", "rdma.max": "",
    }

    def populate(self, mgr, controllers: str | None = None) -> None:
        os.makedirs(mgr.path, exist_ok=True)
        for name, value in self.FILES.items():
            Path(mgr.path, name).write_text(value)
        if controllers is not None:
            Path(mgr.path, "cgroup.controllers").write_text(controllers)


@pytest.fixture
def writes(monkeypatch):
    """Every base.set_file call, in order, as (path, value); the write still happens."""
    log: list[tuple[str, str]] = []
    real = base.set_file

    def record(directory, name, value, what=""):
        real(directory, name, value, what)
        log.append((os.path.join(directory, name), value))

    monkeypatch.setattr(base, "set_file", record)
    return log


def res(d: dict) -> Resources:
    return Resources.from_dict(d)


def names(log, prefix: str) -> list[tuple[str, str]]:
    """(path relative to ``prefix``, value) for the writes below it."""
    return [(os.path.relpath(p, prefix), v) for p, v in log if p.startswith(prefix)]


# --------------------------------------------------------------------------- hierarchy


def test_hybrid_host_is_v1_and_includes_the_unified_mount(tmp_path):
    fake = FakeV1(tmp_path)
    assert fake.host.mode() == "legacy"
    mgr = new_manager(None, "c1", host=fake.host)
    assert mgr.version == 1
    assert mgr.paths["unified"] == str(fake.root / "unified/c1")
    assert mgr.paths["cpu"] == str(fake.root / "cpu/c1")
    assert mgr.paths["memory"] == str(fake.root / "memory/own/c1")  # relative to our own cgroup
    assert mgr.paths["name=systemd"] == str(fake.root / "systemd/c1")


def test_cgroups_path_rules_absolute_relative_empty(tmp_path):
    fake = FakeV1(tmp_path, hybrid=False)
    assert new_manager("/a/b", "x", host=fake.host).paths["memory"] == str(fake.root / "memory/a/b")
    assert new_manager("a/b", "x", host=fake.host).paths["memory"] == str(fake.root / "memory/own/a/b")
    assert new_manager("", "x", host=fake.host).paths["memory"] == str(fake.root / "memory/own/x")
    assert new_manager("../../x", "y", host=fake.host).paths["memory"] == str(fake.root / "memory/own/x")
    assert "unified" not in new_manager(None, "x", host=fake.host).paths


def test_pure_v2_host(tmp_path):
    fake = FakeV2(tmp_path)
    assert fake.host.mode() == "unified"
    mgr = new_manager(None, "c1", host=fake.host)
    assert mgr.version == 2
    # relative: below the parent of our own cgroup (runc's fs2), which has no processes
    assert mgr.path == str(fake.root / "user/me/c1")
    assert new_manager("a/b", "x", host=fake.host).path == str(fake.root / "user/me/a/b")
    assert new_manager("/abs/c", "x", host=fake.host).path == str(fake.root / "abs/c")
    # runc's CleanPath: ".." cannot climb out of either
    assert new_manager("../../../x", "y", host=fake.host).path == str(fake.root / "user/me/x")
    assert new_manager("/a/../../b", "y", host=fake.host).path == str(fake.root / "b")
    root_host = Host.from_text(fake.host.mountinfo, "0::/\n", root=str(fake.root))
    assert new_manager(None, "c1", host=root_host).path == str(fake.root / "c1")
    # a cgroup namespace root that is not "/" (mountinfo root field) is stripped
    host = Host.from_text(f"30 23 0:40 /ns {fake.root} rw - cgroup2 cgroup2 rw\n", "0::/ns/sub/leaf\n",
                          root=str(fake.root))
    assert new_manager(None, "c", host=host).path == str(fake.root / "sub/c")


def test_systemd_cgroup_without_systemd_is_a_clear_error(tmp_path, monkeypatch):
    import ocirun.cgroups as cg

    monkeypatch.setattr(cg, "SYSTEMD_RUNNING", str(tmp_path / "no-such-dir"))
    with pytest.raises(CgroupSettingError, match="systemd cgroup driver not available"):
        new_manager(None, "c1", True, host=FakeV1(tmp_path).host)


def test_record_round_trip(tmp_path):
    from ocirun.cgroups import manager_from_record

    fake = FakeV2(tmp_path)
    mgr = new_manager(None, "c1", host=fake.host)
    mgr.device_prog = 42
    again = manager_from_record(mgr.to_record())
    assert (again.path, again.root, again.device_prog) == (mgr.path, mgr.root, 42)
    v1 = new_manager(None, "c1", host=FakeV1(tmp_path / "v1").host)
    assert manager_from_record(v1.to_record()).paths == v1.paths


# --------------------------------------------------------------------------- v1


def v1(tmp_path, **kw):
    fake = FakeV1(tmp_path, **kw)
    mgr = new_manager(None, "c1", host=fake.host)
    fake.populate(mgr)
    return fake, mgr


def test_v1_every_resource(tmp_path, writes):
    fake, mgr = v1(tmp_path)
    mgr.apply(res({
        "memory": {"limit": 104857600, "reservation": 52428800, "swap": 209715200, "kernel": 300000000,
                   "kernelTCP": 100000000, "swappiness": 10, "disableOOMKiller": True, "useHierarchy": True},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "burst": 10000, "realtimeRuntime": 1000,
                "realtimePeriod": 100000, "cpus": "0", "mems": "0", "idle": 0},
        "pids": {"limit": 50},
        "blockIO": {"throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": 100}]},
    }))
    root = str(fake.root)
    assert names(writes, root) == [
        ("cpuset/c1/cpuset.cpus", "0"),
        ("cpuset/c1/cpuset.mems", "0"),
        # the current limit (max) is above the new memsw: memory first, then memory+swap
        ("memory/own/c1/memory.limit_in_bytes", "104857600"),
        ("memory/own/c1/memory.memsw.limit_in_bytes", "209715200"),
        ("memory/own/c1/memory.kmem.tcp.limit_in_bytes", "100000000"),
        ("memory/own/c1/memory.soft_limit_in_bytes", "52428800"),
        ("memory/own/c1/memory.oom_control", "1"),
        ("memory/own/c1/memory.swappiness", "10"),
        ("memory/own/c1/memory.use_hierarchy", "1"),
        ("cpu/c1/cpu.shares", "512"),
        ("cpu/c1/cpu.cfs_period_us", "100000"),
        ("cpu/c1/cpu.cfs_quota_us", "50000"),
        ("cpu/c1/cpu.cfs_burst_us", "10000"),
        ("cpu/c1/cpu.idle", "0"),
        ("cpu/c1/cpu.rt_period_us", "100000"),
        ("cpu/c1/cpu.rt_runtime_us", "1000"),
        ("pids/c1/pids.max", "50"),
        ("blkio/c1/blkio.throttle.read_bps_device", "8:0 1048576"),
        ("blkio/c1/blkio.throttle.write_iops_device", "8:0 100"),
    ]


def test_kernel_memory_is_never_written(tmp_path, writes):
    """memory.kernel is ignored with a warning, as runc 1.1 does (Linux >= 5.16
    accepts memory.kmem.limit_in_bytes and ignores it; cgroup v2 has none)."""
    fake, mgr = v1(tmp_path)
    mgr.apply(res({"memory": {"kernel": 300000000, "limit": 104857600}}))
    assert [w for w in names(writes, str(fake.root)) if "kmem" in w[0]] == []


def test_v1_memory_swap_order_when_raising(tmp_path, writes):
    fake, mgr = v1(tmp_path)
    Path(mgr.paths["memory"], "memory.limit_in_bytes").write_text("104857600")
    mgr.apply(res({"memory": {"limit": 300000000, "swap": 400000000}}), update=True)
    assert [os.path.basename(p) for p, _ in writes] == ["memory.memsw.limit_in_bytes", "memory.limit_in_bytes"]


def test_v1_unlimited_memory_unlimits_swap_too(tmp_path, writes):
    fake, mgr = v1(tmp_path)
    mgr.apply(res({"memory": {"limit": -1}}))
    assert [(os.path.basename(p), v) for p, v in writes] == [
        ("memory.memsw.limit_in_bytes", "-1"), ("memory.limit_in_bytes", "-1")]


def test_v1_pids_minus_one_is_max_and_zero_is_no_limit(tmp_path, writes):
    """runc writes nothing for 0 (its PidsLimit 0 is "unset"): a new cgroup's max (#11 item 6)."""
    fake, mgr = v1(tmp_path)
    mgr.apply(res({"pids": {"limit": -1}}))
    mgr.apply(res({"pids": {"limit": 0}}))
    mgr.apply(res({"pids": {"limit": 7}}))
    assert [v for _, v in writes] == ["max", "7"]


def test_create_applies_the_pids_limit_after_the_rest():
    """create: every resource before the init is cloned, but the pids limit (stage-1 and
    the init are both in the cgroup then); 0 is no limit; v2's unified pids.max waits too."""
    from ocirun.container.create import _split_pids

    r = res({"pids": {"limit": 1}, "memory": {"limit": 1 << 26}, "unified": {"pids.max": "2", "io.weight": "50"}})
    now, later = _split_pids(r, 2)
    assert now.pids is None and now.memory == r.memory and dict(now.unified) == {"io.weight": "50"}
    assert later.pids.limit == 1 and dict(later.unified) == {"pids.max": "2"} and later.memory is None
    now, later = _split_pids(r, 1)  # v1 refuses unified at once, in the first apply
    assert dict(now.unified) == dict(r.unified) and later.pids.limit == 1 and not later.unified
    now, later = _split_pids(res({"pids": {"limit": 0}, "memory": {"limit": 1 << 26}}), 1)
    assert later is None and now.pids is None
    assert _split_pids(None, 1) == (None, None)


def test_v1_missing_file_names_it(tmp_path):
    fake, mgr = v1(tmp_path)
    with pytest.raises(CgroupSettingError) as e:
        mgr.apply(res({"blockIO": {"weight": 500}}))
    assert "blkio/c1/blkio.weight does not exist" in str(e.value)
    assert "linux.resources.blockIO.weight" in str(e.value)


def test_v1_bfq_weight_used_when_cfq_absent(tmp_path, writes):
    fake, mgr = v1(tmp_path)
    Path(mgr.paths["blkio"], "blkio.bfq.weight").write_text("100")
    Path(mgr.paths["blkio"], "blkio.bfq.weight_device").write_text("")
    mgr.apply(res({"blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 300}]}}))
    assert [(os.path.basename(p), v) for p, v in writes] == [
        ("blkio.bfq.weight", "500"), ("blkio.bfq.weight_device", "8:0 300")]


def test_v1_unmounted_controller_is_a_clear_error(tmp_path):
    fake, mgr = v1(tmp_path)
    with pytest.raises(CgroupSettingError, match="hugetlb controller is not mounted"):
        mgr.apply(res({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}]}))
    with pytest.raises(CgroupSettingError, match="net_cls controller is not mounted"):
        mgr.apply(res({"network": {"classID": 1048577}}))
    with pytest.raises(CgroupSettingError, match="rdma controller is not mounted"):
        mgr.apply(res({"rdma": {"mlx5_1": {"hcaHandles": 3}}}))


def test_v1_hugetlb_network_rdma_when_mounted(tmp_path, writes):
    ctrls = (*V1_FILES, "hugetlb", "net_cls", "net_prio", "rdma")
    fake, mgr = v1(tmp_path, controllers=ctrls)
    Path(mgr.paths["hugetlb"], "hugetlb.2MB.limit_in_bytes").write_text("0")
    Path(mgr.paths["hugetlb"], "hugetlb.2MB.rsvd.limit_in_bytes").write_text("0")
    Path(mgr.paths["net_cls"], "net_cls.classid").write_text("0")
    Path(mgr.paths["net_prio"], "net_prio.ifpriomap").write_text("")
    Path(mgr.paths["rdma"], "rdma.max").write_text("")
    mgr.apply(res({"hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
                   "network": {"classID": 1048577, "priorities": [{"name": "eth0", "priority": 5},
                                                                   {"name": "lo", "priority": 1}]},
                   "rdma": {"mlx5_1": {"hcaHandles": 3, "hcaObjects": 10000}, "rxe3": {"hcaObjects": 7}}}))
    assert [(os.path.basename(p), v) for p, v in writes] == [
        ("hugetlb.2MB.limit_in_bytes", "4194304"), ("hugetlb.2MB.rsvd.limit_in_bytes", "4194304"),
        ("net_cls.classid", "1048577"), ("net_prio.ifpriomap", "eth0 5"), ("net_prio.ifpriomap", "lo 1"),
        ("rdma.max", "mlx5_1 hca_handle=3 hca_object=10000"), ("rdma.max", "rxe3 hca_object=7")]


def test_v1_unified_is_refused(tmp_path):
    fake, mgr = v1(tmp_path)
    with pytest.raises(CgroupSettingError, match="needs cgroup v2"):
        mgr.apply(res({"unified": {"memory.high": "1000000"}}))
    problems = unsupported_resources(res({"unified": {"memory.high": "1"}}), fake.host)
    assert [p.path for p in problems] == ["$.linux.resources.unified"]


def test_v1_device_rules_reset_then_exceptions(tmp_path, writes):
    fake, mgr = v1(tmp_path)
    rules = (DeviceRule(False, "a", None, None, "rwm"), DeviceRule(True, "c", 1, 3, "rw"),
             DeviceRule(True, "c", 1, 3, "m"), DeviceRule(False, "c", 1, 3, "w"))
    mgr.apply(None, rules)
    assert [(os.path.basename(p), v) for p, v in writes] == [("devices.deny", "a"), ("devices.allow", "c 1:3 rm")]


def test_v1_check_before_update(tmp_path):
    fake, mgr = v1(tmp_path)
    with pytest.raises(CgroupSettingError, match="lower than the current usage 1048576"):
        mgr.apply(res({"memory": {"limit": 4096, "checkBeforeUpdate": True}}), update=True)
    mgr.apply(res({"memory": {"limit": 4096, "checkBeforeUpdate": False}}), update=True)


def test_v1_cpu_shares_read_back(tmp_path, monkeypatch):
    fake, mgr = v1(tmp_path)
    real = base.set_file

    def clamp(directory, name, value, what=""):  # as the kernel clamps cpu.shares
        real(directory, name, str(min(int(value), 262144)) if name == "cpu.shares" else value, what)

    monkeypatch.setattr(base, "set_file", clamp)
    with pytest.raises(CgroupSettingError, match="maximum allowed cpu-shares is 262144"):
        mgr.apply(res({"cpu": {"shares": 500000}}))


def test_v1_freeze_and_thaw(tmp_path):
    fake, mgr = v1(tmp_path)
    assert not mgr.is_frozen()
    mgr.freeze()
    assert mgr.is_frozen()
    mgr.thaw()
    assert Path(mgr.paths["freezer"], "freezer.state").read_text() == "THAWED"


def test_v1_pids_and_create_destroy(tmp_path):
    fake = FakeV1(tmp_path, controllers=("pids", "memory"), hybrid=False)
    mgr = new_manager("/x/y", "c1", host=fake.host)
    mgr.create()
    assert mgr.created == [str(fake.root / "pids/x"), str(fake.root / "pids/x/y"),
                           str(fake.root / "memory/x"), str(fake.root / "memory/x/y")]
    assert mgr.pids() == []
    mgr.destroy()
    assert not (fake.root / "pids/x").exists() and not (fake.root / "memory/x").exists()


def test_v1_planned_record_is_what_create_makes(tmp_path):
    """create records the directories before making them (#11 item 7): the plan is
    exactly what create() then makes, and delete --force can undo it from the record."""
    fake = FakeV1(tmp_path, controllers=("pids", "memory"), hybrid=False)
    (fake.root / "memory/x").mkdir()  # already there: not create's to remove
    mgr = new_manager("/x/y", "c1", host=fake.host)
    planned = mgr.planned_record()
    assert planned["created"] == [str(fake.root / "pids/x"), str(fake.root / "pids/x/y"),
                                  str(fake.root / "memory/x/y")]
    mgr.create()
    assert mgr.created == planned["created"] and mgr.to_record() == planned


def test_v1_stats_shape(tmp_path):
    fake, mgr = v1(tmp_path)
    s = mgr.stats()
    assert set(s) == {"cpu", "cpuset", "memory", "pids", "blkio", "hugetlb", "intel_rdt", "network_interfaces"}
    assert s["cpu"]["usage"]["total"] == 12345
    assert s["cpu"]["usage"]["percpu"] == [12000, 345]
    assert s["cpu"]["usage"]["percpu_user"] == [8000, 300]
    assert s["cpu"]["usage"]["user"] == 2 * 10**9 // os.sysconf("SC_CLK_TCK")
    assert s["cpu"]["throttling"] == {"periods": 3, "throttledPeriods": 1, "throttledTime": 500}
    assert s["memory"]["usage"] == {"limit": int(MAX), "usage": 1048576, "max": 2097152, "failcnt": 0}
    assert s["memory"]["cache"] == 4096
    assert s["memory"]["raw"] == {"cache": 4096, "rss": 8192}
    assert s["pids"] == {"current": 2}  # max reads as no limit (omitted), as runc
    assert s["blkio"]["ioServiceBytesRecursive"] == [{"major": 8, "op": "Read", "value": 4096},
                                                     {"major": 8, "op": "Write"}]
    assert s["cpuset"]["cpus"] == [0, 1] and s["cpuset"]["sched_relax_domain_level"] == -1
    assert s["hugetlb"] == {} and s["network_interfaces"] is None


# --------------------------------------------------------------------------- v2


def v2(tmp_path, controllers=None):
    fake = FakeV2(tmp_path)
    mgr = new_manager(None, "c1", host=fake.host)
    fake.populate(mgr, controllers)
    return fake, mgr


def test_v2_every_resource_with_conversions(tmp_path, writes):
    fake, mgr = v2(tmp_path)
    mgr.apply(res({
        "memory": {"limit": 104857600, "reservation": 52428800, "swap": 209715200, "kernel": -1},
        "cpu": {"shares": 1024, "quota": 50000, "period": 100000, "burst": 1000, "cpus": "0", "mems": "0",
                "idle": 0},
        "pids": {"limit": 50},
        "blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 10}],
                    "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                    "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}]},
        "hugepageLimits": [{"pageSize": "2MB", "limit": 4194304}],
        "rdma": {"mlx5_1": {"hcaHandles": 3}},
        "unified": {"memory.high": "90000000", "cpu.weight": "77"},
    }))
    assert names(writes, mgr.path) == [
        ("pids.max", "50"),
        ("memory.swap.max", "104857600"),  # memory+swap 200M - memory 100M
        ("memory.max", "104857600"),
        ("memory.low", "52428800"),
        ("io.weight", "4950"),  # 1 + (500-10)*9999/990
        ("io.weight", "8:0 1"),
        ("io.max", "8:0 rbps=1048576"),
        ("io.max", "8:16 wiops=100"),
        ("cpu.weight", "39"),  # 1 + (1024-2)*9999/262142
        ("cpu.idle", "0"),
        ("cpu.max", "50000 100000"),
        ("cpu.max.burst", "1000"),
        ("cpuset.cpus", "0"),
        ("cpuset.mems", "0"),
        ("hugetlb.2MB.max", "4194304"),
        ("hugetlb.2MB.rsvd.max", "4194304"),
        ("rdma.max", "mlx5_1 hca_handle=3"),
        ("memory.high", "90000000"),  # unified last: it overrides converted values
        ("cpu.weight", "77"),
    ]


def test_v2_swap_equal_to_memory_means_no_swap(tmp_path, writes):
    fake, mgr = v2(tmp_path)
    mgr.apply(res({"memory": {"limit": 1000000, "swap": 1000000}}))
    assert names(writes, mgr.path) == [("memory.swap.max", "0"), ("memory.max", "1000000")]
    writes.clear()
    mgr.apply(res({"memory": {"limit": -1}}))
    assert names(writes, mgr.path) == [("memory.swap.max", "max"), ("memory.max", "max")]
    with pytest.raises(CgroupSettingError, match="memory\\+swap limit should be >= memory limit"):
        mgr.apply(res({"memory": {"limit": 1000000, "swap": 10}}))


def test_v2_period_alone_keeps_the_quota(tmp_path, writes):
    fake, mgr = v2(tmp_path)
    Path(mgr.path, "cpu.max").write_text("20000 100000\n")
    mgr.apply(res({"cpu": {"period": 50000}}), update=True)
    assert names(writes, mgr.path) == [("cpu.max", "20000 50000")]
    writes.clear()
    mgr.apply(res({"cpu": {"quota": 30000}}), update=True)
    assert names(writes, mgr.path) == [("cpu.max", "30000")]


def test_v2_bfq_weight(tmp_path, writes):
    fake, mgr = v2(tmp_path)
    Path(mgr.path, "io.bfq.weight").write_text("default 100")
    mgr.apply(res({"blockIO": {"weight": 500, "weightDevice": [{"major": 8, "minor": 0, "weight": 300}]}}))
    assert names(writes, mgr.path) == [("io.bfq.weight", "500"), ("io.bfq.weight", "8:0 300\n")]


def test_v2_refuses_what_it_cannot_express(tmp_path):
    fake, mgr = v2(tmp_path)
    bad = res({"memory": {"kernel": 1000000, "kernelTCP": 1000000, "swappiness": 10, "disableOOMKiller": True,
                          "useHierarchy": False},
               "cpu": {"realtimeRuntime": 1000}, "blockIO": {"leafWeight": 10},
               "network": {"classID": 1}})
    problems = unsupported_resources(bad, fake.host)
    assert [p.path for p in problems] == [
        # kernel and kernelTCP: ignored with a warning, as runc does
        "$.linux.resources.memory.swappiness", "$.linux.resources.memory.disableOOMKiller", "$.linux.resources.memory.useHierarchy",
        "$.linux.resources.cpu.realtimeRuntime", "$.linux.resources.blockIO.leafWeight",
        "$.linux.resources.network"]
    with pytest.raises(CgroupSettingError, match="net_cls"):
        mgr.apply(res({"network": {"classID": 1}}))
    # harmless values are accepted
    assert unsupported_resources(res({"memory": {"kernel": -1, "useHierarchy": True,
                                                  "disableOOMKiller": False}}), fake.host) == []


def test_v2_controller_not_enabled(tmp_path):
    fake, mgr = v2(tmp_path, controllers="cpu pids")
    with pytest.raises(CgroupSettingError, match="memory controller is not enabled"):
        mgr.apply(res({"memory": {"limit": 1000000}}))
    with pytest.raises(CgroupSettingError, match="controller 'io' not available"):
        mgr.apply(res({"unified": {"io.max": "8:0 rbps=1"}}))
    with pytest.raises(CgroupSettingError, match="does not exist"):
        mgr.apply(res({"unified": {"cpu.nonexistent": "1"}}))


def test_v2_create_enables_controllers(tmp_path, monkeypatch):
    fake = FakeV2(tmp_path)
    (fake.root / "cgroup.subtree_control").write_text("cpu memory\n")
    seen = []
    real = base.write_file
    monkeypatch.setattr(base, "write_file", lambda p, v: (seen.append((os.path.relpath(p, fake.root), v)),
                                                          real(p, v)))
    mgr = new_manager("/a/b", "c1", host=fake.host)
    mgr.create()
    assert mgr.created == [str(fake.root / "a"), str(fake.root / "a/b")]
    want = ["+cpuset", "+io", "+hugetlb", "+pids", "+rdma"]  # cpu, memory: already on
    assert seen == [("cgroup.subtree_control", v) for v in want] + \
        [("a/cgroup.subtree_control", "+" + c) for c in FakeV2.CONTROLLERS.split()]
    mgr.destroy()
    assert not (fake.root / "a").exists()


def test_v2_devices_go_through_ebpf(tmp_path, monkeypatch):
    from ocirun.cgroups import ebpf

    fake, mgr = v2(tmp_path)
    seen = []
    monkeypatch.setattr(ebpf, "install", lambda path, d, exc: seen.append((path, d, exc)) or 77)
    mgr.apply(None, (DeviceRule(False, "a", None, None, "rwm"), *ALWAYS_ALLOWED))
    assert mgr.device_prog == 77 and mgr.to_record()["deviceProg"] == 77
    assert seen[0][0] == mgr.path and seen[0][1] is False and (("c", 1, 3), "rwm") in seen[0][2]


def test_v2_freeze_waits_for_events(tmp_path):
    fake, mgr = v2(tmp_path)
    Path(mgr.path, "cgroup.events").write_text("populated 1\nfrozen 1\n")
    mgr.freeze()
    assert mgr.is_frozen()
    with pytest.raises(CgroupSettingError, match="timed out waiting for it to thaw"):
        mgr.thaw(timeout=0.05)  # the fake's events still say frozen 1


def test_v2_stats_shape(tmp_path):
    fake, mgr = v2(tmp_path)
    s = mgr.stats()
    assert s["cpu"]["usage"] == {"total": 10000, "kernel": 4000, "user": 6000}
    assert s["cpu"]["throttling"] == {}
    assert s["memory"]["usage"] == {"limit": 2**64 - 1, "usage": 4096, "max": 8192, "failcnt": 2}
    assert s["memory"]["swap"] == {"limit": 2**64 - 1, "usage": 4096, "failcnt": 0}
    assert s["memory"]["cache"] == 200
    assert s["pids"] == {"current": 3}
    assert s["blkio"]["ioServiceBytesRecursive"] == [{"major": 8, "op": "Read", "value": 4096},
                                                     {"major": 8, "op": "Write", "value": 512}]
    assert s["blkio"]["ioServicedRecursive"][0] == {"major": 8, "op": "Read", "value": 2}
    assert s["cpuset"]["cpus"] == [0, 1]


def test_v2_oom_watch_counts_new_kills(tmp_path):
    fake, mgr = v2(tmp_path)
    w = mgr.oom_watch()
    try:
        assert w.drain() == 0
        Path(mgr.path, "memory.events").write_text("low 0\nhigh 0\nmax 9\noom 1\noom_kill 2\n")
        assert w.drain() == 2
        assert w.drain() == 0
    finally:
        w.close()

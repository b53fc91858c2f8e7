"""Cgroups with real containers, on whatever hierarchy the host has (v1/hybrid
here; pure v2 inside scripts/cgroupv2-guest): resources read back from the
container's cgroup files and compared with runc's, limits enforced, device
rules enforced, pause/resume, update, ps, events, and nothing left behind."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from conftest import OCIRUN, reap_orphans, wait_until
from kernel_probes import hugepage_size, v1_file

from ocirun.cgroups import detect_mode

V2 = detect_mode() == "unified"
MODE = "v2" if V2 else "v1"



class Cgroup:
    """The container's cgroup directories, from its state.json."""

    def __init__(self, record: dict):
        self.rec = record

    @classmethod
    def of(cls, ocirun, cid) -> Cgroup:
        state = json.loads((ocirun.root / cid / "state.json").read_text())
        return cls(state["runtime"]["cgroup"])

    def dirs(self) -> list[str]:
        return [self.rec["path"]] if self.rec["version"] == 2 else list(self.rec["paths"].values())

    def dir(self, controller: str) -> str:
        if self.rec["version"] == 2:
            return self.rec["path"]
        for key, path in self.rec["paths"].items():
            if controller in key.split(","):
                return path
        raise KeyError(controller)

    def read(self, name: str) -> str:
        return Path(self.dir(name.split(".")[0]), name).read_text().strip()


def detached(ocirun, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``create`` / ``run -d``: the container's init inherits our stdio (as with runc),
    so it gets files, not the pipes ``ocirun()`` captures (those would stay open)."""
    import tempfile

    from conftest import reap_orphans

    with tempfile.TemporaryFile() as err:
        p = subprocess.run([*OCIRUN, "--root", str(ocirun.root), *args],
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, timeout=60)
        err.seek(0)
        p.stderr = err.read()
    reap_orphans()
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {p.returncode}: {p.stderr.decode()}")
    return p


def set_resources(bundle, resources: dict, args=("sleep", "60"), **linux) -> None:
    bundle.set_args(*args)

    def f(c):
        c["linux"].setdefault("resources", {}).update(resources)
        c["linux"].update(linux)

    bundle.edit(f)


def block_device() -> tuple[int, int] | None:
    """A real block device (major, minor) for throttle settings."""
    try:
        names = sorted(os.listdir("/sys/block"), key=lambda n: (n.startswith(("loop", "ram", "zram")), n))
    except OSError:
        return None
    for name in names:
        try:
            major, minor = Path(f"/sys/block/{name}/dev").read_text().split(":")
            return int(major), int(minor)
        except OSError:
            continue
    return None




_V2_FILES: list[set[str]] = []


def v2_child_has(name: str) -> bool:
    """Whether a new child of the v2 root cgroup has file ``name`` (a probe cgroup,
    made once and removed: the root itself lacks most controller files)."""
    if not _V2_FILES:
        probe = Path("/sys/fs/cgroup", f"ocitest-probe-{os.getpid()}")
        probe.mkdir()
        try:
            _V2_FILES.append(set(os.listdir(probe)))
        finally:
            probe.rmdir()
    return name in _V2_FILES[0]


def v1_blkio_weight_file() -> str | None:
    """The v1 blkio weight file this kernel has: blkio.bfq.weight (BFQ), blkio.weight
    (CFQ, before 5.0), or None (neither scheduler: none, mq-deadline, kyber)."""
    blkio = Path("/sys/fs/cgroup/blkio")
    for name in ("blkio.bfq.weight", "blkio.weight"):
        if (blkio / name).exists():
            return name
    return None


# --------------------------------------------------------------------------- read back


def resources_for_host() -> tuple[dict, dict]:
    """(config resources, {cgroup file: expected value}) this hierarchy supports."""
    r: dict = {
        "memory": {"limit": 134217728, "reservation": 67108864},
        "cpu": {"shares": 512, "quota": 50000, "period": 100000, "cpus": "0", "mems": "0"},
        "pids": {"limit": 64},
    }
    dev = block_device()
    if dev and not V2 and v1_blkio_weight_file():
        r["blockIO"] = {"weight": 500}
    if dev:
        r.setdefault("blockIO", {}).update({"throttleReadBpsDevice": [{"major": dev[0], "minor": dev[1], "rate": 10485760}],
                        "throttleWriteIOPSDevice": [{"major": dev[0], "minor": dev[1], "rate": 300}]})
    if V2:
        r["memory"]["swap"] = 268435456
        r["unified"] = {"memory.high": "125829120"}  # page aligned: the kernel rounds
        want = {"memory.max": "134217728", "memory.low": "67108864", "memory.high": "125829120",
                "cpu.weight": "20", "cpu.max": "50000 100000", "cpuset.cpus": "0", "cpuset.mems": "0",
                "pids.max": "64"}
        if v2_child_has("memory.swap.max"):
            want["memory.swap.max"] = "134217728"
        else:
            del r["memory"]["swap"]
        if not v2_child_has("cpuset.cpus"):  # the cpuset controller is not enabled here
            del r["cpu"]["cpus"], r["cpu"]["mems"], want["cpuset.cpus"], want["cpuset.mems"]
        if dev:
            want["io.max"] = f"{dev[0]}:{dev[1]} rbps=10485760 wbps=max riops=max wiops=300"
            if v2_child_has("io.weight") and not v2_child_has("io.bfq.weight"):
                # the blkio weight converted to io.weight as runc does: 500 -> 4950
                r["blockIO"]["weight"] = 500
                want["io.weight"] = "default 4950"
        if v2_child_has("cpu.max.burst"):  # Linux 5.14
            r["cpu"]["burst"] = 10000
            want["cpu.max.burst"] = "10000"
        if v2_child_has("cpu.idle"):  # Linux 5.15
            r["cpu"]["idle"] = 0
            want["cpu.idle"] = "0"
        if hugepage_size(2048) and v2_child_has("hugetlb.2MB.max"):
            r["hugepageLimits"] = [{"pageSize": "2MB", "limit": 4194304}]
            want["hugetlb.2MB.max"] = "4194304"
    else:
        r["memory"].update(swappiness=10, disableOOMKiller=False, useHierarchy=True)
        want = {"memory.limit_in_bytes": "134217728", "memory.soft_limit_in_bytes": "67108864",
                "memory.swappiness": "10",
                "memory.use_hierarchy": "1", "memory.oom_control": "oom_kill_disable 0",
                "cpu.shares": "512", "cpu.cfs_quota_us": "50000", "cpu.cfs_period_us": "100000",
                "cpuset.cpus": "0", "cpuset.mems": "0", "pids.max": "64"}
        if v1_file("memory", "memory.memsw.limit_in_bytes"):  # swap accounting (CONFIG_MEMCG_SWAP, on)
            r["memory"]["swap"] = 268435456
            want["memory.memsw.limit_in_bytes"] = "268435456"
        if v1_file("cpu", "cpu.cfs_burst_us"):  # Linux 5.14
            r["cpu"]["burst"] = 10000
            want["cpu.cfs_burst_us"] = "10000"
        if v1_file("cpu", "cpu.idle"):  # Linux 5.15
            r["cpu"]["idle"] = 0
            want["cpu.idle"] = "0"
        if v1_file("memory", "memory.kmem.tcp.limit_in_bytes"):
            r["memory"]["kernelTCP"] = 16777216
            want["memory.kmem.tcp.limit_in_bytes"] = "16777216"
        if v1_file("cpu", "cpu.rt_runtime_us"):  # CONFIG_RT_GROUP_SCHED
            r["cpu"].update(realtimePeriod=500000, realtimeRuntime=5000)
            want.update({"cpu.rt_period_us": "500000", "cpu.rt_runtime_us": "5000"})
        if dev:
            want["blkio.throttle.read_bps_device"] = f"{dev[0]}:{dev[1]} 10485760"
            want["blkio.throttle.write_iops_device"] = f"{dev[0]}:{dev[1]} 300"
    return r, want


def test_every_resource_is_read_back_from_the_cgroup(api, ocirun, bundle):
    resources, want = resources_for_host()
    set_resources(bundle, resources)
    cid = ocirun.new_id()
    with api.create(cid, bundle.path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL) as c:
        cg = Cgroup.of(ocirun, cid)
        got = {name: cg.read(name) for name in want}
        if "memory.oom_control" in got:  # also "under_oom 0", "oom_kill N" lines
            got["memory.oom_control"] = got["memory.oom_control"].splitlines()[0]
        assert got == want
        if "weight" in resources.get("blockIO", {}) and not V2:
            assert cg.read(v1_blkio_weight_file()).split()[-1] == "500"
        # the init is in the container's cgroup of every hierarchy before it runs
        for d in cg.dirs():
            assert str(c.pid) in Path(d, "cgroup.procs").read_text().split()


def test_resources_match_runc(ocirun, bundle, tmp_path):
    """Same bundle, same resources: the files ocirun writes equal the ones runc writes
    (for what runc 1.1 applies as the spec says)."""
    if shutil.which("runc") is None:
        pytest.skip("runc not installed")
    resources, want = resources_for_host()
    resources.pop("unified", None)
    # runc 1.1 ignores cpu.burst, cpu.idle, useHierarchy and kernelTCP
    resources["cpu"].pop("burst", None)
    resources["cpu"].pop("idle", None)
    resources["memory"].pop("useHierarchy", None)
    resources["memory"].pop("kernelTCP", None)
    for name in ("cpu.cfs_burst_us", "cpu.max.burst", "cpu.idle", "memory.high", "memory.use_hierarchy",
                 "memory.kmem.tcp.limit_in_bytes", "memory.oom_control"):
        want.pop(name, None)
    set_resources(bundle, resources)
    runc_bundle = bundle.copy(tmp_path / "runc-bundle")
    cid = ocirun.new_id()
    rid = ocirun.new_id("ocitest-runc")
    runc_root = tmp_path / "runc-root"
    detached(ocirun, "create", "--bundle", str(bundle.path), cid)
    try:
        with open(tmp_path / "runc.err", "w+b") as err:
            p = subprocess.run(["runc", "--root", str(runc_root), "create", "--bundle", str(runc_bundle.path),
                                rid], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, timeout=60)
        assert p.returncode == 0, (tmp_path / "runc.err").read_text()
        from ocirun.cgroups import new_manager

        mgr = new_manager(None, rid)
        rec = mgr.to_record()
        runc_cg = Cgroup(rec)
        ours = Cgroup.of(ocirun, cid)
        for name in want:
            assert ours.read(name) == runc_cg.read(name), name
    finally:
        subprocess.run(["runc", "--root", str(runc_root), "delete", "--force", rid], capture_output=True)
        ocirun("delete", "--force", cid)


@pytest.mark.parametrize("cgroupns", [False, True], ids=["no-cgroupns", "cgroupns"])
def test_cgroup_mount_inside_shows_the_containers_own_cgroup(ocirun, bundle, cgroupns):
    """/sys/fs/cgroup inside is the container's own cgroup (v1: one bind per
    controller; v2: the container's directory), with or without a cgroup
    namespace, as runc; and the container's first process already runs in it."""
    pids_dir = "/sys/fs/cgroup" if V2 else "/sys/fs/cgroup/pids"
    # cgroup.procs read by cat alone (a pipe into wc raced: wc was not always forked yet)
    script = f"cat {pids_dir}/pids.max; cat {pids_dir}/cgroup.procs >/tmp/procs; wc -l </tmp/procs; cat /proc/self/cgroup"
    set_resources(bundle, {"pids": {"limit": 77}}, args=("sh", "-c", script))
    if cgroupns:
        bundle.edit(lambda c: c["linux"]["namespaces"].append({"type": "cgroup"}))
    cid = ocirun.new_id()
    from ocirun.cgroups import new_manager

    cg = Cgroup(new_manager(None, cid).to_record())  # where create will put it
    mount_root = "/sys/fs/cgroup" if V2 else "/sys/fs/cgroup/pids"
    want_path = "/" if cgroupns else "/" + os.path.relpath(cg.dir("pids"), mount_root)
    lines = ocirun("run", "--bundle", str(bundle.path), cid).stdout.decode().splitlines()
    assert lines[0] == "77"
    assert lines[1] == "2"  # sh and cat: the container's cgroup, not the host's root
    own = dict((ln.split(":", 2)[1], ln.split(":", 2)[2]) for ln in lines[2:])
    assert own["" if V2 else "pids"] == want_path, lines


# --------------------------------------------------------------------------- enforcement


def test_pids_limit_stops_a_fork_loop(api, ocirun, bundle):
    # the subshell forks 40 sleeps; busybox sh gives up at the first refused fork
    # /tmp/done once the subshell has exited and been reaped (":" is a built-in: no fork)
    script = ("(i=0; while [ $i -lt 40 ]; do sleep 30 & i=$((i+1)); echo $i > /tmp/forked; done) 2>/dev/null;"
              ": > /tmp/done; exec sleep 30")
    set_resources(bundle, {"pids": {"limit": 10}}, args=("sh", "-c", script))
    cid = ocirun.new_id()
    api.create(cid, bundle.path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
               stderr=subprocess.DEVNULL).start()
    cg = Cgroup.of(ocirun, cid)
    wait_until((bundle.rootfs / "tmp/done").exists, timeout=30)
    forked = int((bundle.rootfs / "tmp/forked").read_text())
    assert forked == 8  # init + subshell + 8 sleeps = 10
    assert int(cg.read("pids.current")) == 9  # the subshell has exited
    events_file = Path(cg.dir("pids"), "pids.events")
    if events_file.exists():
        assert int(events_file.read_text().split()[1]) > 0  # "max N": forks refused
    pids = json.loads(ocirun("ps", "--format", "json", cid).stdout)
    assert len(pids) == 9
    ocirun("delete", "--force", cid)


@pytest.mark.parametrize("limit, out, code", [(1, "max=1\n", 2), (0, "max=max\nforked\n", 0)])
def test_pids_limit_one_and_zero_as_runc(limit, out, code, ocirun, bundle, tmp_path):
    """pids.limit 1 starts (#11 item 6): stage-1 and the init are both in the cgroup
    while the init is cloned, so the limit is written once the init is the only task,
    before it runs anything: the process sees it at once and cannot fork (busybox sh
    then exits 2). pids.limit 0 is no limit, as runc (it writes nothing)."""
    pids_dir = "/sys/fs/cgroup" if V2 else "/sys/fs/cgroup/pids"
    script = f'read m < {pids_dir}/pids.max; echo "max=$m"; /bin/true; echo forked'
    set_resources(bundle, {"pids": {"limit": limit}}, args=("sh", "-c", script))
    if V2:  # runc 1.1 shows the container's own v2 cgroup at /sys/fs/cgroup only with a cgroup namespace
        bundle.edit(lambda c: c["linux"]["namespaces"].append({"type": "cgroup"}))
    theirs = bundle.copy(tmp_path / "runc-bundle")
    p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id(), check=False)
    assert (p.returncode, p.stdout.decode()) == (code, out), p.stderr
    if limit == 1:
        assert b"can't fork" in p.stderr
    if shutil.which("runc") is None:
        return
    root, rid = tmp_path / "runc-root", ocirun.new_id("ocitest-runc")
    try:
        ref = subprocess.run(["runc", "--root", str(root), "run", "--bundle", str(theirs.path), rid],
                             capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    finally:
        subprocess.run(["runc", "--root", str(root), "delete", "--force", rid], capture_output=True)
    assert (ref.returncode, ref.stdout.decode()) == (code, out), ref.stderr


def test_memory_limit_oom_kills_a_hog_and_events_reports_it(ocirun, bundle):
    limit = 32 * 1024 * 1024
    # memory+swap = memory: no swap to escape to; tail buffers /dev/zero (no newline) forever
    memory = {"limit": limit, "swap": limit}
    if not (v2_child_has("memory.swap.max") if V2 else v1_file("memory", "memory.memsw.limit_in_bytes")):
        # no swap accounting: the swap limit cannot be set; without swap there is none to escape to
        if len(Path("/proc/swaps").read_text().splitlines()) > 1:
            pytest.skip("swap is on, but swap accounting is not: the hog would swap instead")
        del memory["swap"]
    set_resources(bundle, {"memory": memory}, args=("tail", "/dev/zero"))
    cid = ocirun.new_id()
    detached(ocirun, "create", "--bundle", str(bundle.path), cid)
    events = subprocess.Popen([*ocirun_cmd(ocirun), "events", "--interval", "100ms", cid],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        # the first stats line comes after the OOM watch is registered (no sleep: a loaded
        # machine, or the TCG guest, can take longer than any fixed delay to start events)
        first = events.stdout.readline()
        ocirun("start", cid)
        out, err = events.communicate(timeout=60)
        out = first + out
    finally:
        if events.poll() is None:
            events.kill()
            events.wait()
    lines = [json.loads(x) for x in out.decode().splitlines()]
    assert {"type": "oom", "id": cid} in lines, (out, err)
    assert any(x["type"] == "stats" for x in lines)
    assert ocirun.wait_status(cid, "stopped") == "stopped"
    ocirun("delete", cid)
    # and run reports the kill as exit 137
    cid = ocirun.new_id()
    p = ocirun("run", "--bundle", str(bundle.path), cid, check=False)
    assert p.returncode == 137


def ocirun_cmd(ocirun) -> list[str]:

    return [*OCIRUN, "--root", str(ocirun.root)]


def test_device_rules_are_enforced(ocirun, bundle):
    """/dev/null (allowed by default) is readable; a device node the rules do not
    allow cannot be opened even by root; one a rule allows can."""
    # in /dev: /tmp may be on a nodev mount (EACCES whatever the cgroup says)
    script = ("head -c1 /dev/null && echo null-ok; mknod /dev/fuse-test c 10 229; "
              "(exec 3</dev/fuse-test) 2>/dev/err && echo fuse-ok; cat /dev/err; true")
    set_resources(bundle, {}, args=("sh", "-c", script))

    def add_mknod(c):
        for caps in c["process"]["capabilities"].values():
            caps.append("CAP_MKNOD")

    bundle.edit(add_mknod)
    p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id())
    out = p.stdout.decode()
    assert "null-ok" in out
    assert "fuse-ok" not in out and "Operation not permitted" in out

    bundle.edit(lambda c: c["linux"]["resources"]["devices"].append(
        {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"}))
    out = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id()).stdout.decode()
    assert "Operation not permitted" not in out  # opens (or ENODEV without the fuse module)


# config-linux.md: "The runtime MUST apply entries in the listed order" (#11 item 10)
_ORDERED_RULES = [
    {"allow": False, "access": "rwm"},
    {"allow": True, "type": "c", "major": 10, "minor": 229, "access": "rw"},  # /dev/fuse
    {"allow": True, "type": "c", "major": 4, "minor": 64, "access": "r"},     # /dev/ttyS0
    {"allow": True, "type": "b", "major": 7, "minor": 0, "access": "r"},      # /dev/loop0
]
# mknod needs CAP_MKNOD; every "c/b *:* m" is among the devices always allowed
_OPEN = ("mknod /dev/t-fuse c 10 229; mknod /dev/t-ttys0 c 4 64; mknod /dev/t-hpet c 10 228; "
         "for t in 'fuse <' 'fuse >' 'ttys0 <' 'ttys0 >' 'hpet <'; do set -- $t; "
         "if [ $2 = '<' ]; then (exec 3</dev/t-$1) 2>/dev/err; else (exec 3>/dev/t-$1) 2>/dev/err; fi; "
         "grep -q 'not permitted' /dev/err && echo \"$1 $2 denied\" || echo \"$1 $2 allowed\"; done")


def _with_mknod(c):
    for caps in c["process"]["capabilities"].values():
        caps.append("CAP_MKNOD")


@pytest.mark.skipif(V2, reason="devices.list is cgroup v1's")
def test_device_rules_appear_in_the_listed_order(ocirun, bundle):
    """v1: the configured allow rules come first in devices.list, in their order (the
    kernel keeps the order of the writes), then the devices always allowed."""
    set_resources(bundle, {"devices": _ORDERED_RULES})
    cid = ocirun.new_id()
    detached(ocirun, "run", "-d", "--bundle", str(bundle.path), cid)
    listed = Cgroup.of(ocirun, cid).read("devices.list").splitlines()
    assert listed[:3] == ["c 10:229 rw", "c 4:64 r", "b 7:0 r"], listed
    assert "c 1:3 rwm" in listed[3:] and "c *:* m" in listed[3:]  # the defaults, after them


def test_device_rules_are_applied_in_the_listed_order(ocirun, bundle):
    """What the rules allow, by behaviour (mknod, then open for reading and writing),
    and a later rule wins over an earlier one: deny after allow removes the access,
    allow after deny grants it."""
    set_resources(bundle, {"devices": _ORDERED_RULES}, args=("sh", "-c", _OPEN))
    bundle.edit(_with_mknod)
    out = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id()).stdout.decode().splitlines()
    assert out == ["fuse < allowed", "fuse > allowed", "ttys0 < allowed", "ttys0 > denied", "hpet < denied"]

    fuse_write = {"type": "c", "major": 10, "minor": 229, "access": "w"}
    for later, want in ((False, "fuse > denied"), (True, "fuse > allowed")):
        rules = [{"allow": False, "access": "rwm"}]
        pair = [dict(fuse_write, allow=True, access="rw"), dict(fuse_write, allow=False)]
        rules += pair if not later else pair[::-1]  # deny last, or allow last
        bundle.edit(lambda c, rules=rules: c["linux"]["resources"].__setitem__("devices", rules))
        out = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id()).stdout.decode().splitlines()
        assert want in out, out


# --------------------------------------------------------------------------- verbs


COUNTER = "i=0; while true; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done"


def read_count(bundle) -> int:
    try:
        return int((bundle.rootfs / "tmp" / "count").read_text() or 0)
    except (OSError, ValueError):
        return 0


def test_pause_freezes_and_resume_continues(ocirun, bundle):
    set_resources(bundle, {}, args=("sh", "-c", COUNTER))
    cid = ocirun.new_id()
    detached(ocirun, "run", "-d", "--bundle", str(bundle.path), cid)
    end = time.monotonic() + 10
    while read_count(bundle) < 3 and time.monotonic() < end:
        time.sleep(0.05)
    ocirun("pause", cid)
    assert ocirun.state(cid)["status"] == "paused"
    cg = Cgroup.of(ocirun, cid)
    assert (cg.read("cgroup.freeze") == "1") if V2 else (cg.read("freezer.state") == "FROZEN")
    frozen_at = read_count(bundle)
    time.sleep(0.5)
    assert read_count(bundle) == frozen_at
    p = ocirun("pause", cid, check=False)
    assert p.returncode == 1 and b"container not running" in p.stderr
    ocirun("resume", cid)
    assert ocirun.state(cid)["status"] == "running"
    end = time.monotonic() + 10
    while (count := read_count(bundle)) <= frozen_at + 2 and time.monotonic() < end:
        time.sleep(0.05)
    assert count > frozen_at + 2  # (read again, it could be caught between echo's truncate and write)
    p = ocirun("resume", cid, check=False)
    assert p.returncode == 1 and b"container not paused" in p.stderr
    # a paused container can be killed and deleted
    ocirun("pause", cid)
    ocirun("delete", "--force", cid)


def test_update_changes_live_values(ocirun, bundle):
    set_resources(bundle, {"memory": {"limit": 134217728}, "pids": {"limit": 64},
                           "cpu": {"shares": 1024}})
    cid = ocirun.new_id()
    detached(ocirun, "run", "-d", "--bundle", str(bundle.path), cid)
    cg = Cgroup.of(ocirun, cid)
    ocirun("update", "--memory", "64m", "--pids-limit", "30", "--cpu-quota", "20000", "--cpu-period", "100000",
           "--cpu-share", "256", "--cpuset-cpus", "0", cid)
    if V2:
        assert (cg.read("memory.max"), cg.read("pids.max"), cg.read("cpu.max"), cg.read("cpu.weight"),
                cg.read("cpuset.cpus")) == ("67108864", "30", "20000 100000", "10", "0")
    else:
        assert (cg.read("memory.limit_in_bytes"), cg.read("pids.max"), cg.read("cpu.cfs_quota_us"),
                cg.read("cpu.shares"), cg.read("cpuset.cpus")) == ("67108864", "30", "20000", "256", "0")
    # --kernel-memory: accepted and ignored with a warning, as at create (and runc)
    p = ocirun("update", "--kernel-memory", "64m", cid)
    assert b"warning: kernel memory limits are deprecated and ignored" in p.stderr, p.stderr
    # a period alone keeps the quota
    ocirun("update", "--cpu-period", "50000", cid)
    if V2:
        assert cg.read("cpu.max") == "20000 50000"
    else:
        assert (cg.read("cpu.cfs_quota_us"), cg.read("cpu.cfs_period_us")) == ("20000", "50000")
    # --resources on stdin; zeros mean "unchanged" (as runc)
    doc = {"memory": {"limit": 100663296, "reservation": 0}, "pids": {"limit": 0}, "cpu": {"quota": 30000}}
    ocirun("update", "--resources", "-", cid, input=json.dumps(doc).encode())
    mem = cg.read("memory.max" if V2 else "memory.limit_in_bytes")
    assert mem == "100663296" and cg.read("pids.max") == "30"
    # what only --resources can say: cpu.idle (runc 1.1 has no flag for it; Linux 5.15)
    if (v2_child_has("cpu.idle") if V2 else v1_file("cpu", "cpu.idle")):
        ocirun("update", "--resources", "-", cid, input=json.dumps({"cpu": {"idle": 1}}).encode())
        assert cg.read("cpu.idle") == "1"
    # checkBeforeUpdate: a limit below the current usage is refused
    doc = {"memory": {"limit": 4096, "checkBeforeUpdate": True}}
    p = ocirun("update", "--resources", "-", cid, input=json.dumps(doc).encode(), check=False)
    assert p.returncode == 1 and b"lower than the current usage" in p.stderr
    p = ocirun("update", "--memory", "nonsense", cid, check=False)
    assert p.returncode == 1 and b"invalid value for memory" in p.stderr
    ocirun("kill", cid, "KILL")
    ocirun.wait_status(cid, "stopped")
    p = ocirun("update", "--memory", "64m", cid, check=False)
    assert p.returncode == 1 and b"container not running" in p.stderr
    ocirun("delete", cid)


def update_flags_and_files() -> tuple[list[str], list[str]]:
    """Every runc 1.1 ``update`` flag this hierarchy can apply, and the files they set."""
    flags = ["--memory", "64m", "--memory-swap", "128m", "--memory-reservation", "32m", "--cpu-share", "256",
             "--cpu-quota", "20000", "--cpu-period", "100000", "--cpuset-cpus", "0", "--cpuset-mems", "0",
             "--pids-limit", "30"]
    if V2:
        files = ["memory.max", "memory.swap.max", "memory.low", "cpu.weight", "cpu.max", "cpuset.cpus",
                 "cpuset.mems", "pids.max"]
        if not v2_child_has("memory.swap.max"):
            flags[2:4] = []
            files.remove("memory.swap.max")
        weight = "io.bfq.weight" if v2_child_has("io.bfq.weight") else "io.weight"
        if v2_child_has(weight):
            flags += ["--blkio-weight", "500"]
            files.append(weight)
    else:
        files = ["memory.limit_in_bytes", "memory.memsw.limit_in_bytes", "memory.soft_limit_in_bytes",
                 "cpu.shares", "cpu.cfs_quota_us", "cpu.cfs_period_us", "cpuset.cpus", "cpuset.mems", "pids.max"]
        if not v1_file("memory", "memory.memsw.limit_in_bytes"):  # no swap accounting
            flags[2:4] = []
            files.remove("memory.memsw.limit_in_bytes")
        if v1_file("cpu", "cpu.rt_runtime_us"):  # CONFIG_RT_GROUP_SCHED
            flags += ["--cpu-rt-period", "500000", "--cpu-rt-runtime", "4000"]
            files += ["cpu.rt_period_us", "cpu.rt_runtime_us"]
        weight = v1_blkio_weight_file()
        if weight is not None:
            flags += ["--blkio-weight", "500"]
            files.append(weight)
    return flags, files


def test_update_flags_match_runc(ocirun, bundle, tmp_path):
    """runc 1.1's individual update flags, on a live container: the files equal
    those ``runc update`` writes for the same flags on the same config."""
    if shutil.which("runc") is None:
        pytest.skip("runc not installed")
    set_resources(bundle, {"memory": {"limit": 134217728}, "cpu": {"shares": 1024}, "pids": {"limit": 64}})
    runc_bundle = bundle.copy(tmp_path / "runc-bundle")
    flags, files = update_flags_and_files()
    cid, rid = ocirun.new_id(), ocirun.new_id("ocitest-runc")
    runc = ["runc", "--root", str(tmp_path / "runc-root")]
    detached(ocirun, "run", "-d", "--bundle", str(bundle.path), cid)
    try:
        with open(tmp_path / "runc.err", "w+b") as err:
            p = subprocess.run([*runc, "run", "-d", "--bundle", str(runc_bundle.path), rid],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, timeout=60)
        assert p.returncode == 0, (tmp_path / "runc.err").read_text()
        ocirun("update", *flags, cid)
        p = subprocess.run([*runc, "update", *flags, rid], capture_output=True, timeout=60)
        assert p.returncode == 0, p.stderr
        from ocirun.cgroups import new_manager

        ours, theirs = Cgroup.of(ocirun, cid), Cgroup(new_manager(None, rid).to_record())
        got = {name: ours.read(name) for name in files}
        assert got == {name: theirs.read(name) for name in files}
        limit = got["memory.max" if V2 else "memory.limit_in_bytes"]
        assert limit == "67108864" and got["pids.max"] == "30"  # changed from create's values
    finally:
        subprocess.run([*runc, "delete", "--force", rid], capture_output=True)
        ocirun("delete", "--force", cid)


def test_ps_table_and_json(ocirun, bundle):
    set_resources(bundle, {}, args=("sh", "-c", "sleep 60 & exec sleep 61"))
    cid = ocirun.new_id()
    detached(ocirun, "run", "-d", "--bundle", str(bundle.path), cid)
    pid = ocirun.state(cid)["pid"]
    end = time.monotonic() + 5
    while time.monotonic() < end:
        pids = json.loads(ocirun("ps", "--format", "json", cid).stdout)
        if len(pids) == 2:
            break
        time.sleep(0.05)
    assert pid in pids and len(pids) == 2
    table = ocirun("ps", cid).stdout.decode().splitlines()
    assert table[0].split()[1] == "PID"
    assert sorted(int(line.split()[1]) for line in table[1:]) == sorted(pids)
    custom = ocirun("ps", cid, "-o", "pid,comm").stdout.decode().splitlines()
    assert custom[0].split() == ["PID", "COMMAND"] and len(custom) == 3
    ocirun("delete", "--force", cid)


def test_events_stats_in_runcs_format(ocirun, bundle):
    set_resources(bundle, {"memory": {"limit": 134217728}, "pids": {"limit": 50}})
    cid = ocirun.new_id()
    detached(ocirun, "run", "-d", "--bundle", str(bundle.path), cid)
    ev = json.loads(ocirun("events", "--stats", cid).stdout)
    assert ev["type"] == "stats" and ev["id"] == cid
    data = ev["data"]
    hugetlb = v2_child_has("hugetlb.2MB.max") if V2 else os.path.isdir("/sys/fs/cgroup/hugetlb")
    assert {"cpu", "memory", "pids", "blkio"} | ({"hugetlb"} if hugetlb else set()) <= set(data)
    assert data["pids"] == {"current": 1, "limit": 50}
    assert data["memory"]["usage"]["limit"] == 134217728 and data["memory"]["usage"]["usage"] > 0
    assert data["cpu"]["usage"]["total"] > 0
    # streaming: a stats line per interval, and the stream ends when the container stops
    proc = subprocess.Popen([*ocirun_cmd(ocirun), "events", "--interval", "200ms", cid], stdout=subprocess.PIPE)
    first = b"".join(proc.stdout.readline() for _ in range(3))  # three intervals, however slow the start
    ocirun("kill", cid, "KILL")
    out, _ = proc.communicate(timeout=10)
    out = first + out
    lines = [json.loads(x) for x in out.decode().splitlines()]
    assert len(lines) >= 3 and all(x["type"] == "stats" and x["id"] == cid for x in lines)
    ocirun.wait_status(cid, "stopped")
    p = ocirun("events", "--stats", cid, check=False)
    assert p.returncode == 1 and b"is not running" in p.stderr
    ocirun("delete", cid)


def test_kill_all_and_delete_kill_stragglers_and_remove_every_cgroup(ocirun, bundle):
    # no pid namespace: the background sleeps outlive the init, in its cgroup
    set_resources(bundle, {}, args=("sh", "-c", "sleep 100 & sleep 100 & exec sleep 100"))
    bundle.edit(lambda c: c["linux"].__setitem__(
        "namespaces", [n for n in c["linux"]["namespaces"] if n["type"] != "pid"]))
    cid = ocirun.new_id()
    detached(ocirun, "run", "-d", "--bundle", str(bundle.path), cid)
    cg = Cgroup.of(ocirun, cid)
    end = time.monotonic() + 5
    while len(json.loads(ocirun("ps", "--format", "json", cid).stdout)) < 3 and time.monotonic() < end:
        time.sleep(0.05)
    ocirun("kill", cid, "KILL")  # the init only
    assert ocirun.wait_status(cid, "stopped") == "stopped"
    left = json.loads(ocirun("ps", "--format", "json", cid).stdout)
    assert len(left) == 2  # stragglers
    ocirun("delete", cid)
    for d in cg.dirs():
        assert not os.path.exists(d), d
    for pid in left:  # killed by delete: gone, or a zombie, once they have finished exiting
        stat = Path(f"/proc/{pid}/stat")

        def finished(stat=stat) -> bool:
            reap_orphans()
            return _state(stat) in ("Z", "")
        assert wait_until(finished), stat

    cid = ocirun.new_id()
    bundle.set_args("sh", "-c", "sleep 100 & sleep 100 & exec sleep 100")
    detached(ocirun, "run", "-d", "--bundle", str(bundle.path), cid)
    end = time.monotonic() + 5
    while len(json.loads(ocirun("ps", "--format", "json", cid).stdout)) < 3 and time.monotonic() < end:
        time.sleep(0.05)
    ocirun("kill", "--all", cid, "KILL")
    end = time.monotonic() + 5
    while json.loads(ocirun("ps", "--format", "json", cid).stdout) and time.monotonic() < end:
        time.sleep(0.05)
    assert json.loads(ocirun("ps", "--format", "json", cid).stdout) == []
    ocirun("delete", cid)


def test_create_and_exec_leave_the_runtime_in_its_callers_cgroup(ocirun, bundle, tmp_path):
    """create and exec start a migration that moves nothing (the runtime into the
    cgroup it is in: ocirun.cgroups.migration) so that the kernel's wait before the
    container's first migration passes early. The runtime stays where its caller
    put it: its hooks (its children, spawned after that migration) and the exec'd
    process's stage run from there, and the container still gets its own cgroup."""
    if V2:
        pytest.skip("v2: the container is cloned into its cgroup; there is nothing to warm up")
    from ocirun.cgroups.hierarchy import Host

    host = Host.current()
    own = host.own_cgroups()
    h = next((h for h in host.v1_hierarchies() if not h.unified and h.key in own), None)
    if h is None:
        pytest.skip("no v1 hierarchy of our own")
    cid = ocirun.new_id()
    caller_cg = Path(h.mountpoint) / f"{cid}-caller"
    caller_cg.mkdir()
    for name in ("cpuset.cpus", "cpuset.mems"):  # a cpuset cgroup takes tasks once both are set
        if (caller_cg / name).exists():
            (caller_cg / name).write_text((caller_cg.parent / name).read_text())
    hook = tmp_path / "hook.sh"
    hook.write_text('#!/bin/sh\ncat /proc/self/cgroup > "$1"\n')
    hook.chmod(0o755)
    out = tmp_path / "hook-cgroups"
    bundle.set_args("sleep", "60")

    def f(c):
        c["hooks"] = {"createRuntime": [{"path": str(hook), "args": ["hook.sh", str(out)]}]}
        c["linux"].pop("cgroupsPath", None)  # below the runtime's own cgroup, the caller's

    bundle.edit(f)

    def line_of(text: str) -> str:
        return next(x for x in text.splitlines() if x.split(":")[1] == h.key)

    try:
        script = 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"'
        with tempfile.TemporaryFile() as err:  # the init keeps its stdio: a file, not a pipe
            p = subprocess.run(["sh", "-c", script, "sh", str(caller_cg), *OCIRUN, "--root", str(ocirun.root),
                                "create", "--bundle", str(bundle.path), cid],
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err, timeout=60)
            err.seek(0)
            assert p.returncode == 0, err.read()
        reap_orphans()
        expected = f"{h.root.rstrip('/')}/{cid}-caller"
        assert line_of(out.read_text()).split(":", 2)[2] == expected
        # the container's own cgroup, below the caller's (the default cgroups path is relative)
        state = json.loads(ocirun("state", cid).stdout)
        container = line_of(Path(f"/proc/{state['pid']}/cgroup").read_text())
        assert container.split(":", 2)[2].startswith(expected + "/")
        p = subprocess.run(["sh", "-c", script, "sh", str(caller_cg), *OCIRUN, "--root", str(ocirun.root),
                            "exec", cid, "cat", "/proc/self/cgroup"], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        assert line_of(p.stdout) == container  # the exec'd process: the container's cgroup
        assert not (caller_cg / "cgroup.procs").read_text().split()  # nobody left in the caller's cgroup
    finally:
        ocirun("delete", "--force", cid)
        for sub in sorted(caller_cg.glob("**/"), key=lambda d: -len(d.parts)):
            sub.rmdir()


# --------------------------------------------------------------------------- errors


def test_systemd_cgroup_without_systemd(ocirun, bundle):
    if os.path.isdir("/run/systemd/system"):
        pytest.skip("systemd is running here")
    p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id(), global_args=("--systemd-cgroup",),
               check=False)
    assert p.returncode == 1 and b"systemd cgroup driver not available" in p.stderr


def test_what_the_hierarchy_cannot_express_is_refused_before_create(ocirun, bundle):
    if V2:
        set_resources(bundle, {"network": {"classID": 1048577}})
        want = b"$.linux.resources.network"
    else:
        set_resources(bundle, {"unified": {"memory.high": "1000000"}})
        want = b"$.linux.resources.unified"
    cid = ocirun.new_id()
    p = detached(ocirun, "create", "--bundle", str(bundle.path), cid, check=False)
    assert p.returncode == 1 and want in p.stderr
    assert not (ocirun.root / cid).exists()


def test_kernel_memory_is_ignored_with_a_warning_as_in_runc(ocirun, bundle):
    """memory.kernel: runc 1.1 warns "Kernel memory settings are ignored" and so
    does ocirun (Linux >= 5.16 accepts memory.kmem.limit_in_bytes and ignores
    it; cgroup v2 has no kernel memory limit). The container still runs, with
    its other memory limits; on v2 kernelTCP is ignored the same way."""
    memory = {"kernel": 67108864, "limit": 268435456}
    if V2:
        memory["kernelTCP"] = 16777216
    set_resources(bundle, {"memory": memory})
    cid = ocirun.new_id()
    p = detached(ocirun, "create", "--bundle", str(bundle.path), cid)
    err = p.stderr.decode()
    assert "warning: $.linux.resources.memory.kernel: kernel memory limits are deprecated and ignored" in err, err
    if V2:
        assert "warning: $.linux.resources.memory.kernelTCP: ignored" in err, err
        assert Cgroup.of(ocirun, cid).read("memory.max") == "268435456"
    else:
        cg = Cgroup.of(ocirun, cid)
        assert cg.read("memory.limit_in_bytes") == "268435456"
        assert int(cg.read("memory.kmem.limit_in_bytes")) > 1 << 60  # untouched: unlimited
    ocirun("delete", "--force", cid)


def test_a_file_the_kernel_lacks_is_named(ocirun, bundle):
    """blkio.leaf_weight (v1 without CFQ) or an unknown unified file (v2); on v2
    also a per-device weight that io.weight refuses (no BFQ, io.cost not enabled)."""
    dev = block_device()
    if V2 and dev and v2_child_has("io.weight") and not v2_child_has("io.bfq.weight"):
        set_resources(bundle, {"blockIO": {"weightDevice": [{"major": dev[0], "minor": dev[1], "weight": 200}]}})
        cid = ocirun.new_id()
        p = detached(ocirun, "create", "--bundle", str(bundle.path), cid, check=False)
        if p.returncode == 0:  # io.cost is enabled for this device: 200 -> 1920
            assert f"{dev[0]}:{dev[1]} 1920" in Cgroup.of(ocirun, cid).read("io.weight")
            ocirun("delete", "--force", cid)
        else:
            assert b"io.weight refuses per-device weights" in p.stderr, p.stderr
        bundle.edit(lambda c: c["linux"]["resources"].pop("blockIO"))
    if V2:
        set_resources(bundle, {"unified": {"memory.no_such_file": "1"}})
        want = b"memory.no_such_file does not exist"
    else:
        # BFQ (blkio.bfq.weight, which ocirun uses as runc does) has no leaf weights
        probe = Path("/sys/fs/cgroup/blkio")
        if (probe / "blkio.leaf_weight").exists():
            pytest.skip("this kernel has CFQ leaf weights")
        set_resources(bundle, {"blockIO": {"leafWeight": 500}})
        want = b"blkio.leaf_weight does not exist"
    cid = ocirun.new_id()
    p = detached(ocirun, "create", "--bundle", str(bundle.path), cid, check=False)
    assert p.returncode == 1 and want in p.stderr, p.stderr
    assert not (ocirun.root / cid).exists()


def _state(stat: Path) -> str:
    """The state letter of /proc/PID/stat; "" once the process is gone."""
    try:
        return stat.read_text().rsplit(") ", 1)[1][0]
    except OSError:
        return ""

"""cgroup v1 driver: one directory per hierarchy (and the hybrid cgroup2 mount).

Resources are written as runc's fs driver writes them (libcontainer/cgroups/fs),
one controller after another in runc's order: cpuset, devices, memory, cpu,
pids, blkio, hugetlb, net_cls, net_prio, rdma. See docs/cgroups.md.
"""

from __future__ import annotations

import errno
import os
import time

from ocirun.cgroups import base
from ocirun.cgroups.base import CgroupSettingError, read_file, read_int
from ocirun.cgroups.hierarchy import Host, resolve
from ocirun.errors import CgroupError


class V1Manager:
    version = 1

    def __init__(self, paths: dict[str, str], mountpoints: dict[str, str], created: list[str] | None = None) -> None:
        #: controllers key ("cpu", "memory", "name=systemd", "unified") -> directory
        self.paths = paths
        #: mountpoint of each hierarchy, for removing only what lies below it
        self.mountpoints = mountpoints
        #: directories create() made (removed by destroy())
        self.created: list[str] = list(created or [])

    @classmethod
    def for_path(cls, path: str, host: Host | None = None) -> V1Manager:
        host = host or Host.current()
        own = host.own_cgroups()
        paths: dict[str, str] = {}
        mountpoints: dict[str, str] = {}
        for h in host.v1_hierarchies():
            own_path = own.get(h.key, "/")
            paths[h.key] = resolve(h.mountpoint, h.root, own_path, path)
            mountpoints[h.key] = h.mountpoint
        return cls(paths, mountpoints)

    @classmethod
    def from_record(cls, record: dict) -> V1Manager:
        return cls(dict(record["paths"]), dict(record["mountpoints"]), list(record.get("created", [])))

    def to_record(self) -> dict:
        return {"version": 1, "paths": self.paths, "mountpoints": self.mountpoints, "created": self.created}

    def planned_record(self) -> dict:
        """to_record() with ``created`` the directories create() would make now:
        what create records before making them (ocirun.container.create)."""
        planned: list[str] = []
        for key, path in self.paths.items():
            planned.extend(base.missing_dirs(path, self.mountpoints[key]))
        return dict(self.to_record(), created=planned)

    def create(self) -> None:
        for key, path in self.paths.items():
            made = base.make_dirs(path, self.mountpoints[key])
            self.created.extend(made)
            if "cpuset" in key.split(","):
                for d in made:
                    _inherit_cpuset(d)

    def dir_of(self, controller: str) -> str | None:
        """The container's directory in the hierarchy holding ``controller`` (None: not mounted)."""
        for key, path in self.paths.items():
            if controller in key.split(","):
                return path
        return None

    def _dir(self, controller: str, what: str) -> str:
        d = self.dir_of(controller)
        if d is None:
            raise CgroupSettingError(
                f"cannot apply {what}: the cgroup v1 {controller} controller is not mounted on this host"
            )
        return d

    # ------------------------------------------------------------------ resources

    def apply(self, resources, rules=None, *, update: bool = False) -> None:
        """Write ``resources`` (``ocirun.spec.model.Resources``; None fields are left
        alone) and, if given, the device ``rules``. ``update``: a live container
        (checkBeforeUpdate applies)."""
        if resources is not None and resources.unified:
            raise CgroupSettingError(
                "cannot apply linux.resources.unified: it needs cgroup v2 and this host uses cgroup v1"
            )
        cpu = resources.cpu if resources is not None else None
        if cpu is not None:
            self._cpuset(cpu)
        if rules is not None:
            self.set_device_rules(rules)
        if resources is None:
            return
        if resources.memory is not None:
            self._memory(resources.memory, update)
        if cpu is not None:
            self._cpu(cpu)
        if resources.pids is not None and resources.pids.limit != 0:  # 0: no limit, as runc
            d = self._dir("pids", "linux.resources.pids")
            limit = resources.pids.limit
            base.set_file(d, "pids.max", "max" if limit < 0 else str(limit), "linux.resources.pids.limit")
        if resources.block_io is not None:
            self._blkio(resources.block_io)
        if resources.hugepage_limits:
            self._hugetlb(resources.hugepage_limits)
        if resources.network is not None:
            self._network(resources.network)
        if resources.rdma:
            d = self._dir("rdma", "linux.resources.rdma")
            for dev, lim in resources.rdma.items():
                base.set_file(d, "rdma.max", rdma_line(dev, lim), "linux.resources.rdma")

    def set_device_rules(self, rules) -> None:
        """The rules as the kernel would evaluate them, written as a reset
        (``a``) and one line per exception (``ocirun.cgroups.devices``)."""
        from ocirun.cgroups.devices import v1_lines

        path = self._dir("devices", "linux.resources.devices")
        for name, line in v1_lines(rules):
            base.set_file(path, name, line, "linux.resources.devices")

    def _cpuset(self, c) -> None:
        if not c.cpus and not c.mems:
            return
        d = self._dir("cpuset", "linux.resources.cpu.cpus/mems")
        if c.cpus:
            base.set_file(d, "cpuset.cpus", c.cpus, "linux.resources.cpu.cpus")
        if c.mems:
            base.set_file(d, "cpuset.mems", c.mems, "linux.resources.cpu.mems")

    def _memory(self, m, update: bool) -> None:
        d = self._dir("memory", "linux.resources.memory")
        what = "linux.resources.memory"
        limit, swap = m.limit or 0, m.swap or 0
        if update and m.check_before_update and limit > 0:
            usage = read_int(d, "memory.usage_in_bytes")
            if limit < usage:
                raise CgroupSettingError(
                    f"rejecting memory limit {limit}: lower than the current usage {usage} (checkBeforeUpdate)"
                )
        if limit == -1 and swap == 0 and base.exists(d, "memory.memsw.limit_in_bytes"):
            swap = -1  # unlimited memory means unlimited memory+swap too (runc)

        def set_limit() -> None:
            if limit:
                base.set_file(d, "memory.limit_in_bytes", str(limit), what + ".limit")

        def set_swap() -> None:
            if swap:
                base.set_file(d, "memory.memsw.limit_in_bytes", str(swap), what + ".swap")

        # memory.limit <= memory.memsw.limit at every step: the order depends on the current limit
        if limit and swap and (swap == -1 or read_int(d, "memory.limit_in_bytes") < swap):
            set_swap()
            set_limit()
        else:
            set_limit()
            set_swap()
        # memory.kernel is not written: ignored with a warning (ocirun.spec.rules.warnings)
        if m.kernel_tcp:
            base.set_file(d, "memory.kmem.tcp.limit_in_bytes", str(m.kernel_tcp), what + ".kernelTCP")
        if m.reservation:
            base.set_file(d, "memory.soft_limit_in_bytes", str(m.reservation), what + ".reservation")
        if m.disable_oom_killer is not None:
            base.set_file(d, "memory.oom_control", "1" if m.disable_oom_killer else "0", what + ".disableOOMKiller")
        if m.swappiness is not None and m.swappiness != -1:
            if not 0 <= m.swappiness <= 100:
                raise CgroupSettingError(f"invalid memory swappiness value: {m.swappiness} (valid range is 0-100)")
            base.set_file(d, "memory.swappiness", str(m.swappiness), what + ".swappiness")
        if m.use_hierarchy is not None:
            base.set_file(d, "memory.use_hierarchy", "1" if m.use_hierarchy else "0", what + ".useHierarchy")

    def _cpu(self, c) -> None:
        if not any(v is not None and v != 0 for v in (c.shares, c.quota, c.period, c.realtime_runtime,
                                                      c.realtime_period)) \
                and c.burst is None and c.idle is None:
            return
        d = self._dir("cpu", "linux.resources.cpu")
        what = "linux.resources.cpu"
        if c.shares:
            base.set_file(d, "cpu.shares", str(c.shares), what + ".shares")
            got = read_int(d, "cpu.shares")
            if c.shares > got:
                raise CgroupSettingError(f"the maximum allowed cpu-shares is {got}")
            if c.shares < got:
                raise CgroupSettingError(f"the minimum allowed cpu-shares is {got}")
        pending_period = ""
        if c.period:
            try:
                base.set_file(d, "cpu.cfs_period_us", str(c.period), what + ".period")
            except CgroupError as err:
                # a shorter period can be refused until the quota shrinks too: retry after it
                if not c.quota or base.error_errno(err) != errno.EINVAL:
                    raise
                pending_period = str(c.period)
        if c.quota:
            base.set_file(d, "cpu.cfs_quota_us", str(c.quota), what + ".quota")
            if pending_period:
                base.set_file(d, "cpu.cfs_period_us", pending_period, what + ".period")
        if c.burst is not None:
            base.set_file(d, "cpu.cfs_burst_us", str(c.burst), what + ".burst")
        if c.idle is not None:
            base.set_file(d, "cpu.idle", str(c.idle), what + ".idle")
        if c.realtime_period:
            base.set_file(d, "cpu.rt_period_us", str(c.realtime_period), what + ".realtimePeriod")
        if c.realtime_runtime:
            base.set_file(d, "cpu.rt_runtime_us", str(c.realtime_runtime), what + ".realtimeRuntime")

    def _blkio(self, b) -> None:
        d = self._dir("blkio", "linux.resources.blockIO")
        what = "linux.resources.blockIO"
        # blkio.weight (CFQ) or, on newer kernels, blkio.bfq.weight (BFQ), as runc picks
        weight, weight_device = "blkio.weight", "blkio.weight_device"
        if not base.exists(d, weight) and base.exists(d, "blkio.bfq.weight"):
            weight, weight_device = "blkio.bfq.weight", "blkio.bfq.weight_device"
        if b.weight:
            base.set_file(d, weight, str(b.weight), what + ".weight")
        if b.leaf_weight:
            base.set_file(d, "blkio.leaf_weight", str(b.leaf_weight), what + ".leafWeight")
        for wd in b.weight_device:
            if wd.weight:
                base.set_file(d, weight_device, f"{wd.major}:{wd.minor} {wd.weight}", what + ".weightDevice")
            if wd.leaf_weight:
                base.set_file(d, "blkio.leaf_weight_device", f"{wd.major}:{wd.minor} {wd.leaf_weight}",
                         what + ".weightDevice")
        for attr, name in (("throttle_read_bps_device", "read_bps_device"),
                           ("throttle_write_bps_device", "write_bps_device"),
                           ("throttle_read_iops_device", "read_iops_device"),
                           ("throttle_write_iops_device", "write_iops_device")):
            for td in getattr(b, attr):
                base.set_file(d, f"blkio.throttle.{name}", f"{td.major}:{td.minor} {td.rate or 0}", what)

    def _hugetlb(self, limits) -> None:
        d = self._dir("hugetlb", "linux.resources.hugepageLimits")
        skip_rsvd = False
        for h in limits:
            what = f"linux.resources.hugepageLimits ({h.page_size})"
            base.set_file(d, f"hugetlb.{h.page_size}.limit_in_bytes", str(h.limit), what)
            rsvd = f"hugetlb.{h.page_size}.rsvd.limit_in_bytes"
            if not skip_rsvd:
                if base.exists(d, rsvd):
                    base.set_file(d, rsvd, str(h.limit), what)
                else:
                    skip_rsvd = True

    def _network(self, n) -> None:
        if n.class_id is not None:
            d = self._dir("net_cls", "linux.resources.network.classID")
            base.set_file(d, "net_cls.classid", str(n.class_id), "linux.resources.network.classID")
        if n.priorities:
            d = self._dir("net_prio", "linux.resources.network.priorities")
            for p in n.priorities:
                base.set_file(d, "net_prio.ifpriomap", f"{p.name} {p.priority}", "linux.resources.network.priorities")

    # ------------------------------------------------------------------ processes

    def place(self, pid: int) -> None:
        for path in self.paths.values():
            base.write_file(os.path.join(path, "cgroup.procs"), str(pid))

    def clone_into_fd(self) -> int | None:
        return None

    def pids(self) -> list[int]:
        # the pids hierarchy (or memory, or any) holds every process of the container
        for key in ("pids", "memory", "freezer"):
            d = self.dir_of(key)
            if d is not None:
                return base.read_pids(d)
        path = next(iter(self.paths.values()), None)
        return base.read_pids(path) if path else []

    def all_pids(self) -> list[int]:
        """Every pid in the container's cgroup of any hierarchy (for killing stragglers)."""
        found: set[int] = set()
        for path in self.paths.values():
            found.update(base.read_pids(path))
        return sorted(found)

    def is_frozen(self) -> bool:
        path = self.dir_of("freezer")
        if not path:
            return False
        try:
            with open(os.path.join(path, "freezer.state")) as f:
                return f.read().strip() in ("FROZEN", "FREEZING")
        except OSError:
            return False

    def freeze(self, timeout: float = 10.0) -> None:
        """FROZEN, and wait until the kernel says every task is frozen."""
        d = self._dir("freezer", "pause")
        end = time.monotonic() + timeout
        delay = 0.0005
        while True:
            base.set_file(d, "freezer.state", "FROZEN")
            if read_file(d, "freezer.state") == "FROZEN":
                return
            if time.monotonic() > end:
                base.set_file(d, "freezer.state", "THAWED")
                raise CgroupSettingError(f"cgroup {d}: timed out waiting for the freezer to reach FROZEN")
            time.sleep(delay)
            delay = min(delay * 2, 0.01)

    def thaw(self, timeout: float = 10.0) -> None:
        d = self._dir("freezer", "resume")
        end = time.monotonic() + timeout
        while True:
            base.set_file(d, "freezer.state", "THAWED")
            if read_file(d, "freezer.state") == "THAWED":
                return
            if time.monotonic() > end:
                raise CgroupSettingError(f"cgroup {d}: timed out waiting for the freezer to thaw")
            time.sleep(0.001)

    def destroy(self) -> None:
        """Kill every process left in any hierarchy (thawing a frozen cgroup so the
        kill lands), then remove the directories create() made."""
        for _ in range(3):
            pids = self.all_pids()
            if not pids:
                break
            base.kill_pids(pids)
            if self.is_frozen():
                try:
                    self.thaw()
                except CgroupError:
                    pass
            _wait_empty(self, 2.0)
        base.remove_dirs(self.created)

    # ------------------------------------------------------------------ stats, events

    def stats(self) -> dict:
        from ocirun.cgroups.stats import v1_stats

        return v1_stats(self)

    def oom_watch(self):
        from ocirun.cgroups.stats import V1OomWatch

        d = self.dir_of("memory")
        return V1OomWatch(d) if d else None


def rdma_line(device: str, lim) -> str:
    line = device
    if lim.hca_handles is not None:
        line += f" hca_handle={lim.hca_handles}"
    if lim.hca_objects is not None:
        line += f" hca_object={lim.hca_objects}"
    return line


def _wait_empty(mgr, timeout: float) -> None:
    end = time.monotonic() + timeout
    while mgr.all_pids() and time.monotonic() < end:
        time.sleep(0.01)


def _inherit_cpuset(directory: str) -> None:
    """A new v1 cpuset cgroup starts with no cpus and mems; give it its parent's
    (runc does the same), or no task can join it."""
    parent = os.path.dirname(directory)
    for name in ("cpuset.cpus", "cpuset.mems"):
        if read_file(directory, name):
            continue
        base.write_file(os.path.join(directory, name), read_file(parent, name))

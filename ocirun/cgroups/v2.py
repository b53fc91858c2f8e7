"""cgroup v2 driver: one directory in the unified hierarchy.

Resources are written as runc's fs2 driver writes them, in its order: pids,
memory, io, cpu, cpuset, hugetlb, rdma, devices (an eBPF program), then the
``unified`` map, so that an explicit file overrides a converted value. The
v1-style properties are converted (cpu shares -> weight, blkio weight -> io
weight, memory+swap -> swap); the ones v2 cannot express are errors. See
docs/cgroups.md.
"""

from __future__ import annotations

import errno
import os
import time

from ocirun.cgroups import base
from ocirun.cgroups.base import CgroupSettingError, read_file, read_int
from ocirun.cgroups.hierarchy import CGROUP2_ROOT, Host, resolve
from ocirun.errors import CgroupError


class V2Manager:
    version = 2

    def __init__(self, path: str, created: list[str] | None = None, root: str = CGROUP2_ROOT,
                 device_prog: int = 0) -> None:
        self.path = path
        #: directories create() made (removed by destroy())
        self.created: list[str] = list(created or [])
        #: the cgroup2 mount point (the hierarchy's root directory)
        self.root = root
        #: id of the device eBPF program we attached (0: none)
        self.device_prog = device_prog

    @classmethod
    def for_path(cls, path: str, host: Host | None = None) -> V2Manager:
        host = host or Host.current()
        mountpoint, mount_root = host.v2_mount()
        # Relative paths go below the *parent* of our own cgroup, as runc's fs2
        # driver does: our own cgroup (a session scope, say) has processes in it,
        # so by the "no internal processes" rule its children could not get the
        # controllers enabled.
        own = os.path.dirname(host.own_cgroups().get("unified", "/"))
        return cls(resolve(mountpoint, mount_root, own, path), root=mountpoint)

    @classmethod
    def from_record(cls, record: dict) -> V2Manager:
        return cls(record["path"], list(record.get("created", [])), root=record.get("root", CGROUP2_ROOT),
                   device_prog=int(record.get("deviceProg", 0)))

    def to_record(self) -> dict:
        rec = {"version": 2, "path": self.path, "created": self.created, "root": self.root}
        if self.device_prog:
            rec["deviceProg"] = self.device_prog
        return rec

    def planned_record(self) -> dict:
        """to_record() with ``created`` the directories create() would make now."""
        return dict(self.to_record(), created=base.missing_dirs(self.path, self.root))

    def create(self) -> None:
        self.created.extend(base.make_dirs(self.path, self.root))
        self._enable_controllers()

    def _enable_controllers(self) -> None:
        """Delegate every available controller down to the container's cgroup, as runc
        does, so resource files exist in it. Best effort: a controller that cannot be
        enabled (e.g. a parent with processes) simply stays off; a resource that needs
        it then fails naming the controller."""
        text = base.try_read(os.path.join(self.root, "cgroup.controllers"))
        if text is None:
            return
        available = text.split()
        rel = os.path.relpath(self.path, self.root)
        cur = self.root
        for part in rel.split("/")[:-1] if rel != "." else []:
            self._enable_in(cur, available)
            cur = os.path.join(cur, part)
        self._enable_in(cur, available)

    @staticmethod
    def _enable_in(directory: str, controllers: list[str]) -> None:
        path = os.path.join(directory, "cgroup.subtree_control")
        enabled = set((base.try_read(path) or "").split())
        for c in controllers:
            if c in enabled:
                continue
            try:
                base.write_file(path, "+" + c)
            except Exception:  # noqa: BLE001 - best effort, see _enable_controllers
                pass

    def controllers(self) -> set[str]:
        text = base.try_read(os.path.join(self.path, "cgroup.controllers"))
        return set((text or "").split())

    def _need(self, controller: str, what: str, have: set[str]) -> None:
        if controller not in have:
            raise CgroupSettingError(
                f"cannot apply {what}: the cgroup v2 {controller} controller is not enabled for "
                f"{self.path} (not in its cgroup.controllers; enable it in the parent's cgroup.subtree_control)",
                self.path,
            )

    # ------------------------------------------------------------------ resources

    def apply(self, resources, rules=None, *, update: bool = False) -> None:
        """Write ``resources`` (None fields are left alone) and, if given, the device
        ``rules``. ``update``: a live container (checkBeforeUpdate applies)."""
        have = self.controllers()
        r = resources
        if r is not None:
            problems = v2_problems(r)
            if problems:
                raise CgroupSettingError("cannot apply " + "; ".join(f"{p}: {m}" for p, m in problems))
            if r.pids is not None and r.pids.limit != 0:  # 0: no limit, as runc
                self._need("pids", "linux.resources.pids", have)
                limit = r.pids.limit
                base.set_file(self.path, "pids.max", "max" if limit < 0 else str(limit), "linux.resources.pids.limit")
            if r.memory is not None:
                self._memory(r.memory, update, have)
            if r.block_io is not None:
                self._io(r.block_io, have)
            if r.cpu is not None:
                self._cpu(r.cpu, have)
            if r.hugepage_limits:
                self._need("hugetlb", "linux.resources.hugepageLimits", have)
                for h in r.hugepage_limits:
                    what = f"linux.resources.hugepageLimits ({h.page_size})"
                    base.set_file(self.path, f"hugetlb.{h.page_size}.max", str(h.limit), what)
                    rsvd = f"hugetlb.{h.page_size}.rsvd.max"
                    if base.exists(self.path, rsvd):
                        base.set_file(self.path, rsvd, str(h.limit), what)
            if r.rdma:
                from ocirun.cgroups.v1 import rdma_line

                self._need("rdma", "linux.resources.rdma", have)
                for dev, lim in r.rdma.items():
                    base.set_file(self.path, "rdma.max", rdma_line(dev, lim), "linux.resources.rdma")
        if rules is not None:
            self.set_device_rules(rules)
        if r is not None and r.unified:
            self._unified(r.unified, have)

    def _memory(self, m, update: bool, have: set[str]) -> None:
        from ocirun.cgroups.convert import swap_v2, v2_value

        limit, swap, reservation = m.limit or 0, m.swap or 0, m.reservation or 0
        if m.kernel_tcp not in (None, 0, -1) and not update:
            # v1's memory.kmem.tcp has no v2 counterpart; runc ignores it with a warning
            from ocirun.errors import warn

            warn("$.linux.resources.memory.kernelTCP: ignored: cgroup v2 has no kernel TCP memory limit")
        if not (limit or swap or reservation):
            return
        self._need("memory", "linux.resources.memory", have)
        if update and m.check_before_update and limit > 0:
            usage = read_int(self.path, "memory.current")
            if limit < usage:
                raise CgroupSettingError(
                    f"rejecting memory limit {limit}: lower than the current usage {usage} (checkBeforeUpdate)"
                )
        try:
            swap2 = swap_v2(swap, limit)
        except ValueError as exc:
            raise CgroupSettingError(f"cannot apply linux.resources.memory.swap: {exc}") from None
        if swap2 != 0 or swap > 0:  # swap == limit means no swap at all: write 0
            base.set_file(self.path, "memory.swap.max", v2_value(swap2), "linux.resources.memory.swap")
        if limit:
            base.set_file(self.path, "memory.max", v2_value(limit), "linux.resources.memory.limit")
        if reservation:
            base.set_file(self.path, "memory.low", v2_value(reservation), "linux.resources.memory.reservation")

    def _io(self, b, have: set[str]) -> None:
        from ocirun.cgroups.convert import blkio_weight_to_io_weight

        if not (b.weight or b.weight_device or b.throttle_read_bps_device or b.throttle_write_bps_device
                or b.throttle_read_iops_device or b.throttle_write_iops_device):
            return
        self._need("io", "linux.resources.blockIO", have)
        what = "linux.resources.blockIO"
        bfq = base.exists(self.path, "io.bfq.weight")
        if b.weight:
            if bfq:
                base.set_file(self.path, "io.bfq.weight", str(b.weight), what + ".weight")
            else:
                base.set_file(self.path, "io.weight", str(blkio_weight_to_io_weight(b.weight)), what + ".weight")
        for wd in b.weight_device:
            if not wd.weight:
                continue
            if bfq:
                base.set_file(self.path, "io.bfq.weight", f"{wd.major}:{wd.minor} {wd.weight}\n", what + ".weightDevice")
            else:
                line = f"{wd.major}:{wd.minor} {blkio_weight_to_io_weight(wd.weight)}"
                try:
                    base.set_file(self.path, "io.weight", line, what + ".weightDevice")
                except CgroupError as err:
                    if base.error_errno(err) != errno.EOPNOTSUPP:
                        raise
                    path = os.path.join(self.path, "io.weight")
                    raise CgroupSettingError(
                        f"cannot apply {what}.weightDevice: {path} refuses per-device weights ({line!r}: "
                        f"operation not supported); they need BFQ (io.bfq.weight) or the io.cost "
                        f"controller enabled for device {wd.major}:{wd.minor} in the root's io.cost.qos",
                        path) from None
        for attr, key in (("throttle_read_bps_device", "rbps"), ("throttle_write_bps_device", "wbps"),
                          ("throttle_read_iops_device", "riops"), ("throttle_write_iops_device", "wiops")):
            for td in getattr(b, attr):
                base.set_file(self.path, "io.max", f"{td.major}:{td.minor} {key}={td.rate or 0}", what)

    def _cpu(self, c, have: set[str]) -> None:
        from ocirun.cgroups.convert import shares_to_weight

        what = "linux.resources.cpu"
        if c.shares or c.quota or c.period or c.burst is not None or c.idle is not None:
            self._need("cpu", what, have)
        if c.shares:
            base.set_file(self.path, "cpu.weight", str(shares_to_weight(c.shares)), what + ".shares")
        if c.idle is not None:
            base.set_file(self.path, "cpu.idle", str(c.idle), what + ".idle")
        if c.quota or c.period:
            if c.quota:
                quota = "max" if c.quota < 0 else str(c.quota)
            else:
                # a period alone keeps the current quota (writing "max P" would lift it)
                quota = read_file(self.path, "cpu.max").split()[0]
            value = quota + (f" {c.period}" if c.period else "")
            base.set_file(self.path, "cpu.max", value, what + ".quota/period")
        if c.burst is not None:
            base.set_file(self.path, "cpu.max.burst", str(c.burst), what + ".burst")
        if c.cpus or c.mems:
            self._need("cpuset", what + ".cpus/mems", have)
            if c.cpus:
                base.set_file(self.path, "cpuset.cpus", c.cpus, what + ".cpus")
            if c.mems:
                base.set_file(self.path, "cpuset.mems", c.mems, what + ".mems")

    def _unified(self, unified, have: set[str]) -> None:
        for key, value in unified.items():
            if "/" in key or key in (".", ".."):
                raise CgroupSettingError(f"unified resource {key!r} must be a file name (no slashes)")
            controller, dot, _ = key.partition(".")
            if not dot:
                raise CgroupSettingError(f"unified resource {key!r} must be in the form CONTROLLER.PARAMETER")
            if controller != "cgroup" and controller not in have:
                raise CgroupSettingError(
                    f"unified resource {key!r} can't be set: controller {controller!r} not available "
                    f"in {self.path}"
                )
            base.set_file(self.path, key, value, f"linux.resources.unified[{key!r}]")

    def set_device_rules(self, rules) -> None:
        """The rules (emulated as the v1 devices cgroup evaluates them) as an eBPF
        program attached to the cgroup (``ocirun.cgroups.ebpf``)."""
        from ocirun.cgroups import ebpf
        from ocirun.cgroups.devices import evaluate

        default_allow, exceptions = evaluate(rules)
        exceptions = sorted(exceptions)  # as runc's program is built: the same verdicts in any order
        rec = base._recording()
        if rec is not None:
            rec.device_program(self.path, default_allow, exceptions)
            if rec.dry_run:
                return
        old = self.device_prog
        self.device_prog = ebpf.install(self.path, default_allow, exceptions)
        if old:
            self._detach(old)

    def _detach(self, prog: int) -> None:
        from ocirun.cgroups import ebpf

        try:
            fd = os.open(self.path, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return
        try:
            ebpf.detach(fd, prog)
        except OSError:
            pass  # already gone with its program or its cgroup
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ processes

    def place(self, pid: int) -> None:
        base.write_file(os.path.join(self.path, "cgroup.procs"), str(pid))

    def clone_into_fd(self) -> int | None:
        return os.open(self.path, os.O_DIRECTORY | os.O_CLOEXEC)

    def pids(self) -> list[int]:
        return base.read_pids(self.path)

    all_pids = pids

    def is_frozen(self) -> bool:
        try:
            with open(os.path.join(self.path, "cgroup.freeze")) as f:
                return f.read().strip() == "1"
        except OSError:
            return False

    def _wait_frozen(self, want: str, timeout: float) -> bool:
        events = os.path.join(self.path, "cgroup.events")
        end = time.monotonic() + timeout
        delay = 0.0005
        while True:
            text = base.try_read(events) or ""
            if f"frozen {want}" in text.splitlines():
                return True
            if time.monotonic() > end:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.01)

    def freeze(self, timeout: float = 10.0) -> None:
        """cgroup.freeze = 1, and wait for cgroup.events to say "frozen 1"."""
        base.set_file(self.path, "cgroup.freeze", "1", "pause")
        if not self._wait_frozen("1", timeout):
            base.set_file(self.path, "cgroup.freeze", "0")
            raise CgroupSettingError(f"cgroup {self.path}: timed out waiting for it to freeze")

    def thaw(self, timeout: float = 10.0) -> None:
        base.set_file(self.path, "cgroup.freeze", "0", "resume")
        if not self._wait_frozen("0", timeout):
            raise CgroupSettingError(f"cgroup {self.path}: timed out waiting for it to thaw")

    def destroy(self) -> None:
        kill = os.path.join(self.path, "cgroup.kill")
        for _ in range(3):
            if not self.pids():
                break
            if os.path.exists(kill):
                try:
                    base.write_file(kill, "1")  # kills frozen tasks too
                except CgroupError:
                    base.kill_pids(self.pids())
            else:
                base.kill_pids(self.pids())
                if self.is_frozen():
                    try:
                        self.thaw()
                    except CgroupError:
                        pass
            end = time.monotonic() + 2.0
            while self.pids() and time.monotonic() < end:
                time.sleep(0.01)
        if self.device_prog and self.path not in self.created:
            self._detach(self.device_prog)  # a cgroup we keep must not keep our rules
        base.remove_dirs(self.created)

    # ------------------------------------------------------------------ stats, events

    def stats(self) -> dict:
        from ocirun.cgroups.stats import v2_stats

        return v2_stats(self)

    def oom_watch(self):
        from ocirun.cgroups.stats import V2OomWatch

        if not os.path.exists(os.path.join(self.path, "memory.events")):
            return None
        return V2OomWatch(self.path)


def v2_problems(r) -> list[tuple[str, str]]:
    """(JSON path, why) for each property of ``r`` that cgroup v2 cannot express."""
    out: list[tuple[str, str]] = []
    p = "$.linux.resources"
    m = r.memory
    if m is not None:
        # memory.kernel (everywhere) and kernelTCP (here) are ignored with a
        # warning, as runc does: see ocirun.spec.rules.warnings and V2Manager._memory
        if m.swappiness is not None and m.swappiness != -1:
            out.append((f"{p}.memory.swappiness", "cgroup v2 has no per-cgroup swappiness"))
        if m.disable_oom_killer:
            out.append((f"{p}.memory.disableOOMKiller", "cgroup v2 cannot disable the OOM killer"))
        if m.use_hierarchy is False:
            out.append((f"{p}.memory.useHierarchy", "cgroup v2 accounting is always hierarchical"))
    c = r.cpu
    if c is not None and (c.realtime_runtime or c.realtime_period):
        out.append((f"{p}.cpu.realtimeRuntime", "cgroup v2 has no realtime scheduling settings"))
    b = r.block_io
    if b is not None:
        if b.leaf_weight or any(wd.leaf_weight for wd in b.weight_device):
            out.append((f"{p}.blockIO.leafWeight", "cgroup v2 has no leaf weights"))
    n = r.network
    if n is not None and (n.class_id is not None or n.priorities):
        out.append((f"{p}.network", "cgroup v2 has no net_cls/net_prio controllers"))
    return out

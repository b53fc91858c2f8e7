"""Container stats in runc's ``events`` JSON shape, and OOM notifications.

The shape is runc's ``types.Stats`` (runc/types/events.go) as Go's encoding/json
writes it: ``omitempty`` numbers and lists are left out when zero, structs never
are. Values are read as runc's fs (v1) and fs2 (v2) drivers read them.
"""

from __future__ import annotations

import os
import struct

from ocirun.cgroups.base import read_keyed, try_read

MAX_U64 = 2**64 - 1


def _int(path: str, default: int = 0) -> int:
    text = try_read(path)
    if text is None:
        return default
    text = text.strip()
    if text == "max":
        return MAX_U64
    try:
        return int(text)
    except ValueError:
        return default


def _omit(d: dict, *keys: str) -> dict:
    """Go's omitempty for the given keys: drop zero numbers and empty lists."""
    for k in keys:
        if k in d and not d[k]:
            del d[k]
    return d


def _memory_entry(limit: int, usage: int, max_usage: int, failcnt: int) -> dict:
    return _omit({"limit": limit, "usage": usage, "max": max_usage, "failcnt": failcnt}, "usage", "max")


def _cpuset_stats(d: str | None, v2: bool) -> dict:
    from ocirun.cgroups.convert import parse_cpu_list

    def lst(name: str) -> list[int]:
        text = try_read(os.path.join(d, name)) if d else None
        try:
            return parse_cpu_list(text or "")
        except ValueError:
            return []

    def num(name: str) -> int:
        return _int(os.path.join(d, name)) if d and not v2 else 0

    out = {
        "cpus": lst("cpuset.cpus.effective" if v2 else "cpuset.cpus"),
        "cpu_exclusive": num("cpuset.cpu_exclusive"),
        "mems": lst("cpuset.mems.effective" if v2 else "cpuset.mems"),
        "mem_hardwall": num("cpuset.mem_hardwall"),
        "mem_exclusive": num("cpuset.mem_exclusive"),
        "memory_migrate": num("cpuset.memory_migrate"),
        "memory_spread_page": num("cpuset.memory_spread_page"),
        "memory_spread_slab": num("cpuset.memory_spread_slab"),
        "memory_pressure": num("cpuset.memory_pressure"),
        "sched_load_balance": num("cpuset.sched_load_balance"),
        "sched_relax_domain_level": num("cpuset.sched_relax_domain_level"),
    }
    return _omit(out, "cpus", "mems")


def _blkio_entries(path: str | None) -> list[dict]:
    """"8:0 Read 123" lines (the Total line skipped) -> runc's blkioEntry list."""
    out = []
    for line in (try_read(path) or "").splitlines() if path else ():
        fields = line.replace(":", " ").split()
        if len(fields) < 3:
            continue
        try:
            major, minor = int(fields[0]), int(fields[1])
            op, value = (fields[2], int(fields[3])) if len(fields) == 4 else ("", int(fields[2]))
        except ValueError:
            continue
        out.append(_omit({"major": major, "minor": minor, "op": op, "value": value},
                         "major", "minor", "op", "value"))
    return out


def _hugepage_sizes() -> list[str]:
    """The host's huge page sizes as cgroup files name them ("2MB", "1GB")."""
    try:
        names = os.listdir("/sys/kernel/mm/hugepages")
    except OSError:
        return []
    sizes = []
    for name in sorted(names):
        kb = int(name.removeprefix("hugepages-").removesuffix("kB"))
        for unit, shift in (("GB", 20), ("MB", 10), ("KB", 0)):
            if kb % (1 << shift) == 0:
                sizes.append(f"{kb >> shift}{unit}")
                break
    return sizes


def _document(cpu, cpuset, memory, pids, blkio, hugetlb) -> dict:
    return {"cpu": cpu, "cpuset": cpuset, "memory": memory, "pids": pids, "blkio": blkio,
            "hugetlb": hugetlb, "intel_rdt": {}, "network_interfaces": None}


def v1_stats(mgr) -> dict:
    j = os.path.join
    cpuacct = mgr.dir_of("cpuacct")
    cpu_dir = mgr.dir_of("cpu")
    usage: dict = {"total": 0, "percpu": [], "percpu_kernel": [], "percpu_user": [], "kernel": 0, "user": 0}
    if cpuacct:
        usage["total"] = _int(j(cpuacct, "cpuacct.usage"))
        usage["percpu"] = [int(x) for x in (try_read(j(cpuacct, "cpuacct.usage_percpu")) or "").split()]
        for line in (try_read(j(cpuacct, "cpuacct.usage_all")) or "").splitlines()[1:]:
            parts = line.split()
            if len(parts) == 3:
                usage["percpu_user"].append(int(parts[1]))
                usage["percpu_kernel"].append(int(parts[2]))
        tick = os.sysconf("SC_CLK_TCK") or 100
        st = read_keyed(j(cpuacct, "cpuacct.stat"))
        usage["user"] = st.get("user", 0) * 10**9 // tick
        usage["kernel"] = st.get("system", 0) * 10**9 // tick
    _omit(usage, "total", "percpu", "percpu_kernel", "percpu_user")
    cs = read_keyed(j(cpu_dir, "cpu.stat")) if cpu_dir else {}
    throttling = _omit({"periods": cs.get("nr_periods", 0), "throttledPeriods": cs.get("nr_throttled", 0),
                        "throttledTime": cs.get("throttled_time", 0)},
                       "periods", "throttledPeriods", "throttledTime")
    cpu = {"usage": usage, "throttling": throttling}

    mem: dict = {}
    md = mgr.dir_of("memory")
    if md:
        raw = read_keyed(j(md, "memory.stat"))

        def entry(prefix: str) -> dict:
            return _memory_entry(_int(j(md, prefix + "limit_in_bytes")), _int(j(md, prefix + "usage_in_bytes")),
                                 _int(j(md, prefix + "max_usage_in_bytes")), _int(j(md, prefix + "failcnt")))

        mem = _omit({"cache": raw.get("cache", 0)}, "cache")
        mem["usage"] = entry("memory.")
        mem["swap"] = entry("memory.memsw.")
        mem["kernel"] = entry("memory.kmem.")
        mem["kernelTCP"] = entry("memory.kmem.tcp.")
        if raw:
            mem["raw"] = raw
    pd = mgr.dir_of("pids")
    pids: dict = {}
    if pd:
        limit = _int(j(pd, "pids.max"))
        pids = _omit({"current": _int(j(pd, "pids.current")), "limit": 0 if limit == MAX_U64 else limit},
                     "current", "limit")
    bd = mgr.dir_of("blkio")
    blkio: dict = {}
    if bd:
        for prefix in ("blkio.", "blkio.bfq.", "blkio.throttle."):
            if os.path.exists(j(bd, prefix + "io_service_bytes_recursive")):
                keys = {"ioServiceBytesRecursive": "io_service_bytes_recursive",
                        "ioServicedRecursive": "io_serviced_recursive"}
                if prefix == "blkio.":
                    keys.update(ioQueueRecursive="io_queued_recursive",
                                ioServiceTimeRecursive="io_service_time_recursive",
                                ioWaitTimeRecursive="io_wait_time_recursive",
                                ioMergedRecursive="io_merged_recursive",
                                ioTimeRecursive="time_recursive", sectorsRecursive="sectors_recursive")
                for key, name in keys.items():
                    entries = _blkio_entries(j(bd, prefix + name))
                    if entries:
                        blkio[key] = entries
                break
    hd = mgr.dir_of("hugetlb")
    hugetlb: dict = {}
    if hd:
        for size in _hugepage_sizes():
            p = j(hd, f"hugetlb.{size}.")
            hugetlb[size] = _omit({"usage": _int(p + "usage_in_bytes"), "max": _int(p + "max_usage_in_bytes"),
                                   "failcnt": _int(p + "failcnt")}, "usage", "max")
    return _document(cpu, _cpuset_stats(mgr.dir_of("cpuset"), False), mem, pids, blkio, hugetlb)


def v2_stats(mgr) -> dict:
    j = os.path.join
    d = mgr.path
    cs = read_keyed(j(d, "cpu.stat"))
    usage = _omit({"total": cs.get("usage_usec", 0) * 1000, "kernel": cs.get("system_usec", 0) * 1000,
                   "user": cs.get("user_usec", 0) * 1000}, "total")
    throttling = _omit({"periods": cs.get("nr_periods", 0), "throttledPeriods": cs.get("nr_throttled", 0),
                        "throttledTime": cs.get("throttled_usec", 0) * 1000},
                       "periods", "throttledPeriods", "throttledTime")
    cpu = {"usage": usage, "throttling": throttling}

    mem: dict = {}
    if os.path.exists(j(d, "memory.current")):
        raw = read_keyed(j(d, "memory.stat"))
        events = read_keyed(j(d, "memory.events"))
        cur = _int(j(d, "memory.current"))
        limit = _int(j(d, "memory.max"), MAX_U64)
        mem = _omit({"cache": raw.get("file", 0)}, "cache")
        mem["usage"] = _memory_entry(limit, cur, _int(j(d, "memory.peak")), events.get("max", 0))
        if os.path.exists(j(d, "memory.swap.current")):
            swap_limit = _int(j(d, "memory.swap.max"), MAX_U64)
            if swap_limit != MAX_U64 and limit != MAX_U64:
                swap_limit += limit  # reported as memory+swap, as v1 does (runc)
            mem["swap"] = _memory_entry(swap_limit, _int(j(d, "memory.swap.current")) + cur, 0, 0)
        else:
            mem["swap"] = _memory_entry(0, 0, 0, 0)
        mem["kernel"] = _memory_entry(0, raw.get("kernel", 0), 0, 0)
        mem["kernelTCP"] = _memory_entry(0, raw.get("sock", 0), 0, 0)
        if raw:
            mem["raw"] = raw
    pids: dict = {}
    if os.path.exists(j(d, "pids.current")):
        limit = _int(j(d, "pids.max"))
        pids = _omit({"current": _int(j(d, "pids.current")), "limit": 0 if limit == MAX_U64 else limit},
                     "current", "limit")
    blkio: dict = {}
    ops = {"rbytes": ("ioServiceBytesRecursive", "Read"), "wbytes": ("ioServiceBytesRecursive", "Write"),
           "rios": ("ioServicedRecursive", "Read"), "wios": ("ioServicedRecursive", "Write")}
    for line in (try_read(j(d, "io.stat")) or "").splitlines():
        fields = line.split()
        if not fields or ":" not in fields[0]:
            continue
        major, _, minor = fields[0].partition(":")
        for kv in fields[1:]:
            k, _, v = kv.partition("=")
            if k in ops:
                key, op = ops[k]
                blkio.setdefault(key, []).append(
                    _omit({"major": int(major), "minor": int(minor), "op": op, "value": int(v)},
                          "major", "minor", "op", "value"))
    hugetlb: dict = {}
    if os.path.exists(j(d, "hugetlb." + (_hugepage_sizes() or ["2MB"])[0] + ".current")):
        for size in _hugepage_sizes():
            ev = read_keyed(j(d, f"hugetlb.{size}.events"))
            hugetlb[size] = _omit({"usage": _int(j(d, f"hugetlb.{size}.current")), "max": 0,
                                   "failcnt": ev.get("max", 0)}, "usage", "max")
    return _document(cpu, _cpuset_stats(d, True), mem, pids, blkio, hugetlb)


# --------------------------------------------------------------------------- OOM


class V1OomWatch:
    """memory.oom_control notifications through an eventfd (cgroup.event_control)."""

    def __init__(self, memory_dir: str) -> None:
        self.dir = memory_dir
        self.efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        try:
            self.ocfd = os.open(os.path.join(memory_dir, "memory.oom_control"), os.O_RDONLY | os.O_CLOEXEC)
            from ocirun.cgroups.base import set_file

            set_file(memory_dir, "cgroup.event_control", f"{self.efd} {self.ocfd}", "OOM notifications")
        except BaseException:
            os.close(self.efd)
            raise

    def fileno(self) -> int:
        return self.efd

    def drain(self) -> int:
        """New OOM events since the last call (the eventfd also fires when the cgroup goes)."""
        try:
            count = struct.unpack("<Q", os.read(self.efd, 8))[0]
        except BlockingIOError:
            return 0
        if not os.path.exists(os.path.join(self.dir, "cgroup.event_control")):
            return 0
        return int(count)

    def close(self) -> None:
        os.close(self.efd)
        os.close(self.ocfd)


class V2OomWatch:
    """memory.events "oom_kill"/"oom" counters; the file signals POLLPRI when they change."""

    def __init__(self, cgroup_dir: str) -> None:
        self.fd = os.open(os.path.join(cgroup_dir, "memory.events"), os.O_RDONLY | os.O_CLOEXEC)
        self.last = self._counts()

    def _counts(self) -> tuple[int, int]:
        try:
            text = os.pread(self.fd, 4096, 0).decode()
        except OSError:
            return (0, 0)
        kv = dict(line.split() for line in text.splitlines() if len(line.split()) == 2)
        return int(kv.get("oom_kill", 0)), int(kv.get("oom", 0))

    def fileno(self) -> int:
        return self.fd

    def drain(self) -> int:
        now = self._counts()
        kills = now[0] - self.last[0]
        ooms = now[1] - self.last[1]
        self.last = now
        return max(kills, 1 if ooms > 0 else 0, 0)

    def close(self) -> None:
        os.close(self.fd)

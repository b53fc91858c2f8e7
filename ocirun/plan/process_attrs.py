"""process.scheduler, ioPriority, execCPUAffinity and linux.memoryPolicy in kernel terms."""

from __future__ import annotations

from ocirun.plan.model import MemoryPolicyPlan, SchedulerPlan

#: sched.h policies; SCHED_ISO is reserved but not implemented by Linux (the kernel says EINVAL)
SCHED_POLICIES: dict[str, int] = {
    "SCHED_OTHER": 0, "SCHED_FIFO": 1, "SCHED_RR": 2, "SCHED_BATCH": 3,
    "SCHED_ISO": 4, "SCHED_IDLE": 5, "SCHED_DEADLINE": 6,
}
SCHED_FLAGS: dict[str, int] = {
    "SCHED_FLAG_RESET_ON_FORK": 0x01, "SCHED_FLAG_RECLAIM": 0x02, "SCHED_FLAG_DL_OVERRUN": 0x04,
    "SCHED_FLAG_KEEP_POLICY": 0x08, "SCHED_FLAG_KEEP_PARAMS": 0x10,
    "SCHED_FLAG_UTIL_CLAMP_MIN": 0x20, "SCHED_FLAG_UTIL_CLAMP_MAX": 0x40,
}
IOPRIO_CLASSES: dict[str, int] = {"IOPRIO_CLASS_RT": 1, "IOPRIO_CLASS_BE": 2, "IOPRIO_CLASS_IDLE": 3}
_IOPRIO_CLASS_SHIFT = 13


def scheduler_plan(s) -> SchedulerPlan:
    """``process.scheduler`` (unset numbers are 0, as config.md says)."""
    flags = 0
    for name in s.flags or ():
        flags |= SCHED_FLAGS[name]
    return SchedulerPlan(
        policy=SCHED_POLICIES[s.policy], flags=flags, nice=s.nice or 0, priority=s.priority or 0,
        runtime=s.runtime or 0, deadline=s.deadline or 0, period=s.period or 0,
    )


def io_priority(p) -> int:
    """IOPRIO_PRIO_VALUE(class, level) for ioprio_set(2)."""
    return (IOPRIO_CLASSES[p.io_class] << _IOPRIO_CLASS_SHIFT) | (p.priority or 0)


def parse_cpu_list(text: str) -> set[int]:
    """ "0-3,7" -> {0, 1, 2, 3, 7} (the validator has checked the syntax)."""
    cpus: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        lo, _, hi = part.partition("-")
        first, last = int(lo), int(hi or lo)
        if last < first:
            raise ValueError(f"{part!r} is not a CPU range")
        cpus.update(range(first, last + 1))
    return cpus


def cpu_mask(text: str | None) -> bytes | None:
    """A cpu_set_t for sched_setaffinity(2): little-endian bits, a multiple of 8 bytes.
    None for an empty or missing list (config.md: then leave the affinity alone)."""
    if not text:
        return None
    cpus = parse_cpu_list(text)
    if not cpus:
        return None
    nbytes = (max(cpus) // 64 + 1) * 8
    value = 0
    for cpu in cpus:
        value |= 1 << cpu
    return value.to_bytes(nbytes, "little")


#: linux/mempolicy.h modes and mode flags (set_mempolicy(2))
MPOL_MODES: dict[str, int] = {
    "MPOL_DEFAULT": 0, "MPOL_PREFERRED": 1, "MPOL_BIND": 2, "MPOL_INTERLEAVE": 3,
    "MPOL_LOCAL": 4, "MPOL_PREFERRED_MANY": 5, "MPOL_WEIGHTED_INTERLEAVE": 6,
}
MPOL_FLAGS: dict[str, int] = {
    "MPOL_F_NUMA_BALANCING": 1 << 13, "MPOL_F_RELATIVE_NODES": 1 << 14, "MPOL_F_STATIC_NODES": 1 << 15,
}


def memory_policy(pol) -> MemoryPolicyPlan:
    """``linux.memoryPolicy``: the mode argument (mode | flags) and the nodemask as
    unsigned longs (little-endian 64-bit words); empty for no nodes. The validator
    has checked the node list and which modes need or refuse nodes."""
    mode = MPOL_MODES[pol.mode]
    for name in pol.flags or ():
        mode |= MPOL_FLAGS[name]
    nodes = parse_cpu_list(pol.nodes) if pol.nodes else set()
    mask = b""
    if nodes:
        value = 0
        for node in nodes:
            value |= 1 << node
        mask = value.to_bytes((max(nodes) // 64 + 1) * 8, "little")
    return MemoryPolicyPlan(mode=mode, nodemask=mask)

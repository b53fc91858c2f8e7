"""Linux capability names and numbers (linux/capability.h), and the host's last cap."""

from __future__ import annotations

from collections.abc import Iterable

CAPABILITIES: dict[str, int] = {
    name: number
    for number, name in enumerate(
        (
            "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
            "CAP_FSETID", "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP",
            "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
            "CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_IPC_LOCK", "CAP_IPC_OWNER",
            "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT", "CAP_SYS_PTRACE",
            "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
            "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD",
            "CAP_LEASE", "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP",
            "CAP_MAC_OVERRIDE", "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM",
            "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ", "CAP_PERFMON", "CAP_BPF",
            "CAP_CHECKPOINT_RESTORE",
        )
    )
}


def last_cap() -> int:
    """The highest capability number the running kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except OSError:
        return max(CAPABILITIES.values())


def to_mask(names: Iterable[str], kernel_last_cap: int) -> tuple[int, list[str]]:
    """Bitmask of the named capabilities the kernel knows, and the names it doesn't
    (runc ignores those with a warning)."""
    mask = 0
    unknown_to_kernel = []
    for name in names:
        number = CAPABILITIES[name]
        if number > kernel_last_cap:
            unknown_to_kernel.append(name)
            continue
        mask |= 1 << number
    return mask, unknown_to_kernel



def own_available() -> int:
    """The capabilities this process can hand on: its bounding set and permitted set
    (CapBnd & CapPrm of /proc/self/status) as a bitmask."""
    sets = {}
    with open("/proc/self/status") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key in ("CapBnd", "CapPrm"):
                sets[key] = int(value.split()[0], 16)
    full = (1 << (last_cap() + 1)) - 1
    return sets.get("CapBnd", full) & sets.get("CapPrm", full)

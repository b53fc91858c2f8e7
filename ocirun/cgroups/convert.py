"""Pure conversions between config values and cgroup file values (no I/O).

The v1 -> v2 formulas are runc 1.1's (libcontainer/cgroups/utils.go), which
crun also used until 1.20; the size parser is docker/go-units' RAMInBytes,
which ``runc update`` uses for its memory flags.
"""

from __future__ import annotations

import re

#: cgroup v1 cpu.shares bounds (kernel MIN_SHARES, MAX_SHARES)
MIN_SHARES = 2
MAX_SHARES = 262144


def shares_to_weight(shares: int) -> int:
    """cpu.shares (2..262144, default 1024) -> cpu.weight (1..10000, default 100).

    runc's linear map: 2 -> 1, 262144 -> 10000 (1024 -> 39). 0 means "not set".
    Out-of-range shares are clamped first, as the kernel clamps cpu.shares."""
    if shares == 0:
        return 0
    shares = min(max(shares, MIN_SHARES), MAX_SHARES)
    return 1 + ((shares - 2) * 9999) // 262142


def weight_to_shares(weight: int) -> int:
    """The inverse of :func:`shares_to_weight` (for reading cpu.weight back as shares)."""
    if weight == 0:
        return 0
    return 2 + -(-((weight - 1) * 262142) // 9999)  # the smallest shares giving ``weight``


def blkio_weight_to_io_weight(weight: int) -> int:
    """blkio.weight (10..1000) -> io.weight (1..10000): runc's linear map. 0: not set."""
    if weight == 0:
        return 0
    return 1 + (weight - 10) * 9999 // 990


def swap_v2(memory_swap: int, memory: int) -> int:
    """The OCI ``swap`` (memory+swap, as cgroup v1's memsw) -> memory.swap.max.

    As runc: 0 is "not set", -1 is "max"; memory -1 with swap unset means
    both unlimited. ValueError when the pair cannot be expressed."""
    if memory == -1 and memory_swap == 0:
        return -1
    if memory_swap in (-1, 0):
        return memory_swap
    if memory in (0, -1):
        raise ValueError("unable to set swap limit without memory limit")
    if memory < 0:
        raise ValueError(f"invalid memory value: {memory}")
    if memory_swap < memory:
        raise ValueError("memory+swap limit should be >= memory limit")
    return memory_swap - memory


def v2_value(value: int) -> str:
    """-1 -> "max", anything else as a decimal (cgroup v2 limit files)."""
    return "max" if value == -1 else str(value)


_SIZE_RE = re.compile(r"^(\d+(?:\.\d+)*) ?([kKmMgGtTpP])?[iI]?[bB]?$")
_BINARY = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}


def parse_ram_size(text: str) -> int:
    """docker/go-units RAMInBytes: "512", "100m", "1.5G", "64KiB", "2 GB" (binary
    multiples, case-insensitive). ValueError on anything else."""
    m = _SIZE_RE.match(text)
    if m is None:
        raise ValueError(f"invalid size: '{text}'")
    try:
        size = float(m.group(1))
    except ValueError:
        raise ValueError(f"invalid size: '{text}'") from None
    return int(size * _BINARY[(m.group(2) or "").lower()])


_PAGE_RE = re.compile(r"^(\d+)(KB|MB|GB|TB|PB)$")


def hugepage_size_bytes(page_size: str) -> int:
    """"2MB" -> 2097152 (the spec's ``<size><unit-prefix>B``, base 1024)."""
    m = _PAGE_RE.match(page_size)
    if m is None:
        raise ValueError(f"invalid hugepage size {page_size!r} (expected e.g. 64KB, 2MB, 1GB)")
    return int(m.group(1)) << {"KB": 10, "MB": 20, "GB": 30, "TB": 40, "PB": 50}[m.group(2)]


def parse_cpu_list(text: str) -> list[int]:
    """"0-3,7" -> [0, 1, 2, 3, 7] (cpuset lists)."""
    out: list[int] = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        out.extend(range(int(lo), int(hi or lo) + 1))
    return out


_DURATION_RE = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


_MAX_DURATION = (2**63 - 1) / 1e9


def parse_go_duration(text: str) -> float:
    """Go's time.ParseDuration ("5s", "100ms", "1m30s", "-1s") -> seconds.
    ValueError on anything else."""
    s = text.strip()
    sign = 1.0
    if s[:1] in "+-" and s:
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if s == "0":
        return 0.0
    if not s:
        raise ValueError(f'time: invalid duration "{text}"')
    total, pos = 0.0, 0
    while pos < len(s):
        m = _DURATION_RE.match(s, pos)
        if m is None:
            raise ValueError(f'time: invalid duration "{text}"')
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if total > _MAX_DURATION:  # Go's Duration is int64 nanoseconds (~292 years)
        raise ValueError(f'time: invalid duration "{text}"')
    return sign * total

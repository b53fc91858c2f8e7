"""This test process's children, read from /proc: what a leak check and the
reaping of orphaned inits (we are their subreaper) both need."""

from __future__ import annotations

import os
from pathlib import Path


def _is_warm_helper(pid: str) -> bool:
    try:
        return b"\0helper\0serve\0" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def my_children() -> list[tuple[int, str, str]]:
    """(pid, state letter, the whole /proc/PID/stat line) of each child, zombies included.

    A running warm helper (docs/helper.md) is left out: the `ocirun` front end starts
    it detached (double fork), so it is reparented to us, the subreaper, like an
    orphaned init; unlike one, it is not the test's to clean up (it exits when idle,
    and the test session stops it). Once exited it is listed, to be reaped."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        if int(rest[1]) == me and (rest[0] == "Z" or not _is_warm_helper(entry)):
            found.append((int(entry), rest[0], stat))
    return found

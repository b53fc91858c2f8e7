"""This test process's children, read from /proc: what a leak check and the
reaping of orphaned inits (we are their subreaper) both need."""

from __future__ import annotations

import os
from pathlib import Path


def my_children() -> list[tuple[int, str, str]]:
    """(pid, state letter, the whole /proc/PID/stat line) of each child, zombies included."""
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
        if int(rest[1]) == me:
            found.append((int(entry), rest[0], stat))
    return found

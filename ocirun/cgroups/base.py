"""The cgroup manager interface, and helpers both drivers share."""

from __future__ import annotations

import errno
import os
import signal
import time
from typing import Protocol

from ocirun.errors import CgroupError


class Manager(Protocol):
    version: int

    def create(self) -> None:
        """Make the container's cgroup directories (and remember which were new)."""

    def set_device_rules(self, rules) -> None:
        """Apply device access rules (``ocirun.plan.device_rules.DeviceRule``), in order."""

    def place(self, pid: int) -> None:
        """Move ``pid`` into the cgroup (v1: every hierarchy; v2: cgroup.procs)."""

    def clone_into_fd(self) -> int | None:
        """An O_DIRECTORY fd for clone3(CLONE_INTO_CGROUP), or None (v1)."""

    def pids(self) -> list[int]:
        """Every pid in the cgroup (and its descendants)."""

    def is_frozen(self) -> bool: ...

    def destroy(self) -> None:
        """Kill what is left and remove every directory create() made."""

    def to_record(self) -> dict: ...


def read_pids(directory: str) -> list[int]:
    """pids in ``directory``/cgroup.procs and every child cgroup below it."""
    found: list[int] = []
    for dirpath, _dirs, _files in os.walk(directory):
        try:
            with open(os.path.join(dirpath, "cgroup.procs")) as f:
                found.extend(int(line) for line in f if line.strip())
        except FileNotFoundError:
            continue
    return found


def write_file(path: str, value: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as err:
        raise CgroupError(path, "open", err) from None
    try:
        os.write(fd, value.encode())
    except OSError as err:
        raise CgroupError(path, f"write {value!r} to", err) from None
    finally:
        os.close(fd)


def make_dirs(path: str, stop_at: str) -> list[str]:
    """mkdir -p ``path`` below ``stop_at``; return the directories created, outermost first."""
    created: list[str] = []
    missing: list[str] = []
    cur = path
    while cur != stop_at and not os.path.isdir(cur):
        missing.append(cur)
        cur = os.path.dirname(cur)
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o755)
            created.append(d)
        except FileExistsError:
            pass
        except OSError as err:
            raise CgroupError(d, "create", err) from None
    return created


def remove_dirs(created: list[str], deadline: float = 5.0) -> None:
    """rmdir innermost first; a cgroup still busy (exiting tasks) is retried briefly."""
    for d in reversed(created):
        end = time.monotonic() + deadline
        while True:
            try:
                # Child cgroups made by the container itself (with a cgroup
                # namespace) must go before the parent can.
                for sub, dirs, _ in os.walk(d, topdown=False):
                    for name in dirs:
                        try:
                            os.rmdir(os.path.join(sub, name))
                        except FileNotFoundError:
                            pass
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError as err:
                if err.errno != errno.EBUSY or time.monotonic() > end:
                    raise CgroupError(d, "remove", err) from None
                time.sleep(0.01)


def kill_pids(pids: list[int], sig: int = signal.SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

"""Helpers both drivers share (the interface is in manager.py)."""

from __future__ import annotations

import errno
import os
import time
from _signal import SIGKILL  # not `signal`: its enums cost every call ~6 ms to import

from ocirun.errors import CgroupError, OcirunError


class CgroupSettingError(CgroupError):
    """A resource that cannot be applied here: a file the kernel lacks, a controller
    that is not mounted or enabled, a value the hierarchy cannot express."""

    def __init__(self, message: str, path: str = "") -> None:
        OcirunError.__init__(self, message)
        self.path = path


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


def _recording():
    """The dry-run recording of this thread (ocirun explain), or None."""
    from ocirun.util.dryrun import current

    return current()


def _missing(directory: str, path: str, what: str, isdir) -> CgroupSettingError:
    if not isdir(directory):
        return CgroupSettingError(f"cgroup {directory} does not exist", directory)
    need = f" (needed for {what})" if what else ""
    return CgroupSettingError(
        f"cgroup file {path} does not exist: this host's kernel does not provide it{need}", path)


def set_file(directory: str, name: str, value: str, what: str = "") -> None:
    """Write one cgroup file; a missing file is an error that names it (and ``what``
    config property needed it). Recorded (a dry run: only recorded) inside
    ``ocirun.util.dryrun.Recording``."""
    path = os.path.join(directory, name)
    rec = _recording()
    if rec is not None and rec.dry_run:
        if not rec.exists(path):
            raise _missing(directory, path, what, rec.isdir)
        rec.write(path, value, what)
        return
    try:
        # O_TRUNC as runc: cgroupfs ignores it, a plain file (tests' fake cgroupfs) needs it
        fd = os.open(path, os.O_WRONLY | os.O_TRUNC | os.O_CLOEXEC)
    except FileNotFoundError:
        raise _missing(directory, path, what, os.path.isdir) from None
    except OSError as err:
        raise CgroupError(path, "open", err) from None
    try:
        os.write(fd, value.encode())
    except OSError as err:
        exc = CgroupError(path, f"write {value!r} to", err)
        exc.errno = err.errno  # type: ignore[attr-defined]
        raise exc from None
    finally:
        os.close(fd)
    if rec is not None:
        rec.write(path, value, what)


def exists(directory: str, name: str) -> bool:
    """Whether the cgroup file exists (in a dry run: would exist)."""
    path = os.path.join(directory, name)
    rec = _recording()
    if rec is not None and rec.dry_run:
        return rec.exists(path)
    return os.path.exists(path)


def error_errno(exc: BaseException) -> int:
    """The errno of a failed ``set_file`` write (0 if none)."""
    return int(getattr(exc, "errno", 0) or 0)


def read_file(directory: str, name: str) -> str:
    path = os.path.join(directory, name)
    rec = _recording()
    if rec is not None and rec.dry_run:
        text = rec.read(path)
        if text is None:
            raise CgroupSettingError(f"cgroup file {path} does not exist", path)
        return text.strip()
    try:
        with open(path) as f:
            return f.read().strip()
    except FileNotFoundError:
        raise CgroupSettingError(f"cgroup file {path} does not exist", path) from None
    except OSError as err:
        raise CgroupError(path, "read", err) from None


def read_int(directory: str, name: str) -> int:
    """A number file; "max" reads as 2**64-1 (as runc's GetCgroupParamUint)."""
    text = read_file(directory, name)
    if text == "max":
        return 2**64 - 1
    try:
        return int(text)
    except ValueError:
        raise CgroupSettingError(f"cgroup file {os.path.join(directory, name)}: not a number: {text!r}") from None


def try_read(path: str) -> str | None:
    rec = _recording()
    if rec is not None and rec.dry_run:
        return rec.read(path)
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def read_keyed(path: str) -> dict[str, int]:
    """A flat keyed file ("key value" lines, e.g. memory.stat, cpu.stat); {} if absent."""
    out: dict[str, int] = {}
    text = try_read(path)
    for line in (text or "").splitlines():
        parts = line.split()
        if len(parts) == 2:
            try:
                out[parts[0]] = int(parts[1])
            except ValueError:
                pass
    return out


def write_file(path: str, value: str) -> None:
    rec = _recording()
    if rec is not None and rec.dry_run:
        rec.write(path, value)
        return
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
    if rec is not None:
        rec.write(path, value)


def missing_dirs(path: str, stop_at: str) -> list[str]:
    """The directories ``make_dirs(path, stop_at)`` would create now, outermost first."""
    missing: list[str] = []
    cur = path
    while cur != stop_at and not os.path.isdir(cur):
        missing.append(cur)
        cur = os.path.dirname(cur)
    return list(reversed(missing))


def make_dirs(path: str, stop_at: str) -> list[str]:
    """mkdir -p ``path`` below ``stop_at``; return the directories created, outermost first."""
    created: list[str] = []
    missing: list[str] = []
    cur = path
    rec = _recording()
    while cur != stop_at and not (rec.isdir(cur) if rec is not None else os.path.isdir(cur)):
        missing.append(cur)
        cur = os.path.dirname(cur)
    for d in reversed(missing):
        if rec is not None and rec.dry_run:
            rec.mkdir(d, stop_at)
            created.append(d)
            continue
        try:
            os.mkdir(d, 0o755)
            created.append(d)
            if rec is not None:
                rec.mkdir(d, stop_at)
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


def kill_pids(pids: list[int], sig: int = SIGKILL) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass

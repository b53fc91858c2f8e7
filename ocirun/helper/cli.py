"""``ocirun helper status|stop|serve`` (always the direct path: the front end never
sends ``helper`` to a helper).

- ``status``: is this installation's helper running (pid, socket, since when,
  idle timeout, resident memory, calls in progress); exit 1 if not.
- ``stop``: SIGTERM to it (SIGKILL after 10 s), wait until it is gone.
- ``serve``: run a helper (what the front end starts; not for people).
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import time

from ocirun.errors import OcirunError, UsageError
from ocirun.helper import paths

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from ocirun.cli import GlobalOptions


def cmd_helper(g: GlobalOptions, args: argparse.Namespace) -> int:
    if args.action == "serve":
        if not args.dir or not args.id or args.lock_fd is None:
            raise UsageError("helper serve needs --dir, --id and --lock-fd")
        from ocirun.helper.server import serve

        return serve(args.dir, args.id, args.lock_fd, nice=args.nice)
    files = paths.current()
    if files is None:
        raise OcirunError("helper: no directory for a helper (not root, and no XDG_RUNTIME_DIR)")
    if args.action == "status":
        return _status(files)
    return _stop(files)


def _running(files: paths.Files) -> tuple[dict, int] | None:
    """The status file and a pidfd of the helper it names, if that helper runs."""
    from ocirun.linux.proc import open_pidfd

    try:
        with open(files.status) as f:
            status = json.load(f)
        pid, start = int(status["pid"]), status.get("startTime")
    except (OSError, ValueError, KeyError, TypeError):
        return None
    pidfd = open_pidfd(pid, start)
    return (status, pidfd) if pidfd is not None else None


def _status(files: paths.Files) -> int:
    found = _running(files)
    if found is None:
        sys.stdout.write(f"helper: not running (socket {files.sock})\n")
        return 1
    status, pidfd = found
    os.close(pidfd)
    pid = status["pid"]
    rss = "?"
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    rss = " ".join(line.split()[1:])
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            children = len(f.read().split())
    except OSError:
        children = 0
    sys.stdout.write(
        f"helper: running (pid {pid})\n"
        f"socket: {status.get('socket')}\n"
        f"started: {status.get('started')}\n"
        f"idle exit: after {status.get('idle'):g} s without a call\n"
        f"package: {status.get('package')}\n"
        f"protocol: {status.get('protocol')}\n"
        f"memory (RSS): {rss}\n"
        f"workers: {children} (busy and spare)\n"
    )
    return 0


def _stop(files: paths.Files, timeout: float = 10.0) -> int:
    found = _running(files)
    if found is None:
        _remove_stale(files)
        sys.stdout.write("helper: not running\n")
        return 0
    status, pidfd = found
    try:
        signal.pidfd_send_signal(pidfd, signal.SIGTERM)
        if not select.select([pidfd], [], [], timeout)[0]:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            select.select([pidfd], [], [], timeout)
    except ProcessLookupError:
        pass
    finally:
        os.close(pidfd)
    deadline = time.monotonic() + 1
    while os.path.exists(files.status) and time.monotonic() < deadline:
        time.sleep(0.01)
    _remove_stale(files)
    sys.stdout.write(f"helper: stopped (pid {status['pid']})\n")
    return 0


def _remove_stale(files: paths.Files) -> None:
    """A helper killed outright (SIGKILL) leaves its socket and status file; gone
    once nobody holds the lock (a new helper would replace them anyway)."""
    import fcntl

    try:
        fd = os.open(files.lock, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return
    try:
        for path in (files.sock, files.status):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
    finally:
        os.close(fd)

"""``ocirun helper status|start|stop|serve`` (always the direct path: the front end never
sends ``helper`` to a helper).

- ``status``: is this installation's helper running (pid, socket, since when,
  idle timeout, resident memory, calls in progress); exit 1 if not.
- ``start``: start it now, from here (detached as the front end starts one), and
  wait until it takes calls; ``--idle SECONDS`` (0: it never idles out). For
  callers that are all below a subreaper (containerd's shims): a helper started
  from there would be the shim's child; one started at boot (docs/helper.md)
  is init's.
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
        raise OcirunError("helper: no directory for a helper (rootless, and XDG_RUNTIME_DIR is not set to a directory of yours)")
    if args.action == "status":
        return _status(files)
    if args.action == "start":
        if args.idle is not None and args.idle < 0:
            raise UsageError("helper start: --idle must be 0 (never) or more seconds")
        return _start(files, args.idle)
    return _stop(files)


def _start(files: paths.Files, idle: float | None, timeout: float = 30.0) -> int:
    """As the front end's start_helper (ocirun/frontend/frontend.c): the lock (a
    running or starting helper holds it), a double fork into a session of its own,
    nothing of ours but the lock as fd 3; then wait until its socket answers."""
    import fcntl
    import stat

    if _running(files) is None:
        try:
            os.mkdir(files.dir, 0o700)
        except FileExistsError:
            pass
        except OSError as e:
            raise OcirunError(f"helper: cannot make {files.dir}: {e.strerror}") from None
        st = os.lstat(files.dir)
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
            raise OcirunError(f"helper: {files.dir} must be a directory of ours, mode 0700")
        lock = os.open(files.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(lock)  # one is starting: wait for it below
        else:
            _spawn_helper(files, lock, idle)
    deadline = time.monotonic() + timeout
    while True:
        found = _running(files)
        if found is not None:
            os.close(found[1])
            if os.path.exists(files.sock):  # bound and listening (it listens as it binds)
                break
        elif _exited(files):
            if os.path.exists(files.nocgroup):
                raise OcirunError("helper: it did not start: it found no cgroup of its own to move to and would "
                                  "keep this one busy (a rootless helper needs a cgroup above yours that you may "
                                  "write, e.g. systemd's user@UID.service; docs/helper.md, Rootless callers)")
            raise OcirunError("helper: it exited as it started")
        if time.monotonic() > deadline:
            raise OcirunError(f"helper: did not start within {timeout:g} s")
        time.sleep(0.02)
    return _status(files)


def _exited(files: paths.Files) -> bool:
    """No helper holds the lock (any more): the one we started is gone."""
    import fcntl

    try:
        fd = os.open(files.lock, os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)
    return True


def _spawn_helper(files: paths.Files, lock: int, idle: float | None) -> None:
    launcher = os.path.join(paths.bindir(), "ocirun-direct")
    python = os.path.join(paths.bindir(), "python")
    if not os.access(python, os.X_OK):
        python = sys.executable
    env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"}
    for name in ("OCIRUN_HELPER_DIR", "OCIRUN_HELPER_TRACE", "OCIRUN_HELPER_IDLE"):
        if os.environ.get(name):
            env[name] = os.environ[name]
    if idle is not None:
        env["OCIRUN_HELPER_IDLE"] = f"{idle:g}"
    argv = [python, "-S", launcher, "helper", "serve", "--dir", files.dir, "--id", files.id,
            "--lock-fd", "3", "--nice", str(os.getpriority(os.PRIO_PROCESS, 0))]
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            if os.fork():
                os._exit(0)
            if lock != 3:
                os.dup2(lock, 3)
            os.set_inheritable(3, True)  # (dup2 onto itself would keep CLOEXEC)
            os.closerange(4, os.sysconf("SC_OPEN_MAX"))
            null = os.open("/dev/null", os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            if null > 2:
                os.close(null)
            os.chdir("/")
            os.umask(0o077)
            signal.pthread_sigmask(signal.SIG_SETMASK, [])
            for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGPIPE, signal.SIGCHLD):
                signal.signal(sig, signal.SIG_DFL)
            os.execve(python, argv, env)
        finally:
            os._exit(127)
    os.close(lock)
    os.waitpid(pid, 0)


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
    idle = status.get("idle") or 0
    idle_text = f"after {idle:g} s without a call" if idle > 0 else "never (started with --idle 0)"
    sys.stdout.write(
        f"helper: running (pid {pid})\n"
        f"socket: {status.get('socket')}\n"
        f"started: {status.get('started')}\n"
        f"idle exit: {idle_text}\n"
        f"package: {status.get('package')}\n"
        f"protocol: {status.get('protocol')}\n"
        f"memory (RSS): {rss}\n"
        f"workers: {children} (busy and spare)\n"
        + (f"cgroup: {status['cgroup']} (its own: a rootless helper's)\n" if status.get("cgroup") else "")
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
    once nobody holds the lock (a new helper would replace them anyway). So does
    a rootless helper's own cgroup (``<id>.cgroup`` names it), which no helper can
    remove itself (it is in it until it exits): empty once its spares are gone; a
    worker still busy with a call keeps it, and the next helper takes it again."""
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
        for path in (files.sock, files.status, files.nocgroup):
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
        try:
            with open(files.cgroup) as f:
                own_cgroup = f.read().strip()
        except OSError:
            own_cgroup = ""
        if own_cgroup:
            from ocirun.helper import cgroup

            if cgroup.remove(own_cgroup):
                os.unlink(files.cgroup)
    finally:
        os.close(fd)

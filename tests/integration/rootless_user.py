"""An unprivileged user of the tests' own, for the rootless tests (integration, e2e, cgroupv2).

``RootlessUser.create()`` (as root) adds a user named ``ocitest-rl-<hex>`` with
``useradd``, which also gives it a subordinate uid and gid range in
/etc/subuid and /etc/subgid (login.defs' SUB_UID_*; added with ``usermod`` if
it did not), and a private work directory ``/tmp/ocitest-rl-<hex>`` (0700,
its own) holding its HOME and its XDG_RUNTIME_DIR. ``remove()`` kills what
still runs as the user or in its subordinate ranges, ``userdel``s it (which
drops its /etc/subuid and /etc/subgid lines: checked) and removes the work
directory. The user's comment field records the pid and start time of the
process that made it and the work directory, so that ``sweep_stale()`` can
remove the users of a run that was killed before it could clean up (users of
runs still alive, other developers' among them, are left alone).

``user.run(argv)`` runs a command as the user (setpriv, no supplementary
groups) with a login-like environment: HOME, USER, LOGNAME, XDG_RUNTIME_DIR,
and PATH starting with the ocirun it can run (``user.venv / "bin"``:
``.venv-rootless``, made by scripts/setup; where the checkout is out of other
users' reach, as in a clone below a 0700 directory, a copy of it and of the
``ocirun`` package in the work directory, in the same relative layout, which
its .pth relies on). ``cgroup_procs``: a cgroup.procs file the command is moved
into first (as root), for a delegated cgroup v2 subtree.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: The ocirun an unprivileged user can run (scripts/setup: .venv itself, or a
#: venv of the system's python3 when .venv's Python is out of its reach).
USER_VENV = REPO / ".venv-rootless"
PREFIX = "ocitest-rl-"
_COMMENT = "ocirun rootless test user"


def _start_time(pid: int) -> str | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rfind(")") + 2:].split()[19]


def _is_helper(pid: int) -> bool:
    """A warm helper's process (`ocirun-direct helper serve`; its workers are its forks)."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(a.endswith(b"/ocirun-direct") for a in argv[:3]) and b"helper" in argv and b"serve" in argv


def _alive(pid: int) -> bool:
    """Running (not a zombie waiting for its reaper)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


def _subid_range(path: str, name: str) -> tuple[int, int] | None:
    for line in Path(path).read_text().splitlines():
        fields = line.split(":")
        if len(fields) == 3 and fields[0] == name:
            return int(fields[1]), int(fields[2])
    return None


class RootlessUser:
    def __init__(self, name: str, uid: int, gid: int, workdir: Path,
                 subuid: tuple[int, int], subgid: tuple[int, int]) -> None:
        self.name, self.uid, self.gid, self.workdir = name, uid, gid, workdir
        self.subuid, self.subgid = subuid, subgid
        self.home = workdir / "home"
        self.runtime_dir = workdir / "run"
        #: the venv whose bin/ocirun the user runs (see the module docstring)
        self.venv = USER_VENV

    # ------------------------------------------------------------------ lifetime

    @classmethod
    def create(cls) -> RootlessUser:
        if os.geteuid() != 0:
            raise RuntimeError("only root can add the rootless tests' user")
        sweep_stale()
        problem = user_ocirun_problem()
        if problem:
            raise RuntimeError(problem)
        name = PREFIX + uuid.uuid4().hex[:10]
        workdir = Path(tempfile.mkdtemp(prefix=name + ".", dir="/tmp"))
        me = os.getpid()
        comment = f"{_COMMENT} pid={me} start={_start_time(me)} dir={workdir}"
        try:
            subprocess.run(["useradd", "--no-create-home", "--home-dir", str(workdir / "home"),
                            "--shell", "/bin/sh", "--comment", comment, "--user-group", name],
                           check=True, capture_output=True, text=True)
        except BaseException:
            shutil.rmtree(workdir, ignore_errors=True)
            raise
        pw = pwd.getpwnam(name)
        user = cls(name, pw.pw_uid, pw.pw_gid, workdir, (0, 0), (0, 0))
        try:
            user._give_subordinate_ids()
            for d in (workdir, user.home, user.runtime_dir):
                d.mkdir(mode=0o700, exist_ok=True)
                os.chown(d, user.uid, user.gid)
                os.chmod(d, 0o700)
            if _unreachable(REPO) is not None:
                user.venv = _copy_for(user)
        except BaseException:
            user.remove()
            raise
        return user

    def _give_subordinate_ids(self) -> None:
        """The ranges useradd allocated, or one usermod allocates now."""
        for path, flag in (("/etc/subuid", "--add-subuids"), ("/etc/subgid", "--add-subgids")):
            if _subid_range(path, self.name) is None:
                start = _free_range(path)
                subprocess.run(["usermod", flag, f"{start}-{start + 65535}", self.name], check=True,
                               capture_output=True, text=True)
        uid_range = _subid_range("/etc/subuid", self.name)
        gid_range = _subid_range("/etc/subgid", self.name)
        assert uid_range is not None and gid_range is not None
        self.subuid, self.subgid = uid_range, gid_range

    def processes(self, helpers: bool = True) -> list[int]:
        """Live processes whose real uid is the user's or in its subordinate range
        (its containers' processes); ``helpers=False``: not its warm helpers (and their
        workers), which a call may leave running on purpose (stop_helpers stops them)."""
        if not helpers:
            self.helpers_settled()  # one that is starting is not yet recognisable as a helper
        lo, n = self.subuid
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                status = Path(f"/proc/{entry}/status").read_text()
            except OSError:
                continue
            fields = dict(line.split(":", 1) for line in status.splitlines() if ":" in line)
            if fields.get("State", "").split()[:1] == ["Z"]:
                continue
            uid = int(fields.get("Uid", "-1").split()[0])
            if uid == self.uid or lo <= uid < lo + n:
                if not helpers and _is_helper(int(entry)):
                    continue
                found.append(int(entry))
        return found

    def lasting_processes(self, helpers: bool = True, timeout: float = 10.0,
                          reap: Callable[[], object] | None = None) -> list[int]:
        """``processes(helpers)`` once those that are exiting (a failed call's killed
        ones) have had up to ``timeout`` to finish; ``reap`` collects what becomes
        our zombie meanwhile (the integration conftest's reap_orphans)."""
        deadline = time.monotonic() + timeout
        while (left := self.processes(helpers)) and time.monotonic() < deadline:
            if reap is not None:
                reap()
            time.sleep(0.05)
        return left

    def kill_all(self, timeout: float = 10.0) -> list[int]:
        """SIGKILL every process of the user (and its ranges); returns those found."""
        found = self.processes()
        deadline = time.monotonic() + timeout
        while True:
            left = self.processes()
            if not left:
                return found
            for pid in left:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"processes of {self.name} survive SIGKILL: {left}")
            time.sleep(0.05)

    def remove(self) -> None:
        """Kill its processes, userdel (dropping its subordinate ranges), rm its work dir."""
        self.kill_all()
        remove_user(self.name, self.workdir)

    def assert_gone(self) -> None:
        """After remove(): no line of it in the account files (userdel took its
        subordinate ranges and its group with it), no work directory."""
        for path in ("/etc/subuid", "/etc/subgid", "/etc/passwd", "/etc/group"):
            assert not any(line.startswith(self.name + ":") for line in Path(path).read_text().splitlines()), \
                f"{self.name} is still in {path}"
        assert not self.workdir.exists(), self.workdir

    # ------------------------------------------------------------------ commands

    def env(self, **extra: str) -> dict[str, str]:
        path = f"{self.venv / 'bin'}:/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin"
        env = {"HOME": str(self.home), "USER": self.name, "LOGNAME": self.name,
               "XDG_RUNTIME_DIR": str(self.runtime_dir), "PATH": path, "LANG": "C.UTF-8"}
        if os.environ.get("OCIRUN_HELPER"):  # the stage's choice: OCIRUN_HELPER=off, the direct path
            env["OCIRUN_HELPER"] = os.environ["OCIRUN_HELPER"]
        env.update(extra)
        return {k: v for k, v in env.items() if v is not None}

    def argv(self, argv: list[str], cgroup_procs: Path | None = None) -> list[str]:
        """``argv`` as the user (setpriv); first moved into ``cgroup_procs`` as root."""
        drop = ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--clear-groups", "--"]
        if cgroup_procs is None:
            return [*drop, *argv]
        return ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(cgroup_procs), *drop, *argv]

    def run(self, argv: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
            timeout: float = 60, input: bytes | None = None, check: bool = False,
            cgroup_procs: Path | None = None) -> subprocess.CompletedProcess:
        # Files, not pipes: a created container's init keeps the caller's stdio.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.run(self.argv(argv, cgroup_procs), env=env or self.env(), cwd=cwd or self.home,
                               stdin=subprocess.DEVNULL if input is None else None, input=input,
                               stdout=out, stderr=err, timeout=timeout)
            out.seek(0)
            err.seek(0)
            p.stdout, p.stderr = out.read(), err.read()
        if check and p.returncode != 0:
            raise AssertionError(f"{argv} as {self.name} exited {p.returncode}\n"
                                 f"stdout: {p.stdout.decode(errors='replace')}\n"
                                 f"stderr: {p.stderr.decode(errors='replace')}")
        return p

    # ------------------------------------------------------------------ its warm helpers

    @property
    def helper_dir(self) -> Path:
        """Where the user's warm helpers live ($XDG_RUNTIME_DIR/ocirun-helper, docs/helper.md)."""
        return self.runtime_dir / "ocirun-helper"

    def helpers(self) -> dict[int, Path]:
        """The user's running helpers (pid: status file): one per user namespace its
        calls came from (its shell's, rootless podman's)."""
        found = {}
        if self.helper_dir.is_dir():
            for status in self.helper_dir.glob("*.json"):
                try:
                    st = json.loads(status.read_text())
                except (OSError, ValueError):
                    continue
                if _start_time(int(st["pid"])) == str(st.get("startTime")):
                    found[int(st["pid"])] = status
        return found

    def helpers_settled(self, timeout: float = 10) -> None:
        """Wait until none of the user's helpers is starting: a call that found none
        starts one in the background (docs/helper.md), which holds its lock from the
        start and writes its status once it runs (or exits)."""
        import fcntl

        end = time.monotonic() + timeout
        while time.monotonic() < end and self.helper_dir.is_dir():
            starting = False
            for lock in self.helper_dir.glob("*.lock"):
                if lock.with_suffix(".json").exists() and lock.with_suffix(".sock").exists():
                    continue  # running (or a stale status, which the lock tells apart)
                try:
                    fd = os.open(lock, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
                except OSError:
                    continue
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    starting = True
                finally:
                    os.close(fd)
            if not starting:
                return
            time.sleep(0.05)

    def stop_helpers(self, env: dict[str, str] | None = None) -> list[str]:
        """`ocirun helper stop` as the user for each of its running helpers, in the
        helper's own user namespace (nsenter: the user owns the namespaces it made,
        podman's among them); first those that are starting have started. Returns
        what could not be stopped."""
        self.helpers_settled()
        left = []
        for pid in self.helpers():
            enter: list[str] = []
            try:
                if os.stat(f"/proc/{pid}/ns/user").st_ino != os.stat("/proc/self/ns/user").st_ino:
                    enter = ["nsenter", "--user", f"--target={pid}", "--preserve-credentials", "--"]
            except FileNotFoundError:
                continue  # gone meanwhile
            p = self.run([*enter, "ocirun", "helper", "stop"], env=env or self.env(), timeout=60)
            if p.returncode != 0 or _alive(pid):
                left.append(f"helper {pid}: {p.stdout.decode(errors='replace')}{p.stderr.decode(errors='replace')}")
        return left

    def give(self, path: Path) -> None:
        """chown -R the user: what a user unpacks with umoci --rootless owns."""
        for dirpath, dirs, files in os.walk(path):
            os.lchown(dirpath, self.uid, self.gid)
            for n in dirs + files:
                os.lchown(os.path.join(dirpath, n), self.uid, self.gid)


def user_ocirun_problem() -> str | None:
    """Why an unprivileged user cannot run this checkout's ocirun, or None."""
    ocirun = USER_VENV / "bin" / "ocirun"
    if not ocirun.exists() or USER_VENV.is_symlink():
        return f"{USER_VENV} is missing or old: run ./scripts/setup (it makes .venv-rootless)"
    return None


def _unreachable(path: Path) -> Path | None:
    """The first directory on the way to ``path`` that other users cannot search, or None."""
    for p in (path, *path.parents):
        if not os.stat(p).st_mode & 0o001:
            return p
    return None


def _copy_for(user: RootlessUser) -> Path:
    """The checkout is out of the user's reach: .venv-rootless and the ocirun
    package, copied into its work directory in the same layout (the venv's .pth
    names the package's parent relative to itself); returns the copied venv."""
    dest = user.workdir / "ocirun-checkout"
    shutil.copytree(REPO / "ocirun", dest / "ocirun", symlinks=True)
    shutil.copytree(USER_VENV, dest / USER_VENV.name, symlinks=True)
    user.give(dest)
    return dest / USER_VENV.name


def userns_disabled() -> str | None:
    """Why unprivileged users cannot create user namespaces here, or None."""
    for path, bad in (("/proc/sys/kernel/unprivileged_userns_clone", "0"),
                      ("/proc/sys/user/max_user_namespaces", "0")):
        try:
            if Path(path).read_text().strip() == bad:
                return f"{path} is {bad}"
        except OSError:
            pass
    return None


@contextlib.contextmanager
def fresh_user() -> Iterator[RootlessUser]:
    """A user of its own for a fixture: made now, removed at the end and checked
    gone (RootlessUser.assert_gone)."""
    user = RootlessUser.create()
    try:
        yield user
    finally:
        user.remove()
    user.assert_gone()


def remove_user(name: str, workdir: Path | None) -> None:
    """userdel (which drops the user's /etc/subuid and /etc/subgid lines), then its work dir."""
    subprocess.run(["userdel", name], check=False, capture_output=True, text=True)
    if workdir is not None and workdir.name.startswith(PREFIX):
        _unmount_under(workdir)
        shutil.rmtree(workdir, ignore_errors=True)


def _unmount_under(path: Path) -> None:
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    prefix = str(path)
    targets = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        target = line.split()[4]
        if target == prefix or target.startswith(prefix + "/"):
            targets.append(target)
    for t in sorted(targets, key=len, reverse=True):
        libc.umount2(t.encode(), 2)  # MNT_DETACH


def _free_range(path: str) -> int:
    """The start of a 65536-id range in ``path`` that no line uses yet."""
    used = []
    for line in Path(path).read_text().splitlines():
        fields = line.split(":")
        if len(fields) == 3 and fields[1].isdigit() and fields[2].isdigit():
            used.append((int(fields[1]), int(fields[1]) + int(fields[2])))
    start = 100000
    while any(lo < start + 65536 and start < hi for lo, hi in used):
        start += 65536
    return start


def sweep_stale() -> list[str]:
    """Remove the test users whose creating process is gone (a killed run's)."""
    removed = []
    for pw in pwd.getpwall():
        if not pw.pw_name.startswith(PREFIX) or not pw.pw_gecos.startswith(_COMMENT):
            continue
        fields = dict(f.split("=", 1) for f in pw.pw_gecos.split() if "=" in f)
        pid = int(fields.get("pid", "0") or 0)
        if pid > 0 and _start_time(pid) == fields.get("start"):
            continue  # its run is alive (maybe another developer's)
        workdir = Path(fields["dir"]) if fields.get("dir") else None
        user = RootlessUser(pw.pw_name, pw.pw_uid, pw.pw_gid, workdir or Path("/nonexistent"),
                            _subid_range("/etc/subuid", pw.pw_name) or (0, 0), (0, 0))
        try:
            user.kill_all()
        except RuntimeError:
            continue
        remove_user(pw.pw_name, workdir)
        removed.append(pw.pw_name)
    return removed

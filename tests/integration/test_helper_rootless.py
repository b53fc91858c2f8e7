"""A rootless caller's own warm helper (issue #12, requirement 4; docs/helper.md,
"Rootless callers").

An unprivileged user of the tests' own (rootless_user.py) calls `ocirun` (the C
front end of .venv-rootless) from a cgroup v2 subtree delegated to it as
systemd's Delegate= does (``<cgroup2>/ocitest-hrl-*`` and its files its own, the
calls in the leaf ``session`` below it): the first call starts the user's helper
under its XDG_RUNTIME_DIR, which moves into a cgroup of its own next to the
caller's; the next calls are served by it ("served" is observable: the helper's
trace has a line per call it ran, and a container init cloned by the front end
is a copy of it, comm "ocirun"). Without a delegated subtree it does not start.
A caller in another user namespace (as rootless podman calls the runtime: uid 0
in the user's namespace) gets a helper of its own. The helper that the C front
end started is the one `ocirun helper status|stop` (Python, ocirun/helper/paths.py)
finds, in both namespaces: the two compute the same names.

Every test stops the user's helpers (`ocirun helper stop` as the user) and checks
that nothing is left: no process, socket, status file or cgroup.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DIRECT, FRONT_END, reap_orphans, wait_until
from rootless_user import RootlessUser, fresh_user, userns_disabled
from test_helper import PARENT
from test_rootless import make_bundle


def _cgroup2_mount() -> Path | None:
    """The cgroup2 mount (/sys/fs/cgroup on a unified host, /sys/fs/cgroup/unified on a hybrid one)."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        fields = line.split()
        sep = fields.index("-")
        if fields[sep + 1] == "cgroup2":
            return Path(fields[4])
    return None


CGROUP2 = _cgroup2_mount()
pytestmark = [
    pytest.mark.skipif(not FRONT_END.exists(), reason="the ocirun front end is not installed"),
    pytest.mark.skipif(CGROUP2 is None, reason="no cgroup2 hierarchy mounted (the one that tracks processes)"),
]


@pytest.fixture(scope="module")
def user(bundle_image) -> Iterator[RootlessUser]:
    why = userns_disabled()
    if why:
        pytest.skip(f"unprivileged user namespaces are disabled ({why})")
    try:
        with fresh_user() as u:
            yield u
    finally:
        reap_orphans()  # what remove() killed


class Subtree:
    """A cgroup v2 subtree: ``top`` and the leaf ``session`` the user's calls run in."""

    def __init__(self, top: Path) -> None:
        self.top = top
        self.leaf = top / "session"
        self.procs = self.leaf / "cgroup.procs"

    def path(self, d: Path) -> str:
        """``d`` as /proc/PID/cgroup shows it."""
        assert CGROUP2 is not None
        return "/" + str(d.relative_to(CGROUP2))


def _subtree(user: RootlessUser, delegate: bool) -> Iterator[Subtree]:
    assert CGROUP2 is not None
    sub = Subtree(CGROUP2 / f"ocitest-hrl-{uuid.uuid4().hex[:8]}")
    sub.top.mkdir()
    try:
        sub.leaf.mkdir()
        if delegate:  # as systemd's Delegate=: the directory and these files are the user's
            for p in (sub.top, sub.top / "cgroup.procs", sub.top / "cgroup.subtree_control",
                      sub.top / "cgroup.threads", sub.leaf, sub.leaf / "cgroup.procs", sub.leaf / "cgroup.threads"):
                os.chown(p, user.uid, user.gid)
        yield sub
        # teardown: the user's helpers stopped by `ocirun helper stop`, nothing left
        left = user.stop_helpers(env=env_of(user))
        reap_orphans()
        assert not left, left
        assert not user.helpers()
        files = sorted(os.listdir(user.helper_dir)) if user.helper_dir.exists() else []
        assert not [n for n in files if not n.endswith(".lock")], files
        assert not [p.name for p in sub.top.iterdir() if p.is_dir() and p.name != "session"], \
            "cgroups left in the subtree"
        left = user.lasting_processes(reap=reap_orphans)
        assert not left, f"processes of the user left: {left}"
    finally:
        user.kill_all()
        reap_orphans()
        for d in sorted((p for p in sub.top.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            d.rmdir()
        sub.top.rmdir()
        if user.helper_dir.exists():
            shutil.rmtree(user.helper_dir)


@pytest.fixture
def delegated(user) -> Iterator[Subtree]:
    yield from _subtree(user, delegate=True)


@pytest.fixture
def undelegated(user) -> Iterator[Subtree]:
    """The same, root's alone (no delegation: the user may create no cgroup)."""
    yield from _subtree(user, delegate=False)


def env_of(user: RootlessUser, **extra: str) -> dict[str, str]:
    """The user's environment with the helper on (whatever the stage says), and a front
    end that waits for a slow worker rather than going direct (tests count served calls)."""
    env = user.env(**extra)
    env.pop("OCIRUN_HELPER", None)
    env.setdefault("OCIRUN_HELPER_TIMEOUT", "60000")
    return env


def bundle_of(user: RootlessUser, image: Path, *args: str) -> Path:
    """test_rootless.make_bundle, its `ocirun spec --rootless` on the direct path (from
    the tests' cgroup it would start a helper of the user's, before the test's own)."""
    was = os.environ.get("OCIRUN_HELPER")
    os.environ["OCIRUN_HELPER"] = "off"  # (user.env passes it on)
    try:
        return make_bundle(user, image, *args)
    finally:
        if was is None:
            del os.environ["OCIRUN_HELPER"]
        else:
            os.environ["OCIRUN_HELPER"] = was


def call(user: RootlessUser, sub: Subtree, *argv: str, env: dict[str, str] | None = None,
         check: bool = False, **kw) -> subprocess.CompletedProcess:
    """``argv`` as the user, from the leaf of ``sub``."""
    p = user.run(list(argv), env=env or env_of(user), cgroup_procs=sub.procs, **kw)
    reap_orphans()
    if check:
        assert p.returncode == 0, (argv, p.stdout, p.stderr)
    return p


def wait_helper(user: RootlessUser, timeout: float = 30, ns_of: int | str | None = None) -> dict:
    """The status of the user's running helper (of the user namespace of ``ns_of``'s, if given)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for pid, status in user.helpers().items():
            st = json.loads(status.read_text())
            if ns_of is not None and _ns(pid) != _ns(ns_of):
                continue
            if Path(st["socket"]).exists():
                return st
        time.sleep(0.05)
    raise AssertionError("the user's helper did not start")


def _ns(pid: int | str, kind: str = "user") -> int:
    return os.stat(f"/proc/{pid}/ns/{kind}").st_ino


def _cgroup2_of(pid: int) -> str:
    for line in Path(f"/proc/{pid}/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:]
    raise AssertionError(f"no cgroup2 line for {pid}")


def _children(pid: int) -> list[int]:
    return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def trace_lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def helper_serve_processes(user: RootlessUser) -> list[int]:
    out = []
    for pid in user.processes():
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"helper" in cmd and b"serve" in cmd:
            out.append(pid)
    return out


# ------------------------------------------------------------------ where it lives


def test_the_first_call_starts_the_users_helper_in_a_cgroup_of_its_own(user, delegated):
    p = call(user, delegated, "ocirun", "--version", check=True)
    assert p.stdout.startswith(b"ocirun version")
    st = wait_helper(user)
    pid = st["pid"]
    # under its XDG_RUNTIME_DIR: the directory and the socket its own, the directory 0700
    sock = Path(st["socket"])
    assert sock.parent == user.helper_dir
    dst = os.stat(user.helper_dir)
    assert (dst.st_uid, stat.S_IMODE(dst.st_mode)) == (user.uid, 0o700)
    assert stat.S_ISSOCK(os.stat(sock).st_mode) and os.stat(sock).st_uid == user.uid
    # it runs as the user, detached: its own session, cwd /
    status = Path(f"/proc/{pid}/status").read_text()
    assert f"Uid:\t{user.uid}\t{user.uid}\t{user.uid}\t{user.uid}" in status
    assert os.readlink(f"/proc/{pid}/cwd") == "/"
    assert os.getsid(pid) != os.getsid(0)
    # not in the caller's cgroup: in one of its own, next to it, below the delegated top
    ident = sock.name[:-len(".sock")]
    own = delegated.top / f"ocirun-helper-{ident}"
    for proc in (pid, *_children(pid)):  # the helper and its spare workers
        assert _cgroup2_of(proc) == delegated.path(own), proc
    assert str(pid) not in delegated.procs.read_text().split()
    assert (user.helper_dir / f"{ident}.cgroup").read_text().strip() == str(own)
    # `ocirun helper status` (Python: ocirun/helper/paths.py) finds the helper the C front end started
    p = call(user, delegated, "ocirun", "helper", "status", check=True)
    assert p.stdout.decode().startswith(f"helper: running (pid {pid})\nsocket: {sock}\n")
    assert f"\ncgroup: {own} (its own: a rootless helper's)\n" in p.stdout.decode()
    # and `ocirun helper stop` leaves nothing: process, socket, status, cgroup
    p = call(user, delegated, "ocirun", "helper", "stop", check=True)
    assert p.stdout.decode() == f"helper: stopped (pid {pid})\n"
    reap_orphans()
    assert not helper_serve_processes(user)
    assert sorted(os.listdir(user.helper_dir)) == [f"{ident}.lock"]
    assert not own.exists()


def test_calls_are_served_by_it_the_init_is_the_callers_child_and_results_are_the_same(
        user, delegated, bundle_image):
    bundle = bundle_of(user, bundle_image, "sleep", "30")
    bundle2 = bundle_of(user, bundle_image, "sh", "-c", "echo out; echo err >&2; exit 3")
    trace = user.home / f"trace-{uuid.uuid4().hex[:6]}"
    env = env_of(user, OCIRUN_HELPER_TRACE=str(trace))
    call(user, delegated, "ocirun", "--version", env=env, check=True)
    wait_helper(user)
    cid = f"ocitest-rl-{uuid.uuid4().hex[:10]}"
    # the subreaper parent of test_helper.py, with the user's `ocirun` and default state root
    p = call(user, delegated, "/usr/bin/python3", "-I", "-c", PARENT, "ocirun", "", str(bundle), cid, env=env)
    assert p.returncode == 0, p.stderr.decode(errors="replace")  # in full (a bytes repr is cut)
    facts = json.loads(p.stdout)
    # the front end cloned the init and the exec'd process: children of the process
    # the caller ran, reparented to the caller (a subreaper) when `ocirun` exits
    assert facts["init_ppid"] == facts["me"] and facts["exec_ppid"] == facts["me"], facts
    assert facts["init_comm"] == "ocirun", facts  # a copy of the front end: served by the helper
    served = trace_lines(trace)
    assert [t["argv"][0] for t in served] == ["create", "state", "start", "exec", "delete"], served
    assert not [t for t in served if "refused" in t]
    # `run` and failing calls: output and status byte-identical with OCIRUN_HELPER=off
    results = {}
    for argv in (("run", "--bundle", str(bundle2)), ("state", "ocitest-rl-nonexistent"),
                 ("delete", "ocitest-rl-nonexistent")):
        for helper in ("on", "off"):
            args = (*argv, f"ocitest-rl-{uuid.uuid4().hex[:10]}") if argv[0] == "run" else argv
            before = len(trace_lines(trace))
            p = call(user, delegated, "ocirun", *args, env=env if helper == "on" else dict(env, OCIRUN_HELPER="off"))
            # on: the helper ran it (a line in its trace); off: the direct path did
            assert len(trace_lines(trace)) == before + (helper == "on"), (argv, helper)
            results[argv[0], helper] = (p.stdout, p.stderr, p.returncode)
        assert results[argv[0], "on"] == results[argv[0], "off"], argv
    out, err, status = results["run", "on"]
    assert (out, status) == (b"out\n", 3) and err.endswith(b"err\n")  # (after spec --rootless's warning)
    assert results["state", "on"][2] == 1 and results["delete", "on"][2] == 1
    shutil.rmtree(bundle, ignore_errors=True)
    shutil.rmtree(bundle2, ignore_errors=True)


# ------------------------------------------------------------------ no delegation


def test_without_a_delegated_subtree_the_helper_does_not_start(user, undelegated, bundle_image):
    bundle = bundle_of(user, bundle_image, "sh", "-c", "echo out; echo err >&2; exit 3")
    trace = user.home / f"trace-{uuid.uuid4().hex[:6]}"
    env = env_of(user, OCIRUN_HELPER_TRACE=str(trace))
    p = call(user, undelegated, "ocirun", "--version", env=env, check=True)
    assert p.stdout.startswith(b"ocirun version")
    # the helper it started found no cgroup above the caller's it may write: it exited
    # (started in the background: first its note, then no process of it)
    deadline = time.monotonic() + 30
    wait_until(lambda: list(user.helper_dir.glob("*.nocgroup")), timeout=30)
    while helper_serve_processes(user) and time.monotonic() < deadline:
        reap_orphans()
        time.sleep(0.05)
    assert not helper_serve_processes(user)
    # nothing of it left but its lock and a note of the cgroups it could not leave
    # (the caller's: the front end starts no helper from them for a minute)
    ident = next(n[:-len(".nocgroup")] for n in os.listdir(user.helper_dir) if n.endswith(".nocgroup"))
    assert sorted(os.listdir(user.helper_dir)) == [f"{ident}.lock", f"{ident}.nocgroup"]
    assert [p.name for p in undelegated.top.iterdir() if p.is_dir()] == ["session"]
    note = user.helper_dir / f"{ident}.nocgroup"
    assert f"0::{undelegated.path(undelegated.leaf)}\n" in note.read_text().splitlines(keepends=True)
    noted = note.stat().st_mtime_ns
    # the calls work (the direct path), as with the helper off
    on = call(user, undelegated, "ocirun", "run", "--bundle", str(bundle), f"ocitest-rl-{uuid.uuid4().hex[:10]}",
              env=env)
    off = call(user, undelegated, "ocirun", "run", "--bundle", str(bundle), f"ocitest-rl-{uuid.uuid4().hex[:10]}",
               env=dict(env, OCIRUN_HELPER="off"))
    assert (on.stdout, on.stderr, on.returncode) == (off.stdout, off.stderr, off.returncode)
    assert (on.stdout, on.returncode) == (b"out\n", 3) and on.stderr.endswith(b"err\n")
    assert not trace.exists()  # no helper ran a call
    # and started no helper: none ran, none tried again (it would have rewritten the note)
    time.sleep(1)
    reap_orphans()
    assert not helper_serve_processes(user) and not user.helpers()
    assert note.stat().st_mtime_ns == noted
    # `ocirun helper start` says why it cannot
    p = call(user, undelegated, "ocirun", "helper", "start", env=env)
    assert p.returncode == 1 and p.stderr.startswith(b"helper: it did not start: it found no cgroup of its own")
    assert not helper_serve_processes(user)
    # `ocirun helper stop` clears the note
    p = call(user, undelegated, "ocirun", "helper", "stop", env=env, check=True)
    assert p.stdout == b"helper: not running\n"
    assert sorted(os.listdir(user.helper_dir)) == [f"{ident}.lock"]
    shutil.rmtree(bundle, ignore_errors=True)


def test_the_note_binds_only_callers_in_the_same_cgroups(user, undelegated, delegated):
    call(user, undelegated, "ocirun", "--version", check=True)
    deadline = time.monotonic() + 30
    while not list(user.helper_dir.glob("*.nocgroup")) and time.monotonic() < deadline:
        time.sleep(0.05)
    [note] = user.helper_dir.glob("*.nocgroup")
    # a caller in a subtree delegated to the user: its helper starts, and the note goes
    call(user, delegated, "ocirun", "--version", check=True)
    st = wait_helper(user)
    assert _cgroup2_of(st["pid"]) == delegated.path(delegated.top / f"ocirun-helper-{note.name[:-len('.nocgroup')]}")
    assert not note.exists()


def test_without_xdg_runtime_dir_calls_take_the_direct_path(user, delegated):
    for xdg in (None, "relative/run", str(user.home.parent.parent)):  # unset, not absolute, not the user's
        env = env_of(user)
        if xdg is None:
            env.pop("XDG_RUNTIME_DIR")
        else:
            env["XDG_RUNTIME_DIR"] = xdg
        p = call(user, delegated, "ocirun", "--version", env=env)
        off = call(user, delegated, "ocirun", "--version", env=dict(env, OCIRUN_HELPER="off"))
        assert (p.stdout, p.stderr, p.returncode) == (off.stdout, off.stderr, off.returncode), xdg
        assert not helper_serve_processes(user), xdg
    assert not user.helper_dir.exists()
    assert [p.name for p in delegated.top.iterdir() if p.is_dir()] == ["session"]


# ------------------------------------------------------------------ who is served


@pytest.mark.parametrize("differs", ["groups", "no_new_privs"])
def test_a_caller_with_other_credentials_takes_the_direct_path(user, delegated, differs):
    """The helper was started by a caller without supplementary groups (setpriv
    --clear-groups); one with groups, or with no_new_privs, is refused by the
    worker (never acting with other credentials than the caller's): the direct path."""
    trace = user.home / f"trace-{uuid.uuid4().hex[:6]}"
    env = env_of(user, OCIRUN_HELPER_TRACE=str(trace))
    call(user, delegated, "ocirun", "--version", env=env, check=True)
    wait_helper(user)
    call(user, delegated, "ocirun", "list", env=env, check=True)
    assert len(trace_lines(trace)) == 1 and "refused" not in trace_lines(trace)[0]
    other = ["--groups=100"] if differs == "groups" else ["--clear-groups", "--no-new-privs"]
    argv = ["sh", "-c", 'echo $$ > "$0" && exec "$@"', str(delegated.procs), "setpriv", f"--reuid={user.uid}",
            f"--regid={user.gid}", *other, "--", "ocirun", "list"]
    p = subprocess.run(argv, env=env, cwd=user.home, capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
    off = subprocess.run(argv, env=dict(env, OCIRUN_HELPER="off"), cwd=user.home, capture_output=True, timeout=60,
                         stdin=subprocess.DEVNULL)
    assert p.returncode == 0 and (p.stdout, p.stderr) == (off.stdout, off.stderr)
    lines = trace_lines(trace)
    assert len(lines) == 2, lines
    assert lines[1]["refused"] == ("Groups differs" if differs == "groups" else "NoNewPrivs differs"), lines


def test_roots_helper_and_the_users_do_not_serve_each_other(user, delegated):
    call(user, delegated, "ocirun", "--version", check=True)
    st = wait_helper(user)
    # root reaching the user's socket: the worker serves only its own user (SO_PEERCRED)
    s = socket.socket(socket.AF_UNIX)
    s.settimeout(30)
    s.connect(st["socket"])
    s.sendall(struct.pack("=IIQ", 1, 0, 24) + struct.pack("=6I", 1, 0, 0, 0, 0, 0))
    assert struct.unpack("=IIQ", s.recv(16))[0] == 3  # REFUSE
    s.close()
    # the user's calls with root's helper directory: root's alone (0700), so the direct path
    root_dir = tempfile.mkdtemp(prefix="ocirun-h.")
    root_env = dict(os.environ, OCIRUN_HELPER_DIR=root_dir)
    root_env.pop("OCIRUN_HELPER", None)
    try:
        subprocess.run([str(FRONT_END), "--version"], env=root_env, check=True, capture_output=True, timeout=60)
        end = time.monotonic() + 30
        while not any(n.endswith(".sock") for n in os.listdir(root_dir)) and time.monotonic() < end:
            time.sleep(0.05)
        root_sock = next(Path(root_dir, n) for n in os.listdir(root_dir) if n.endswith(".sock"))
        root_status = json.loads(root_sock.with_suffix(".json").read_text())
        p = call(user, delegated, "ocirun", "list", env=env_of(user, OCIRUN_HELPER_DIR=root_dir))
        off = call(user, delegated, "ocirun", "list", env=env_of(user, OCIRUN_HELPER="off"))
        assert (p.stdout, p.stderr, p.returncode) == (off.stdout, off.stderr, off.returncode)
        # the user could not reach it: it started no helper of its own there
        root_id = root_sock.name[:-len(".sock")]
        assert all(n.startswith(root_id + ".") for n in os.listdir(root_dir)), os.listdir(root_dir)
        assert user.uid not in {os.stat(Path(root_dir, n)).st_uid for n in os.listdir(root_dir)}
        assert Path(f"/proc/{root_status['pid']}").exists()
    finally:
        subprocess.run([str(DIRECT), "helper", "stop"], env=root_env, capture_output=True, timeout=60)
        reap_orphans()
        shutil.rmtree(root_dir, ignore_errors=True)
    assert Path(f"/proc/{st['pid']}").exists()  # the user's helper is untouched


def test_a_user_namespace_gets_a_helper_of_its_own(user, delegated):
    """As rootless podman calls the runtime: uid 0 in a user namespace of the user's
    (held by a pause process, as podman's). Its helper lives in that namespace, in
    the same directory under a name of its own, beside the helper of the user's shell;
    each serves its own callers."""
    pause = subprocess.Popen(user.argv(["unshare", "--user", "--map-root-user", "sleep", "300"],
                                       cgroup_procs=delegated.procs),
                             env=env_of(user), cwd=user.home, stdin=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 30
        while _ns(pause.pid) == _ns("self") and time.monotonic() < end:
            time.sleep(0.02)
        assert _ns(pause.pid) != _ns("self")
        inside = ["nsenter", "--user", f"--target={pause.pid}", "--preserve-credentials", "--"]
        trace_shell, trace_ns = user.home / "trace-shell", user.home / "trace-ns"
        env_shell = env_of(user, OCIRUN_HELPER_TRACE=str(trace_shell))
        env_ns = env_of(user, OCIRUN_HELPER_TRACE=str(trace_ns))
        call(user, delegated, "ocirun", "--version", env=env_shell, check=True)
        shell = wait_helper(user, ns_of="self")
        call(user, delegated, *inside, "ocirun", "--version", env=env_ns, check=True)
        ns = wait_helper(user, ns_of=pause.pid)
        assert shell["pid"] != ns["pid"]
        assert Path(shell["socket"]).parent == Path(ns["socket"]).parent == user.helper_dir
        assert shell["socket"] != ns["socket"]
        assert _ns(shell["pid"]) == _ns("self") and _ns(ns["pid"]) == _ns(pause.pid)
        # each in a cgroup of its own (distinct names), none in the caller's
        assert _cgroup2_of(ns["pid"]) != _cgroup2_of(shell["pid"])
        for pid in (shell["pid"], ns["pid"]):
            assert _cgroup2_of(pid).startswith(delegated.path(delegated.top / "ocirun-helper-"))
        # each serves the calls of its own namespace
        call(user, delegated, "ocirun", "list", env=env_shell, check=True)
        call(user, delegated, *inside, "ocirun", "list", env=env_ns, check=True)
        call(user, delegated, *inside, "ocirun", "list", env=env_ns, check=True)
        assert [t["argv"] for t in trace_lines(trace_shell)] == [["list"]]
        assert [t["argv"] for t in trace_lines(trace_ns)] == [["list"], ["list"]]
        assert not [t for t in trace_lines(trace_shell) + trace_lines(trace_ns) if "refused" in t]
        # root of that namespace with less privilege than its helper (a capability dropped
        # from its bounding set) is refused: the direct path, with the caller's own rights
        drop = [*inside, "setpriv", "--bounding-set=-net_raw", "--", "ocirun", "list"]
        p = call(user, delegated, *drop, env=env_ns)
        off = call(user, delegated, *drop, env=dict(env_ns, OCIRUN_HELPER="off"))
        assert p.returncode == 0 and (p.stdout, p.stderr) == (off.stdout, off.stderr)
        assert trace_lines(trace_ns)[-1]["refused"] in ("CapPrm differs", "CapBnd differs")  # (exec as root: permitted = bounding)
        # `ocirun helper status` in the namespace finds its helper (Python computes the C's name)
        p = call(user, delegated, *inside, "ocirun", "helper", "status", check=True)
        assert p.stdout.decode().startswith(f"helper: running (pid {ns['pid']})\nsocket: {ns['socket']}\n")
    finally:
        left = user.stop_helpers(env=env_of(user))  # the namespace's helper first: nsenter needs the pause
        pause.send_signal(signal.SIGKILL)
        pause.wait()
        reap_orphans()
    assert not left, left


def test_the_front_end_and_paths_py_name_the_same_helper(user, delegated):
    """The socket the C front end chose when it started the helper (it passes the id
    to `helper serve`) is the one ocirun.helper.paths computes for the user."""
    call(user, delegated, "ocirun", "--version", check=True)
    st = wait_helper(user)
    probe = "from ocirun.helper import paths; print(paths.current().sock)"
    p = call(user, delegated, str(user.venv / "bin" / "python"), "-c", probe, check=True)
    assert p.stdout.decode().strip() == st["socket"]

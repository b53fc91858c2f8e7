"""Kill anywhere: SIGKILL `create`, `start`, `exec` and `delete` at every step
(the runtime's own test points, ocirun/testhooks.py: each sync message of the
shim included) and after random delays; then `state` must tell the truth and
`delete --force` must exit 0 and leave nothing: no process (the inits and
stage-1s of a killed create are reparented to us, the subreaper), no cgroup,
no state directory, no mount.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import time

import pytest
from robust import OCIRUN, delete_force, leftovers, live_children, scale, scrub, wait_until


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCIRUN_TEST_")}
    env.update(extra)
    return env


def run_at(rt, point: str | None, *args: str, stop: bool = False, timeout: float = 60) -> subprocess.CompletedProcess:
    """One CLI call that SIGKILLs (or SIGSTOPs) itself at ``point``. Its stderr is a
    file, not a pipe: a container's init inherits it and would hold a pipe open."""
    import tempfile

    env = _env(**({("OCIRUN_TEST_STOP_AT" if stop else "OCIRUN_TEST_KILL_AT"): point} if point else {}))
    with tempfile.TemporaryFile() as err:
        p = subprocess.run([*OCIRUN, "--root", str(rt.root), *args], env=env, stdin=subprocess.DEVNULL,
                           stdout=subprocess.DEVNULL, stderr=err, timeout=timeout)
        err.seek(0)
        p.stderr = err.read()
    return p


def status(rt, cid: str) -> str:
    """The status `state` reports, or "absent" (exit 1, "container does not exist"), or
    "partial" (exit 1: a create killed after its intent was recorded)."""
    p = rt("state", cid, check=False)
    if p.returncode == 0:
        return json.loads(p.stdout)["status"]
    err = p.stderr.decode()
    assert p.returncode == 1, p
    if err == f"container does not exist: {cid}\n":
        return "absent"
    assert err in (f"container {cid} was not fully created (its create was interrupted); "
                   f"`delete --force {cid}` removes what it left\n",
                   f"container {cid} is incomplete (an interrupted create or delete left it); "
                   f"`delete --force {cid}` removes what it left\n"), err
    return "partial"


def force_delete_leaves_nothing(rt, cid: str, bundle) -> None:
    """delete --force exits 0 and nothing is left; anything left is removed (so one
    failure does not spill into the next case) and reported."""
    rc, stderr = delete_force(rt, cid)
    left = leftovers(rt, cid, bundle=bundle.path)
    scrub(rt, cid)
    assert rc == 0 and not left, (rc, stderr, left)
    assert status(rt, cid) == "absent"


# --- create -----------------------------------------------------------------------------
CREATE_POINTS = [
    "create:claimed", "create:intent", "create:fifo",
    "create:cgroup",
    "create:cgroup-applied",
    "create:clone",
    "create:placed",
    "create:NS_READY",
    "create:INIT_PID",
    "create:READY",
    "create:saved", "create:pid-file", "create:COMMIT",
]


@pytest.mark.parametrize("point", CREATE_POINTS)
def test_create_killed_at_each_step(ocirun, bundle, tmp_path, point):
    bundle.set_args("sleep", "60")
    cid = ocirun.new_id()
    p = run_at(ocirun, point, "create", "--bundle", str(bundle.path), "--pid-file", str(tmp_path / "pid"), cid)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert status(ocirun, cid) in ("absent", "partial", "created", "stopped")
    force_delete_leaves_nothing(ocirun, cid, bundle)


@pytest.mark.parametrize("point", [
    "create:BEFORE_PIVOT",
    "create:CONSOLE_FD",
])
def test_create_killed_at_optional_sync_steps(ocirun, bundle, tmp_path, point):
    """BEFORE_PIVOT (hooks at create), CONSOLE_FD (process.terminal)."""
    bundle.set_args("sleep", "60")
    args = ["create", "--bundle", str(bundle.path)]
    if point == "create:BEFORE_PIVOT":
        bundle.edit(lambda c: c.update(hooks={"createRuntime": [{"path": "/bin/true"}]}))
    else:
        import socket

        bundle.edit(lambda c: c["process"].update(terminal=True))
        sock_path = tmp_path / "console.sock"
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(str(sock_path))
        server.listen(1)
        args += ["--console-socket", str(sock_path)]
    cid = ocirun.new_id()
    try:
        p = run_at(ocirun, point, *args, cid)
        assert p.returncode == -signal.SIGKILL, p.stderr
    finally:
        if point == "create:CONSOLE_FD":
            server.close()
    force_delete_leaves_nothing(ocirun, cid, bundle)


def test_create_killed_while_delete_force_runs(ocirun, bundle):
    """A create stopped half way (SIGSTOP at NS_READY) while delete --force runs: delete
    waits for its lock or finds nothing, and once the create is killed nothing is left."""
    bundle.set_args("sleep", "60")
    cid = ocirun.new_id()
    env = _env(OCIRUN_TEST_STOP_AT="create:NS_READY")
    create = subprocess.Popen([*OCIRUN, "--root", str(ocirun.root), "create", "--bundle", str(bundle.path), cid],
                              env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        assert wait_until(lambda: _stopped(create.pid), timeout=30)
        delete = subprocess.Popen([*OCIRUN, "--root", str(ocirun.root), "delete", "--force", cid],
                                  stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        time.sleep(0.3)
        assert delete.poll() is None, "delete --force did not wait for the create holding the lock"
    finally:
        create.kill()
        create.wait()
    assert delete.wait(timeout=30) == 0
    left = leftovers(ocirun, cid, bundle=bundle.path)
    scrub(ocirun, cid)
    assert not left, left


def _stopped(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            stat = f.read()
    except OSError:
        return False
    return stat[stat.rfind(")") + 2] == "T"


# --- start --------------------------------------------------------------------------------
@pytest.mark.parametrize("point, after", [
    ("start:locked", "created"),
    ("start:released", "running"),
    ("start:saved", "running"),
])
def test_start_killed_at_each_step(ocirun, bundle, point, after):
    bundle.set_args("sleep", "60")
    cid = ocirun.new_id()
    ocirun("create", "--bundle", str(bundle.path), cid)
    pid = ocirun.state(cid)["pid"]
    p = run_at(ocirun, point, "start", cid)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert status(ocirun, cid) == after
    if after == "running":
        assert wait_until(lambda: os.readlink(f"/proc/{pid}/exe").endswith("busybox"))
    else:
        ocirun("start", cid)  # the killed start released its lock: a new one works
        assert status(ocirun, cid) == "running"
    force_delete_leaves_nothing(ocirun, cid, bundle)


# --- exec ---------------------------------------------------------------------------------
@pytest.mark.parametrize("point", ["exec:clone", "exec:EXEC_PID", "exec:execed"])
def test_exec_killed_at_each_step(ocirun, bundle, point):
    """A killed exec leaves the container as it was: its half-made process exits
    (EOF on the sync socket), an exec'd one runs on in the container (as with
    runc) and goes with it; nothing escapes the container's cgroup."""
    bundle.set_args("sleep", "60")
    cid = ocirun.new_id()
    ocirun("create", "--bundle", str(bundle.path), cid)
    ocirun("start", cid)
    init = ocirun.state(cid)["pid"]
    p = run_at(ocirun, point, "exec", "--detach" if point != "exec:execed" else "-d", cid, "sleep", "50")
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert status(ocirun, cid) == "running" and ocirun.state(cid)["pid"] == init

    def others() -> list:
        return [c for c in live_children() if c[0] != init]

    if point != "exec:execed":
        assert wait_until(lambda: not others(), timeout=30), others()
    else:
        assert len(others()) <= 1
    force_delete_leaves_nothing(ocirun, cid, bundle)


# --- delete -------------------------------------------------------------------------------
@pytest.mark.parametrize("point, after", [
    ("delete:locked", "running"),
    ("delete:killed", "stopped"),
    ("delete:cgroup-destroyed", "stopped"),
    ("delete:removed", "absent"),
])
def test_delete_killed_at_each_step(ocirun, bundle, point, after):
    bundle.set_args("sleep", "60")
    cid = ocirun.new_id()
    ocirun("create", "--bundle", str(bundle.path), cid)
    ocirun("start", cid)
    p = run_at(ocirun, point, "delete", "--force", cid)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert status(ocirun, cid) == after
    force_delete_leaves_nothing(ocirun, cid, bundle)


# --- restore ------------------------------------------------------------------------------
#: Up to CRIU's start: on these hosts CRIU cannot restore (the kernel; see
#: tests/integration/test_checkpoint_errors.py), so the images below are a stub
#: that gets restore that far. The rootfs is prepared with create's own steps,
#: creating.json included, so a killed restore is undone as a killed create is,
#: plus the rootfs bind restore gives CRIU (``criu-root``, in our mount namespace).
RESTORE_POINTS = [
    "restore:claimed", "restore:intent", "restore:cgroup", "restore:cgroup-applied",
    "restore:clone", "restore:placed", "restore:NS_READY", "restore:INIT_PID", "restore:READY",
    "restore:criu-root",
]


def _mounts_below(path) -> list[str]:
    prefix = os.path.realpath(path) + "/"
    with open("/proc/self/mountinfo") as f:
        return [m for m in (line.split()[4] for line in f) if m.startswith(prefix)]


@pytest.mark.skipif(shutil.which("criu") is None, reason="CRIU is not installed")
@pytest.mark.parametrize("point", RESTORE_POINTS)
def test_restore_killed_at_each_step(ocirun, bundle, tmp_path, point):
    bundle.set_args("sleep", "60")
    images = tmp_path / "img"
    images.mkdir()
    (images / "inventory.img").write_bytes(b"")
    (images / "pstree.img").write_bytes(b"")
    (images / "descriptors.json").write_text('["/dev/null", "/dev/null", "/dev/null"]')
    cid = ocirun.new_id()
    p = run_at(ocirun, point, "restore", "--detach", "--image-path", str(images), "--bundle", str(bundle.path),
               "--pid-file", str(tmp_path / "pid"), cid)
    assert p.returncode == -signal.SIGKILL, p.stderr
    p = ocirun("state", cid, check=False)
    assert (p.returncode, p.stderr.decode()) in (
        (1, f"container {cid} was not fully created (its restore was interrupted); "
            f"`delete --force {cid}` removes what it left\n"),
        (1, f"container {cid} is incomplete (an interrupted create or delete left it); "
            f"`delete --force {cid}` removes what it left\n"),  # killed before creating.json
    ), p.stderr
    if point == "restore:criu-root":
        assert _mounts_below(ocirun.root / cid)  # what delete --force must detach
    force_delete_leaves_nothing(ocirun, cid, bundle)
    assert not _mounts_below(ocirun.root), _mounts_below(ocirun.root)


# --- random delays --------------------------------------------------------------------------
def _kill_after(cmd: list[str], delay: float) -> int:
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=_env())
    time.sleep(delay)
    p.send_signal(signal.SIGKILL)
    return p.wait(timeout=30)


def _timed(cmd: list[str]) -> float:
    t = time.monotonic()
    subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                   check=True, env=_env(), timeout=60)
    return time.monotonic() - t


def _time_to(cmd: list[str], point: str) -> float:
    """Seconds from starting ``cmd`` until it reaches test point ``point`` (it is
    stopped there, then killed)."""
    p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                         env=_env(OCIRUN_TEST_STOP_AT=point))
    t = time.monotonic()
    try:
        assert wait_until(lambda: _stopped(p.pid), timeout=60, step=0.001), point
        return time.monotonic() - t
    finally:
        p.kill()
        p.wait()


@pytest.mark.parametrize("verb", ["create", "start", "exec", "delete"])
def test_killed_after_random_delays(ocirun, bundle, verb):
    """SIGKILL `verb` after a delay drawn (seeded) from 0 to 1.2 times how long an
    undisturbed call takes here: what is left must be a consistent container that
    delete --force removes entirely. For create the delays are drawn from its
    working window instead, measured first with the test points: from making the
    cgroup to saving the state (before it, the interpreter starts and validates;
    after it, the container is complete)."""
    bundle.set_args("sleep", "60")
    rng = random.Random(f"kill-{verb}")
    base = [*OCIRUN, "--root", str(ocirun.root)]
    failures = []

    def prepare(cid: str) -> None:
        if verb in ("start", "exec", "delete"):
            ocirun("create", "--bundle", str(bundle.path), cid)
        if verb in ("exec", "delete"):
            ocirun("start", cid)

    def command(cid: str) -> list[str]:
        return {"create": [*base, "create", "--bundle", str(bundle.path), cid],
                "start": [*base, "start", cid],
                "exec": [*base, "exec", "-d", cid, "true"],
                "delete": [*base, "delete", "--force", cid]}[verb]

    def clean(cid: str) -> None:
        delete_force(ocirun, cid)
        scrub(ocirun, cid)

    cid = ocirun.new_id()
    prepare(cid)
    undisturbed = _timed(command(cid))
    clean(cid)
    low, high = 0.0, 1.2 * undisturbed
    if verb == "create":
        low, high = [], []
        for point, into in (("create:cgroup", low), ("create:saved", high)):
            cid = ocirun.new_id()
            into.append(_time_to(command(cid), point))
            clean(cid)
        low, high = low[0], max(high[0], low[0] + 0.001)
    trials = scale(12 if verb == "create" else 8, 200)
    for trial in range(trials):
        cid = ocirun.new_id()
        prepare(cid)
        delay = rng.uniform(low, high)
        _kill_after(command(cid), delay)
        st = status(ocirun, cid)
        # a killed create or delete may leave a partial container; start and exec do not
        allowed = ("absent", "partial", "created", "running", "stopped") if verb in ("create", "delete") else (
            "absent", "created", "running", "stopped")
        if st not in allowed:
            failures.append((trial, delay, f"status {st}"))
        rc, _ = delete_force(ocirun, cid)
        left = leftovers(ocirun, cid, bundle=bundle.path)
        scrub(ocirun, cid)
        if rc != 0 or left:
            failures.append((trial, round(delay, 4), rc, left))
    assert not failures, (f"{len(failures)} of {trials} trials (delays {low:.3f}-{high:.3f}s): "
                          f"{failures}")

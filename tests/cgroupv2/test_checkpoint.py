"""checkpoint and restore through CRIU, ocirun and runc 1.1.5 side by side.

CRIU 3.17 (Debian 12) works on Debian 12's 6.1 kernel, the guest's (not on the
development hosts' newer one: tests/integration/test_checkpoint_errors.py has
the error there). Every test runs for both runtimes and asserts the same
observable behaviour of each, then checks that nothing is left behind. Under
TCG a dump or a restore takes 5-20 s: the tests are few and each does much.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from cgroupv2_helpers import IN_GUEST
from checkpoint_helpers import (
    COUNTER,
    REPO,
    ConsolePeer,
    Runtime,
    criu_problem,
    edit_config,
    leftovers,
    make_bundle,
    mounts,
    read_count,
    read_lines,
    read_until,
    restore_as_subreaper,
    wait_count,
)

pytestmark = pytest.mark.root

RUNTIMES = ("ocirun", "runc")
_PROBLEM: list[str | None] = []


@pytest.fixture(autouse=True)
def _criu_works() -> None:
    """CRIU must work here: in the guest that is a failure, elsewhere a skip."""
    if not _PROBLEM:
        _PROBLEM.append(criu_problem() or (None if shutil.which("runc") else "runc is not installed"))
    if _PROBLEM[0] is not None:
        if IN_GUEST:
            pytest.fail(f"CRIU cannot checkpoint in the guest: {_PROBLEM[0]}")
        pytest.skip(_PROBLEM[0])


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("image") / "busybox"
    subprocess.run([str(REPO / "bundles" / "make-busybox-bundle"), "--no-image", str(out)], check=True,
                   stdout=subprocess.DEVNULL)
    return out


@pytest.fixture(params=RUNTIMES)
def rt(request, tmp_path):
    """One runtime (each test runs for ocirun and for runc); afterwards its
    containers are deleted and nothing of theirs may be left."""
    runtime = Runtime(request.param, tmp_path / f"{request.param}-root")
    mounts_before = mounts()
    yield runtime
    for cid in runtime.ids:
        runtime("delete", "--force", cid, check=False)
    time.sleep(0.2)
    left = leftovers(runtime) + [f"mount {m}" for m in mounts() - mounts_before]
    assert not left, f"{runtime.name} left things behind: {left}"


def _run_counter(rt: Runtime, bundle: Path, stdout: int = subprocess.DEVNULL) -> str:
    cid = rt.new_id()
    rt("run", "--detach", "--bundle", str(bundle), cid, stdout=stdout, stderr=subprocess.DEVNULL)
    wait_count(bundle, 2)
    return cid


def _frozen(bundle: Path) -> int:
    """The counter no longer moves: its last value."""
    first = read_count(bundle)
    time.sleep(0.5)
    assert read_count(bundle) == first, "the counter still runs"
    return first


def _no_such_container(rt: Runtime, cid: str) -> None:
    """After a checkpoint without --leave-running the container is gone (runc
    destroys it; so does ocirun): state fails, delete --force succeeds."""
    p = rt("state", cid, check=False)
    assert p.returncode == 1 and b"does not exist" in p.stderr, p.stderr


def test_counter_checkpointed_deleted_and_restored_goes_on_counting(rt, image, tmp_path):
    """A counter writing to its stdout pipe (as under conmon) is checkpointed: the
    container is gone, its cgroup and processes too; restored by a subreaper
    caller with --pid-file, it goes on from the very next number, on the new pipe
    the caller gave (descriptors.json), as the caller's child."""
    bundle = make_bundle(image, tmp_path / "bundle", COUNTER)
    r1, w1 = os.pipe()
    cid = _run_counter(rt, bundle, stdout=w1)
    os.close(w1)
    pipe_inode = os.fstat(r1).st_ino
    images = tmp_path / "images"
    _, dump_s = rt.timed("checkpoint", "--image-path", str(images), cid)
    _no_such_container(rt, cid)
    rt("delete", "--force", cid)  # what engines do after a checkpoint: succeeds, as with runc
    stopped_at = _frozen(bundle)
    before = read_lines(r1)
    os.close(r1)
    assert before and int(before[-1]) in (stopped_at - 1, stopped_at)
    assert json.loads((images / "descriptors.json").read_text()) == ["/dev/null", f"pipe:[{pipe_inode}]", "/dev/null"]
    assert (images / "dump.log").exists() and (images / "inventory.img").exists()

    r2, w2 = os.pipe()
    pid_file = tmp_path / "pid"
    start = time.monotonic()
    caller, report = restore_as_subreaper(rt, pid_file, "--detach", "--image-path", str(images),
                                          "--bundle", str(bundle), cid, stdout=w2)
    restore_s = time.monotonic() - start
    os.close(w2)
    try:
        assert report["rc"] == 0, report["stderr"]
        assert report["ppid"] == report["me"], "the restored init is not its caller's child"
        state = rt.state(cid)
        assert (state["status"], state["pid"]) == ("running", report["pid"])
        after = []
        end = time.monotonic() + 60
        while len(after) < 3 and time.monotonic() < end:
            after += read_lines(r2)
        # the next number, on the new pipe: nothing lost, nothing counted twice
        assert int(after[0]) == int(before[-1]) + 1, (before[-3:], after[:3])
        assert wait_count(bundle, stopped_at) > stopped_at
    finally:
        rt("delete", "--force", cid)
        caller.wait(timeout=60)
        os.close(r2)
    print(f"\n{rt.name}: checkpoint {dump_s:.1f} s, restore {restore_s:.1f} s")


def test_pre_dump_then_dump_with_parent_path_and_leave_running(rt, image, tmp_path):
    """--pre-dump saves the memory and leaves the container running; the dump
    with --parent-path saves only what changed since, and with --leave-running
    the container goes on; restored from it (a pre-dump alone is no checkpoint),
    it counts on from where it was dumped, not from where it was deleted."""
    bundle = make_bundle(image, tmp_path / "bundle", COUNTER)
    cid = _run_counter(rt, bundle)
    parent, final = tmp_path / "pre", tmp_path / "final"
    rt("checkpoint", "--pre-dump", "--image-path", str(parent), cid)
    assert rt.state(cid)["status"] == "running"
    wait_count(bundle, read_count(bundle) + 3)  # it never stopped counting
    rt("checkpoint", "--leave-running", "--image-path", str(final), "--parent-path", "../pre", cid)
    dumped = read_count(bundle)
    assert rt.state(cid)["status"] == "running"
    # far enough past the dump that the restored counter, a moment after it
    # resumed, is still below where the deleted one stopped
    running = wait_count(bundle, dumped + 60, timeout=120)
    assert os.readlink(final / "parent") == "../pre"
    # the init's memory: pages unchanged since the pre-dump are the parent's (PE_PARENT)
    assert _parent_pages(final / "pagemap-1.img") > 0
    rt("delete", "--force", cid)
    deleted_at = _frozen(bundle)
    assert deleted_at >= running
    p = rt("restore", "--detach", "--image-path", str(parent), "--bundle", str(bundle), cid, check=False)
    assert p.returncode == 1  # a pre-dump holds no full checkpoint
    _no_such_container(rt, cid)
    rt("restore", "--detach", "--image-path", str(final), "--bundle", str(bundle), cid)
    back = read_count(bundle)
    assert dumped <= back < deleted_at, (dumped, back, deleted_at)
    assert rt.state(cid)["status"] == "running"
    assert wait_count(bundle, back) > back


def _parent_pages(pagemap: Path) -> int:
    """How many pages of a pagemap image are left in the parent images (CRIU's crit)."""
    p = subprocess.run(["crit", "decode", "--pretty", "-i", str(pagemap)], capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    entries = json.loads(p.stdout)["entries"]
    return sum(e.get("nr_pages", 0) for e in entries if "PE_PARENT" in e.get("flags", ""))


def test_terminal_container_with_shell_job(rt, image, tmp_path):
    """process.terminal: the shell keeps what it had in memory; the restored pty's
    new master reaches --console-socket (CRIU's orphan-pts-master)."""
    bundle = make_bundle(image, tmp_path / "bundle", ["sh"], terminal=True)
    sockdir = Path(os.path.realpath(tmp_path))
    cid = rt.new_id()
    peer = ConsolePeer(sockdir / "s1")
    master = -1
    try:
        rt("create", "--bundle", str(bundle), "--console-socket", str(peer.path), cid)
        master = peer.receive()
        rt("start", cid)
        os.write(master, b"x=41; echo se''t\n")
        read_until(master, b"set")
        rt("checkpoint", "--shell-job", "--image-path", str(tmp_path / "images"), cid)
        _no_such_container(rt, cid)
    finally:
        if master >= 0:
            os.close(master)
        peer.close()
    peer = ConsolePeer(sockdir / "s2")
    try:
        rt("restore", "--detach", "--shell-job", "--console-socket", str(peer.path), "--image-path",
           str(tmp_path / "images"), "--bundle", str(bundle), cid)
        master = peer.receive()
        os.write(master, b"echo $((x+1)) $(tty)\n")
        out = read_until(master, b"42 /dev/pts/")
        assert b"42 /dev/pts/" in out
        assert rt.state(cid)["status"] == "running"
    finally:
        if master >= 0:
            os.close(master)
        peer.close()


# ---- what cannot work: one error, nothing left behind ------------------------------------


@pytest.fixture
def dumped(rt, image, tmp_path):
    """A container with a bind mount (/data), checkpointed: (bundle, images, the id it had)."""
    bundle = make_bundle(image, tmp_path / "bundle", COUNTER)
    (tmp_path / "data").mkdir()
    edit_config(bundle, lambda c: c["mounts"].append(
        {"destination": "/data", "type": "bind", "source": str(tmp_path / "data"), "options": ["rbind"]}))
    cid = _run_counter(rt, bundle)
    images = tmp_path / "images"
    rt("checkpoint", "--image-path", str(images), cid)
    return bundle, images, cid


def test_what_cannot_be_restored_is_one_error_and_leaves_nothing(rt, dumped, image, tmp_path):
    """Images of another container (a bind mount the bundle lacks), a restored id
    that exists, a prestart hook failing at CRIU's setup-namespaces (CRIU kills
    what it restored): each fails, and no process, cgroup, mount or state is left."""
    bundle, images, cid = dumped
    stopped_at = _frozen(bundle)

    # 1. another container's images: CRIU would find no source for /data
    other = make_bundle(image, tmp_path / "other", COUNTER)
    p = rt("restore", "--detach", "--image-path", str(images), "--bundle", str(other), cid, check=False)
    assert p.returncode == 1
    _no_such_container(rt, cid)
    assert leftovers(rt) == []
    if rt.name == "ocirun":  # runc lets CRIU fail ("no mapping for ./data mountpoint", in its log)
        assert p.stderr.decode() == (
            f"restore: the images in {images} are of another container ({cid}): its bind mounts "
            "differ from this bundle's (the images have /data)\n")

    # 2. the id is taken: the container there is left alone
    taken = rt.new_id()
    rt("run", "--detach", "--bundle", str(make_bundle(image, tmp_path / "sleeper", ["sleep", "600"])), taken,
       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    p = rt("restore", "--detach", "--image-path", str(images), "--bundle", str(bundle), taken, check=False)
    assert p.returncode == 1 and b"exist" in p.stderr, p.stderr  # runc: "container with given ID already exists"
    assert rt.state(taken)["status"] == "running"
    rt("delete", "--force", taken)

    # 3. a failing prestart hook (runc runs prestart and createRuntime at setup-namespaces)
    edit_config(bundle, lambda c: c.setdefault("hooks", {}).update(
        prestart=[{"path": "/bin/sh", "args": ["sh", "-c", "exit 7"]}]))
    p = rt("restore", "--detach", "--image-path", str(images), "--bundle", str(bundle), cid, check=False)
    assert p.returncode == 1
    if rt.name == "ocirun":
        assert b"prestart" in p.stderr and len(p.stderr.splitlines()) == 1, p.stderr
    _no_such_container(rt, cid)
    assert leftovers(rt) == []
    assert read_count(bundle) == stopped_at  # nothing ran

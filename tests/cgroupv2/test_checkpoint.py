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
import sys
import time
from pathlib import Path

import pytest
from cgroupv2_helpers import IN_GUEST
from checkpoint_helpers import (
    COUNTER,
    REPO,
    TIMEOUT,
    Runtime,
    criu_problem,
    edit_config,
    leftovers,
    make_bundle,
    mounts,
    parent_pages,
    read_count,
    read_lines,
    restore_as_subreaper,
    wait_count,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "integration"))
from pty_peer import ConsolePeer, read_until  # noqa: E402

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
    """A counter writing to its stdout pipe (as under conmon), with a bind mount
    (/data), pre-dumped while it runs (--pre-dump: it goes on), then checkpointed
    with --parent-path: the container is gone, its cgroup and processes too, and
    the dump left the pages unchanged since the pre-dump in the parent. What
    cannot be restored fails and leaves nothing (a pre-dump alone, another
    container's images, a prestart hook failing at CRIU's setup-namespaces).
    Restored by a subreaper caller with --pid-file, it goes on from the very next
    number, on the new pipe the caller gave (descriptors.json), as the caller's
    child; a restore of its id now fails and leaves it alone.

    One dump for all of it: under TCG a dump or a restore takes 5-20 s."""
    bundle = make_bundle(image, tmp_path / "bundle", COUNTER)
    (tmp_path / "data").mkdir()
    edit_config(bundle, lambda c: c["mounts"].append(
        {"destination": "/data", "type": "bind", "source": str(tmp_path / "data"), "options": ["rbind"]}))
    r1, w1 = os.pipe()
    cid = _run_counter(rt, bundle, stdout=w1)
    os.close(w1)
    pipe_inode = os.fstat(r1).st_ino
    parent, images = tmp_path / "pre", tmp_path / "images"
    rt("checkpoint", "--pre-dump", "--image-path", str(parent), cid)
    assert rt.state(cid)["status"] == "running"
    wait_count(bundle, read_count(bundle) + 3)  # it never stopped counting
    _, dump_s = rt.timed("checkpoint", "--image-path", str(images), "--parent-path", "../pre", cid)
    _no_such_container(rt, cid)
    rt("delete", "--force", cid)  # what engines do after a checkpoint: succeeds, as with runc
    stopped_at = _frozen(bundle)
    before = read_lines(r1)
    os.close(r1)
    assert before and int(before[-1]) in (stopped_at - 1, stopped_at)
    assert json.loads((images / "descriptors.json").read_text()) == ["/dev/null", f"pipe:[{pipe_inode}]", "/dev/null"]
    assert (images / "dump.log").exists() and (images / "inventory.img").exists()
    assert os.readlink(images / "parent") == "../pre"
    # what restore tells a pre-dump by: CRIU writes the process tree only when it dumps
    assert (images / "pstree.img").exists() and not (parent / "pstree.img").exists()
    # the init's memory: pages unchanged since the pre-dump are the parent's (PE_PARENT)
    assert parent_pages(images / "pagemap-1.img") > 0

    _restores_that_fail(rt, image, tmp_path, bundle, images, parent, cid)
    assert read_count(bundle) == stopped_at  # nothing ran

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

        # the id is taken now: the container there is left alone
        p = rt("restore", "--detach", "--image-path", str(images), "--bundle", str(bundle), cid, check=False)
        assert p.returncode == 1 and b"exist" in p.stderr, p.stderr  # runc: "container with given ID already exists"
        assert rt.state(cid) == state
        counted = read_count(bundle)
        assert wait_count(bundle, counted) > counted
    finally:
        rt("delete", "--force", cid)
        caller.wait(timeout=60)
        os.close(r2)
    print(f"\n{rt.name}: checkpoint {dump_s:.1f} s, restore {restore_s:.1f} s")


def _restores_that_fail(rt, image: Path, tmp_path: Path, bundle: Path, images: Path, parent: Path,
                        cid: str) -> None:
    """Each fails, and no process, cgroup, mount or state is left."""
    # 1. a pre-dump holds no full checkpoint
    p = rt("restore", "--detach", "--image-path", str(parent), "--bundle", str(bundle), cid, check=False)
    assert p.returncode == 1
    _no_such_container(rt, cid)
    assert leftovers(rt) == []
    if rt.name == "ocirun":  # runc passes on what CRIU says
        assert p.stderr.decode() == (f"restore: no checkpoint in {parent}: it has no pstree.img "
                                     "(only a pre-dump: restore needs the final checkpoint)\n")

    # 2. another container's images: CRIU would find no source for /data
    other = make_bundle(image, tmp_path / "other", COUNTER)
    p = rt("restore", "--detach", "--image-path", str(images), "--bundle", str(other), cid, check=False)
    assert p.returncode == 1
    _no_such_container(rt, cid)
    assert leftovers(rt) == []
    if rt.name == "ocirun":  # runc lets CRIU fail ("no mapping for ./data mountpoint", in its log)
        assert p.stderr.decode() == (
            f"restore: the images in {images} are of another container ({cid}): its bind mounts "
            "differ from this bundle's (the images have /data)\n")

    # 3. a failing prestart hook (runc runs prestart and createRuntime at setup-namespaces):
    # CRIU kills what it restored
    edit_config(bundle, lambda c: c.setdefault("hooks", {}).update(
        prestart=[{"path": "/bin/sh", "args": ["sh", "-c", "exit 7"]}]))
    p = rt("restore", "--detach", "--image-path", str(images), "--bundle", str(bundle), cid, check=False)
    assert p.returncode == 1
    if rt.name == "ocirun":
        assert b"prestart" in p.stderr and len(p.stderr.splitlines()) == 1, p.stderr
    _no_such_container(rt, cid)
    assert leftovers(rt) == []
    edit_config(bundle, lambda c: c.pop("hooks"))


def test_terminal_container_with_shell_job_and_leave_running(rt, image, tmp_path):
    """process.terminal, checkpointed with --shell-job and --leave-running: the
    shell goes on (and changes its variable); deleted and restored, it has what
    it had in memory at the dump, not later; the restored pty's new master
    reaches --console-socket (CRIU's orphan-pts-master)."""
    bundle = make_bundle(image, tmp_path / "bundle", ["sh"], terminal=True)
    sockdir = Path(os.path.realpath(tmp_path))
    cid = rt.new_id()
    peer = ConsolePeer(sockdir / "s1", timeout=TIMEOUT)
    master = -1
    try:
        rt("create", "--bundle", str(bundle), "--console-socket", str(peer.path), cid)
        _, master = peer.receive()
        rt("start", cid)
        os.write(master, b"x=41; echo se''t\n")
        read_until(master, b"set", timeout=60)
        rt("checkpoint", "--leave-running", "--shell-job", "--image-path", str(tmp_path / "images"), cid)
        assert rt.state(cid)["status"] == "running"
        os.write(master, b"x=99; echo $((x+1))\n")
        read_until(master, b"100", timeout=60)  # still running, past the dump
        rt("delete", "--force", cid)
    finally:
        if master >= 0:
            os.close(master)
            master = -1
        peer.close()
    peer = ConsolePeer(sockdir / "s2", timeout=TIMEOUT)
    try:
        rt("restore", "--detach", "--shell-job", "--console-socket", str(peer.path), "--image-path",
           str(tmp_path / "images"), "--bundle", str(bundle), cid)
        _, master = peer.receive()
        os.write(master, b"echo $((x+1)) $(tty)\n")
        out = read_until(master, b"42 /dev/pts/", timeout=60)  # the dump's x, not the later 99
        assert b"42 /dev/pts/" in out
        assert rt.state(cid)["status"] == "running"
    finally:
        if master >= 0:
            os.close(master)
        peer.close()

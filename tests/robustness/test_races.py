"""Races: many creates of one id, many lifecycles at once, kill racing with the
init's exit. Every loser gets a clean refusal and touches nothing of the
winner's; every container ends with nothing left behind.
"""

from __future__ import annotations

import os
import random
import subprocess
import tempfile
import threading
import time
from pathlib import Path

from robust import (
    OCIRUN,
    cgroup_dirs,
    leftovers,
    live_children,
    one_message,
    scale,
    scrub,
    wait_until,
)


def _popen(rt, *args: str) -> tuple[subprocess.Popen, tempfile._TemporaryFileWrapper]:
    err = tempfile.TemporaryFile()
    # stdout and stderr are files: an init inherits them and would hold a pipe open
    p = subprocess.Popen([*OCIRUN, "--root", str(rt.root), *args], stdin=subprocess.DEVNULL,
                         stdout=subprocess.DEVNULL, stderr=err)
    return p, err


def _read(f) -> str:
    f.seek(0)
    text = f.read().decode()
    f.close()
    return text


def test_50_parallel_creates_of_one_id_exactly_one_wins(ocirun, bundle):
    """Fifty `create` of one id at once: one container, 49 refusals in runc's words,
    and the losers touch nothing of the winner's: its state, fifo, cgroup and init
    are intact and it starts and runs."""
    bundle.set_args("sh", "-c", "echo ran > /tmp/ran; exec sleep 60")
    cid = ocirun.new_id()
    n = scale(50, 200)
    calls = [_popen(ocirun, "create", "--bundle", str(bundle.path), cid) for _ in range(n)]
    codes = [p.wait(timeout=120) for p, _ in calls]
    messages = [_read(err) for _, err in calls]
    winners = [i for i, c in enumerate(codes) if c == 0]
    assert len(winners) == 1, list(zip(codes, messages, strict=True))
    for code, message in zip(codes, messages, strict=True):
        if code != 0:
            assert code == 1 and message == f"container with id exists: {cid}\n", (code, message)
        else:
            assert message == ""
    state_dir = ocirun.root / cid
    assert sorted(os.listdir(state_dir)) == ["exec.fifo", "state.json"]
    st = ocirun.state(cid)
    assert st["status"] == "created"
    pid = st["pid"]
    cgroups = cgroup_dirs(cid)
    assert cgroups and all(str(pid) in Path(d, "cgroup.procs").read_text().split() for d in cgroups)
    assert [c for c, _ in live_children()] == [pid]  # no loser left a process behind
    ocirun("start", cid)
    assert wait_until(lambda: (bundle.rootfs / "tmp" / "ran").exists())
    assert ocirun.state(cid)["status"] == "running"
    ocirun("delete", "--force", cid)
    assert not leftovers(ocirun, cid, bundle=bundle.path)


def test_parallel_lifecycles_of_distinct_ids(ocirun, bundle, tmp_path):
    """Workers each run whole lifecycles (create, start, the process writes its id,
    exits, delete) at the same time: each container does its own work, and none
    leaves anything behind."""
    workers, rounds = scale(6, 16), scale(4, 25)
    errors: list[str] = []
    bundles = []
    for w in range(workers):
        b = bundle.copy(tmp_path / f"w{w}")
        bundles.append(b)

    def worker(w: int) -> None:
        b = bundles[w]
        for r in range(rounds):
            cid = ocirun.new_id(f"ocitest-w{w}r{r}")
            out = b.rootfs / "tmp" / "id"
            b.set_args("sh", "-c", f"echo {cid} > /tmp/id")
            try:
                ocirun("create", "--bundle", str(b.path), cid)
                ocirun("start", cid)
                if not wait_until(lambda c=cid: ocirun.state(c)["status"] == "stopped", timeout=30):
                    errors.append(f"{cid}: did not stop")
                if out.read_text().strip() != cid:
                    errors.append(f"{cid}: wrote {out.read_text()!r}")
                ocirun("delete", cid)
                left = leftovers(ocirun, cid, bundle=b.path, orphans=False)
                if left:
                    errors.append(f"{cid}: {left}")
            except Exception as e:  # collected: a thread's assertion would be lost
                errors.append(f"{cid}: {e}")

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not errors, errors
    assert not live_children()


def test_kill_racing_with_the_inits_exit(ocirun, bundle):
    """`kill` sent while the container's process is exiting (it runs `true`): each
    answer is either success or runc's "container not running", never another
    error; the container then is stopped and deletes cleanly, and no process of
    ours outside it (a canary) is ever hit."""
    bundle.set_args("true")
    canary = subprocess.Popen(["sleep", "600"])
    rng = random.Random("kill-race")
    answers: dict[str, int] = {}
    try:
        for _ in range(scale(15, 300)):
            cid = ocirun.new_id()
            ocirun("create", "--bundle", str(bundle.path), cid)
            sig = rng.choice(["KILL", "TERM", "USR1", "0"])
            how = rng.choice(["after", "during", "all"])
            kill_args = ["kill", *(["--all"] if how == "all" else []), cid, sig]
            if how == "during":  # start and kill at once
                start, start_err = _popen(ocirun, "start", cid)
                time.sleep(rng.uniform(0, 0.08))
                k = ocirun(*kill_args, check=False)
                assert start.wait(timeout=60) in (0, 1), _read(start_err)
                start_err.close()
            else:
                ocirun("start", cid)
                time.sleep(rng.uniform(0, 0.02))
                k = ocirun(*kill_args, check=False)
            if k.returncode == 0:
                answers["ok"] = answers.get("ok", 0) + 1
            else:
                assert k.returncode == 1 and one_message(k.stderr) == "container not running", k.stderr
                answers["not running"] = answers.get("not running", 0) + 1
            assert wait_until(lambda c=cid: ocirun.state(c)["status"] == "stopped", timeout=30)
            ocirun("delete", cid)
            assert not leftovers(ocirun, cid, bundle=bundle.path, orphans=False)
            assert canary.poll() is None, "a kill reached a process outside the container"
    finally:
        canary.kill()
        canary.wait()
    assert sum(answers.values()) == scale(15, 300), answers


def test_concurrent_delete_force_of_one_container(ocirun, bundle):
    """Several `delete --force` of one running container at once: all exit 0 (the
    ones that find it gone say nothing), the container is gone entirely."""
    bundle.set_args("sleep", "60")
    for _ in range(scale(3, 30)):
        cid = ocirun.new_id()
        ocirun("create", "--bundle", str(bundle.path), cid)
        ocirun("start", cid)
        calls = [_popen(ocirun, "delete", "--force", cid) for _ in range(8)]
        codes = [p.wait(timeout=60) for p, _ in calls]
        messages = [_read(err) for _, err in calls]
        assert codes == [0] * 8, list(zip(codes, messages, strict=True))
        assert messages == [""] * 8
        left = leftovers(ocirun, cid, bundle=bundle.path)
        scrub(ocirun, cid)
        assert not left, left


def test_create_racing_with_delete_force_of_the_same_id(ocirun, bundle):
    """create and delete --force of one id at once (a client's timeout and cleanup):
    the id ends up either a complete container or nothing, never half of one."""
    bundle.set_args("sleep", "60")
    rng = random.Random("create-delete")
    for _ in range(scale(8, 100)):
        cid = ocirun.new_id()
        create, cerr = _popen(ocirun, "create", "--bundle", str(bundle.path), cid)
        time.sleep(rng.uniform(0, 0.25))
        d = ocirun("delete", "--force", cid, check=False)
        assert create.wait(timeout=60) in (0, 1)
        _read(cerr)
        assert d.returncode == 0, d.stderr
        st = ocirun("state", cid, check=False)
        if st.returncode == 0:  # the delete came first and the create won afterwards
            ocirun("delete", "--force", cid)
        left = leftovers(ocirun, cid, bundle=bundle.path)
        scrub(ocirun, cid)
        assert not left, left

"""The state directory on a temp root: ids, claim, lock, atomic state.json, removal."""

from __future__ import annotations

import fcntl
import json
import multiprocessing
import os
import shutil
import stat
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from ocirun.errors import ContainerExists, ContainerIdError, ContainerNotFound, StateStoreError
from ocirun.store import MAX_ID_LENGTH, ContainerRecord, Store, validate_id

FORK = multiprocessing.get_context("fork")


def record(container_id: str = "c1", **changes) -> ContainerRecord:
    fields: dict[str, Any] = dict(
        id=container_id,
        pid=1234,
        init_start_time=5678,
        bundle="/b",
        rootfs="/b/rootfs",
        created="2024-01-02T03:04:05.123456789Z",
        owner="root",
        annotations={"k": "v"},
        has_process=True,
        status_hint="created",
        runtime={"cgroup": {"version": 2, "path": "/ocirun/c1"}},
    )
    fields.update(changes)
    return ContainerRecord(**fields)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def store(root: Path) -> Store:
    return Store(str(root))


# -- ids -------------------------------------------------------------------------

@pytest.mark.parametrize("good", [
    "a", "abc", "ABC-123", "a.b", "a_b", "a+b", "a,b", "...", ".a", "a.", "-", "x" * MAX_ID_LENGTH,
    "0123456789abcdef" * 4,
])
def test_valid_ids(good):
    assert validate_id(good) == good


@pytest.mark.parametrize("bad", [
    ".", "..", "a/b", "/a", "a/", "../a", "a b", " a", "a\n", "a\x00b", "é", "a:b", "a*",
    "a@b", "a~", "x" * (MAX_ID_LENGTH + 1),
])
def test_invalid_ids(bad, store):
    with pytest.raises(ContainerIdError, match="invalid container id format"):
        validate_id(bad)
    # every entry point refuses it before touching the file system
    with pytest.raises(ContainerIdError):
        store.claim(bad)
    with pytest.raises(ContainerIdError):
        store.load(bad)
    assert not os.path.exists(store.root)


def test_empty_id_in_runc_s_words(store):
    with pytest.raises(ContainerIdError, match="^container id cannot be empty$"):
        validate_id("")
    with pytest.raises(ContainerIdError):
        store.claim("")


RUNC_IDS = ["a,b", "a+b", "...", "a..b", "a-", ".a", "x" * MAX_ID_LENGTH, ".", "..", "é", "a b",
            "a:b", "a/b", "a\tb", "a@b", "x" * (MAX_ID_LENGTH + 1)]


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")
def test_ids_accepted_exactly_when_runc_accepts_them(tmp_path):
    """runc 1.1.5 is the oracle: `runc state ID` on an empty root says "does not exist"
    for an id it accepts, and refuses the others (a 256-character id fails at lstat)."""
    for cid in RUNC_IDS:
        p = subprocess.run(["runc", "--root", str(tmp_path), "state", cid],
                           capture_output=True, text=True, timeout=30)
        runc_accepts = "container does not exist" in p.stderr
        try:
            validate_id(cid)
            ours = True
        except ContainerIdError:
            ours = False
        assert ours == runc_accepts, (cid, p.stderr)


# -- root and reads of a missing root ------------------------------------------

def test_reads_of_a_missing_root_mean_no_containers_and_create_nothing(store, root):
    assert store.list_ids() == []
    assert not store.has_state("c1")
    with pytest.raises(ContainerNotFound, match="container does not exist: c1"):
        store.load("c1")
    with pytest.raises(ContainerNotFound):
        with store.lock("c1"):
            pass
    store.remove("c1")  # tolerated
    assert store.remove_incomplete("c1") is False
    assert not root.exists()


def test_claim_makes_root_and_dir_0700(store, root):
    d = store.claim("c1")
    assert d.id == "c1" and d.path == str(root / "c1")
    assert d.state_path == str(root / "c1" / "state.json")
    assert d.exec_fifo_path == store.exec_fifo_path("c1") == str(root / "c1" / "exec.fifo")
    assert store.dir_path("c1") == d.path
    assert stat.S_IMODE(os.stat(root).st_mode) == 0o700
    assert stat.S_IMODE(os.stat(d.path).st_mode) == 0o700


def test_an_unusable_xdg_runtime_dir_is_named_as_what_to_fix(tmp_path, monkeypatch):
    """The rootless default root (XDG_RUNTIME_DIR/ocirun) cannot be made: the
    message names the variable; any other root is reported plainly."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(blocker / "x"))
    with pytest.raises(StateStoreError) as e:
        Store(str(blocker / "x" / "ocirun")).claim("c1")
    assert str(e.value) == (f"create state root {blocker}/x/ocirun: not a directory (the default state root "
                            f"in XDG_RUNTIME_DIR={blocker}/x: set XDG_RUNTIME_DIR to a directory you own, "
                            "or give --root DIR)")
    with pytest.raises(StateStoreError) as e:
        Store(str(blocker / "y")).claim("c1")
    assert str(e.value) == f"create state root {blocker}/y: not a directory"


def test_second_claim_of_an_id_fails(store):
    store.claim("c1")
    with pytest.raises(ContainerExists, match="container with id exists: c1"):
        store.claim("c1")
    store.claim("c2")
    assert store.list_ids() == ["c1", "c2"]


def _claim_in_child(root: str, barrier, results) -> None:
    barrier.wait()
    try:
        Store(root).claim("contested")
        results.put(("won", os.getpid()))
    except ContainerExists:
        results.put(("lost", os.getpid()))
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        results.put(("error", repr(exc)))


def test_claim_race_exactly_one_of_twenty_wins(root):
    n = 20
    barrier = FORK.Barrier(n)
    results = FORK.Queue()
    procs = [FORK.Process(target=_claim_in_child, args=(str(root), barrier, results)) for _ in range(n)]
    for p in procs:
        p.start()
    outcomes = [results.get(timeout=30) for _ in range(n)]
    for p in procs:
        p.join(timeout=30)
        assert p.exitcode == 0
    kinds = [kind for kind, _ in outcomes]
    assert kinds.count("won") == 1, outcomes
    assert kinds.count("lost") == n - 1, outcomes
    assert Store(str(root)).list_ids() == ["contested"]


# -- save / load -----------------------------------------------------------------

def test_save_then_load_round_trips(store, root):
    store.claim("c1")
    rec = record()
    store.save(rec)
    assert store.has_state("c1")
    loaded = store.load("c1")
    assert loaded == rec
    assert loaded.runtime == {"cgroup": {"version": 2, "path": "/ocirun/c1"}}
    assert stat.S_IMODE(os.stat(root / "c1" / "state.json").st_mode) == 0o600
    assert sorted(os.listdir(root / "c1")) == ["state.json"]  # no temp file left behind


def test_record_is_frozen_and_replaceable():

    rec = record()
    with pytest.raises(AttributeError):
        rec.pid = 1
    newer = rec.replace(status_hint="running")
    assert newer.status_hint == "running" and rec.status_hint == "created"


def test_saved_json_shape(store, root):
    store.claim("c1")
    store.save(record())
    data = json.loads((root / "c1" / "state.json").read_text())
    assert data == {
        "ociVersion": "1.3.0", "id": "c1", "pid": 1234, "initStartTime": 5678, "bundle": "/b",
        "rootfs": "/b/rootfs", "created": "2024-01-02T03:04:05.123456789Z", "owner": "root",
        "annotations": {"k": "v"}, "hasProcess": True, "statusHint": "created",
        "runtime": {"cgroup": {"version": 2, "path": "/ocirun/c1"}},
    }


def test_unknown_keys_are_kept_across_a_rewrite(store, root):
    store.claim("c1")
    store.save(record())
    path = root / "c1" / "state.json"
    data = json.loads(path.read_text())
    data["fromTheFuture"] = {"x": 1}
    path.write_text(json.dumps(data))

    loaded = store.load("c1")
    assert loaded.extra == {"fromTheFuture": {"x": 1}}
    store.save(loaded.replace(status_hint="running"))
    again = json.loads(path.read_text())
    assert again["fromTheFuture"] == {"x": 1} and again["statusHint"] == "running"


def test_optional_keys_default(store, root):
    store.claim("c1")
    minimal = {"ociVersion": "1.0.2", "id": "c1", "pid": 7, "bundle": "/b", "rootfs": "/r",
               "created": "2024-01-02T03:04:05Z"}
    (root / "c1" / "state.json").write_text(json.dumps(minimal))
    rec = store.load("c1")
    assert (rec.init_start_time, rec.owner, rec.annotations, rec.has_process, rec.status_hint,
            rec.runtime) == (0, "", {}, True, "created", {})


@pytest.mark.parametrize("content, why", [
    (b"", "expecting value"),
    (b"{\"id\": \"c1\"", "expecting"),
    (b"[]", "not a json object"),
    (b"\xff\xfe", ""),
    (b'{"ociVersion":"1","id":"c1","pid":"7","bundle":"/b","rootfs":"/r","created":"t"}', "'pid'"),
    (b'{"ociVersion":"1","id":"c1","pid":true,"bundle":"/b","rootfs":"/r","created":"t"}', "'pid'"),
    (b'{"ociVersion":"1","id":"c1","pid":7,"rootfs":"/r","created":"t"}', "missing 'bundle'"),
    (b'{"ociVersion":"1","id":"c1","pid":7,"bundle":"/b","rootfs":"/r","created":"t",'
     b'"annotations":{"a":1}}', "annotations"),
    (b'{"ociVersion":"1","id":"other","pid":7,"bundle":"/b","rootfs":"/r","created":"t"}', "other"),
])
def test_corrupt_state_is_a_store_error(store, root, content, why):
    store.claim("c1")
    (root / "c1" / "state.json").write_bytes(content)
    with pytest.raises(StateStoreError, match="corrupt state") as info:
        store.load("c1")
    assert why.lower() in str(info.value).lower()


def test_dir_without_state_is_not_found_for_readers(store):
    store.claim("c1")
    assert not store.has_state("c1")
    with pytest.raises(ContainerNotFound):
        store.load("c1")
    assert store.list_ids() == ["c1"]  # list_ids shows it; loading it says "not found"


def test_save_into_a_removed_dir_is_not_found(store):
    store.claim("c1")
    store.remove("c1")
    with pytest.raises(ContainerNotFound):
        store.save(record())


def _rewrite_state(root: str, stop, last) -> None:
    s = Store(root)
    for i in range(100_000):  # until the reader has seen enough (bounded)
        if stop.is_set():
            break
        # sizes vary a lot, so a torn or partial file could not parse
        s.save(record(annotations={"i": str(i), "pad": "x" * ((i * 7919) % 20000)}))
        last.value = i


def test_readers_never_see_a_partial_state_file(store, root):
    store.claim("c1")
    store.save(record())
    # the reader stops the writer once it has raced it enough (a fixed number of saves can
    # all be done while the reader is not scheduled)
    stop, last = FORK.Event(), FORK.Value("q", -1)
    writer = FORK.Process(target=_rewrite_state, args=(str(root), stop, last))
    writer.start()
    reads, errors, seen = 0, [], set()
    path = root / "c1" / "state.json"
    deadline = time.monotonic() + 30
    while writer.is_alive() or reads == 0:
        if (reads >= 50 and len(seen) >= 3) or time.monotonic() > deadline:
            stop.set()
        try:
            # raw parse, as any third-party reader would, and through the store
            json.loads(path.read_bytes())
            rec = store.load("c1")
            seen.add(rec.annotations.get("i"))
            reads += 1
        except Exception as exc:  # noqa: BLE001 - the assertion is that this never happens
            errors.append(repr(exc))
    writer.join()
    assert writer.exitcode == 0
    assert errors == []
    assert reads > 10 and len(seen) > 2  # the reader really did race the writer
    assert store.load("c1").annotations["i"] == str(last.value)
    assert sorted(os.listdir(root / "c1")) == ["state.json"]


# -- locking ---------------------------------------------------------------------

def test_lock_is_exclusive_against_other_opens(store, root):
    store.claim("c1")
    other = os.open(root / "c1", os.O_RDONLY | os.O_DIRECTORY)
    try:
        with store.lock("c1"):
            with pytest.raises(BlockingIOError):
                fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released on exit
        fcntl.flock(other, fcntl.LOCK_UN)
    finally:
        os.close(other)


def _hold_lock(root: str, ready, took, log_path: str, seconds: float) -> None:
    with Store(root).lock("c1"):
        took.value = time.monotonic()  # CLOCK_MONOTONIC: the same in every process
        ready.set()
        time.sleep(seconds)
        with open(log_path, "a") as f:
            f.write("holder released\n")


def test_lock_waits_for_the_holder_in_another_process(store, root, tmp_path):
    store.claim("c1")
    log = tmp_path / "log"
    ready, took = FORK.Event(), FORK.Value("d", 0.0)
    holder = FORK.Process(target=_hold_lock, args=(str(root), ready, took, str(log), 0.5))
    holder.start()
    assert ready.wait(10)
    with store.lock("c1"):
        # from when the holder took it: our own wake-up after ready may come late
        waited = time.monotonic() - took.value
        with open(log, "a") as f:
            f.write("waiter acquired\n")
    holder.join()
    assert log.read_text() == "holder released\nwaiter acquired\n"
    assert waited >= 0.4


def test_waiter_gets_not_found_when_the_holder_removes_the_dir(store):
    store.claim("c1")
    outcome: list[object] = []
    started = threading.Event()

    def waiter():
        started.set()
        try:
            with Store(store.root).lock("c1"):
                outcome.append("locked")
        except ContainerNotFound as exc:
            outcome.append(exc)

    with store.lock("c1"):
        t = threading.Thread(target=waiter)
        t.start()
        started.wait()
        time.sleep(0.2)
        assert outcome == []  # still waiting
        store.remove("c1")
    t.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], ContainerNotFound)


def test_waiter_locks_the_new_dir_when_the_id_is_claimed_again(store):
    store.claim("c1")
    got: list[int] = []

    def waiter():
        with Store(store.root).lock("c1") as lk:
            got.append(os.fstat(lk.fd).st_ino)

    with store.lock("c1"):
        t = threading.Thread(target=waiter)
        t.start()
        time.sleep(0.2)
        store.remove("c1")
        store.claim("c1")
        new_ino = os.stat(store.dir_path("c1")).st_ino
    t.join(10)
    assert got == [new_ino]


# -- removal ---------------------------------------------------------------------

def test_remove_half_made_dir(store, root):
    d = store.claim("c1")
    os.mkfifo(d.exec_fifo_path)
    (root / "c1" / ".state.json.99.tmp").write_text("{")
    (root / "c1" / "sub" / "deeper").mkdir(parents=True)
    (root / "c1" / "sub" / "deeper" / "f").write_text("x")
    os.symlink("/etc", root / "c1" / "link")  # never followed
    store.remove("c1")
    assert not (root / "c1").exists()
    assert os.path.isdir("/etc")
    store.remove("c1")  # again: nothing to do, no error
    assert store.list_ids() == []


def test_remove_incomplete_removes_only_dirs_without_state(store):
    store.claim("half")
    assert store.remove_incomplete("half") is True
    assert store.list_ids() == []
    store.claim("whole")
    store.save(record("whole"))
    assert store.remove_incomplete("whole") is False
    assert store.load("whole").id == "whole"


def test_remove_incomplete_waits_for_a_create_in_progress(store):
    store.claim("c1")
    result: list[bool] = []
    with store.lock("c1"):  # a create in progress holds the lock
        t = threading.Thread(target=lambda: result.append(Store(store.root).remove_incomplete("c1")))
        t.start()
        time.sleep(0.2)
        assert result == []
        store.save(record())  # ... and finishes
    t.join(10)
    assert result == [False]
    assert store.load("c1").pid == 1234


def test_claim_locked_holds_the_lock_from_the_start(store):
    result: list[bool] = []
    lock = store.claim_locked("c1")
    with lock:  # entering a held lock neither re-locks nor deadlocks
        t = threading.Thread(target=lambda: result.append(Store(store.root).remove_incomplete("c1")))
        t.start()
        time.sleep(0.2)
        assert result == []  # delete --force of the half-made dir waits for the create
        store.save(record())
    t.join(10)
    assert result == [False] and store.load("c1").pid == 1234
    assert lock.fd == -1
    lock.__exit__(None, None, None)  # idempotent
    with pytest.raises(ContainerExists):
        store.claim_locked("c1")


def test_list_ids_sorted_and_only_container_dirs(store, root):
    for cid in ("b", "a", "c.1"):
        store.claim(cid)
    (root / "not-a-dir").write_text("")
    (root / "bad name").mkdir()
    os.symlink(root / "a", root / "link")
    assert store.list_ids() == ["a", "b", "c.1"]


def test_mounts_below_reads_the_mount_table(tmp_path, monkeypatch):
    from ocirun import store as store_mod

    table = tmp_path / "mountinfo"
    table.write_bytes(
        b"1 0 0:1 / / rw - ext4 /dev/sda rw\n"
        b"2 1 0:2 / /run/ocirun/c1/criu-root rw - tmpfs t rw\n"
        b"3 2 0:3 / /run/ocirun/c1/criu-root/proc rw - proc p rw\n"
        b"4 1 0:4 / /run/ocirun/c10/x rw - tmpfs t rw\n"
        b"5 1 0:5 / /run/ocirun/c1/with\\040space rw - tmpfs t rw\n")
    real_open = open
    monkeypatch.setattr("builtins.open", lambda p, *a, **k: real_open(table if p == "/proc/self/mountinfo" else p, *a, **k))
    assert store_mod.mounts_below("/run/ocirun/c1") == [
        "/run/ocirun/c1/criu-root/proc", "/run/ocirun/c1/with space", "/run/ocirun/c1/criu-root"]

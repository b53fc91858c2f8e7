"""Status derivation, the transition table, and the /proc and signal helpers under them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from ocirun.errors import InvalidStateError, UsageError
from ocirun.linux import proc
from ocirun.state import (
    ALLOWED,
    CREATED,
    CREATING,
    PAUSED,
    RUNNING,
    STATUSES,
    STOPPED,
    allowed,
    current_status,
    derive_status,
    require,
)
from ocirun.store import ContainerRecord, Store


def record(pid: int = 100, start: int = 555, hint: str = "created", cid: str = "c1") -> ContainerRecord:
    return ContainerRecord(id=cid, pid=pid, init_start_time=start, bundle="/b", rootfs="/b/r",
                           created="2024-01-01T00:00:00Z", status_hint=hint)


def wait_for_zombie(pid: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not proc.is_zombie(pid):
        assert time.monotonic() < deadline, "child did not exit"
        time.sleep(0.01)


# -- derive_status: the pure rule -------------------------------------------------

@pytest.mark.parametrize("rec, start, fifo, frozen, zombie, expected", [
    (record(pid=0), None, False, False, False, STOPPED),
    (record(pid=0, hint="creating"), None, False, False, False, CREATING),
    (record(pid=0, hint="running"), None, True, True, False, STOPPED),
    (record(), None, True, False, False, STOPPED),        # process gone
    (record(), None, False, True, False, STOPPED),        # gone, even if the cgroup is frozen
    (record(), 556, True, False, False, STOPPED),         # pid recycled: another start time
    (record(start=0), 555, False, False, False, STOPPED),  # start time never recorded
    (record(), 555, True, False, True, STOPPED),          # zombie: exited, not yet reaped
    (record(), 555, True, False, False, CREATED),
    (record(hint="running"), 555, True, False, False, CREATED),  # the hint is not authoritative
    (record(), 555, False, False, False, RUNNING),
    (record(hint="created"), 555, False, False, False, RUNNING),
    (record(), 555, False, True, False, PAUSED),
    (record(), 555, True, True, False, PAUSED),           # a paused created container: paused
])
def test_derive_status(rec, start, fifo, frozen, zombie, expected):
    assert derive_status(rec, proc_start_time=start, fifo_exists=fifo, frozen=frozen,
                         zombie=zombie) == expected


# -- current_status: gathering the facts -----------------------------------------

@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store(str(tmp_path / "root"))
    s.claim("c1")
    return s


def test_current_status_of_a_live_process(store):
    me = os.getpid()
    rec = record(pid=me, start=proc.start_time(me))
    assert current_status(store, rec) == RUNNING
    os.mkfifo(store.exec_fifo_path("c1"))
    assert current_status(store, rec) == CREATED
    assert current_status(store, rec, is_frozen=lambda r: True) == PAUSED
    os.unlink(store.exec_fifo_path("c1"))
    assert current_status(store, rec, is_frozen=lambda r: r is rec) == PAUSED


def test_current_status_of_a_recycled_pid_is_stopped(store):
    me = os.getpid()
    rec = record(pid=me, start=proc.start_time(me) - 1)  # "our" init started at another time
    os.mkfifo(store.exec_fifo_path("c1"))
    assert current_status(store, rec) == STOPPED


def test_current_status_of_a_zombie_and_of_a_reaped_process(store):
    child = subprocess.Popen(["true"])
    start = proc.start_time(child.pid)
    assert start is not None
    rec = record(pid=child.pid, start=start)
    wait_for_zombie(child.pid)
    assert current_status(store, rec) == STOPPED
    child.wait()
    assert current_status(store, rec) == STOPPED


def test_current_status_reads_no_freezer_for_a_dead_container(store):
    def boom(r):
        raise AssertionError("is_frozen must not be consulted")

    assert current_status(store, record(pid=0), is_frozen=boom) == STOPPED
    assert current_status(store, record(pid=2**22 + 1), is_frozen=boom) == STOPPED


# -- the transition table ----------------------------------------------------------

@pytest.mark.parametrize("operation, ok", [
    ("start", {CREATED}),
    ("kill", {CREATED, RUNNING, PAUSED}),
    ("delete", {STOPPED}),
    ("pause", {CREATED, RUNNING}),
    ("resume", {PAUSED}),
    ("exec", {CREATED, RUNNING}),
    ("exec-ignore-paused", {CREATED, RUNNING, PAUSED}),
])
def test_transition_table(operation, ok):
    for status in STATUSES:
        assert allowed(status, operation) == (status in ok)
        if status in ok:
            require(status, operation, "c1")
        else:
            with pytest.raises(InvalidStateError):
                require(status, operation, "c1")


def test_table_covers_every_operation_once():
    assert set(ALLOWED) == {"start", "kill", "delete", "pause", "resume", "exec",
                            "exec-ignore-paused"}


@pytest.mark.parametrize("status, operation, message", [
    (STOPPED, "start", "cannot start a container that has stopped"),
    (RUNNING, "start", "cannot start an already running container"),
    (PAUSED, "start", "cannot start a container in the paused state"),
    (CREATING, "start", "cannot start a container in the creating state"),
    (STOPPED, "kill", "container not running"),
    (CREATING, "kill", "container not running"),
    (RUNNING, "delete", "cannot delete container c1 that is not stopped: running"),
    (CREATED, "delete", "cannot delete container c1 that is not stopped: created"),
    (PAUSED, "delete", "cannot delete container c1 that is not stopped: paused"),
    (STOPPED, "pause", "container not running"),
    (PAUSED, "pause", "container not running"),
    (RUNNING, "resume", "container not paused"),
    (STOPPED, "exec", "cannot exec in a stopped container"),
    (PAUSED, "exec", "cannot exec in a paused container (use --ignore-paused to override)"),
])
def test_refusal_messages(status, operation, message):
    with pytest.raises(InvalidStateError) as info:
        require(status, operation, "c1")
    assert str(info.value) == message


def test_unknown_operation_is_a_programming_error():
    with pytest.raises(ValueError, match="unknown operation"):
        require(RUNNING, "explode")


# -- /proc/PID/stat ------------------------------------------------------------------

def test_parse_stat_splits_at_the_last_paren():
    line = b"4242 (a) (b) c)) S 17 4242 4242 0 -1 4194560 1 2 3 4 5 6 7 8 20 0 1 0 987654 1 2 3\n"
    st = proc.parse_stat(line)
    assert (st.pid, st.comm, st.state, st.ppid, st.start_time) == (4242, "a) (b) c)", "S", 17, 987654)
    assert not st.exited and not st.exiting and st.flags == 4194560
    assert proc.parse_stat(line.replace(b") S 17", b") Z 17")).exited


def test_a_task_inside_its_exit_is_exiting_not_exited():
    # PF_EXITING (0x4) in field 9: e.g. a pid namespace's init waiting for its last children
    line = b"4242 (sleep) S 17 4242 4242 0 -1 4194564 1 2 3 4 5 6 7 8 20 0 1 0 987654 1 2 3\n"
    st = proc.parse_stat(line)
    assert st.exiting and not st.exited


@pytest.mark.parametrize("bad", [b"", b"garbage", b"12 (x) S", b"12 x) S 1 (y", b"x (c) S 1 2"])
def test_parse_stat_rejects_garbage(bad):
    with pytest.raises(ValueError, match="malformed"):
        proc.parse_stat(bad)


def test_start_time_of_a_process_whose_name_has_parens_and_spaces(tmp_path):
    exe = tmp_path / "a) (b"
    shutil.copy("/bin/sleep", exe)
    child = subprocess.Popen([str(exe), "30"])
    try:
        deadline = time.monotonic() + 5
        while (st := proc.read_stat(child.pid)) is None or st.comm != "a) (b":
            assert time.monotonic() < deadline, f"child never exec'd: {st!r}"
            time.sleep(0.01)
        # the fields after comm were found at the right offsets
        assert st.pid == child.pid
        assert st.ppid == os.getpid()
        assert st.state in ("S", "R")
        mine = proc.start_time(os.getpid())
        ticks_now = float(Path("/proc/uptime").read_text().split()[0]) * os.sysconf("SC_CLK_TCK")
        assert mine is not None and mine <= st.start_time <= ticks_now + 1
        assert proc.start_time(child.pid) == st.start_time
        assert not proc.is_zombie(child.pid)
    finally:
        child.kill()
        child.wait()


def test_no_such_process():
    assert proc.read_stat(0) is None
    assert proc.read_stat(-1) is None
    assert proc.start_time(2**22 + 1) is None  # above pid_max's upper bound
    assert proc.is_zombie(2**22 + 1) is False


def test_is_zombie_until_reaped():
    child = subprocess.Popen(["true"])
    wait_for_zombie(child.pid)
    assert proc.is_zombie(child.pid)
    child.wait()
    assert proc.start_time(child.pid) is None


# -- pidfds -------------------------------------------------------------------------

def test_open_pidfd_checks_the_start_time():
    child = subprocess.Popen(["sleep", "30"])
    try:
        start = proc.start_time(child.pid)
        assert start is not None
        assert proc.open_pidfd(child.pid, start + 1) is None  # a recycled pid is never signalled
        fd = proc.open_pidfd(child.pid, start)
        assert fd is not None
        try:
            proc.send_signal(fd, signal.SIGTERM)
        finally:
            os.close(fd)
        assert child.wait(5) == -signal.SIGTERM
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def test_open_pidfd_without_a_check_and_of_nothing():
    fd = proc.open_pidfd(os.getpid(), None)
    assert fd is not None
    os.close(fd)
    assert proc.open_pidfd(0, None) is None
    assert proc.open_pidfd(2**22 + 1, 1) is None


def test_send_signal_to_an_exited_process_raises():
    child = subprocess.Popen(["true"])
    fd = proc.open_pidfd(child.pid, None)
    assert fd is not None
    try:
        child.wait()
        with pytest.raises(ProcessLookupError):
            proc.send_signal(fd, signal.SIGTERM)
    finally:
        os.close(fd)


# -- signal names ---------------------------------------------------------------------

@pytest.mark.parametrize("text, expected", [
    ("9", 9), ("0", 0), ("15", 15), ("KILL", signal.SIGKILL), ("SIGKILL", signal.SIGKILL),
    ("sigkill", signal.SIGKILL), ("kill", signal.SIGKILL), ("Term", signal.SIGTERM),
    ("HUP", signal.SIGHUP), ("SIGUSR1", signal.SIGUSR1), ("winch", signal.SIGWINCH),
    ("IOT", signal.SIGABRT), ("SIGCLD", signal.SIGCHLD),
    ("SIGRTMIN", signal.SIGRTMIN), ("RTMIN+3", signal.SIGRTMIN + 3),
    ("SIGRTMIN+3", signal.SIGRTMIN + 3), ("sigrtmax-2", signal.SIGRTMAX - 2),
    ("RTMAX", signal.SIGRTMAX), (str(int(signal.SIGRTMAX)), signal.SIGRTMAX),
    (" TERM ", signal.SIGTERM),
])
def test_parse_signal(text, expected):
    assert proc.parse_signal(text) == int(expected)


@pytest.mark.parametrize("text", [
    "", "FOO", "SIGFOO", "SIG", "-9", "+9", "9x", "65", "1000", "RTMIN-1", "RTMIN+", "RTMIN+x",
    "RTMAX+1", "RTMIN+99", "SIG_DFL", "９", "KILL9",
])
def test_parse_signal_rejects(text):
    with pytest.raises(UsageError) as info:
        proc.parse_signal(text)
    assert str(info.value) == f"unknown signal: {text}"

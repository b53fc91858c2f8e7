"""The library: ocirun.Runtime and ocirun.Container, in this process, on real containers.

Each test is followed by the ``ocirun`` fixture's leak check (processes,
mounts, cgroups, state dirs, fds of this process).
"""

from __future__ import annotations

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from ocirun import Container, Runtime
from ocirun.errors import (
    ConfigError,
    ContainerExists,
    ContainerNotFound,
    InvalidStateError,
    OcirunWarning,
    UsageError,
)

PIPE, DEVNULL = subprocess.PIPE, subprocess.DEVNULL


def _ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rfind(")") + 2:].split()[1])


def test_the_whole_lifecycle(api, ocirun, bundle):
    bundle.set_args("sh", "-c", "trap 'exit 7' TERM; echo ready; while :; do sleep 0.1; done")
    cid = ocirun.new_id()
    with api.create(cid, bundle.path, stdin=DEVNULL, stdout=PIPE) as c:
        assert isinstance(c, Container) and c.id == cid
        st = c.state()
        assert (st["id"], st["status"], st["bundle"]) == (cid, "created", str(bundle.path))
        assert st["pid"] > 0 and st["ociVersion"] == "1.3.0" and "annotations" in st
        assert _ppid(st["pid"]) == os.getpid()  # in-process: the init is our child, as create's
        assert ocirun.state(cid) == st  # the command line sees the same container
        c.start()
        assert c.stdout is not None and c.stdout.readline() == b"ready\n"
        assert c.status == "running" and c.pid == st["pid"]
        r = c.exec(["sh", "-c", "echo out; echo err >&2; exit 3"], capture_output=True)
        assert (r.args, r.returncode, r.stdout, r.stderr) == (
            ["sh", "-c", "echo out; echo err >&2; exit 3"], 3, b"out\n", b"err\n")
        big = os.urandom(300_000)  # more than a pipe holds: written and read at once
        r = c.exec(["cat"], input=big, stdout=PIPE)
        assert (r.returncode, r.stdout, r.stderr) == (0, big, None)
        r = c.exec(["sh", "-c", "kill -9 $$"])
        assert r.returncode == -9  # subprocess's convention (the CLI says 137)
        assert [s["id"] for s in api.list()] == [cid]
        assert api.get(cid).state()["status"] == "running"
        c.kill("TERM")
        assert c.wait(timeout=10) == 7
        assert c.wait() == 7  # remembered once reaped
        assert c.status == "stopped" and c.state()["pid"] == 0
    with pytest.raises(ContainerNotFound) as err:
        api.get(cid)
    assert err.value.container_id == cid
    assert api.list() == []
    assert not (ocirun.root / cid).exists()


def test_run_is_subprocess_run(api, ocirun, bundle, tmp_path):
    bundle.set_args("sh", "-c", "read x; echo got $x; echo oops >&2; exit 5")
    cid = ocirun.new_id()
    r = api.run(cid, bundle.path, input=b"hello\n", capture_output=True)
    assert isinstance(r, subprocess.CompletedProcess)
    assert (r.args, r.returncode, r.stdout, r.stderr) == (bundle.config()["process"]["args"], 5,
                                                          b"got hello\n", b"oops\n")
    assert not (ocirun.root / cid).exists()  # deleted
    with pytest.raises(subprocess.CalledProcessError) as err:
        api.run(ocirun.new_id(), bundle.path, input=b"x\n", stdout=DEVNULL, stderr=DEVNULL, check=True)
    assert err.value.returncode == 5
    # a file as stdout, stderr into it too
    out = tmp_path / "out"
    with open(out, "wb") as f:
        r = api.run(ocirun.new_id(), bundle.path, input=b"file\n", stdout=f, stderr=subprocess.STDOUT)
    assert r.stdout is None and out.read_bytes() == b"got file\noops\n"


def test_run_timeout_kills_and_deletes_the_container(api, ocirun, bundle):
    bundle.set_args("sh", "-c", "echo started; exec sleep 60")
    cid = ocirun.new_id()
    start = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as err:
        api.run(cid, bundle.path, stdout=PIPE, timeout=10)  # the timeout counts create and start too
    assert time.monotonic() - start < 40
    assert err.value.output == b"started\n"
    assert not (ocirun.root / cid).exists()


def test_exec_timeout_kills_the_process(api, ocirun, bundle):
    bundle.set_args("sleep", "60")
    cid = ocirun.new_id()
    with api.create(cid, bundle.path, stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL) as c:
        c.start()
        with pytest.raises(subprocess.TimeoutExpired):
            c.exec(["sleep", "31"], timeout=1)
        left = []
        for entry in os.listdir("/proc"):
            try:
                if entry.isdigit() and Path(f"/proc/{entry}/cmdline").read_bytes() == b"sleep\x0031\x00":
                    left.append(entry)
            except OSError:
                pass
        assert left == []  # killed and reaped


def test_exec_options(api, ocirun, bundle):
    bundle.set_args("sleep", "60")
    cid = ocirun.new_id()
    with api.create(cid, bundle.path, stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL) as c:
        c.start()
        r = c.exec(["sh", "-c", "echo $A $B; id -u; id -g; pwd"], env={"A": "1", "B": "two"}, user="1000:1001",
                   cwd="/tmp", capture_output=True)
        assert r.stdout.decode().split() == ["1", "two", "1000", "1001", "/tmp"], r.stderr
        proc = dict(bundle.config()["process"], args=["sh", "-c", "echo from-process $X"], env=["X=y"])
        r = c.exec([], process=proc, capture_output=True)
        assert (r.args, r.stdout) == (["sh", "-c", "echo from-process $X"], b"from-process y\n")


def test_typed_errors_and_nothing_left_behind(api, ocirun, bundle, tmp_path):
    bundle.set_args("sleep", "60")
    cid = ocirun.new_id()
    with pytest.raises(ContainerNotFound):
        api.get("no-such-container")
    with api.create(cid, bundle.path, stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL) as c:
        with pytest.raises(ContainerExists):
            api.create(cid, bundle.path)
        with pytest.raises(InvalidStateError):
            c.delete()  # not stopped
        c.start()
        with pytest.raises(InvalidStateError):
            c.start()
        with pytest.raises(UsageError, match="unknown signal"):
            c.kill("NOSUCHSIG")
        c.kill(signal.SIGKILL, all=True)
        c.wait(timeout=10)
        with pytest.raises(InvalidStateError):
            c.exec(["true"])
    bad = bundle.copy(tmp_path / "bad")
    bad.edit(lambda cfg: cfg["process"].pop("cwd"))
    other = ocirun.new_id()
    with pytest.raises(ConfigError, match="cwd"):
        api.create(other, bad.path)
    assert not (ocirun.root / other).exists()
    tty = bundle.copy(tmp_path / "tty")
    tty.edit(lambda cfg: cfg["process"].__setitem__("terminal", True))
    with pytest.raises(UsageError, match="console socket"):
        api.create(other, tty.path)
    assert not (ocirun.root / other).exists()


def test_the_with_block_deletes_the_container_when_it_raises(api, ocirun, bundle):
    bundle.set_args("sleep", "60")
    cid = ocirun.new_id()
    with pytest.raises(RuntimeError, match="boom"):
        with api.create(cid, bundle.path, stdin=DEVNULL, stdout=PIPE, stderr=DEVNULL) as c:
            c.start()
            pid = c.pid
            raise RuntimeError("boom")
    assert not (ocirun.root / cid).exists()
    assert not Path(f"/proc/{pid}").exists()  # killed and reaped (we were its parent)
    assert c.stdout is not None and c.stdout.closed


def test_two_threads_create_two_containers(api, ocirun, bundle, tmp_path):
    """Two threads at once, three rounds: each gets its own container, output and
    exit status; the process's umask is never touched."""
    bundle.set_args("sh", "-c", "sleep 0.2; echo $WHO; exit $CODE")
    bundles = []
    for who, code in (("first", 3), ("second", 4)):
        b = bundle.copy(tmp_path / who)
        b.edit(lambda cfg, who=who, code=code: cfg["process"]["env"].extend([f"WHO={who}", f"CODE={code}"]))
        bundles.append((who, code, b))
    umask = os.umask(0o027)
    try:
        for _ in range(3):
            results: dict[str, object] = {}
            barrier = threading.Barrier(2)

            def work(who, code, b, barrier=barrier, results=results):
                barrier.wait()
                try:
                    results[who] = api.run(ocirun.new_id(), b.path, capture_output=True, timeout=60)
                except BaseException as e:  # noqa: BLE001 - reported below
                    results[who] = e

            threads = [threading.Thread(target=work, args=args) for args in bundles]
            for t in threads:
                t.start()
            for t in threads:
                t.join(120)
            for who, code, _b in bundles:
                r = results[who]
                assert isinstance(r, subprocess.CompletedProcess), r
                assert (r.returncode, r.stdout, r.stderr) == (code, f"{who}\n".encode(), b"")
        assert os.umask(0o027) == 0o027
    finally:
        os.umask(umask)
    assert api.list() == []


def test_no_signal_handler_and_no_output_of_ours(api, ocirun, bundle, capfd):
    """A library call must leave the caller's process alone: its signal handlers,
    its umask, its stdout and stderr (the container's output went to the pipes)."""
    from ocirun.container.foreground import FORWARDED

    def mine(signum, frame):
        pass

    old = {sig: signal.signal(sig, mine) for sig in FORWARDED}
    try:
        bundle.set_args("sh", "-c", "echo in-container")
        r = api.run(ocirun.new_id(), bundle.path, capture_output=True)
        assert r.stdout == b"in-container\n"
        bundle.set_args("sleep", "30")
        with api.create(ocirun.new_id(), bundle.path, stdin=DEVNULL, stdout=DEVNULL, stderr=DEVNULL) as c:
            c.start()
            c.exec(["true"], capture_output=True)
            c.kill("KILL")
            c.wait(10)
        assert {sig: signal.getsignal(sig) for sig in FORWARDED} == {sig: mine for sig in FORWARDED}
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
    assert capfd.readouterr() == ("", "")


def test_only_stdio_reaches_the_container(api, ocirun, bundle):
    bundle.set_args("ls", "/proc/self/fd")
    r, w = os.pipe()
    os.set_inheritable(r, True)  # as a careless caller leaves one
    try:
        res = api.run(ocirun.new_id(), bundle.path, capture_output=True)
    finally:
        os.close(r)
        os.close(w)
    assert sorted(res.stdout.split()) == [b"0", b"1", b"2", b"3"], res  # 3: ls's own


def test_warnings_go_to_the_warnings_module(api, ocirun, bundle):
    bundle.set_args("true")
    bundle.edit(lambda cfg: cfg["linux"].setdefault("resources", {}).update(memory={"kernel": 67108864}))
    with pytest.warns(OcirunWarning, match="kernel memory limits are deprecated"):
        r = api.run(ocirun.new_id(), bundle.path)
    assert r.returncode == 0


def test_wait_of_a_container_made_elsewhere(api, ocirun, bundle):
    """The init's parent is another process (which made it with the library and
    lives on): wait sees the container stop but cannot know the status."""
    import sys

    bundle.set_args("sleep", "60")
    cid = ocirun.new_id()
    script = ("import sys, subprocess; from ocirun import Runtime\n"
              f"c = Runtime({str(ocirun.root)!r}).create({cid!r}, {str(bundle.path)!r}, stdin=subprocess.DEVNULL,"
              " stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)\n"
              "c.start(); print('started', flush=True); sys.stdin.read()\n")
    parent = subprocess.Popen([sys.executable, "-c", script], stdin=PIPE, stdout=PIPE)
    try:
        assert parent.stdout is not None and parent.stdout.readline() == b"started\n"
        c = api.get(cid)
        assert _ppid(c.pid) == parent.pid
        with pytest.raises(subprocess.TimeoutExpired):
            c.wait(timeout=0.2)
        c.kill("KILL")
        assert c.wait(timeout=10) is None
        assert c.status == "stopped"
        c.delete()
    finally:
        parent.communicate(b"", timeout=30)
    assert api.list() == []


def test_an_orphaned_init_is_ours_to_wait_for(api, ocirun, bundle):
    """`ocirun run -d` exits; its init is reparented to us (the tests are a child
    subreaper, as conmon and containerd's shim are): wait then knows the status."""
    from test_cgroups import detached

    bundle.set_args("sleep", "60")
    cid = ocirun.new_id()
    detached(ocirun, "run", "-d", "--bundle", str(bundle.path), cid)
    c = api.get(cid)
    c.kill("KILL")
    assert c.wait(timeout=10) == -9
    c.delete()


def test_runtime_defaults_to_the_command_lines_root():
    assert Runtime().root == "/run/ocirun"

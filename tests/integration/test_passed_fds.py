"""The fds a caller passes beyond stdio, against runc: --preserve-fds N with fewer
than N open (#11 item 15) and socket activation, LISTEN_FDS (#11 item 17)."""

from __future__ import annotations

import shutil
import subprocess
import sys
import uuid

import pytest

needs_runc = pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")

#: the container's view: the shell's fds (listed by a child while the shell waits,
#: holding nothing of its own), then the LISTEN_ variables
SHOW_FDS = "ls -l /proc/$$/fd; env"


def _files(tmp_path, n: int) -> list[str]:
    paths = []
    for i in range(n):
        p = tmp_path / f"passed{i}"
        p.write_text(f"file {i}\n")
        paths.append(str(p))
    return paths


def _launch(runtime: list[str], opens: dict[int, str], env: dict[str, str] | None = None,
            listen_pid_is_self: bool = False) -> subprocess.CompletedProcess:
    """runtime's argv run by a shell that opens ``opens`` (fd -> file) first, so that
    exactly those numbers reach the runtime; LISTEN_PID is the runtime's pid when asked
    (the shell execs it, keeping its pid, as systemd starts a socket-activated service)."""
    import tempfile

    redirs = " ".join(f"{fd}<{path}" for fd, path in opens.items())
    script = ("export LISTEN_PID=$$; " if listen_pid_is_self else "") + f'exec {redirs} "$@"'
    # files, not pipes: a created container's init keeps the caller's stdio
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        p = subprocess.run(["sh", "-c", script, "sh", *runtime], stdout=out, stderr=err, timeout=60,
                           stdin=subprocess.DEVNULL, env=env)
        out.seek(0)
        err.seek(0)
        p.stdout, p.stderr = out.read(), err.read()
    return p


def _runc(tmp_path, *args: str) -> list[str]:
    return ["runc", "--root", str(tmp_path / "runc-root"), *args]


def _ocirun(ocirun, *args: str) -> list[str]:
    return [sys.executable, "-m", "ocirun", "--root", str(ocirun.root), *args]


def _fd_lines(out: bytes) -> list[str]:
    """``fd N TARGET`` for each fd above stdio in SHOW_FDS's listing."""
    lines = []
    for line in out.decode().splitlines():
        name, arrow, target = line.partition(" -> ")
        if arrow and int(name.split()[-1]) >= 3:
            lines.append(f"fd {name.split()[-1]} {target}")
    return lines


def _listen_env(out: bytes) -> list[str]:
    return [line for line in out.decode().splitlines() if line.startswith("LISTEN_")]


def _both_run(ocirun, bundle, tmp_path, flags: list[str], opens: dict[int, str], **kw):
    bundle.set_args("sh", "-c", SHOW_FDS)
    theirs = bundle.copy(tmp_path / f"runc-bundle-{uuid.uuid4().hex[:6]}")
    ours = _launch(_ocirun(ocirun, "run", *flags, "--bundle", str(bundle.path), ocirun.new_id()), opens, **kw)
    rid = f"runc-{uuid.uuid4().hex[:8]}"
    try:
        ref = _launch(_runc(tmp_path, "run", *flags, "--bundle", str(theirs.path), rid), opens, **kw)
    finally:
        _launch(_runc(tmp_path, "delete", "--force", rid), {})
    return ours, ref


@needs_runc
def test_preserve_fds_beyond_the_open_ones_passes_those_that_exist(ocirun, bundle, tmp_path):
    """--preserve-fds 3 with fds 3 and 5 open: the container gets 3 and 5 and nothing
    in place of 4 (as crun). runc 1.1.5 accepts it too, but fills 4 with one of its own
    fds (whatever it had open there)."""
    a, b = _files(tmp_path, 2)
    ours, ref = _both_run(ocirun, bundle, tmp_path, ["--preserve-fds", "3"], {3: a, 5: b})
    assert ref.returncode == 0, ref.stderr
    assert ours.returncode == 0, ours.stderr
    assert _fd_lines(ours.stdout) == [f"fd 3 {a}", f"fd 5 {b}"]
    theirs = _fd_lines(ref.stdout)
    assert f"fd 3 {a}" in theirs and f"fd 5 {b}" in theirs


def test_preserve_fds_with_none_open_then_start(ocirun, bundle, tmp_path):
    """create --preserve-fds 4 with nothing open beyond stdio: no runtime fd (the state
    lock, the fifo) takes a passed number, so `start` does not wait on a lock the init
    holds, and the process sees no fd beyond stdio."""
    bundle.set_args("sh", "-c", "exec >/out; " + SHOW_FDS)
    cid = ocirun.new_id()
    p = _launch(_ocirun(ocirun, "create", "--preserve-fds", "4", "--bundle", str(bundle.path), cid), {})
    assert p.returncode == 0, p.stderr
    ocirun("start", cid, timeout=20)
    assert ocirun.wait_status(cid, "stopped") == "stopped"
    out = (bundle.rootfs / "out").read_bytes()
    assert b" 2 -> " in out and _fd_lines(out) == []


@needs_runc
def test_exec_preserve_fds_beyond_the_open_ones(ocirun, bundle, tmp_path):
    """exec --preserve-fds 2 with only fd 4 open: the process gets fd 4 (runc: the same
    and one of its own at 3)."""
    (a,) = _files(tmp_path, 1)
    bundle.set_args("sleep", "60")
    theirs = bundle.copy(tmp_path / "runc-bundle")
    cid = ocirun.new_id()
    ocirun("run", "-d", "--bundle", str(bundle.path), cid)
    rid = f"runc-{uuid.uuid4().hex[:8]}"
    try:
        assert _launch(_runc(tmp_path, "run", "-d", "--bundle", str(theirs.path), rid), {}).returncode == 0
        ours = _launch(_ocirun(ocirun, "exec", "--preserve-fds", "2", cid, "sh", "-c", SHOW_FDS), {4: a})
        ref = _launch(_runc(tmp_path, "exec", "--preserve-fds", "2", rid, "sh", "-c", SHOW_FDS), {4: a})
    finally:
        _launch(_runc(tmp_path, "delete", "--force", rid), {})
    assert ref.returncode == 0, ref.stderr
    assert ours.returncode == 0, ours.stderr
    assert _fd_lines(ours.stdout) == [f"fd 4 {a}"]
    assert f"fd 4 {a}" in _fd_lines(ref.stdout)


@needs_runc
def test_socket_activation_as_runc(ocirun, bundle, tmp_path):
    """LISTEN_FDS=2 with LISTEN_PID the runtime's pid, and --preserve-fds 1: fds 3 and 4
    (the listen fds) then 5 (the preserved one) reach the init, whose environment gets
    LISTEN_FDS=2 and LISTEN_PID=1 in place of the config's own (runc's rules)."""
    import os

    files = _files(tmp_path, 3)
    bundle.edit(lambda c: c["process"]["env"].append("LISTEN_PID=77"))
    env = dict(os.environ, LISTEN_FDS="2")
    ours, ref = _both_run(ocirun, bundle, tmp_path, ["--preserve-fds", "1"], dict(zip((3, 4, 5), files, strict=True)),
                          env=env, listen_pid_is_self=True)
    assert ref.returncode == 0, ref.stderr
    assert ours.returncode == 0, ours.stderr
    assert _fd_lines(ours.stdout) == _fd_lines(ref.stdout) == [f"fd {n} {f}" for n, f in zip((3, 4, 5), files, strict=True)]
    assert _listen_env(ours.stdout) == _listen_env(ref.stdout) == ["LISTEN_PID=1", "LISTEN_FDS=2"]


@needs_runc
def test_listen_fds_for_another_pid_are_not_passed(ocirun, bundle, tmp_path):
    """LISTEN_PID not the runtime's: the fds are not its to pass (go-systemd's rule)."""
    import os

    files = _files(tmp_path, 2)
    env = dict(os.environ, LISTEN_FDS="2", LISTEN_PID="1")
    ours, ref = _both_run(ocirun, bundle, tmp_path, [], dict(zip((3, 4), files, strict=True)), env=env)
    assert ref.returncode == 0, ref.stderr
    assert ours.returncode == 0, ours.stderr
    assert _fd_lines(ours.stdout) == _fd_lines(ref.stdout) == []
    assert _listen_env(ours.stdout) == _listen_env(ref.stdout) == []

"""checkpoint and restore on this host: what cannot work is one clear error, and
nothing is left behind. (Real checkpoints run in the cgroup v2 guest, where
Debian's CRIU works: tests/cgroupv2/test_checkpoint.py.)"""

from __future__ import annotations

import json
import os
import shutil
import subprocess

import pytest

HAVE_RUNC = shutil.which("runc") is not None


def _criu_check() -> tuple[bool, str]:
    """(CRIU installed, the first line of `criu check`'s complaint or "" when it passes)."""
    if shutil.which("criu") is None:
        return False, ""
    p = subprocess.run(["criu", "check"], capture_output=True, text=True, timeout=300)
    if p.returncode == 0:
        return True, ""
    lines = [line.strip() for line in (p.stderr + p.stdout).splitlines() if line.strip()]
    return True, next((line for line in lines if "Error" in line), lines[0] if lines else "?")


INSTALLED, COMPLAINT = _criu_check()
needs_broken_criu = pytest.mark.skipif(not INSTALLED or not COMPLAINT,
                                       reason="CRIU works here (or is missing): the guest tests cover it")


def _counter(bundle) -> None:
    bundle.set_args("sh", "-c", "while true; do sleep 1; done")


def _fake_images(path) -> None:
    """An image directory restore accepts up to CRIU (which fails before it reads it)."""
    path.mkdir()
    (path / "inventory.img").write_bytes(b"")
    (path / "pstree.img").write_bytes(b"")
    (path / "descriptors.json").write_text('["/dev/null", "/dev/null", "/dev/null"]')


@needs_broken_criu
def test_checkpoint_where_criu_cannot_work_says_why_and_touches_nothing(ocirun, bundle, tmp_path):
    _counter(bundle)
    cid = ocirun.new_id()
    _run_detached(ocirun, bundle, cid)  # stdio /dev/null: something CRIU can dump
    before = ocirun.state(cid)
    log = tmp_path / "log"
    p = ocirun("checkpoint", "--image-path", str(tmp_path / "img"), cid, check=False,
               global_args=("--log", str(log), "--log-format", "json"))
    message = f"checkpoint: CRIU cannot work on this kernel (criu check fails): {COMPLAINT}"
    assert (p.returncode, p.stderr.decode()) == (1, message + "\n")
    assert json.loads(log.read_text())["msg"] == message  # one line
    assert ocirun.state(cid) == before  # still running, untouched
    if HAVE_RUNC:  # runc fails too, saying less ("criu failed: type NOTIFY errno 0 ...")
        runc_bundle = bundle.copy(tmp_path / "runc-bundle")
        root = str(tmp_path / "runc-root")
        subprocess.run(["runc", "--root", root, "run", "-d", "--bundle", str(runc_bundle.path), "rc1"],
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=60)
        try:
            r = subprocess.run(["runc", "--root", root, "checkpoint", "--image-path", str(tmp_path / "rimg"),
                                "rc1"], capture_output=True, timeout=120)
            assert r.returncode == 1
        finally:
            subprocess.run(["runc", "--root", root, "delete", "-f", "rc1"], timeout=60)


@needs_broken_criu
def test_restore_where_criu_cannot_work_says_why_and_leaves_nothing(ocirun, bundle, tmp_path):
    _counter(bundle)
    images = tmp_path / "img"
    _fake_images(images)
    cid = ocirun.new_id()
    p = ocirun("restore", "--detach", "--image-path", str(images), "--bundle", str(bundle.path), cid,
               check=False)
    assert (p.returncode, p.stderr.decode()) == (
        1, f"restore: CRIU cannot work on this kernel (criu check fails): {COMPLAINT}\n")
    assert not (ocirun.root / cid).exists()  # the fixture checks processes, cgroups and mounts


@pytest.mark.skipif(not INSTALLED, reason="CRIU is not installed")
def test_stdio_criu_cannot_dump_is_refused_before_criu_runs(ocirun, bundle, tmp_path):
    """A host file, or the caller's terminal, as the container's stdio: CRIU
    would find no mount for it (with or without --shell-job, as under runc)."""
    _counter(bundle)
    cid = ocirun.new_id()
    out = tmp_path / "out"
    with open(out, "wb") as f:
        subprocess.run([*ocirun_cmd(ocirun), "run", "-d", "--bundle", str(bundle.path), cid],
                       stdin=subprocess.DEVNULL, stdout=f, stderr=f, check=True, timeout=60)
    p = ocirun("checkpoint", "--image-path", str(tmp_path / "img"), cid, check=False)
    assert (p.returncode, p.stderr.decode()) == (
        1, f"checkpoint: the container's stdout is {out}, a file outside its mounts, which CRIU cannot "
           "dump; give the container pipes (as engines do) or a file inside it\n")
    assert ocirun.state(cid)["status"] == "running"

    tty_id = ocirun.new_id()
    master, slave = os.openpty()
    try:
        subprocess.run([*ocirun_cmd(ocirun), "run", "-d", "--bundle", str(bundle.path), tty_id],
                       stdin=slave, stdout=slave, stderr=slave, check=True, timeout=60)
        name = os.ttyname(slave)
        for extra in ((), ("--shell-job",)):
            p = ocirun("checkpoint", *extra, "--image-path", str(tmp_path / "img2"), tty_id, check=False)
            assert (p.returncode, p.stderr.decode()) == (
                1, f"checkpoint: the container's stdin is a terminal from outside it ({name}): CRIU "
                   "cannot dump a terminal the container does not own, with or without --shell-job; "
                   "give the container its own (process.terminal) or pipes\n")
        assert ocirun.state(tty_id)["status"] == "running"
    finally:
        os.close(master)
        os.close(slave)


def _run_detached(ocirun, bundle, cid: str) -> None:
    subprocess.run([*ocirun_cmd(ocirun), "run", "-d", "--bundle", str(bundle.path), cid], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60)


def ocirun_cmd(ocirun) -> list[str]:
    import sys

    return [sys.executable, "-m", "ocirun", "--root", str(ocirun.root)]


def test_only_a_running_container_is_checkpointed_as_runc_says(ocirun, bundle, tmp_path):
    _counter(bundle)
    cid = ocirun.new_id()
    ocirun("create", "--bundle", str(bundle.path), cid)
    p = ocirun("checkpoint", "--image-path", str(tmp_path / "img"), cid, check=False)
    assert (p.returncode, p.stderr.decode()) == (1, "Container cannot be checkpointed in created state\n")
    assert not (tmp_path / "img").exists()
    if HAVE_RUNC:
        theirs = bundle.copy(tmp_path / "runc-bundle")
        root = str(tmp_path / "runc-root")
        subprocess.run(["runc", "--root", root, "create", "--bundle", str(theirs.path), "rc2"], check=True,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=60)
        try:
            r = subprocess.run(["runc", "--root", root, "checkpoint", "--image-path", str(tmp_path / "rimg"),
                                "rc2"], capture_output=True, text=True, timeout=60)
            assert r.returncode == 1 and "Container cannot be checkpointed in created state" in r.stderr
        finally:
            subprocess.run(["runc", "--root", root, "delete", "-f", "rc2"], timeout=60)

"""ocirun.criu.swrk against a fake ``criu swrk`` (tests/unit/fakes/criu.py): the
request it gets, notifications and their fds, and every way it can fail."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from ocirun.criu import rpc
from ocirun.criu.swrk import Swrk, first_error_line
from ocirun.errors import CriuError

FAKE = Path(__file__).parent / "fakes" / "criu.py"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def criu(tmp_path, monkeypatch):
    """A `criu` executable that runs the fake; returns (path, log of requests)."""
    exe = tmp_path / "criu"
    exe.write_text(f"#!/bin/sh\nexec {sys.executable} {FAKE} \"$@\"\n")
    exe.chmod(0o755)
    log = tmp_path / "requests"
    monkeypatch.setenv("FAKE_CRIU_LOG", str(log))
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    return str(exe), log


def requests(log: Path) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()]


def _fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_a_request_and_its_answer(criu, monkeypatch):
    exe, log = criu
    before = _fds()
    resp = Swrk(exe).call({"type": rpc.REQ_TYPES["VERSION"]})
    assert resp["version"] == {"major_number": 3, "minor_number": 17, "sublevel": 1}
    assert requests(log) == [{"type": rpc.REQ_TYPES["VERSION"]}]
    assert _fds() == before


def test_chatty_criu_does_not_block_on_its_stdout(criu):
    exe, _ = criu
    resp = Swrk(exe).call({"type": rpc.REQ_TYPES["DUMP"], "opts": {"images_dir_fd": 0}})
    assert resp == {"type": rpc.REQ_TYPES["DUMP"], "success": True}


def test_notifications_reach_the_handler_with_their_fd_and_are_acknowledged(criu, monkeypatch):
    exe, log = criu
    monkeypatch.setenv("FAKE_CRIU_SCENARIO", "notify")
    seen = []

    def on_notify(script, pid, fd):
        seen.append((script, pid, None if fd is None else os.read(fd, 100)))

    started = []
    before = _fds()
    resp = Swrk(exe).call({"type": rpc.REQ_TYPES["RESTORE"], "opts": {"images_dir_fd": 0}},
                          on_notify=on_notify, on_start=started.append)
    assert resp["restore"] == {"pid": 4321}
    assert seen == [("setup-namespaces", 4321, None), ("orphan-pts-master", 0, b"the master")]
    assert len(started) == 1 and started[0] > 0
    acks = requests(log)[1:]
    assert acks == [{"type": rpc.REQ_TYPES["NOTIFY"], "notify_success": True}] * 2
    assert _fds() == before  # the master was closed after the handler


def test_a_failing_handler_is_told_to_criu_and_raised(criu, monkeypatch):
    exe, log = criu
    monkeypatch.setenv("FAKE_CRIU_SCENARIO", "notify-fail")

    class HookFailed(Exception):
        pass

    def on_notify(script, pid, fd):
        raise HookFailed("prestart hook failed")

    with pytest.raises(HookFailed, match="prestart hook failed"):
        Swrk(exe).call({"type": rpc.REQ_TYPES["RESTORE"], "opts": {"images_dir_fd": 0}}, on_notify=on_notify)
    assert requests(log)[1] == {"type": rpc.REQ_TYPES["NOTIFY"], "notify_success": False}


@pytest.mark.parametrize("scenario,message", [
    ("fail", "criu dump failed: no such file or directory"),
    ("failmsg", "criu dump failed: no images here"),
    ("die", "criu dump: criu exited before it answered (status 3): Error (criu/kerndat.c:1): kerndat broke"),
    ("garbage", "criu dump: unreadable answer: "),
    ("exit-after-answer", "criu dump: criu exited with status 5"),
])
def test_failures_are_one_criu_error(criu, monkeypatch, scenario, message):
    exe, _ = criu
    monkeypatch.setenv("FAKE_CRIU_SCENARIO", scenario)
    before = _fds()
    with pytest.raises(CriuError) as e:
        Swrk(exe).call({"type": rpc.REQ_TYPES["DUMP"], "opts": {"images_dir_fd": 0}})
    assert str(e.value).startswith(message), str(e.value)
    assert _fds() == before


def test_a_pre_dump_criu_that_waits_is_told_to_go(criu, monkeypatch):
    exe, _ = criu
    monkeypatch.setenv("FAKE_CRIU_SCENARIO", "pre-dump-waits")
    resp = Swrk(exe).call({"type": rpc.REQ_TYPES["PRE_DUMP"], "opts": {"images_dir_fd": 0}})
    assert resp["success"]


def test_criu_not_installed(tmp_path):
    with pytest.raises(CriuError, match=r"not found: checkpoint and restore need CRIU \(Debian: apt-get install criu\)"):
        Swrk(str(tmp_path / "no-criu")).call({"type": rpc.REQ_TYPES["VERSION"]})


SHOW_FDS = """#!PYTHON
import os, sys
with open("OUT", "w") as out:
    for fd in os.listdir("/proc/self/fd"):
        if os.path.exists(f"/proc/self/fd/{fd}"):
            out.write(f" {fd} -> {os.readlink(f'/proc/self/fd/{fd}')}\\n")
os.execv("CRIU", ["CRIU", *sys.argv[1:]])
"""


def test_passed_fds_and_stdio_reach_criu(criu, monkeypatch, tmp_path):
    """pass_fds keep their numbers in CRIU (inherit_fd names them); stdio is CRIU's 0-2."""
    exe, _ = criu
    script = tmp_path / "show-fds"  # lists its fds, then becomes the fake criu
    script.write_text(SHOW_FDS.replace("PYTHON", sys.executable).replace("OUT", str(tmp_path / "fds"))
                      .replace("CRIU", exe))
    script.chmod(0o755)
    keep = os.open("/dev/zero", os.O_RDONLY)
    out = os.open(tmp_path / "stdout", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        Swrk(str(script)).call({"type": rpc.REQ_TYPES["VERSION"]}, pass_fds=(keep,), stdio=(None, out, None))
    finally:
        os.close(keep)
        os.close(out)
    listing = (tmp_path / "fds").read_text()
    assert f" {keep} -> /dev/zero" in listing
    assert f" 1 -> {tmp_path}/stdout" in listing
    assert " 0 -> /dev/null" in listing


def test_first_error_line():
    assert first_error_line("a\n  Error (x): y  \nError 2\n") == "Error (x): y"
    assert first_error_line("\n only this\n") == "only this"
    assert first_error_line("") == ""

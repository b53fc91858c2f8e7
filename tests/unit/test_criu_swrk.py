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


# ---- ocirun.criu.host: what CRIU here allows (the features document) --------------


def test_describe_says_what_criu_allows(criu, monkeypatch):
    from ocirun.criu.host import describe

    exe, _ = criu
    assert describe(exe) == {"org.ocirun.checkpoint.enabled": "true",
                             "org.ocirun.checkpoint.criu.version": "3.17.1",
                             "org.ocirun.checkpoint.preDump": "true",
                             "org.ocirun.checkpoint.lazyPages": "true"}
    monkeypatch.setenv("FAKE_CRIU_SCENARIO", "no-lazy")
    assert describe(exe)["org.ocirun.checkpoint.lazyPages"] == "false"


def test_describe_says_why_not(criu, monkeypatch, tmp_path):
    from ocirun.criu.host import describe

    exe, _ = criu
    monkeypatch.setenv("FAKE_CRIU_VERSION", "2.9")
    assert describe(exe) == {"org.ocirun.checkpoint.enabled": "false",
                             "org.ocirun.checkpoint.problem":
                                 "CRIU 2.9.1 is too old: ocirun needs CRIU 3.0.0 or newer"}
    monkeypatch.delenv("FAKE_CRIU_VERSION")
    monkeypatch.setenv("FAKE_CRIU_SCENARIO", "features-fail")
    monkeypatch.setenv("FAKE_CRIU_CHECK", "Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds\nmore")
    assert describe(exe) == {"org.ocirun.checkpoint.enabled": "false",
                             "org.ocirun.checkpoint.criu.version": "3.17.1",
                             "org.ocirun.checkpoint.problem":
                                 "Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds"}
    assert describe(str(tmp_path / "none"))["org.ocirun.checkpoint.problem"].endswith(
        "not found: checkpoint and restore need CRIU (Debian: apt-get install criu)")


def test_features_document_names_the_criu_it_was_given(criu):
    import subprocess

    exe, _ = criu
    out = subprocess.run([sys.executable, "-m", "ocirun", "--criu", exe, "features"], capture_output=True,
                         check=True, text=True, timeout=60)
    annotations = json.loads(out.stdout)["annotations"]
    assert annotations["org.ocirun.checkpoint.enabled"] == "true"
    assert annotations["org.ocirun.checkpoint.preDump"] == "true"


def test_a_too_old_criu_is_one_error_before_anything(criu, monkeypatch, tmp_path):
    import subprocess

    exe, log = criu
    monkeypatch.setenv("FAKE_CRIU_VERSION", "2.12")
    images = tmp_path / "img"
    images.mkdir()
    (images / "inventory.img").write_bytes(b"")
    (images / "pstree.img").write_bytes(b"")
    (images / "descriptors.json").write_text("[]")
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    ocirun = [sys.executable, "-m", "ocirun", "--root", str(tmp_path / "root"), "--criu", exe]
    subprocess.run([*ocirun, "spec", "--bundle", str(bundle)], check=True, timeout=60)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    # ambient capabilities the kernel cannot raise: a warning (#11 item 1), not what this is about
    config["process"]["capabilities"].pop("ambient", None)
    (bundle / "config.json").write_text(json.dumps(config))
    p = subprocess.run([*ocirun, "restore", "-d", "--image-path", str(images), "--bundle", str(bundle), "c1"],
                       capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stderr) == (1, "CRIU 2.12.1 is too old: ocirun needs CRIU 3.0.0 or newer\n")
    assert not (tmp_path / "root").exists()
    assert [r["type"] for r in requests(log)] == [rpc.REQ_TYPES["VERSION"]]

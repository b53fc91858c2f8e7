"""The CLI's error edge: one message on stderr, one --log line, runc's exit statuses,
and no traceback unless --debug."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from ocirun import cli

RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)")


def ocirun(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "ocirun", *args], capture_output=True, text=True,
                          timeout=60)


def _boom(g: cli.GlobalOptions, args: object) -> int:
    raise RuntimeError("boom")


@pytest.fixture
def broken_state(monkeypatch: pytest.MonkeyPatch) -> None:
    """`state` fails with a bug (not an OcirunError)."""
    real = cli._resolve
    monkeypatch.setattr(cli, "_resolve", lambda target: _boom if target.endswith(":cmd_state") else real(target))


def test_internal_error_is_one_line_without_traceback(broken_state, capsys, tmp_path: Path) -> None:
    log = tmp_path / "log"
    assert cli.main(["--log", str(log), "--log-format", "json", "state", "c1"]) == 1
    out, err = capsys.readouterr()
    assert (out, err) == ("", "internal error: RuntimeError: boom\n")
    entry = json.loads(log.read_text())
    assert entry["level"] == "error" and entry["msg"] == "internal error: RuntimeError: boom"


def test_debug_adds_the_traceback(broken_state, capsys) -> None:
    assert cli.main(["--debug", "state", "c1"]) == 1
    _, err = capsys.readouterr()
    assert err.startswith("Traceback (most recent call last):")
    assert "RuntimeError: boom" in err
    assert err.endswith("internal error: RuntimeError: boom\n")


@pytest.mark.parametrize("form", ["separate", "joined"])
def test_json_log_line_is_appended(tmp_path: Path, form: str) -> None:
    log = tmp_path / "log.json"
    log.write_text("earlier\n")
    flags = (["--log", str(log), "--log-format", "json"] if form == "separate"
             else [f"--log={log}", "--log-format=json"])
    r = ocirun(f"--root={tmp_path / 'root'}", *flags, "state", "nosuch")
    assert (r.returncode, r.stdout, r.stderr) == (1, "", "container does not exist: nosuch\n")
    lines = log.read_text().split("\n")
    assert lines[0] == "earlier" and lines[2] == "" and len(lines) == 3
    entry = json.loads(lines[1])
    assert list(entry) == ["level", "msg", "time"]  # logrus's JSONFormatter order
    assert entry["level"] == "error" and entry["msg"] == "container does not exist: nosuch"
    assert RFC3339.fullmatch(entry["time"]), entry["time"]
    assert not (tmp_path / "root").exists()


def test_text_log_line_is_logrus_s(tmp_path: Path) -> None:
    log = tmp_path / "log"
    r = ocirun("--root", str(tmp_path), "--log", str(log), "state", 'a"b')
    assert r.returncode == 1
    line = log.read_text()
    assert line.count("\n") == 1
    m = re.fullmatch(r'time="([^"]+)" level=error msg="(.*)"\n', line)
    assert m and RFC3339.fullmatch(m.group(1))
    assert json.loads(f'"{m.group(2)}"') == r.stderr.rstrip("\n")  # quoted as logrus quotes it


def test_usage_errors_go_through_the_same_edge(tmp_path: Path) -> None:
    log = tmp_path / "log"
    r = ocirun("--log", str(log), "--log-format", "json", "kill")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr == "the following arguments are required: id\n"
    assert json.loads(log.read_text())["msg"] == "the following arguments are required: id"


def test_unknown_subcommand_exits_3_as_runc(tmp_path: Path) -> None:
    log = tmp_path / "log"
    r = ocirun("--log", str(log), "--log-format=json", "bogus")
    assert (r.returncode, r.stdout, r.stderr) == (3, "", "No help topic for 'bogus'\n")
    assert json.loads(log.read_text())["msg"] == "No help topic for 'bogus'"


@pytest.mark.parametrize("args,message", [
    (["checkpoint", "--manage-cgroups-mode", "bogus", "c1"], "invalid manage-cgroups-mode value"),
    (["restore", "--manage-cgroups-mode=Soft", "c1"], "invalid manage-cgroups-mode value"),
    (["checkpoint", "--empty-ns", "ipc", "c1"], 'namespace "ipc" is not supported'),
    (["checkpoint", "--parent-path", "/abs", "c1"], "--parent-path must be relative"),
    (["checkpoint", "--page-server", "nohost", "c1"], "Use --page-server ADDRESS:PORT to specify page server"),
    (["checkpoint", "--page-server", "h:port", "c1"], "Invalid port number"),
    (["checkpoint", "c1"], "container does not exist: c1"),
    (["checkpoint", "--status-fd", "x", "c1"], "argument --status-fd: invalid int value: 'x'"),
])
def test_checkpoint_and_restore_flags_as_runc(tmp_path: Path, args: list[str], message: str) -> None:
    """runc's words for bad flags; nothing is created (no state root, no image directory)."""
    r = ocirun("--root", str(tmp_path / "root"), *args)
    assert (r.returncode, r.stderr) == (1, message + "\n")
    assert not (tmp_path / "root").exists()


def test_restore_from_nothing_is_one_error_and_leaves_nothing(tmp_path: Path) -> None:
    (tmp_path / "pre").mkdir()  # what CRIU's pre-dump writes: no process tree
    for name in ("inventory.img", "pagemap-1.img", "pages-1.img", "stats-dump"):
        (tmp_path / "pre" / name).write_bytes(b"")
    (tmp_path / "empty").mkdir()
    (tmp_path / "proc").mkdir()
    for name in ("inventory.img", "pstree.img"):
        (tmp_path / "proc" / name).write_bytes(b"")
    for images, message in (
        ("none", "no checkpoint at {}: no such directory (--image-path)"),
        ("empty", "no checkpoint in {}: it has no inventory.img"),
        ("pre", "no checkpoint in {}: it has no pstree.img (only a pre-dump: restore needs the final checkpoint)"),
        ("proc", "{} holds no container checkpoint: no descriptors.json (images of a process, not of a "
                 "container made by ocirun or runc?)"),
    ):
        path = tmp_path / images
        r = ocirun("--root", str(tmp_path / "root"), "restore", "--image-path", str(path), "c1")
        assert (r.returncode, r.stderr) == (1, "restore: " + message.format(path) + "\n")
        assert not (tmp_path / "root").exists()


def test_version_as_runc_prints_it() -> None:
    for flag in ("--version", "-v"):
        r = ocirun(flag)
        assert r.returncode == 0 and r.stderr == ""
        assert re.fullmatch(r"ocirun version \d+\.\d+\.\d+\S*\nspec: 1\.3\.0\n", r.stdout)


def test_a_log_file_that_cannot_be_opened_is_the_one_error(tmp_path: Path) -> None:
    """As runc: --log is opened first; failing that, nothing else is done."""
    for log, why in ((tmp_path / "missing" / "log", "no such file or directory"), (tmp_path, "is a directory")):
        r = ocirun("--root", str(tmp_path / "root"), "--log", str(log), "spec", "--bundle", str(tmp_path))
        assert (r.returncode, r.stdout, r.stderr) == (1, "", f"open {log}: {why}\n")
        assert not (tmp_path / "config.json").exists()  # spec did not run
    assert not (tmp_path / "root").exists()


def test_control_characters_of_a_config_value_stay_on_one_line(tmp_path: Path) -> None:
    """A newline that a config value carries into the message is
    shown escaped: one line on stderr and in --log (found by tests/robustness)."""
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    (bundle / "config.json").write_text(json.dumps(
        {"ociVersion": "1.0.2", "root": {"path": "root\nfs"}, "process": {"args": ["true"], "cwd": "/"}}))
    log = tmp_path / "log"
    r = ocirun("--log", str(log), "--log-format", "json", "create", "--bundle", str(bundle), "c1")
    assert r.returncode == 1 and r.stderr.count("\n") == 1, r.stderr
    assert "root\\nfs" in r.stderr
    assert "\n" not in json.loads(log.read_text())["msg"]

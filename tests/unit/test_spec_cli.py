"""`ocirun spec` and `ocirun validate` through the real CLI (a new interpreter each)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ocirun import SPEC_VERSION
from ocirun.spec import schema
from ocirun.spec.load import load_bundle


def ocirun(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ocirun", *args], cwd=cwd, capture_output=True, text=True, timeout=60
    )


AMBIENT_WARNING = (
    "warning: $.process.capabilities.ambient: CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE not also in "
    "inheritable and permitted: the kernel refuses to raise them, the process runs without them "
    "(as with runc and crun)\n")


def test_spec_then_validate(tmp_path: Path) -> None:
    (tmp_path / "rootfs").mkdir()
    r = ocirun("spec", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    doc = json.loads((tmp_path / "config.json").read_text())
    assert doc["ociVersion"] == SPEC_VERSION
    assert schema.reference_is_valid(doc)  # jsonschema itself, not only the fast validator
    r = ocirun("validate", cwd=tmp_path)
    # as `runc spec` and `crun spec`, ambient without inheritable: valid, and the
    # kernel will not raise it (#11 item 1)
    assert (r.returncode, r.stdout, r.stderr) == (0, f"{tmp_path}: valid\n", AMBIENT_WARNING)
    loaded = load_bundle(str(tmp_path))
    assert loaded.config.to_dict() == doc


def test_spec_refuses_to_overwrite(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{}")
    r = ocirun("spec", "--bundle", str(tmp_path))
    assert r.returncode == 1
    assert r.stderr == "File config.json exists. Remove it first\n"
    assert (tmp_path / "config.json").read_text() == "{}"


def test_rootless_spec(tmp_path: Path) -> None:
    (tmp_path / "rootfs").mkdir()
    assert ocirun("spec", "--rootless", "-b", str(tmp_path)).returncode == 0
    doc = json.loads((tmp_path / "config.json").read_text())
    kinds = [ns["type"] for ns in doc["linux"]["namespaces"]]
    assert "network" not in kinds and kinds[-1] == "user"
    assert doc["linux"]["uidMappings"] == [{"containerID": 0, "hostID": os.geteuid(), "size": 1}]
    assert doc["linux"]["gidMappings"] == [{"containerID": 0, "hostID": os.getegid(), "size": 1}]
    assert "resources" not in doc["linux"]
    sys_mount = next(m for m in doc["mounts"] if m["destination"] == "/sys")
    assert sys_mount == {"destination": "/sys", "type": "none", "source": "/sys",
                         "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]}
    assert not any(o.startswith(("uid=", "gid=")) for m in doc["mounts"] for o in m.get("options", []))
    assert schema.reference_is_valid(doc)
    assert ocirun("validate", "-b", str(tmp_path)).returncode == 0


@pytest.mark.skipif(shutil.which("runc") is None, reason="runc not installed")
@pytest.mark.parametrize("rootless", [False, True])
def test_spec_matches_runc(tmp_path: Path, rootless: bool) -> None:
    flags = ["--rootless"] if rootless else []
    ours, theirs = tmp_path / "ours", tmp_path / "runc"
    ours.mkdir()
    theirs.mkdir()
    assert ocirun("spec", *flags, "-b", str(ours)).returncode == 0
    subprocess.run(["runc", "spec", *flags, "-b", str(theirs)], check=True)
    a = json.loads((ours / "config.json").read_text())
    b = json.loads((theirs / "config.json").read_text())
    assert a.pop("ociVersion") == SPEC_VERSION
    b.pop("ociVersion")  # runc writes its own spec module's version
    assert a == b
    assert list(a) == list(b)  # same key order, so the files diff cleanly


def test_validate_bad_config_exit_code_and_one_json_log_line(tmp_path: Path) -> None:
    (tmp_path / "rootfs").mkdir()
    assert ocirun("spec", "-b", str(tmp_path)).returncode == 0
    doc = json.loads((tmp_path / "config.json").read_text())
    doc["process"]["cwd"] = "relative"
    doc["process"]["args"] = [1]
    (tmp_path / "config.json").write_text(json.dumps(doc))
    log = tmp_path / "log.json"
    r = ocirun("--log", str(log), "--log-format", "json", "validate", "--bundle", str(tmp_path))
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1
    assert "$.process.args[0]" in r.stderr and "$.process.cwd" in r.stderr
    lines = log.read_text().splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["level"] == "error"
    assert entry["msg"] == r.stderr.rstrip("\n")
    assert entry["msg"].startswith(str(tmp_path / "config.json") + ": 2 problems: ")


def test_validate_malformed_json(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"ociVersion": "1.3.0",,}')
    r = ocirun("validate", "-b", str(tmp_path))
    assert r.returncode == 1
    assert "line 1, column 24: invalid JSON" in r.stderr


def test_validate_missing_bundle(tmp_path: Path) -> None:
    r = ocirun("validate", "-b", str(tmp_path / "nope"))
    assert r.returncode == 1
    assert r.stderr == f"bundle {tmp_path / 'nope'} does not exist\n"


def test_validate_prints_warnings(tmp_path: Path) -> None:
    (tmp_path / "rootfs").mkdir()
    assert ocirun("spec", "-b", str(tmp_path)).returncode == 0
    doc = json.loads((tmp_path / "config.json").read_text())
    doc["mounts"].append({"destination": "data", "type": "tmpfs", "source": "tmpfs"})
    (tmp_path / "config.json").write_text(json.dumps(doc))
    r = ocirun("validate", "-b", str(tmp_path))
    assert r.returncode == 0
    assert r.stderr.startswith(AMBIENT_WARNING + "warning: $.mounts[7].destination: relative destination 'data'")


def _bad_bundle(tmp_path: Path, kind: str) -> Path:
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    assert ocirun("spec", "-b", str(bundle)).returncode == 0
    config = bundle / "config.json"
    if kind == "malformed JSON":
        config.write_text(config.read_text().replace('"ociVersion"', '"ociVersion" "x",', 1))
        return bundle
    doc = json.loads(config.read_text())
    if kind == "schema violation":
        doc["process"]["user"]["uid"] = -1
    else:  # semantic: valid per the schema, but two network namespaces
        doc["linux"]["namespaces"].append({"type": "network"})
    config.write_text(json.dumps(doc))
    return bundle


# The "Done when" of the foundation issue, through `create`: one clear message naming
# where the problem is, exit 1, one JSON line appended to --log, nothing under --root.
@pytest.mark.parametrize("kind, problem", [
    ("malformed JSON", "line 2, column 15: invalid JSON: Expecting ':' delimiter"),
    ("schema violation", "$.process.user.uid: -1 is less than the minimum of 0"),
    ("semantic violation", "$.linux.namespaces[5].type: duplicate 'network' namespace (also at index 1)"),
])
def test_create_refuses_a_bad_config_cleanly(tmp_path: Path, kind: str, problem: str) -> None:
    bundle = _bad_bundle(tmp_path, kind)
    root = tmp_path / "root"
    log = tmp_path / "log.json"
    log.write_text('{"level":"info","msg":"an earlier line","time":"2024-01-01T00:00:00Z"}\n')
    r = ocirun("--root", str(root), "--log", str(log), "--log-format", "json",
               "create", "--bundle", str(bundle), "c1")
    assert r.returncode == 1
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    message = r.stderr.rstrip("\n")
    assert message == f"{bundle / 'config.json'}: {problem}"
    lines = log.read_text().splitlines()
    assert len(lines) == 2, lines  # appended, exactly one line
    entry = json.loads(lines[1])
    assert list(entry) == ["level", "msg", "time"]
    assert entry["level"] == "error" and entry["msg"] == message
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", entry["time"]), entry["time"]
    assert not root.exists()  # not even the state root was made


def test_validate_warns_about_what_create_would_refuse(tmp_path: Path) -> None:
    (tmp_path / "rootfs").mkdir()
    assert ocirun("spec", "-b", str(tmp_path)).returncode == 0
    doc = json.loads((tmp_path / "config.json").read_text())
    doc["linux"]["intelRdt"] = {"closID": "x"}  # spec-valid, not implemented
    (tmp_path / "config.json").write_text(json.dumps(doc))
    r = ocirun("validate", "-b", str(tmp_path))
    assert r.returncode == 0 and r.stdout == f"{tmp_path}: valid\n"
    assert r.stderr.startswith(AMBIENT_WARNING + "warning: $.linux.intelRdt: ") and r.stderr.count("\n") == 2
    assert r.stderr.endswith(" (ocirun create refuses it)\n")

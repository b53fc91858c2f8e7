"""features(): the linux.seccomp part of the features document (no root)."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import referencing

from ocirun.seccomp import features
from ocirun.seccomp import libseccomp as ls

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


def test_features_shape_and_content():
    f = features()
    doc = {"ociVersionMin": "1.0.0", "ociVersionMax": "1.3.0", "linux": {"seccomp": f}}
    full = json.loads((SCHEMAS / "features-schema.json").read_text())
    resources = [(p.name, referencing.Resource.from_contents(json.loads(p.read_text()),
                                                             default_specification=referencing.jsonschema.DRAFT4))
                 for p in SCHEMAS.glob("*.json")]
    jsonschema.Draft4Validator(full, registry=referencing.Registry().with_resources(resources)).validate(doc)
    assert f["enabled"] is True
    # what runc 1.1.5 lists on this host, at least
    assert set(f["actions"]) >= {"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS",
                                 "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"}
    assert f["operators"] == sorted(["SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ",
                                     "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ"])
    assert {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32", "SCMP_ARCH_AARCH64"} <= set(f["archs"])
    assert f["knownFlags"] == ["SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_LOG",
                               "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
    assert set(f["supportedFlags"]) <= set(f["knownFlags"])


def test_features_follow_the_host(monkeypatch):
    monkeypatch.setattr(ls, "action_supported", lambda a: a & 0xFFFF0000 != 0x7FC00000)
    monkeypatch.setattr(ls, "kernel_flag_supported", lambda flag: flag != ls.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV)
    real = ls.arch_token
    monkeypatch.setattr(ls, "arch_token", lambda name: 0 if name == "riscv64" else real(name))
    f = features()
    assert "SCMP_ACT_NOTIFY" not in f["actions"]
    assert "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV" not in f["supportedFlags"]
    assert "SCMP_ARCH_RISCV64" not in f["archs"]


def test_without_libseccomp(monkeypatch):
    def missing():
        raise ls.LibseccompMissing("libseccomp.so.2: cannot open shared object file")

    monkeypatch.setattr(ls, "lib", missing)
    assert features() == {"enabled": False}


def test_generated_ffi_module_is_up_to_date(tmp_path):
    from ocirun.seccomp import _build_ffi

    out = tmp_path / "ffi.py"
    _build_ffi.build().emit_python_code(str(out))
    assert out.read_text() == _build_ffi.TARGET.read_text()


def test_what_features_lists_compiles_on_this_host():
    """Truthful: every action, operator and supported flag listed is accepted by the
    compiler here (a flag the host lacks would be a SeccompConfigError)."""
    from ocirun.seccomp.compile import compile_filter
    from ocirun.spec.model import Seccomp

    f = features()
    for action in f["actions"]:
        rule = {"names": ["getppid"], "action": action}
        compile_filter(Seccomp.from_dict({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [rule],
                                          "listenerPath": "/x"}))
    args = [{"index": 0, "value": 1, "valueTwo": 1, "op": op} for op in f["operators"]]
    compile_filter(Seccomp.from_dict({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "args": args}]}))
    for flag in f["supportedFlags"]:
        compiled = compile_filter(Seccomp.from_dict({
            "defaultAction": "SCMP_ACT_ALLOW", "flags": [flag], "listenerPath": "/x",
            "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]}))
        assert compiled.flags & ls.SECCOMP_FILTER_FLAG_NEW_LISTENER


def test_features_document_names_the_libseccomp_version():
    from ocirun.features import features_document

    assert features_document()["annotations"]["io.github.seccomp.libseccomp.version"] == ls.version_string()

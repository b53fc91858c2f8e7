"""Semantic rules and the loader: each bad config in fixtures/bad-configs gives exactly
its expected problems (JSON path + message), all in one ConfigError."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest

from ocirun.errors import BundleError, ConfigError
from ocirun.spec import rules
from ocirun.spec.generate import default_spec
from ocirun.spec.load import load_bundle

FIXTURES = Path(__file__).parent / "fixtures"
BAD = sorted((FIXTURES / "bad-configs").glob("*.json"))
DOCS = Path(__file__).parents[2] / "docs" / "config-validation.md"


def merge(base: Any, patch: Any) -> Any:
    """Deep-merge ``patch`` into ``base``: dicts merge, ``None`` deletes, anything else replaces."""
    if not isinstance(base, dict) or not isinstance(patch, dict):
        return patch
    out = dict(base)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge(base.get(key), value)
    return out


def make_bundle(tmp_path: Path, config: Any) -> Path:
    bundle = tmp_path / "bundle"
    (bundle / "rootfs").mkdir(parents=True)
    (bundle / "config.json").write_text(json.dumps(config))
    return bundle


def test_default_spec_is_valid(tmp_path: Path) -> None:
    loaded = load_bundle(str(make_bundle(tmp_path, default_spec())))
    assert loaded.config.process is not None and loaded.config.process.args == ("sh",)
    assert loaded.rootfs == str(tmp_path / "bundle" / "rootfs")
    assert loaded.bundle == str(tmp_path / "bundle")
    assert loaded.config_path == str(tmp_path / "bundle" / "config.json")


@pytest.mark.parametrize("fixture", BAD, ids=[p.stem for p in BAD])
def test_bad_config(fixture: Path, tmp_path: Path) -> None:
    case = json.loads(fixture.read_text())
    bundle = make_bundle(tmp_path, merge(default_spec(), case["patch"]))
    with pytest.raises(ConfigError) as info:
        load_bundle(str(bundle))
    err = info.value
    assert err.source == str(bundle / "config.json")
    got = [f"{p.path}: {p.message}" for p in err.problems]
    assert len(got) == len(case["expect"]), got
    unmatched = list(err.problems)
    for want in case["expect"]:
        path, _, text = want.partition(": ")
        hit = next((p for p in unmatched if p.path == path and text in p.message), None)
        assert hit is not None, f"{want!r} not in {got}"
        unmatched.remove(hit)
        assert f"{path}: " in str(err)


def test_all_problems_in_one_message(tmp_path: Path) -> None:
    config = merge(default_spec(), {"process": {"cwd": "x", "env": ["BAD"]}, "ociVersion": "9.0.0"})
    with pytest.raises(ConfigError) as info:
        load_bundle(str(make_bundle(tmp_path, config)))
    text = str(info.value)
    assert "3 problems" in text
    for path in ("$.ociVersion", "$.process.cwd", "$.process.env[0]"):
        assert path in text


@pytest.mark.parametrize(
    "version", ["1.0.0", "1.0.2-dev", "1.0.0-rc5", "1.1.0", "1.2.1+dev", "1.3.0", "1.3.7", "1.3.0-rc.1"]
)
def test_supported_versions(version: str) -> None:
    assert list(rules.oci_version({"ociVersion": version}, rules.Context())) == []


@pytest.mark.parametrize("version", ["0.5.0-dev", "1.4.0", "2.0.0", "1.0", "v1.0.0", "1.0.0-", "01.0.0"])
def test_unsupported_versions(version: str) -> None:
    problems = list(rules.oci_version({"ociVersion": version}, rules.Context()))
    assert [p.path for p in problems] == ["$.ociVersion"]


def test_relative_mount_destination_is_a_warning(tmp_path: Path) -> None:
    config = default_spec()
    config["mounts"].append({"destination": "data", "type": "tmpfs", "source": "tmpfs"})
    loaded = load_bundle(str(make_bundle(tmp_path, config)))
    assert loaded.config.mounts[-1].destination == "/data"
    mounts = [w for w in loaded.warnings if w.startswith("$.mounts")]
    assert len(mounts) == 1 and "$.mounts[7].destination" in mounts[0]


def test_kernel_memory_is_a_warning_as_in_runc() -> None:
    doc = {"linux": {"resources": {"memory": {"kernel": 1 << 26, "kernelTCP": 1 << 24}}}}
    assert rules.warnings(doc) == [
        "$.linux.resources.memory.kernel: kernel memory limits are deprecated and ignored "
        "(not enforced by Linux since 5.16, absent from cgroup v2)"]
    assert rules.warnings({"linux": {"resources": {"memory": {"kernelTCP": 1}}}}) == []


def test_ambient_without_inheritable_and_permitted_is_a_warning() -> None:
    """runc and crun run such a process with CapAmb empty (the kernel's EPERM is
    ignored); `runc spec` writes ambient without inheritable (#11 item 1)."""
    caps = {"bounding": ["CAP_KILL", "CAP_CHOWN"], "permitted": ["CAP_KILL", "CAP_CHOWN"],
            "inheritable": ["CAP_KILL", "CAP_NET_RAW"], "ambient": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_RAW"]}
    assert rules.warnings({"process": {"capabilities": caps}}) == [
        "$.process.capabilities.ambient: CAP_CHOWN, CAP_NET_RAW not also in inheritable and permitted: "
        "the kernel refuses to raise them, the process runs without them (as with runc and crun)"]
    caps["inheritable"] = caps["permitted"] = caps["ambient"]
    assert rules.warnings({"process": {"capabilities": caps}}) == []
    assert rules.warnings({"process": {"capabilities": {"ambient": []}}}) == []


def test_joined_user_namespace_needs_no_mappings() -> None:
    doc = {"linux": {"namespaces": [{"type": "user", "path": "/proc/1/ns/user"}]}}
    assert list(rules.user_namespace_mappings(doc, rules.Context())) == []


def test_idmap_without_mappings_borrows_the_user_namespace() -> None:
    doc = {
        "mounts": [{"destination": "/a", "source": "/a", "options": ["bind", "idmap"]}],
        "linux": {"namespaces": [{"type": "user"}]},
    }
    assert list(rules.mount_id_mappings(doc, rules.Context())) == []


def test_rules_survive_schema_invalid_shapes() -> None:
    docs: list[Any] = [
        [], "x", {"process": "x", "linux": 3, "mounts": {}, "hooks": []},
        {"process": {"args": "sh", "env": [1], "rlimits": [1, {"type": 3}], "capabilities": {"bounding": "x"}}},
        {"linux": {"namespaces": [1, {"type": 2}], "devices": [{"type": 1}], "sysctl": [], "seccomp": {"syscalls": [2]}}},
    ]
    from ocirun.spec.load import config_problems

    for doc in docs:
        found = rules.check_rules(doc)  # no exception: the schema reports the shapes
        assert all(p.path.startswith("$") for p in found), found
        # and together with the schema check, the config is refused with paths
        problems = config_problems(doc)
        assert problems and all(p.path.startswith("$") for p in problems), doc


def test_rules_cover_every_capability_and_rlimit() -> None:
    assert len(rules.CAPABILITIES) == 41 and rules.CAPABILITIES[40] == "CAP_CHECKPOINT_RESTORE"
    assert len(rules._RLIMITS) == 16


def test_every_rule_is_documented() -> None:
    text = DOCS.read_text()
    missing = [r.name for r in rules.RULES if f"`{r.name}`" not in text]
    assert missing == []


def test_missing_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(str(tmp_path / "nope"))


def test_missing_config(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="has no config.json"):
        load_bundle(str(tmp_path))


def test_malformed_json_names_the_position(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{\n  "ociVersion": "1.3.0",\n  ]\n}')
    with pytest.raises(ConfigError) as info:
        load_bundle(str(tmp_path))
    assert "line 3, column 3" in str(info.value)
    assert "invalid JSON" in str(info.value)


def test_nan_is_not_json(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"ociVersion": NaN}')
    with pytest.raises(ConfigError, match="NaN is not valid JSON"):
        load_bundle(str(tmp_path))


def test_rootfs_must_be_a_directory(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, merge(default_spec(), {"root": {"path": "file"}}))
    (bundle / "file").write_text("")
    with pytest.raises(ConfigError, match=r"\$\.root\.path: rootfs .* is not a directory"):
        load_bundle(str(bundle))


def test_absolute_root_path(tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    bundle = make_bundle(tmp_path, merge(default_spec(), {"root": {"path": str(elsewhere)}}))
    assert load_bundle(str(bundle)).rootfs == str(elsewhere)
    assert os.path.isabs(load_bundle(os.path.relpath(bundle)).bundle)


def _with_device(file_mode: int, kind: str = "c") -> dict:
    config = default_spec()
    config["linux"]["devices"] = [{"path": "/dev/fuse", "type": kind, "major": 10, "minor": 229,
                                   "fileMode": file_mode, "uid": 0, "gid": 0}]
    return config


@pytest.mark.parametrize("mode", [0o600, 0o020600, 0o666])
def test_device_file_mode_may_carry_its_type_bits(mode: int, tmp_path: Path) -> None:
    # podman and containerd send S_IFCHR | 0600 (8576) for --device and --privileged (runc accepts it)
    loaded = load_bundle(str(make_bundle(tmp_path, _with_device(mode))))
    assert loaded.config.linux is not None and loaded.config.linux.devices[0].file_mode == mode


@pytest.mark.parametrize("mode,kind", [(0o060600, "c"), (0o020600, "b"), (0o100600, "c"), (0o200000, "c")])
def test_device_file_mode_with_wrong_type_bits(mode: int, kind: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_bundle(str(make_bundle(tmp_path, _with_device(mode, kind))))
    assert [p.path for p in info.value.problems] == ["$.linux.devices[0].fileMode"]


def test_every_rule_is_exercised_by_a_bad_config(tmp_path: Path) -> None:
    """Each registered rule reports a problem for at least one fixture in bad-configs/."""
    hit: set[str] = set()
    for i, fixture in enumerate(BAD):
        doc = merge(default_spec(), json.loads(fixture.read_text())["patch"])
        bundle = make_bundle(tmp_path / str(i), doc)
        ctx = rules.Context(str(bundle))
        hit.update(r.name for r in rules.RULES if list(r.check(doc, ctx)))
    assert sorted(r.name for r in rules.RULES if r.name not in hit) == []


def test_rootfs_through_a_symlink_is_refused(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, default_spec())
    (bundle / "rootfs").rename(bundle / "real")
    (bundle / "rootfs").symlink_to("real")  # the rootfs itself
    with pytest.raises(ConfigError, match=r"\$\.root\.path: invalid rootfs: not an absolute path, or a symlink"):
        load_bundle(str(bundle))
    (bundle / "rootfs").unlink()
    (bundle / "dir").mkdir()
    (bundle / "real").rename(bundle / "dir" / "rootfs")
    (bundle / "link").symlink_to("dir")  # a component on the way
    config = merge(default_spec(), {"root": {"path": "link/rootfs"}})
    (bundle / "config.json").write_text(json.dumps(config))
    with pytest.raises(ConfigError, match=f"resolves to {bundle}/dir/rootfs"):
        load_bundle(str(bundle))


def test_bundle_reached_through_a_symlink_is_resolved(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, default_spec())
    (tmp_path / "link").symlink_to(bundle)
    loaded = load_bundle(str(tmp_path / "link"))
    assert loaded.bundle == str(bundle) and loaded.rootfs == str(bundle / "rootfs")


def _deep_config(levels: int) -> str:
    """``ocirun spec``'s config with an unknown key whose value nests ``levels`` objects."""
    text = json.dumps(default_spec())
    return text[:-1] + ', "x-deep": ' + '{"k":' * (levels - 1) + "{}" + "}" * (levels - 1) + "}"


@pytest.mark.parametrize("levels", [900, 5000, 9999])
def test_deep_nesting_is_accepted_up_to_runcs_limit(tmp_path: Path, levels: int) -> None:
    """Go's encoding/json takes 10000 levels (the config object is one): so does ocirun."""
    bundle = make_bundle(tmp_path, {})
    (bundle / "config.json").write_text(_deep_config(levels))
    assert load_bundle(str(bundle)).config.process is not None
    assert sys.getrecursionlimit() < 5000  # raised only while the deep config was loaded


def test_deeper_nesting_is_one_clean_error(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, {})
    (bundle / "config.json").write_text(_deep_config(10_000))
    with pytest.raises(ConfigError, match=r"\$: invalid JSON: nested 10001 levels deep, more than the 10000 runc"):
        load_bundle(str(bundle))


def test_deep_value_where_a_string_belongs_gets_a_short_message(tmp_path: Path) -> None:
    bundle = make_bundle(tmp_path, {})
    text = json.dumps(merge(default_spec(), {"hostname": "MARK"}))
    (bundle / "config.json").write_text(text.replace('"MARK"', "[" * 3000 + "]" * 3000))
    with pytest.raises(ConfigError) as info:
        load_bundle(str(bundle))
    assert info.value.problems[0].path == "$.hostname" and len(str(info.value)) < 1200


@pytest.mark.parametrize("kind", ["fifo", "directory", "device", "huge"])
def test_config_json_that_is_not_a_readable_file(tmp_path: Path, kind: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from ocirun.spec import load

    bundle = make_bundle(tmp_path, {})
    config = bundle / "config.json"
    config.unlink()
    if kind == "fifo":
        os.mkfifo(config)  # never waited on: nobody will ever write it
    elif kind == "directory":
        config.mkdir()
    elif kind == "device":
        config.symlink_to("/dev/zero")
    else:
        monkeypatch.setattr(load, "MAX_CONFIG_SIZE", 1000)
        config.write_text(json.dumps(default_spec()) + " " * 1000)
    want = {"fifo": "not a regular file", "directory": "is a directory", "device": "not a regular file",
            "huge": "bytes, more than the 1000 ocirun reads"}[kind]
    with pytest.raises(BundleError, match=f"cannot read {config}: .*{want}"):
        load_bundle(str(bundle))


@pytest.mark.parametrize("value, plain", sorted(rules.RECURSIVE_ROOTFS_PROPAGATION.items()))
def test_recursive_rootfs_propagation_is_accepted_with_a_warning(tmp_path: Path, value: str, plain: str) -> None:
    """runc and crun take rprivate/rshared/rslave/runbindable; the schema's enum does not
    (schemas/ stay upstream's): accepted in ocirun's validation layer, with a warning."""
    config = merge(default_spec(), {"linux": {"rootfsPropagation": value}})
    loaded = load_bundle(str(make_bundle(tmp_path, config)))
    assert loaded.config.linux is not None and loaded.config.linux.rootfs_propagation == value
    assert (f"$.linux.rootfsPropagation: {value!r} is not one of the values the spec lists (private, shared, "
            f"slave, unbindable); accepted as runc and crun accept it: {plain}, recursively") in loaded.warnings
    assert config["linux"]["rootfsPropagation"] == value  # the document itself is not changed


def test_other_rootfs_propagation_values_are_still_refused(tmp_path: Path) -> None:
    config = merge(default_spec(), {"linux": {"rootfsPropagation": "rbogus"}})
    with pytest.raises(ConfigError, match=r"\$\.linux\.rootfsPropagation: 'rbogus' is not one of"):
        load_bundle(str(make_bundle(tmp_path, config)))


@pytest.mark.parametrize("value", [[], {}, ["rprivate"], 1])
def test_rootfs_propagation_of_the_wrong_type_is_a_schema_error(tmp_path: Path, value) -> None:
    """Not a string: the schema's error, not a crash in the recursive-forms lookup
    (found by tests/robustness: rootfsPropagation [] was an internal TypeError)."""
    config = merge(default_spec(), {"linux": {"rootfsPropagation": value}})
    with pytest.raises(ConfigError, match=r"rootfsPropagation"):
        load_bundle(str(make_bundle(tmp_path, config)))

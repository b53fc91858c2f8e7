"""`ocirun explain` without root: golden documents on fake hosts, the JSON Schema,
validate's errors, and the dry run that creates nothing.

The host is faked so that the documents are the same on every machine: a
cgroup v1 or v2 hierarchy in a temp dir (test_cgroups_drivers' fakes, with the
files a kernel shows at a hierarchy's root), a procfs and sysfs listing, a
mount table, the kernel's last capability and the runtime's own capability
set, AppArmor switched on. The rootfs is a small tree in the temp dir.

Goldens: tests/unit/golden/explain-*.txt and *.json, with the temp dir written
as ``<tmp>``. After a deliberate change, regenerate them with
``OCIRUN_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_explain.py`` and
review the diff.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from test_cgroups_drivers import V1_FILES, FakeV1, FakeV2

from ocirun import explain
from ocirun.cli import GlobalOptions
from ocirun.errors import ConfigError
from ocirun.explain import paths as explain_paths

REPO = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).parent / "fixtures"
GOLDEN = Path(__file__).parent / "golden"
SCHEMA = json.loads((REPO / "docs" / "explain.schema.json").read_text())
UPDATE = os.environ.get("OCIRUN_UPDATE_GOLDEN") == "1"


def _options(root: Path) -> GlobalOptions:
    return GlobalOptions(root=str(root), log=None, log_format="text", debug=False,
                         systemd_cgroup=False, rootless="auto")


def _rootfs(rootfs: Path) -> None:
    for d in ("bin", "usr/bin", "etc", "home/user", "run", "opt", "proc", "sys", "dev", "tmp", "root"):
        (rootfs / d).mkdir(parents=True, exist_ok=True)
    busybox = rootfs / "bin/busybox"
    busybox.write_bytes(b"\x7fELF fake")
    busybox.chmod(0o755)
    (rootfs / "bin/sh").symlink_to("busybox")
    (rootfs / "var").mkdir()
    (rootfs / "var/run").symlink_to("../run")
    (rootfs / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n")
    (rootfs / "etc/hostname").write_text("x\n")
    (rootfs / "opt/tool").write_text("kept by tmpcopyup\n")


class FakeHost:
    """Everything explain reads of the host, in ``tmp``."""

    def __init__(self, tmp: Path, monkeypatch, cgroup: str) -> None:
        self.tmp = tmp
        if cgroup == "v1":
            fake: FakeV1 | FakeV2 = FakeV1(tmp / "cg")
            for key, files in V1_FILES.items():  # a hierarchy's root shows the controller's files
                d = fake.root / key.removeprefix("name=")
                for name, value in files.items():
                    (d / name).write_text(value)
                (d / "cgroup.procs").write_text("")
        else:
            fake = FakeV2(tmp / "cg")
        self.cgroup_host = fake.host
        proc, sys_ = tmp / "hostproc", tmp / "hostsys"
        for d in (proc / "acpi", proc / "sys", sys_ / "firmware"):
            d.mkdir(parents=True)
        for f in ("kcore", "sysrq-trigger", "timer_list"):
            (proc / f).write_text("")
        mountinfo = tmp / "mountinfo"
        mountinfo.write_text("22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/vda rw\n" + fake.host.mountinfo)
        monkeypatch.setattr(explain_paths, "HOST_PROC", str(proc))
        monkeypatch.setattr(explain_paths, "HOST_SYS", str(sys_))
        monkeypatch.setattr(explain_paths, "HOST_MOUNTINFO", str(mountinfo))
        monkeypatch.setattr("ocirun.linux.capabilities.last_cap", lambda: 40)
        monkeypatch.setattr("ocirun.linux.capabilities.own_available", lambda: (1 << 41) - 1)
        monkeypatch.setattr("ocirun.linux.lsm.apparmor_enabled", lambda: True)
        monkeypatch.setattr("ocirun.linux.lsm.exec_label",
                            lambda profile, label: (b"attr/apparmor/exec", b"exec " + profile.encode())
                            if profile else None)
        monkeypatch.setattr("ocirun.linux.netdev.check_movable", lambda devices, netns: None)
        import ocirun.plan.build as build

        real_links = build.dev_symlinks  # /dev/core: only where the host has /proc/kcore
        monkeypatch.setattr(build, "dev_symlinks",
                            lambda has_devpts: tuple(s for s in real_links(has_devpts) if s.path != b"/dev/core"))

    def bundle(self, config: dict) -> Path:
        bundle = self.tmp / "bundle"
        _rootfs(bundle / "rootfs")
        (bundle / "data").mkdir()
        (bundle / "motd").write_text("hello\n")
        (bundle / "config.json").write_text(json.dumps(config))
        return bundle

    def explain(self, config: dict, cid: str | None = "golden") -> dict:
        bundle = self.bundle(config)
        return explain.explain_bundle(_options(self.tmp / "state"), str(bundle), cid,
                                      cgroup_host=self.cgroup_host)


def _sample() -> dict:
    return json.loads((FIXTURES / "busybox-config.json").read_text())


def _every_section() -> dict:
    return json.loads((FIXTURES / "explain-every-section.json").read_text())


def _normalized(text: str, tmp: Path) -> str:
    return text.replace(str(tmp), "<tmp>")


def _check_golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if UPDATE:
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"no golden file {path}: run with OCIRUN_UPDATE_GOLDEN=1"
    assert text == path.read_text(), f"{name} differs from its golden file (OCIRUN_UPDATE_GOLDEN=1 to update)"


CASES = {
    "sample-v1": (_sample, "v1"),
    "sample-v2": (_sample, "v2"),
    "every-section-v1": (_every_section, "v1"),
    "every-section-v2": (_every_section, "v2"),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_golden(case, tmp_path, monkeypatch):
    config, cgroup = CASES[case]
    host = FakeHost(tmp_path, monkeypatch, cgroup)
    doc = host.explain(config())
    jsonschema.validate(doc, SCHEMA)
    _check_golden(f"explain-{case}.json", _normalized(json.dumps(doc, indent=2) + "\n", tmp_path))
    _check_golden(f"explain-{case}.txt", _normalized(explain.format_text(doc), tmp_path))


def test_schema_is_a_valid_draft_2020_12_schema():
    jsonschema.Draft202012Validator.check_schema(SCHEMA)


def test_every_section_is_explained(tmp_path, monkeypatch):
    """What the issue lists, each present and saying what the config asked for."""
    host = FakeHost(tmp_path, monkeypatch, "v1")
    doc = host.explain(_every_section())
    assert [(n["type"], n["action"]) for n in doc["namespaces"] if n["action"] == "create"] == [
        ("user", "create"), ("cgroup", "create"), ("ipc", "create"), ("uts", "create"),
        ("network", "create"), ("pid", "create"), ("time", "create"), ("mount", "create")]
    assert doc["idMappings"]["uidMap"] == [{"containerID": 0, "hostID": 100000, "size": 65536}]
    assert doc["timeOffsets"] == "monotonic 86400 0\nboottime 3600 0\n"
    writes = {os.path.basename(a["path"]): a["value"] for a in doc["cgroup"]["actions"] if a["op"] == "write"}
    assert writes["memory.limit_in_bytes"] == "268435456"
    assert writes["memory.soft_limit_in_bytes"] == "134217728"
    assert writes["cpu.shares"] == "512" and writes["cpu.cfs_quota_us"] == "50000"
    assert writes["pids.max"] == "100"
    assert all(p.startswith(str(host.tmp / "cg")) for p in doc["cgroup"]["created"])
    by_dest = {m["destination"]: m for m in doc["mounts"]}
    assert by_dest["/var/run/app"]["resolvedTarget"] == "/run/app"  # through the rootfs symlink
    assert by_dest["/data"]["flags"] == ["bind", "rec"]
    assert by_dest["/data"]["remountFlags"] == ["ro"]
    assert by_dest["/data"]["propagation"] == ["rec", "private"]
    assert by_dest["/data"]["attrSet"] == ["nosuid"]
    assert by_dest["/etc/motd"]["targetIsFile"] is True
    assert by_dest["/opt"]["copyUp"] is True
    assert by_dest["/mapped"]["idmap"]["uidMap"] == "0 100000 65536\n"
    assert by_dest["/dev/pts"]["under"] == {"mountPoint": "/dev", "type": "tmpfs"}
    devices = doc["devices"]
    assert {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": "0666", "uid": 0,
            "gid": 0, "how": "bind mount of the host's node", "replacesExisting": False} in devices["nodes"]
    assert {"type": "c", "major": 10, "minor": 229, "access": "rwm"} in devices["effective"]["exceptions"]
    assert devices["effective"]["defaultAllow"] is False
    masked = {m["path"]: (m["exists"], m["action"]) for m in doc["maskedPaths"]}
    assert masked == {
        "/proc/kcore": ("yes", "bind mount /dev/null over it"),
        "/proc/acpi": ("yes", "mount a read-only tmpfs over it"),
        "/proc/no-such-file": ("no", "nothing: it does not exist"),
        "/sys/firmware": ("yes", "mount a read-only tmpfs over it"),
    }
    assert [r["exists"] for r in doc["readonlyPaths"]] == ["yes", "yes", "yes"]
    assert doc["sysctl"] == [{"key": "net.ipv4.ip_forward", "path": "/proc/sys/net/ipv4/ip_forward", "value": "1"},
                             {"key": "kernel.shmmax", "path": "/proc/sys/kernel/shmmax", "value": "68719476736"}]
    proc = doc["process"]
    assert proc["executable"] == "/bin/busybox"  # PATH=/usr/bin:/bin
    assert proc["lookup"] == ["/usr/bin/busybox", "/bin/busybox"]
    assert proc["capabilities"] == {
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "effective": ["CAP_NET_BIND_SERVICE"], "permitted": ["CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "inheritable": ["CAP_NET_BIND_SERVICE"], "ambient": ["CAP_NET_BIND_SERVICE"]}
    assert proc["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [5, 100], "umask": "0077",
                            "hostUid": 101000, "hostGid": 101000}  # through the user namespace
    assert proc["noNewPrivileges"] is True
    assert proc["rlimits"] == [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 4096},
                               {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}]
    assert proc["oomScoreAdj"] == 100
    assert proc["personality"] == {"domain": "LINUX", "flags": [], "persona": 0}
    assert proc["scheduler"]["policy"] == "SCHED_BATCH" and proc["scheduler"]["nice"] == 5
    assert proc["ioPriority"] == {"class": "IOPRIO_CLASS_BE", "priority": 4, "value": (2 << 13) | 4}
    assert proc["memoryPolicy"] == {"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"],
                                    "value": 2 | 1 << 15}
    assert "HOME=/home/user" in proc["env"]
    sc = doc["seccomp"]
    assert (sc["defaultAction"], sc["rules"], sc["rulesPerAction"], sc["syscallsPerAction"]) == (
        "SCMP_ACT_ALLOW", 3, {"SCMP_ACT_ERRNO": 2, "SCMP_ACT_KILL_PROCESS": 1},
        {"SCMP_ACT_ERRNO": 4, "SCMP_ACT_KILL_PROCESS": 1})
    assert sc["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"] and sc["instructions"] > 0
    assert sc["loaded"] == "right before execve (no_new_privs)"
    assert doc["lsm"]["apparmorProfile"] == "every-profile"
    assert doc["lsm"]["execLabel"] == "exec every-profile"
    assert [h["kind"] for h in doc["hooks"]] == ["prestart", "createRuntime", "createContainer",
                                                 "startContainer", "poststart", "poststop"]
    assert doc["netDevices"] == [{"hostName": "dummy-host0", "name": "eth1"}]
    assert doc["root"] == {"path": str(host.tmp / "bundle/rootfs"), "readonly": True,
                           "propagationBefore": ["slave"], "propagationAfter": ["slave"],
                           "pivot": "pivot_root"}


def test_steps_come_in_the_order_the_init_executes_them(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, "v1")
    doc = host.explain(_every_section())
    order = [s["step"] for s in doc["steps"]]

    def first(name):
        return order.index(name)

    # runtime before stage-1 before the init; hooks at BEFORE_PIVOT; the process setup last
    assert first("cgroup-mkdir") < first("clone") < first("dumpable") < first("unshare")
    assert first("unshare") < first("uid_map") < first("userns-root") < first("clone-init")
    assert first("clone-init") < first("setsid") < first("sysctl") < first("bind-rootfs") < first("mount")
    assert first("device-bind") < first("symlink") < first("hook") < first("pivot")
    assert first("pivot") < first("readonly-path") < first("masked-path") < first("root-readonly")
    assert first("root-readonly") < first("chdir") < first("rlimit") < first("personality") < first("scheduler")
    assert first("scheduler") < first("ioprio") < first("mempolicy") < first("lsm-label") < first("bounding-set")
    assert first("bounding-set") < first("user") < first("capabilities") < first("lookup") < first("no_new_privs")
    assert first("no_new_privs") < first("seccomp") < first("ready") < first("state")
    phases = [s["phase"] for s in doc["steps"]]
    assert phases[-1] == "delete"
    hooks = [(s["phase"], s["kind"]) for s in doc["steps"] if s["step"] == "hook"]
    assert hooks == [("runtime", "prestart"), ("runtime", "createRuntime"), ("runtime", "createContainer"),
                     ("start", "startContainer"), ("start", "poststart"), ("delete", "poststop")]


def test_nothing_is_created(tmp_path, monkeypatch):
    """No state root, no cgroup directory, no file written in the fake cgroupfs."""
    host = FakeHost(tmp_path, monkeypatch, "v1")

    def snapshot():
        out = {}
        for dirpath, dirs, files in os.walk(tmp_path / "cg"):
            for name in files + dirs:
                p = os.path.join(dirpath, name)
                out[p] = Path(p).read_text() if os.path.isfile(p) else None
        return out

    before = snapshot()
    doc = host.explain(_every_section())
    assert snapshot() == before
    assert not (tmp_path / "state").exists()
    assert doc["cgroup"]["created"]  # it did plan directories
    assert not any(os.path.exists(p) for p in doc["cgroup"]["created"])


def test_the_id_defaults_to_the_bundle_directory_name(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, "v2")
    doc = host.explain(_sample(), cid=None)
    assert (doc["id"], doc["idFrom"]) == ("bundle", "bundle directory name")
    assert doc["cgroup"]["path"].endswith("/bundle")
    assert doc["sessionKeyring"] == "_ses.bundle"


def test_warnings_are_in_the_document_not_on_stderr(tmp_path, monkeypatch, capsys):
    host = FakeHost(tmp_path, monkeypatch, "v1")
    config = _sample()
    config["linux"]["resources"]["memory"] = {"kernel": 67108864}
    # the runtime itself lacks CAP_AUDIT_WRITE (29): dropped with a warning (config.md)
    monkeypatch.setattr("ocirun.linux.capabilities.own_available", lambda: ((1 << 41) - 1) & ~(1 << 29))
    doc = host.explain(config)
    assert any("kernel memory limits are deprecated" in w for w in doc["warnings"]), doc["warnings"]
    assert any("unavailable capabilities: [CAP_AUDIT_WRITE]" in w for w in doc["warnings"]), doc["warnings"]
    assert "CAP_AUDIT_WRITE" not in doc["process"]["capabilities"]["bounding"]
    assert capsys.readouterr().err == ""
    assert "warning: " in explain.format_text(doc)


def _cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ocirun", *args], capture_output=True, text=True, timeout=120,
                          cwd=cwd)


def test_an_invalid_bundle_gives_exactly_validates_errors(tmp_path):
    bundle = tmp_path / "bad"
    (bundle / "rootfs").mkdir(parents=True)
    config = _sample()
    config["process"]["args"] = []
    config["process"]["cwd"] = "relative"
    config["linux"]["namespaces"].append({"type": "nosuch"})
    (bundle / "config.json").write_text(json.dumps(config))
    validate = _cli("validate", "--bundle", str(bundle))
    for fmt in ("text", "json"):
        ours = _cli("--root", str(tmp_path / "state"), "explain", "--bundle", str(bundle), "--format", fmt)
        assert (ours.returncode, ours.stdout, ours.stderr) == (validate.returncode, "", validate.stderr)
    assert validate.returncode == 1 and "problems" in validate.stderr
    # a missing bundle, too
    missing = _cli("validate", "--bundle", str(tmp_path / "nope"))
    ours = _cli("explain", "--bundle", str(tmp_path / "nope"))
    assert (ours.returncode, ours.stderr) == (missing.returncode, missing.stderr) and missing.returncode == 1


def test_explain_bundle_raises_the_config_error(tmp_path, monkeypatch):
    host = FakeHost(tmp_path, monkeypatch, "v1")
    config = _sample()
    del config["process"]["cwd"]
    with pytest.raises(ConfigError, match="cwd"):
        host.explain(config)


def test_cli_text_and_json_agree(tmp_path):
    """The real command on a real bundle tree (this host's cgroups: only paths differ)."""
    bundle = tmp_path / "b"
    _rootfs(bundle / "rootfs")
    config = _sample()
    config["process"]["terminal"] = False
    (bundle / "config.json").write_text(json.dumps(config))
    state = tmp_path / "state"
    j = _cli("--root", str(state), "explain", "--bundle", str(bundle), "--format", "json", "cli-id")
    assert j.returncode == 0, j.stderr
    doc = json.loads(j.stdout)
    jsonschema.validate(doc, SCHEMA)
    t = _cli("--root", str(state), "explain", "-b", str(bundle), "cli-id")
    assert t.returncode == 0, t.stderr
    assert t.stdout == explain.format_text(doc)
    assert not state.exists()
    assert doc["process"]["executable"] == "/bin/sh"

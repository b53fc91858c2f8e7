"""Rootless (issue #13) without root or a second user: the decisions, on fakes.

The state root and --rootless as runc decides them; the planner's checks and
choices for an unprivileged runtime; cgroups a rootless user cannot create;
the words for what a user namespace refuses; crun's default mapping. The real
thing, as a user of the tests' own, is tests/integration/test_rootless.py.
"""

from __future__ import annotations

import copy
import errno
import os
from pathlib import Path

import pytest

from ocirun import cli, rootless
from ocirun.cgroups import new_manager
from ocirun.cgroups.base import CgroupSettingError
from ocirun.cgroups.hierarchy import Host
from ocirun.cgroups.none import NoCgroup, requested_resources
from ocirun.errors import ConfigError, UsageError
from ocirun.linux import idmaps
from ocirun.plan.build import PlanOptions, build_plan
from ocirun.plan.privilege import setgroups_denied, unprivileged_detail
from ocirun.spec.generate import default_spec, to_rootless
from ocirun.spec.load import default_user_mappings
from ocirun.spec.model import Config, IdMapping, Resources
from ocirun.util.record import replace

USER = (1000, 1000)


# ------------------------------------------------------------------ who is rootless, where state lives


@pytest.fixture
def as_user(monkeypatch):
    def become(euid: int, in_userns: bool = False, **env: str | None):
        monkeypatch.setattr(os, "geteuid", lambda: euid)
        monkeypatch.setattr(rootless, "_in_userns", in_userns)
        for k, v in env.items():
            if v is None:
                monkeypatch.delenv(k, raising=False)
            else:
                monkeypatch.setenv(k, v)
    return become


def test_host_root_keeps_run_ocirun_whatever_xdg_says(as_user):
    as_user(0, XDG_RUNTIME_DIR="/run/user/0")
    assert rootless.default_state_root() == "/run/ocirun"
    assert not rootless.is_rootless("auto")


def test_a_user_gets_its_xdg_runtime_dir(as_user):
    as_user(1000, XDG_RUNTIME_DIR="/run/user/1000")
    assert rootless.default_state_root() == "/run/user/1000/ocirun"
    assert rootless.is_rootless("auto")
    assert not rootless.is_rootless("false") and rootless.is_rootless("true")


def test_a_user_without_xdg_runtime_dir_is_told_which_variable(as_user):
    as_user(1000, XDG_RUNTIME_DIR=None)
    with pytest.raises(UsageError, match="XDG_RUNTIME_DIR is not set.*--root DIR"):
        rootless.default_state_root()


def test_uid_0_in_a_user_namespace_as_runc(as_user):
    """rootless podman's runtime: uid 0 in its user namespace, no $USER: XDG."""
    as_user(0, True, XDG_RUNTIME_DIR="/run/user/1000", USER=None)
    assert rootless.is_rootless("auto")
    assert rootless.default_state_root() == "/run/user/1000/ocirun"
    as_user(0, True, XDG_RUNTIME_DIR="/run/user/1000", USER="root")
    assert rootless.default_state_root() == "/run/ocirun"


def test_running_in_userns_reads_uid_map(monkeypatch, tmp_path):
    monkeypatch.setattr(rootless, "_in_userns", None)
    assert rootless.running_in_userns() is (Path("/proc/self/uid_map").read_text().split()
                                            != ["0", "0", "4294967295"])


def test_the_state_root_is_decided_only_when_needed(as_user, capsys):
    """`spec` and `features` need no state root: no error for a user without XDG."""
    as_user(1000, XDG_RUNTIME_DIR=None)
    g = cli.GlobalOptions(None, None, "text", False, False, "auto")
    with pytest.raises(UsageError, match="XDG_RUNTIME_DIR"):
        _ = g.root
    assert cli.main(["features"]) == 0
    assert cli.main(["list"]) == 1
    assert "XDG_RUNTIME_DIR" in capsys.readouterr().err


def test_given_root_wins(as_user, tmp_path):
    as_user(1000, XDG_RUNTIME_DIR=None)
    ns = cli._fast_parse(["--root", str(tmp_path), "list"])
    assert ns.root == str(tmp_path)


# ------------------------------------------------------------------ the CLI edge


def test_an_os_error_is_one_message_not_an_internal_error(monkeypatch, capsys):
    def fail(g, args):
        raise PermissionError(errno.EACCES, "Permission denied", "/proc/1/ns/user")

    real = cli._resolve
    monkeypatch.setattr(cli, "_resolve", lambda t: fail if t.endswith(":cmd_state") else real(t))
    assert cli.main(["--root", "/tmp", "state", "c1"]) == 1
    assert capsys.readouterr().err == "/proc/1/ns/user: permission denied\n"


# ------------------------------------------------------------------ the plan


@pytest.fixture
def rootfs(tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    return root


def plan_for(doc, rootfs, **kw):
    opts = PlanOptions(container_id="c1", bundle=str(rootfs.parent), rootfs=str(rootfs), **kw)
    return build_plan(Config.from_dict(doc), opts, None)


def rootless_spec(uid: int = 1000, gid: int = 1000) -> dict:
    doc = to_rootless(copy.deepcopy(default_spec()), uid, gid)
    doc["process"]["terminal"] = False
    return doc


def test_spec_rootless_plans_a_direct_single_mapping(rootfs):
    plan = plan_for(rootless_spec(), rootfs, rootless=True, rootless_ids=USER)
    assert plan.rootless_euid and plan.setgroups_deny
    assert plan.uid_map == b"0 1000 1\n" and plan.gid_map == b"0 1000 1\n"
    assert all(d.bind_from_host for d in plan.devices)
    sys_mount = next(m for m in plan.mounts if m.target == b"/sys")
    assert sys_mount.source == b"/sys" and not sys_mount.open_by_parent  # the init binds it


def test_several_gid_ranges_leave_setgroups_allowed(rootfs):
    doc = rootless_spec()
    doc["linux"]["gidMappings"].append({"containerID": 1, "hostID": 100000, "size": 65536})
    plan = plan_for(doc, rootfs, rootless=True, rootless_ids=USER)
    assert plan.rootless_euid and not plan.setgroups_deny


def test_root_plans_as_before(rootfs):
    doc = rootless_spec()
    plan = plan_for(doc, rootfs)
    assert not plan.rootless_euid and not plan.setgroups_deny
    assert next(m for m in plan.mounts if m.target == b"/sys").open_by_parent  # root opens binds


def test_running_in_a_user_namespace_binds_devices_and_sys(rootfs):
    """rootless podman's runtime: no user namespace in the config, but ocirun is in one."""
    doc = copy.deepcopy(default_spec())
    doc["process"]["terminal"] = False
    doc["linux"]["namespaces"] = [ns for ns in doc["linux"]["namespaces"] if ns["type"] != "network"]
    plan = plan_for(doc, rootfs, rootless=True, in_userns=True)
    assert all(d.bind_from_host for d in plan.devices)
    sys_mount = next(m for m in plan.mounts if m.target == b"/sys")
    assert sys_mount.source == b"/sys" and sys_mount.fstype is None
    plan = plan_for(doc, rootfs)
    assert next(m for m in plan.mounts if m.target == b"/sys").fstype == b"sysfs"


@pytest.mark.parametrize("edit, path, words", [
    (lambda c: c["linux"]["namespaces"].remove({"type": "user"}), "$.linux.namespaces", "needs a user namespace"),
    (lambda c: c["mounts"].append({"destination": "/t", "type": "tmpfs", "source": "tmpfs",
                                   "options": ["gid=5"]}), "$.mounts[7].options", "gid 5 is not mapped"),
    (lambda c: c["process"]["user"].update(additionalGids=[10]), "$.process.user.additionalGids",
     "setgroups(2) denied"),
    (lambda c: c["mounts"].append({"destination": "/m", "type": "bind", "source": "/tmp",
                                   "options": ["bind", "idmap"]}), "$.mounts[7].options", "id-mapped mount"),
])
def test_what_a_rootless_runtime_refuses_before_anything_exists(rootfs, edit, path, words):
    doc = rootless_spec()
    edit(doc)
    with pytest.raises(ConfigError) as info:
        plan_for(doc, rootfs, rootless=True, rootless_ids=USER)
    assert [p.path for p in info.value.problems] == [path]
    assert words in info.value.problems[0].message


def test_setgroups_denied_only_for_a_single_own_gid():
    own = (IdMapping(0, 1000, 1),)
    assert setgroups_denied(USER, True, own)
    assert not setgroups_denied(None, True, own)          # root
    assert not setgroups_denied(USER, False, own)         # a joined user namespace
    assert not setgroups_denied(USER, True, own + (IdMapping(1, 100000, 65536),))


def test_crun_default_mapping_for_a_user_namespace_without_one():
    doc = {"linux": {"namespaces": [{"type": "user"}, {"type": "mount"}]}}
    warning = default_user_mappings(doc, (1000, 1001))
    assert doc["linux"]["uidMappings"] == [{"containerID": 0, "hostID": 1000, "size": 1}]
    assert doc["linux"]["gidMappings"] == [{"containerID": 0, "hostID": 1001, "size": 1}]
    assert warning is not None and "uid 1000 and gid 1001" in warning
    joined = {"linux": {"namespaces": [{"type": "user", "path": "/proc/1/ns/user"}]}}
    assert default_user_mappings(joined, (1000, 1000)) is None and "uidMappings" not in joined["linux"]
    given = {"linux": {"namespaces": [{"type": "user"}], "uidMappings": [{"containerID": 0, "hostID": 5,
                                                                          "size": 1}]}}
    assert default_user_mappings(given, (1000, 1000)) is None


# ------------------------------------------------------------------ words for what the kernel refuses


def _plan(rootfs, doc=None):
    return plan_for(doc or rootless_spec(), rootfs, rootless=True, rootless_ids=USER)


def test_a_mount_that_needs_a_namespace_of_its_own(rootfs):
    plan = _plan(rootfs)
    proc = next(m for m in plan.mounts if m.fstype == b"proc")
    text = unprivileged_detail("MOUNT", errno.EPERM, plan, proc)
    assert text is not None and 'add {"type": "pid"}' in text
    ext4 = proc.__class__(target=b"/x", source=b"/dev/sda1", fstype=b"ext4", flags=0, data=None)
    assert "ext4 needs privilege" in (unprivileged_detail("MOUNT", errno.EPERM, plan, ext4) or "")


def test_locked_flags_hard_limits_and_oom_score(rootfs):
    plan = _plan(rootfs)
    m = next(m for m in plan.mounts if m.target == b"/sys")
    assert "locked" in (unprivileged_detail("MOUNT_REMOUNT", errno.EPERM, plan, m) or "")
    rl = plan.process.rlimits[0]
    assert "CAP_SYS_RESOURCE" in (unprivileged_detail("RLIMIT", errno.EPERM, plan, None, rl) or "")
    assert "can only be" in (unprivileged_detail("OOM_SCORE_ADJ", errno.EACCES, plan) or "")


def test_an_id_the_namespace_does_not_map(rootfs):
    plan = _plan(rootfs)
    proc = replace(plan.process, uid=5, gid=7)
    uid = unprivileged_detail("SETRESUID", errno.EINVAL, plan, process=proc) or ""
    gid = unprivileged_detail("SETRESGID", errno.EINVAL, plan, process=proc) or ""
    assert uid.startswith("invalid argument (uid 5 is not mapped") and "/etc/subuid" in uid
    assert gid.startswith("invalid argument (gid 7 is not mapped") and "linux.gidMappings" in gid
    assert unprivileged_detail("SETRESUID", errno.EPERM, plan, process=proc) is None


def test_real_time_scheduling_and_io_and_a_device_the_host_has_not(rootfs):
    doc = rootless_spec()
    doc["process"]["scheduler"] = {"policy": "SCHED_FIFO", "priority": 10}
    plan = _plan(rootfs, doc)
    sched = unprivileged_detail("SCHEDULER", errno.EPERM, plan, process=plan.process) or ""
    assert "CAP_SYS_NICE in the host's user namespace" in sched and "RLIMIT_RTPRIO" in sched
    assert "IOPRIO_CLASS_BE" in (unprivileged_detail("IOPRIO", errno.EPERM, plan) or "")
    assert "the host has none there" in (unprivileged_detail("DEVICE_BIND", errno.ENOENT, plan) or "")


def test_no_words_outside_a_user_namespace(rootfs, monkeypatch):
    monkeypatch.setattr(rootless, "_in_userns", False)
    doc = copy.deepcopy(default_spec())
    doc["process"]["terminal"] = False
    plan = plan_for(doc, rootfs)
    proc = next(m for m in plan.mounts if m.fstype == b"proc")
    assert unprivileged_detail("MOUNT", errno.EPERM, plan, proc) is None


# ------------------------------------------------------------------ id maps


def test_newuidmap_missing_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(idmaps, "_find", lambda tool: None)
    with pytest.raises(Exception, match="newuidmap is needed and was not found .* 0:1000:1, 1:100000:65536"):
        idmaps._run_helper(1, "uid", b"0 1000 1\n1 100000 65536\n")


def test_only_eperm_of_a_rootless_runtime_goes_to_the_helper(monkeypatch):
    calls = []
    monkeypatch.setattr(idmaps, "_run_helper", lambda pid, kind, data: calls.append((pid, kind)))

    def denied(pid, name, data):
        from ocirun.errors import SetupError

        raise SetupError(f"write /proc/{pid}/{name}", errno.EPERM)

    monkeypatch.setattr(idmaps, "write_proc", denied)
    idmaps.write_id_maps(7, b"0 1000 1\n", None, rootless_euid=True)
    assert calls == [(7, "uid")]
    with pytest.raises(Exception, match="operation not permitted"):
        idmaps.write_id_maps(7, b"0 1000 1\n", None, rootless_euid=False)


# ------------------------------------------------------------------ cgroups


def _v1_host(tmp_path: Path) -> Host:
    lines = []
    for i, c in enumerate(("memory", "pids")):
        (tmp_path / c).mkdir()
        lines.append(f"{30 + i} 23 0:{40 + i} / {tmp_path / c} rw - cgroup cgroup rw,{c}")
    return Host.from_text("\n".join(lines) + "\n", "5:memory:/\n4:pids:/\n", root=str(tmp_path))


def test_v1_without_permission_means_no_cgroup(tmp_path, monkeypatch):
    from ocirun import cgroups

    monkeypatch.setattr(cgroups, "_not_writable", lambda path, stop: os.path.dirname(path))
    cg = new_manager(None, "c1", host=_v1_host(tmp_path), rootless=True)
    assert isinstance(cg, NoCgroup) and cg.host_version == 1
    assert cg.own == {"memory": str(tmp_path / "memory"), "pids": str(tmp_path / "pids")}
    cg.apply(Resources(), None)  # nothing asked: fine (device rules ignored)
    with pytest.raises(CgroupSettingError, match="cannot apply linux.resources.memory: the container has no cgroup"):
        cg.apply(Resources.from_dict({"memory": {"limit": 1 << 20}}), None)
    rec = cg.to_record()
    from ocirun.cgroups import manager_from_record

    assert manager_from_record(rec).to_record() == rec


def test_v1_a_hierarchy_the_user_may_use_is_kept(tmp_path, monkeypatch):
    from ocirun import cgroups

    monkeypatch.setattr(cgroups, "_not_writable",
                        lambda path, stop: None if "/pids/" in path + "/" else os.path.dirname(path))
    cg = new_manager(None, "c1", host=_v1_host(tmp_path), rootless=True)
    assert list(cg.paths) == ["pids"] and "memory" in cg.skipped
    with pytest.raises(CgroupSettingError, match="no cgroup in the memory hierarchy"):
        cg.apply(Resources.from_dict({"memory": {"limit": 1 << 20}}), None)


def test_a_named_cgroups_path_is_kept_and_its_error_explained(tmp_path, monkeypatch):
    from ocirun import cgroups

    monkeypatch.setattr(cgroups, "_not_writable", lambda path, stop: os.path.dirname(path))
    cg = new_manager("/mine", "c1", host=_v1_host(tmp_path), rootless=True)
    assert not isinstance(cg, NoCgroup) and cg.rootless
    from ocirun.cgroups.base import rootless_create_error
    from ocirun.errors import CgroupError

    err = rootless_create_error(CgroupError("/x", "create", PermissionError(errno.EACCES, "x")))
    assert "leave cgroupsPath out" in err.message


def test_requested_resources_ignore_zeros_and_devices():
    assert requested_resources(None) == []
    assert requested_resources(Resources.from_dict({})) == []
    assert requested_resources(Resources.from_dict(
        {"devices": [{"allow": False, "access": "rwm"}], "pids": {"limit": 0},
         "memory": {"swappiness": -1}, "cpu": {"shares": 0}})) == []
    assert requested_resources(Resources.from_dict({"pids": {"limit": 10}, "cpu": {"cpus": "0"}})) == \
        ["cpu", "pids"]


def test_no_cgroup_verbs_say_why():
    cg = NoCgroup("uid 1000 may not create cgroups", 1, {})
    for call in (cg.freeze, cg.thaw, cg.stats):
        with pytest.raises(CgroupSettingError, match="no cgroup of its own \\(uid 1000"):
            call()
    assert cg.pids() == [] and cg.clone_into_fd() is None and not cg.is_frozen()

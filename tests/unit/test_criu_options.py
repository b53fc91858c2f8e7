"""The flags of checkpoint and restore (runc's values and messages), and the
CRIU options a container's record and plan become, without CRIU."""

from __future__ import annotations

import argparse
import os

import pytest

from ocirun.criu import options, rpc
from ocirun.errors import UsageError
from ocirun.plan.model import DeviceNode, LaunchPlan, MountStep

MS_BIND, MS_REC, MS_REMOUNT, MS_RDONLY = 0x1000, 0x4000, 0x20, 0x1


@pytest.mark.parametrize("value,mode", [
    (None, None), ("", None), ("soft", rpc.CG_MODES["SOFT"]), ("full", rpc.CG_MODES["FULL"]),
    ("strict", rpc.CG_MODES["STRICT"]), ("ignore", rpc.CG_MODES["IGNORE"]),
])
def test_manage_cgroups_mode(value, mode):
    # "ignore" is CRIU's 0 and is sent as such (runc 1.1 dropped it for the default)
    assert options.cg_mode(value) == mode


@pytest.mark.parametrize("value", ["SOFT", "props", "none", "x"])
def test_manage_cgroups_mode_refuses_what_runc_refuses(value):
    with pytest.raises(UsageError, match="^invalid manage-cgroups-mode value$"):
        options.cg_mode(value)


def test_empty_ns_is_always_network_as_runc():
    assert options.empty_ns(None) == options.CLONE_NEWNET
    assert options.empty_ns(["network", "network"]) == options.CLONE_NEWNET
    with pytest.raises(UsageError, match='^namespace "pid" is not supported$'):
        options.empty_ns(["network", "pid"])


@pytest.mark.parametrize("value,expected", [
    (None, None), ("10.0.0.1:27", ("10.0.0.1", 27)), ("[fe80::1]:8000", ("fe80::1", 8000)),
    ("host.example:1", ("host.example", 1)),
])
def test_page_server(value, expected):
    assert options.page_server(value) == expected


@pytest.mark.parametrize("value,message", [
    ("nohost", "Use --page-server ADDRESS:PORT to specify page server"),
    (":80", "Use --page-server ADDRESS:PORT to specify page server"),
    ("h:", "Use --page-server ADDRESS:PORT to specify page server"),
    ("fe80::1:80", "Use --page-server ADDRESS:PORT to specify page server"),
    ("h:http", "Invalid port number"),
])
def test_page_server_errors(value, message):
    with pytest.raises(UsageError, match=f"^{message}$"):
        options.page_server(value)


def _args(**kw) -> argparse.Namespace:
    base = dict(image_path=None, work_path=None, tcp_established=False, ext_unix_sk=False,
                shell_job=False, file_locks=False, manage_cgroups_mode=None, empty_ns=None,
                auto_dedup=False, lazy_pages=False, parent_path=None, leave_running=False,
                pre_dump=False, status_fd=-1, page_server=None, lsm_profile=None,
                lsm_mount_context=None)
    base.update(kw)
    return argparse.Namespace(**base)


def test_defaults_are_runcs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    flags = options.checkpoint_flags(_args())
    assert flags.common.image_path == str(tmp_path / "checkpoint")  # runc: ./checkpoint
    assert flags.common.work_path is None  # CRIU's default: the image directory
    assert (flags.parent_path, flags.leave_running, flags.pre_dump, flags.status_fd) == (None, False, False, -1)
    opts = options.shared_opts(flags.common)
    assert opts == {"log_level": 4, "manage_cgroups": True, "notify_scripts": True, "shell_job": False,
                    "tcp_established": False, "ext_unix_sk": False, "file_locks": False,
                    "empty_ns": options.CLONE_NEWNET, "orphan_pts_master": True, "auto_dedup": False,
                    "lazy_pages": False}
    rpc.encode("criu_opts", {"images_dir_fd": 3, **opts})  # all of it is rpc.proto


def test_flags_reach_criu(tmp_path):
    flags = options.checkpoint_flags(_args(image_path="img", work_path="w", tcp_established=True,
                                           ext_unix_sk=True, shell_job=True, file_locks=True,
                                           manage_cgroups_mode="full", auto_dedup=True,
                                           lazy_pages=True, parent_path="../pre", leave_running=True,
                                           pre_dump=True, status_fd=5, page_server="h:1"))
    assert flags.common.image_path == os.path.abspath("img")
    assert flags.common.work_path == os.path.abspath("w")
    assert (flags.parent_path, flags.status_fd, flags.page_server) == ("../pre", 5, ("h", 1))
    opts = options.shared_opts(flags.common)
    for key in ("shell_job", "tcp_established", "ext_unix_sk", "file_locks", "auto_dedup", "lazy_pages"):
        assert opts[key] is True, key
    assert opts["manage_cgroups_mode"] == rpc.CG_MODES["FULL"]


def test_parent_path_must_be_relative():
    with pytest.raises(UsageError, match="^--parent-path must be relative$"):
        options.checkpoint_flags(_args(parent_path="/abs"))


def test_config_file_follows_runcs_annotation():
    assert options.config_file({}) == "/etc/criu/ocirun.conf"
    assert options.config_file({"org.criu.config": "/etc/x.conf"}) == "/etc/x.conf"
    assert options.config_file({"org.criu.config": ""}) is None


def _plan(**kw) -> LaunchPlan:
    base = dict(rootfs=b"/r", new_namespaces=0, join_namespaces=(), root_propagation=0, rootfs_propagation=0,
                root_readonly=False, no_pivot=False, mounts=(), devices=(), symlinks=())
    base.update(kw)
    return LaunchPlan(**base)


MOUNTS = (
    MountStep(b"/proc", b"proc", b"proc", 0, None),
    MountStep(b"/data", b"/srv/data", None, MS_BIND | MS_REC, None, remount_flags=MS_RDONLY),
    MountStep(b"/sys/fs/cgroup", b"/sys/fs/cgroup/ctr", None, MS_BIND | MS_REC, None),
    MountStep(b"/sys/fs/cgroup", None, None, MS_REMOUNT | MS_RDONLY, b"mode=755"),  # not a bind
)


def test_restore_maps_each_external_bind_to_its_new_source():
    plan = _plan(mounts=MOUNTS, devices=(DeviceNode(b"/dev/fuse", 0o20666, 10, 229, 0, 0, bind_from_host=True),),
                 masked_paths=(b"/proc/kcore",))
    assert options.restore_ext_mounts(plan) == [
        {"key": "/data", "val": "/srv/data"},
        {"key": "/sys/fs/cgroup", "val": "/sys/fs/cgroup/ctr"},
        {"key": "/dev/fuse", "val": "/dev/fuse"},
        {"key": "/dev/null", "val": "/dev/null"},  # runc's key for masks
    ]
    assert options.restore_ext_mounts(_plan(mounts=MOUNTS[:1])) == []


def test_dump_declares_binds_by_their_mount_point_and_masked_files_as_dev_null():
    facts = {"binds": ["/data", "/sys/fs/cgroup"], "masked": ["/proc/kcore", "/proc/acpi", "/proc/nope"]}

    def resolve(path, must_be_file=False):
        if must_be_file:
            return {"/proc/kcore": "/proc/kcore"}.get(path)  # a directory and a missing path: None
        return {"/data": "/real/data"}.get(path, path)

    assert options.dump_ext_mounts(facts, resolve) == [
        {"key": "/real/data", "val": "/data"},
        {"key": "/sys/fs/cgroup", "val": "/sys/fs/cgroup"},
        {"key": "/proc/kcore", "val": "/dev/null"},
    ]

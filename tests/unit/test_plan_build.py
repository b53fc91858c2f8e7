"""model + host facts → LaunchPlan, without root: what the C child will be told to do."""

from __future__ import annotations

import copy

import pytest

from ocirun.errors import ConfigError
from ocirun.linux import namespaces as ns
from ocirun.plan import mount_options as mo
from ocirun.plan.build import CgroupView, PlanOptions, build_plan
from ocirun.plan.support import unsupported
from ocirun.spec.generate import default_spec
from ocirun.spec.model import Config


@pytest.fixture
def rootfs(tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\nu:x:1000:1000::/home/u:/bin/sh\n")
    return root


def plan_for(doc, rootfs, cgroup_view=None, **kw):
    opts = PlanOptions(container_id="c1", bundle=str(rootfs.parent), rootfs=str(rootfs), **kw)
    return build_plan(Config.from_dict(doc), opts, cgroup_view)


def spec():
    doc = copy.deepcopy(default_spec())
    doc["process"]["terminal"] = False
    return doc


def test_namespaces_new_and_joined_in_join_order(rootfs):
    doc = spec()
    doc["linux"]["namespaces"] = [
        {"type": "mount"}, {"type": "network", "path": "/proc/1/ns/net"},
        {"type": "pid"}, {"type": "user", "path": "/proc/1/ns/user"},
    ]
    plan = plan_for(doc, rootfs)
    assert plan.new_namespaces == ns.CLONE_NEWNS | ns.CLONE_NEWPID
    # user first (privileges for the rest), mount last (it changes path resolution)
    assert [j.clone_flag for j in plan.join_namespaces] == [ns.CLONE_NEWUSER, ns.CLONE_NEWNET]


def test_mount_namespace_is_required(rootfs):
    doc = spec()
    doc["linux"]["namespaces"] = [{"type": "pid"}]
    with pytest.raises(ConfigError, match="mount namespace"):
        plan_for(doc, rootfs)


def test_mount_flags_data_and_bind_remount(rootfs, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "file").write_text("x")
    doc = spec()
    doc["mounts"] = [
        {"destination": "/proc", "type": "proc", "source": "proc"},
        {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
         "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
        {"destination": "/data", "type": "bind", "source": str(src), "options": ["rbind", "ro", "rprivate"]},
        {"destination": "/f", "source": str(src / "file"), "options": ["bind", "nosuid", "rro"]},
    ]
    plan = plan_for(doc, rootfs)
    proc, dev, data, f = plan.mounts
    assert (proc.fstype, proc.flags, proc.data) == (b"proc", 0, None)
    assert dev.flags == mo.MS_NOSUID | mo.MS_STRICTATIME and dev.data == b"mode=755,size=65536k"
    assert data.flags == mo.MS_BIND | mo.MS_REC and data.remount_flags == mo.MS_RDONLY
    assert data.propagation == mo.MS_PRIVATE | mo.MS_REC and not data.target_is_file
    assert f.target_is_file and f.remount_flags == mo.MS_NOSUID
    assert f.attr_set == mo.MOUNT_ATTR_RDONLY
    assert data.describe == f"bind mount {src} to /data".encode()


def test_relative_bind_source_is_relative_to_the_bundle(rootfs):
    (rootfs.parent / "here").mkdir()
    doc = spec()
    doc["mounts"] = [{"destination": "/x", "type": "bind", "source": "here", "options": ["bind"]}]
    assert plan_for(doc, rootfs).mounts[0].source == str(rootfs.parent / "here").encode()


def test_dev_tmpfs_added_before_mounts_below_dev(rootfs):
    doc = spec()
    doc["mounts"] = [{"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": []}]
    targets = [m.target for m in plan_for(doc, rootfs).mounts]
    assert targets == [b"/dev", b"/dev/pts"]


def test_default_devices_and_symlinks(rootfs):
    plan = plan_for(spec(), rootfs)
    paths = {d.path for d in plan.devices}
    assert {b"/dev/null", b"/dev/zero", b"/dev/full", b"/dev/tty", b"/dev/random", b"/dev/urandom"} <= paths
    assert not any(d.bind_from_host for d in plan.devices)
    links = {s.path: s.target for s in plan.symlinks}
    assert links[b"/dev/fd"] == b"/proc/self/fd" and links[b"/dev/ptmx"] == b"pts/ptmx"


def test_devices_bound_from_host_in_a_user_namespace(rootfs):
    doc = spec()
    doc["linux"]["namespaces"].append({"type": "user"})
    doc["linux"]["uidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    doc["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    plan = plan_for(doc, rootfs)
    assert all(d.bind_from_host for d in plan.devices)
    assert plan.uid_map == b"0 1000 1\n" and plan.gid_map == b"0 1000 1\n"


def test_cgroup_mount_v1_binds_each_hierarchy(rootfs):
    view = CgroupView(1, (("/sys/fs/cgroup/memory/c1", "memory"), ("/sys/fs/cgroup/pids/c1", "pids")))
    plan = plan_for(spec(), rootfs, view)
    cg = [m for m in plan.mounts if m.target.startswith(b"/sys/fs/cgroup")]
    assert cg[0].fstype == b"tmpfs"
    assert [(m.source, m.target) for m in cg[1:3]] == [
        (b"/sys/fs/cgroup/memory/c1", b"/sys/fs/cgroup/memory"),
        (b"/sys/fs/cgroup/pids/c1", b"/sys/fs/cgroup/pids"),
    ]
    assert all(m.remount_flags & mo.MS_RDONLY for m in cg[1:3])


def test_cgroup_mount_v2_with_and_without_cgroup_namespace(rootfs):
    view = CgroupView(2, (("/sys/fs/cgroup/c1", ""),))
    plan = plan_for(spec(), rootfs, view)
    (cg,) = [m for m in plan.mounts if m.target == b"/sys/fs/cgroup"]
    assert cg.source == b"/sys/fs/cgroup/c1" and cg.flags & mo.MS_BIND
    doc = spec()
    doc["linux"]["namespaces"].append({"type": "cgroup"})
    (cg,) = [m for m in plan_for(doc, rootfs, view).mounts if m.target == b"/sys/fs/cgroup"]
    assert cg.fstype == b"cgroup2"


def test_process_plan(rootfs):
    doc = spec()
    doc["process"]["user"] = {"uid": 1000, "gid": 1000, "additionalGids": [5, 6], "umask": 0o077}
    doc["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 200}]
    doc["process"]["env"] = ["PATH=/bin:/usr/bin"]
    p = plan_for(doc, rootfs).process
    assert p.uid == 1000 and p.additional_gids == (5, 6) and p.umask == 0o077
    assert p.rlimits[0].resource == 7 and (p.rlimits[0].soft, p.rlimits[0].hard) == (100, 200)
    assert p.search_path == (b"/bin", b"/usr/bin")
    # HOME comes from the container's /etc/passwd, as runc does
    assert b"HOME=/home/u" in p.env
    kill = 1 << 5
    assert p.capabilities.bounding & kill and p.no_new_privileges


def test_home_lookup_does_not_follow_symlinks_out_of_the_rootfs(rootfs, tmp_path):
    (tmp_path / "evil").write_text("root:x:0:0::/from-host:/bin/sh\n")
    (rootfs / "etc" / "passwd").unlink()
    (rootfs / "etc" / "passwd").symlink_to(tmp_path / "evil")
    p = plan_for(spec(), rootfs).process
    assert b"HOME=/" in p.env and b"HOME=/from-host" not in p.env


def test_rootfs_propagation_shared_applied_after_pivot(rootfs):
    doc = spec()
    doc["linux"]["rootfsPropagation"] = "shared"
    plan = plan_for(doc, rootfs)
    assert plan.root_propagation == mo.MS_SLAVE | mo.MS_REC
    assert plan.rootfs_propagation == mo.MS_SHARED


def test_unsupported_properties_are_listed():
    doc = spec()
    doc["linux"]["intelRdt"] = {"closID": "x"}
    doc["linux"]["memoryPolicy"] = {"mode": "MPOL_DEFAULT"}  # implemented
    problems = unsupported(Config.from_dict(doc))
    assert [p.path for p in problems] == ["$.linux.intelRdt"]


def test_mount_option_parsing_table():
    p = mo.parse_mount_options(["rw", "ro", "nosuid", "suid", "noatime", "rslave", "rrw", "rnoexec", "x=1"])
    assert p.flags == mo.MS_RDONLY | mo.MS_NOATIME
    assert p.propagation == mo.MS_SLAVE | mo.MS_REC
    assert p.attr_clr == mo.MOUNT_ATTR_RDONLY and p.attr_set == mo.MOUNT_ATTR_NOEXEC
    assert p.data == ("x=1",)


def test_terminal_and_console_size_reach_the_process_plan(rootfs):
    doc = spec()
    doc["process"]["terminal"] = True
    doc["process"]["consoleSize"] = {"height": 24, "width": 100000}
    pr = plan_for(doc, rootfs).process
    assert pr.terminal
    assert pr.console_size == (24, 0xFFFF)  # struct winsize holds unsigned shorts
    assert not unsupported(Config.from_dict(doc))


def test_console_size_is_ignored_without_terminal(rootfs):
    doc = spec()
    doc["process"]["consoleSize"] = {"height": 24, "width": 80}
    pr = plan_for(doc, rootfs).process
    assert not pr.terminal and pr.console_size is None


# ------------------------------------------------------------- tmpcopyup
def _step(doc, rootfs, dest):
    return next(m for m in plan_for(doc, rootfs).mounts if m.target == dest.encode())


def test_tmpcopyup_on_tmpfs(rootfs):
    doc = spec()
    doc["mounts"].append({"destination": "/data", "type": "tmpfs", "source": "tmpfs",
                          "options": ["tmpcopyup", "nosuid", "size=1m"]})
    m = _step(doc, rootfs, "/data")
    assert m.copy_up and m.copy_up_mode
    assert m.flags == mo.MS_NOSUID and m.remount_flags == 0 and m.data == b"size=1m"


def test_read_only_tmpcopyup_is_mounted_rw_then_remounted(rootfs):
    doc = spec()
    doc["mounts"].append({"destination": "/data", "type": "tmpfs", "source": "tmpfs",
                          "options": ["tmpcopyup", "ro", "nodev", "mode=700"]})
    m = _step(doc, rootfs, "/data")
    assert m.copy_up and not m.copy_up_mode  # mode= is kept
    assert m.flags == mo.MS_NODEV
    assert m.remount_flags == mo.MS_RDONLY | mo.MS_NODEV


def test_tmpcopyup_elsewhere_is_ignored_as_in_runc(rootfs):
    doc = spec()
    doc["mounts"].append({"destination": "/b", "type": "bind", "source": str(rootfs),
                          "options": ["rbind", "tmpcopyup"]})
    doc["mounts"].append({"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["ro"]})
    assert not _step(doc, rootfs, "/b").copy_up
    t = _step(doc, rootfs, "/t")
    assert not t.copy_up and t.flags == mo.MS_RDONLY and t.remount_flags == 0


def test_ambient_keeps_only_what_the_kernel_can_raise(rootfs, monkeypatch):
    """PR_CAP_AMBIENT_RAISE needs permitted and inheritable: the rest is left out of
    the plan (runc and crun ignore the kernel's EPERM; #11 item 1)."""
    from ocirun.linux import capabilities
    from ocirun.linux.capabilities import CAPABILITIES

    monkeypatch.setattr(capabilities, "own_available", lambda: ~0)  # as root, whoever runs the test
    doc = spec()
    doc["process"]["capabilities"] = {
        "bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_RAW"], "effective": ["CAP_KILL"],
        "permitted": ["CAP_KILL", "CAP_CHOWN"], "inheritable": ["CAP_KILL", "CAP_NET_RAW"],
        "ambient": ["CAP_KILL", "CAP_CHOWN", "CAP_NET_RAW"]}
    caps = plan_for(doc, rootfs).process.capabilities
    assert caps.ambient == 1 << CAPABILITIES["CAP_KILL"]
    assert caps.inheritable == 1 << CAPABILITIES["CAP_KILL"] | 1 << CAPABILITIES["CAP_NET_RAW"]
    del doc["process"]["capabilities"]["inheritable"]  # as `runc spec` writes it
    assert plan_for(doc, rootfs).process.capabilities.ambient == 0


@pytest.mark.parametrize("userns", [False, True])
def test_binds_in_a_user_namespace_are_opened_by_the_parent(rootfs, tmp_path, userns):
    """#11 item 16: the init's root in a user namespace may not reach a bind source, so
    the parent opens every plain bind there (MountStep.open_by_parent); never the
    container's own filesystems, and never without a user namespace."""
    src = tmp_path / "src"
    src.mkdir()
    doc = spec()
    doc["mounts"].append({"destination": "/mnt", "type": "bind", "source": str(src), "options": ["rbind"]})
    if userns:
        doc["linux"]["namespaces"].append({"type": "user"})
        doc["linux"]["uidMappings"] = doc["linux"]["gidMappings"] = [
            {"containerID": 0, "hostID": 100000, "size": 65536}]
    plan = plan_for(doc, rootfs)
    by_target = {m.target: m for m in plan.mounts}
    assert by_target[b"/mnt"].open_by_parent is userns
    assert not by_target[b"/proc"].open_by_parent and not by_target[b"/dev"].open_by_parent

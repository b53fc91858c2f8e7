"""Id-mapped mounts in the plan: which mounts get a MountIdmap, with which user
namespace (own mappings, the container's, a joined one), and what is refused."""

from __future__ import annotations

import copy

import pytest

from ocirun.errors import ConfigError
from ocirun.plan import mount_options as mo
from ocirun.plan.build import PlanOptions, build_plan
from ocirun.plan.model import MountIdmap
from ocirun.plan.support import unsupported
from ocirun.spec.generate import default_spec
from ocirun.spec.model import Config

OWN_UID = [{"containerID": 0, "hostID": 1000, "size": 10}, {"containerID": 10, "hostID": 5000, "size": 1}]
OWN_GID = [{"containerID": 0, "hostID": 2000, "size": 10}]
NS_MAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]


@pytest.fixture
def rootfs(tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    return root


@pytest.fixture
def src(tmp_path):
    d = tmp_path / "src"
    d.mkdir()
    return d


def doc_with(*mounts, user=None):
    doc = copy.deepcopy(default_spec())
    doc["process"]["terminal"] = False
    doc["mounts"] = list(mounts)
    if user == "new":
        doc["linux"]["namespaces"].append({"type": "user"})
        doc["linux"]["uidMappings"] = NS_MAP
        doc["linux"]["gidMappings"] = NS_MAP
    elif user == "joined":
        doc["linux"]["namespaces"].append({"type": "user", "path": "/proc/1/ns/user"})
    return doc


def plan_for(doc, rootfs):
    opts = PlanOptions(container_id="c1", bundle=str(rootfs.parent), rootfs=str(rootfs))
    return build_plan(Config.from_dict(doc), opts, None)


def step(plan, target):
    return next(m for m in plan.mounts if m.target == target)


def test_own_mappings_become_the_user_namespace_maps(rootfs, src):
    m = {"destination": "/m", "type": "bind", "source": str(src), "options": ["rbind", "ro", "idmap"],
         "uidMappings": OWN_UID, "gidMappings": OWN_GID}
    plan = plan_for(doc_with({"destination": "/proc", "type": "proc", "source": "proc"}, m, user="new"), rootfs)
    s = step(plan, b"/m")
    # config.md: the mount's own mappings MUST be used, even with a container user namespace
    assert s.idmap == MountIdmap(b"0 1000 10\n10 5000 1\n", b"0 2000 10\n", None, False, "$.mounts[1]")
    # still a bind in every other respect: rbind's tree, ro as a remount
    assert s.flags == mo.MS_BIND | mo.MS_REC
    assert s.remount_flags & mo.MS_RDONLY
    assert s.source == str(src).encode()
    assert step(plan, b"/proc").idmap is None


def test_ridmap_is_recursive_and_json_path_counts_config_mounts(rootfs, src):
    # the /dev tmpfs ocirun inserts does not shift the config index
    m = {"destination": "/dev/x", "type": "bind", "source": str(src), "options": ["rbind", "ridmap"],
         "uidMappings": OWN_UID, "gidMappings": OWN_GID}
    plan = plan_for(doc_with(m), rootfs)
    assert plan.mounts[0].target == b"/dev"
    s = step(plan, b"/dev/x")
    assert s.idmap is not None and s.idmap.recursive and s.idmap.json_path == "$.mounts[0]"


def test_without_mappings_the_new_user_namespace_mapping_is_borrowed(rootfs, src):
    m = {"destination": "/m", "source": str(src), "options": ["bind", "idmap"]}
    s = step(plan_for(doc_with(m, user="new"), rootfs), b"/m")
    assert s.idmap == MountIdmap(b"0 100000 65536\n", b"0 100000 65536\n", None, False, "$.mounts[0]")


def test_without_mappings_a_joined_user_namespace_is_used_by_path(rootfs, src):
    m = {"destination": "/m", "source": str(src), "options": ["bind", "ridmap"]}
    s = step(plan_for(doc_with(m, user="joined"), rootfs), b"/m")
    assert s.idmap == MountIdmap(None, None, b"/proc/1/ns/user", True, "$.mounts[0]")


def test_without_mappings_or_user_namespace_is_an_error(rootfs, src):
    # the spec rules refuse it first; the planner does not guess either
    m = {"destination": "/m", "source": str(src), "options": ["bind", "idmap"]}
    with pytest.raises(ConfigError, match=r"\$\.mounts\[0\]\.options.*user namespace"):
        plan_for(doc_with(m), rootfs)


def test_relative_source_is_bundle_relative(rootfs, src):
    m = {"destination": "/m", "source": "src", "options": ["bind", "idmap"],
         "uidMappings": OWN_UID, "gidMappings": OWN_GID}
    s = step(plan_for(doc_with(m), rootfs), b"/m")
    assert s.source == str(src).encode() and s.idmap is not None


@pytest.mark.parametrize("mount", [
    {"destination": "/m", "type": "tmpfs", "source": "tmpfs", "options": ["idmap"]},
    {"destination": "/m", "type": "cgroup", "source": "cgroup", "options": ["ridmap"]},
    {"destination": "/m", "type": "tmpfs", "source": "tmpfs", "options": ["idmap"],
     "uidMappings": OWN_UID, "gidMappings": OWN_GID},
])
def test_only_binds_are_id_mapped(rootfs, mount):
    config = Config.from_dict(doc_with(mount, user="new"))
    assert [(p.path, p.message) for p in unsupported(config)] == [("$.mounts[0].options", mo.IDMAP_BIND_ONLY)]
    with pytest.raises(ConfigError, match="only bind mounts"):
        plan_for(doc_with(mount, user="new"), rootfs)


@pytest.mark.parametrize("options", [["bind", "idmap"], ["rbind", "ridmap"]])
def test_binds_are_supported(src, options):
    m = {"destination": "/m", "type": "none", "source": str(src), "options": options}
    assert unsupported(Config.from_dict(doc_with(m, user="new"))) == []


def test_plain_mounts_have_no_idmap(rootfs, src):
    plan = plan_for(doc_with({"destination": "/m", "source": str(src), "options": ["bind"]}), rootfs)
    assert all(m.idmap is None for m in plan.mounts)


def test_c_plan_carries_tree_fds_and_minus_one_for_the_rest(rootfs, src):
    from ocirun.shim import _CPlan

    m = {"destination": "/m", "source": str(src), "options": ["bind", "idmap"],
         "uidMappings": OWN_UID, "gidMappings": OWN_GID}
    plan = plan_for(doc_with({"destination": "/proc", "type": "proc", "source": "proc"}, m), rootfs)
    fds = [-1 if s.idmap is None else 42 for s in plan.mounts]
    c = _CPlan(plan, [], fds).plan
    assert [c.mounts[i].tree_fd for i in range(c.n_mounts)] == fds
    # without trees (exec, plain containers) every mount says -1: 0 would be an fd
    c = _CPlan(plan, []).plan
    assert all(c.mounts[i].tree_fd == -1 for i in range(c.n_mounts))


def test_every_c_step_is_named():
    from ocirun.shim import STEPS, _c_step_names

    names = set(_c_step_names().values())
    assert {n for n in names if n.startswith("IDMAP_")} <= set(STEPS)
    assert names == set(STEPS)


def test_mappings_without_an_option_warn_and_map_as_idmap(rootfs, src):
    from ocirun.spec import rules

    m = {"destination": "/m", "source": str(src), "options": ["rbind"],
         "uidMappings": OWN_UID, "gidMappings": OWN_GID}
    doc = doc_with(m)
    assert list(rules.mount_id_mappings(doc, rules.Context())) == []
    assert [w for w in rules.warnings(doc) if "idmap" in w] == [
        "$.mounts[0].options: uidMappings/gidMappings without idmap or ridmap; applied as idmap (not recursive)"]
    s = step(plan_for(doc, rootfs), b"/m")
    assert s.idmap is not None and not s.idmap.recursive

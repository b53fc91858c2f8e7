"""Where a helper goes to leave its caller's cgroups (ocirun/helper/cgroup.py), on a
fake cgroupfs in a temp dir: which cgroups the user "may write" is decided by a
stand-in for the permission check (these tests run as root, who may write all)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ocirun.cgroups.hierarchy import Host
from ocirun.helper import cgroup


def _tree(base: Path, hierarchy: str, path: str) -> Path:
    d = base / hierarchy / path.strip("/")
    d.mkdir(parents=True, exist_ok=True)
    for p in (d, *d.parents):
        if p == base:
            break
        (p / "cgroup.procs").touch()
    return d


def _host(base: Path, hybrid: bool, caller: str, v1: str = "/") -> Host:
    lines = []
    cg = [f"0::{caller}"]
    if hybrid:
        lines.append(f"30 25 0:26 / {base}/memory rw - cgroup cgroup rw,memory")
        lines.append(f"31 25 0:27 / {base}/unified rw - cgroup2 cgroup2 rw")
        cg.insert(0, f"4:memory:{v1}")
    else:
        lines.append(f"31 25 0:27 / {base} rw - cgroup2 cgroup2 rw")
    return Host.from_text("\n".join(lines) + "\n", "\n".join(cg) + "\n", root=str(base))


@pytest.fixture
def ours(monkeypatch):
    """The directories the user may write (a delegated subtree), set by each test."""
    mine: set[str] = set()
    monkeypatch.setattr(cgroup, "_writable", lambda d: d in mine)
    monkeypatch.setattr(cgroup.os, "access", lambda p, mode: os.path.dirname(p) in mine)
    real_mkdir = os.mkdir

    def mkdir(path, mode=0o777):  # as cgroupfs: a new cgroup comes with its cgroup.procs
        real_mkdir(path, mode)
        Path(path, "cgroup.procs").touch()

    monkeypatch.setattr(cgroup.os, "mkdir", mkdir)
    return mine


def _procs(d: Path) -> list[str]:
    return (d / "cgroup.procs").read_text().split()


def test_a_cgroup_of_its_own_below_the_highest_delegated_ancestor(tmp_path, ours):
    caller = _tree(tmp_path, "", "/user.slice/user-1000.slice/user@1000.service/app.slice/term.scope")
    service = caller.parent.parent
    ours.update({str(service), str(service / "app.slice"), str(caller)})
    made = cgroup.leave_rootless("0123", _host(tmp_path, False, "/" + str(caller.relative_to(tmp_path))))
    assert made == str(service / "ocirun-helper-0123")
    assert _procs(Path(made)) == [str(os.getpid())]
    assert not _procs(caller)


def test_the_hybrid_hosts_unified_hierarchy_is_the_one_it_must_leave(tmp_path, ours):
    caller = _tree(tmp_path, "unified", "/deleg/session")
    mem = _tree(tmp_path, "memory", "/some/where")
    ours.update({str(caller.parent), str(caller), str(mem.parent)})
    made = cgroup.leave_rootless("ab", _host(tmp_path, True, "/deleg/session", v1="/some/where"))
    assert made == str(caller.parent / "ocirun-helper-ab")
    assert _procs(Path(made)) == [str(os.getpid())]
    # v1: up to the highest ancestor whose cgroup.procs it may write
    assert _procs(mem.parent) == [str(os.getpid())] and not _procs(mem)


def test_nothing_above_the_callers_cgroup_is_ours_no_helper(tmp_path, ours):
    caller = _tree(tmp_path, "", "/system.slice/conmon.scope")
    ours.add(str(caller))  # its own cgroup alone: a cgroup inside it would still pin it
    with pytest.raises(cgroup.CannotLeave, match="no cgroup above"):
        cgroup.leave_rootless("x", _host(tmp_path, False, "/system.slice/conmon.scope"))
    assert sorted(p.name for p in caller.parent.iterdir()) == ["cgroup.procs", "conmon.scope"]


def test_a_caller_in_the_root_cgroup_pins_nothing(tmp_path, ours):
    _tree(tmp_path, "memory", "/x")
    assert cgroup.leave_rootless("x", _host(tmp_path, True, "/", v1="/x")) is None


def test_v1_hierarchies_it_may_not_write_are_left_as_they_are(tmp_path, ours):
    _tree(tmp_path, "unified", "/")
    mem = _tree(tmp_path, "memory", "/a/b")
    assert cgroup.leave_rootless("x", _host(tmp_path, True, "/", v1="/a/b")) is None
    assert not _procs(mem) and not _procs(mem.parent)


def test_remove_only_its_own_names(tmp_path):
    d = tmp_path / "ocirun-helper-1"
    d.mkdir()
    assert cgroup.remove(str(d)) and not d.exists()
    other = tmp_path / "session"
    other.mkdir()
    assert not cgroup.remove(str(other)) and other.exists()
    assert cgroup.remove(str(tmp_path / "ocirun-helper-gone"))

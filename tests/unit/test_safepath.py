"""ocirun.linux.safepath.resolve_in_root: paths as a container sees them."""

from __future__ import annotations

import os

import pytest

from ocirun.linux.safepath import resolve_in_root


@pytest.fixture
def root(tmp_path):
    os.makedirs(tmp_path / "a" / "b")
    os.symlink("/a", tmp_path / "abs")  # absolute: from the root, not the host's /
    os.symlink("../../../../a/b", tmp_path / "a" / "up")  # .. clamped at the root
    os.symlink("x/y", tmp_path / "rel")  # dangling
    os.symlink("loop", tmp_path / "loop")
    return str(tmp_path)


@pytest.mark.parametrize("path,resolved", [
    ("/", "/"), ("/a/b", "/a/b"), ("a/b/", "/a/b"), ("/abs/b", "/a/b"), ("/a/up/c", "/a/b/c"),
    ("/rel", "/x/y"), ("/rel/z", "/x/y/z"), ("/../../a", "/a"), ("/nope/../a", "/a"),
    ("/abs/b/../../abs", "/a"), ("//a//./b", "/a/b"),
])
def test_resolve_in_root(root, path, resolved):
    assert resolve_in_root(root, path) == resolved


def test_a_symlink_loop_is_eloop(root):
    with pytest.raises(OSError) as e:
        resolve_in_root(root, "/loop")
    assert e.value.errno == 40

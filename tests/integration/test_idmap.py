"""Id-mapped bind mounts (config.md: idmap, ridmap, mount uidMappings/gidMappings).

What a file's owner looks like through the mount (``stat -c %u:%g`` inside),
against its owner on the host and the mapping: a mapping line
``containerID hostID size`` shows an id stored as containerID on the source
as hostID (in the host's terms; the container's user namespace then maps that
as usual). runc 1.1.5, installed here, has no id-mapped mounts (runc 1.2 added
them), so there is no differential test.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from procs import my_children

USERNS_MAP = [{"containerID": 0, "hostID": 100000, "size": 65536}]


@pytest.fixture(autouse=True)
def _idmap_support(tmp_path):
    """Id-mapped mounts of the test directory's filesystem (ext4, xfs: 5.12; btrfs:
    5.15; tmpfs: 6.3)."""
    from kernel_probes import idmapped_mounts

    if not idmapped_mounts(str(tmp_path)):
        pytest.skip(f"{tmp_path}'s filesystem cannot be id-mapped here")


@pytest.fixture
def tmpfs_idmap():
    """For the tests that mount a tmpfs below the source: tmpfs id-mapping (Linux 6.3)."""
    from kernel_probes import idmapped_mounts

    if not idmapped_mounts(None):
        pytest.skip("tmpfs cannot be id-mapped here (Linux 6.3)")


def _source(tmp_path: Path) -> Path:
    """A host directory with a file owned by 0:0 and one by 1000:1000."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "root0").write_text("x")
    (src / "u1000").write_text("x")
    os.chown(src / "u1000", 1000, 1000)
    return src


def _mount(dest: str, source: Path, options: list[str], uid=None, gid=None) -> dict:
    m: dict = {"destination": dest, "type": "bind", "source": str(source), "options": options}
    if uid is not None:
        m["uidMappings"] = uid
        m["gidMappings"] = gid
    return m


def _userns(c: dict, rootfs: Path) -> None:
    c["linux"]["namespaces"].append({"type": "user"})
    c["linux"]["uidMappings"] = USERNS_MAP
    c["linux"]["gidMappings"] = USERNS_MAP
    os.chown(rootfs, 100000, 100000)


def _mount_points(bundle, *names: str) -> None:
    # the container's root (a mapped uid) may not create them in the image's /mnt
    for n in names:
        (bundle.rootfs / "mnt" / n).mkdir(parents=True, exist_ok=True)


def _run(ocirun, bundle, script: str, edit) -> list[str]:
    bundle.set_args("sh", "-c", script)
    bundle.edit(edit)
    return ocirun("run", "--bundle", str(bundle.path), ocirun.new_id()).stdout.decode().split("\n")


def _live_children() -> list[str]:
    """Processes (not zombies) whose parent is this test process: an orphaned
    helper of a failed create would be reparented to us (the subreaper)."""
    return [f"{pid}: {stat[:60]}" for pid, state, stat in my_children() if state != "Z"]


def test_idmap_borrows_the_container_user_namespace(ocirun, bundle, tmp_path):
    src = _source(tmp_path)
    _mount_points(bundle, "a")

    def edit(c):
        _userns(c, bundle.rootfs)
        c["mounts"].append(_mount("/mnt/a", src, ["bind", "idmap"]))

    # /etc/passwd: host-owned 0:0 too, seen without an id mapping (the overflow id)
    out = _run(ocirun, bundle, "stat -c %u:%g /mnt/a/root0 /mnt/a/u1000 /etc/passwd; "
               "touch /mnt/a/new; ls /proc/self/fd | tr '\\n' ' '; echo; "
               "grep ' /mnt/a ' /proc/self/mountinfo", edit)
    # config.md: without mappings of its own the mount MAY use the container's
    # user namespace mapping: host 0 is the container's 0, 1000 its 1000
    assert out[:3] == ["0:0", "1000:1000", "65534:65534"]
    # a file the container's root creates through it is owned by host root
    st = os.stat(src / "new")
    assert (st.st_uid, st.st_gid) == (0, 0)
    # neither the user namespace nor the detached mount reached the process
    assert out[3].split() == ["0", "1", "2", "3"]  # 3: ls's own directory
    # a slave of the host's mount (as a plain bind), never its peer
    assert "shared:" not in out[4]


def test_idmap_with_own_mappings_in_a_user_namespace(ocirun, bundle, tmp_path):
    src = _source(tmp_path)
    _mount_points(bundle, "b")

    def edit(c):
        _userns(c, bundle.rootfs)
        # on-disk 0..999 appear as host 101000.. (uid) and 102000.. (gid): the
        # container's 1000 and 2000; on-disk 1000 is outside: the overflow id
        c["mounts"].append(_mount("/mnt/b", src, ["rbind", "idmap"],
                                  uid=[{"containerID": 0, "hostID": 101000, "size": 1000}],
                                  gid=[{"containerID": 0, "hostID": 102000, "size": 1000}]))

    out = _run(ocirun, bundle, "stat -c %u:%g /mnt/b/root0 /mnt/b/u1000", edit)
    assert out[:2] == ["1000:2000", "65534:65534"]


def test_idmap_without_a_user_namespace(ocirun, bundle, tmp_path):
    src = _source(tmp_path)
    _mount_points(bundle, "c")

    def edit(c):
        # config.md only requires a user namespace when the mount has no mappings
        c["mounts"].append(_mount("/mnt/c", src, ["bind", "idmap"],
                                  uid=[{"containerID": 0, "hostID": 1234, "size": 1}],
                                  gid=[{"containerID": 0, "hostID": 4321, "size": 1}]))

    out = _run(ocirun, bundle, "stat -c %u:%g /mnt/c/root0 /mnt/c/u1000", edit)
    assert out[:2] == ["1234:4321", "65534:65534"]


def test_ridmap_maps_submounts_idmap_only_the_top(ocirun, bundle, tmp_path, tmpfs_idmap):
    src = _source(tmp_path)
    sub = src / "sub"
    sub.mkdir()
    _mount_points(bundle, "top", "all")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "idmaptest", str(sub)], check=True)
    try:
        (sub / "inner").write_text("x")  # 0:0 on the tmpfs
        mapping = [{"containerID": 0, "hostID": 1234, "size": 1}]

        def edit(c):
            c["mounts"] += [_mount("/mnt/top", src, ["rbind", "idmap"], uid=mapping, gid=mapping),
                            _mount("/mnt/all", src, ["rbind", "ridmap"], uid=mapping, gid=mapping)]

        out = _run(ocirun, bundle, "stat -c %u:%g /mnt/top/root0 /mnt/top/sub/inner "
                   "/mnt/all/root0 /mnt/all/sub/inner", edit)
    finally:
        subprocess.run(["umount", str(sub)], check=True)
    assert out[:4] == ["1234:1234", "0:0", "1234:1234", "1234:1234"]


def test_submounts_of_an_idmapped_rbind_stay_locked(ocirun, bundle, tmp_path, tmpfs_idmap):
    # attached from a tree made in the host's namespace: the container's root
    # must still not unmount a submount to uncover what is below it
    src = _source(tmp_path)
    sub = src / "sub"
    sub.mkdir()
    _mount_points(bundle, "r")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=755", "idmaptest", str(sub)], check=True)
    try:
        def edit(c):
            _userns(c, bundle.rootfs)
            c["mounts"].append(_mount("/mnt/r", src, ["rbind", "ridmap"]))

        out = _run(ocirun, bundle, "umount /mnt/r/sub 2>/dev/null && echo unmounted || echo locked", edit)
    finally:
        subprocess.run(["umount", str(sub)], check=True)
    assert out[0] == "locked"


def test_idmap_borrows_a_joined_user_namespace(ocirun, bundle, tmp_path):
    src = _source(tmp_path)
    first = bundle.copy(tmp_path / "first")
    first.set_args("sleep", "30")
    first.edit(lambda c: _userns(c, first.rootfs))
    a = ocirun.new_id()
    ocirun("run", "-d", "--bundle", str(first.path), a)
    pid = ocirun.state(a)["pid"]
    _mount_points(bundle, "j")

    def edit(c):
        c["linux"]["namespaces"].append({"type": "user", "path": f"/proc/{pid}/ns/user"})
        os.chown(bundle.rootfs, 100000, 100000)
        c["mounts"].append(_mount("/mnt/j", src, ["bind", "idmap"]))

    out = _run(ocirun, bundle, "stat -c %u:%g /mnt/j/root0 /mnt/j/u1000", edit)
    assert out[:2] == ["0:0", "1000:1000"]


def _fails(ocirun, bundle, edit) -> str:
    bundle.edit(edit)
    cid = ocirun.new_id()
    p = ocirun("run", "--bundle", str(bundle.path), cid, check=False)
    assert p.returncode == 1, p.stderr
    assert not [e for e in os.listdir(ocirun.root) if not e.startswith(".")] if ocirun.root.exists() else True
    assert _live_children() == []
    err = p.stderr.decode().strip()
    assert len(err.splitlines()) == 1, err
    return err


def test_idmap_on_a_non_bind_mount_is_refused(ocirun, bundle):
    mapping = [{"containerID": 0, "hostID": 1234, "size": 1}]
    err = _fails(ocirun, bundle, lambda c: c["mounts"].append(
        {"destination": "/mnt", "type": "tmpfs", "source": "tmpfs", "options": ["idmap"],
         "uidMappings": mapping, "gidMappings": mapping}))
    n = len(bundle.config()["mounts"]) - 1
    assert f"$.mounts[{n}].options" in err
    assert "only bind mounts can be id-mapped" in err


def test_idmap_mappings_the_kernel_refuses(ocirun, bundle, tmp_path):
    """Overlapping ranges: the kernel refuses the uid_map (EINVAL); the validator says so
    first, with the JSON path (rule id_mapping_ranges)."""
    src = _source(tmp_path)
    overlapping = [{"containerID": 0, "hostID": 1000, "size": 10},
                   {"containerID": 5, "hostID": 2000, "size": 10}]
    good = [{"containerID": 0, "hostID": 1000, "size": 10}]
    err = _fails(ocirun, bundle, lambda c: c["mounts"].append(
        _mount("/mnt", src, ["bind", "idmap"], uid=overlapping, gid=good)))
    n = len(bundle.config()["mounts"]) - 1
    assert err.endswith(f"$.mounts[{n}].uidMappings[1]: its container ids 5-14 overlap those of [0] (0-9)"), err


def test_idmap_on_a_filesystem_without_support(ocirun, bundle):
    # sysfs cannot be id-mapped (no FS_ALLOW_IDMAP)
    mapping = [{"containerID": 0, "hostID": 1234, "size": 1}]
    err = _fails(ocirun, bundle, lambda c: c["mounts"].append(
        _mount("/mnt", Path("/sys/kernel"), ["bind", "idmap"], uid=mapping, gid=mapping)))
    n = len(bundle.config()["mounts"]) - 1
    assert err.startswith(f"$.mounts[{n}]: bind mount /sys/kernel to /mnt: mount_setattr(MOUNT_ATTR_IDMAP)"), err
    assert "does not support id-mapped mounts" in err


def test_idmap_without_mappings_or_user_namespace_is_a_config_error(ocirun, bundle, tmp_path):
    src = _source(tmp_path)
    err = _fails(ocirun, bundle, lambda c: c["mounts"].append(_mount("/mnt", src, ["bind", "idmap"])))
    assert "needs a user namespace" in err


@pytest.mark.parametrize("option", ["idmap", "ridmap"])
def test_features_and_options(ocirun, option):
    import json

    doc = json.loads(ocirun("features").stdout)
    assert doc["linux"]["mountExtensions"]["idmap"]["enabled"] is True
    assert option in doc["mountOptions"]

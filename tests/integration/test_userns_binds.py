"""Bind mounts in a container with its own user namespace (#11 item 16), against
runc: a source only the host's root can reach is bound all the same (the runtime
opens it with its own privileges, ocirun/shim/src/idmap.c ocirun_bind_trees), and
what the host made read-only stays read-only (the kernel's mount locks come with
the source)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")


@pytest.fixture
def open_dir() -> Iterator[Path]:
    """A directory every user may traverse (pytest's tmp_path is below 0700 ones, which
    a container's root in a user namespace, and so runc's init, cannot pass)."""
    d = Path(tempfile.mkdtemp(prefix="ocitest-userns-", dir="/tmp"))
    d.chmod(0o755)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _bundles(bundle, where: Path, script: str, mounts: list[dict], caps: list[str] | None = None):
    """Ours and runc's copy of the bundle below ``where``, in a user namespace (ids from
    100000) with ``mounts`` added and ``script`` as the process."""
    def edit(c):
        c["process"]["args"] = ["sh", "-c", script]
        c["mounts"].extend(mounts)
        if caps is not None:
            c["process"]["capabilities"] = {k: caps for k in ("bounding", "effective", "permitted")}

    bundle.edit(edit)
    bundle.add_user_namespace()
    ours = bundle.copy(where / "ours")
    theirs = bundle.copy(where / "theirs")
    for b in (ours, theirs):
        b.path.chmod(0o755)
        os.chown(b.rootfs, 100000, 100000)
    return ours, theirs


def _run_both(ocirun, ours, theirs, tmp_path):
    p = ocirun("run", "--bundle", str(ours.path), ocirun.new_id(), check=False)
    root, rid = tmp_path / "runc-root", f"runc-{uuid.uuid4().hex[:8]}"
    try:
        ref = subprocess.run(["runc", "--root", str(root), "run", "--bundle", str(theirs.path), rid],
                             capture_output=True, stdin=subprocess.DEVNULL, timeout=60)
    finally:
        subprocess.run(["runc", "--root", str(root), "delete", "--force", rid], capture_output=True)
    return p, ref


@pytest.mark.parametrize("option", ["rbind", "bind"])
def test_bind_source_only_the_host_root_can_reach(option, ocirun, bundle, tmp_path, open_dir):
    """/secret is 0700 root's, the source is /secret/inner (0755): the container's root
    (host uid 100000) could not walk to it; the mount is made all the same (it failed
    with "bind mount ... permission denied")."""
    secret = open_dir / "secret"
    (secret / "inner").mkdir(parents=True)
    (secret / "inner" / "file").write_text("hidden\n")
    secret.chmod(0o700)
    ours, theirs = _bundles(bundle, open_dir, "cat /mnt/file; ls /mnt",
                            [{"destination": "/mnt", "type": "bind", "source": str(secret / "inner"),
                              "options": [option, "ro"]}])
    p, ref = _run_both(ocirun, ours, theirs, tmp_path)
    assert ref.returncode == 0, ref.stderr
    assert p.returncode == 0, p.stderr
    assert p.stdout == ref.stdout == b"hidden\nfile\n"


def test_host_read_only_mount_stays_locked(ocirun, bundle, tmp_path, open_dir):
    """A source on a mount the host made read-only: the container's root (with
    CAP_SYS_ADMIN in its user namespace) cannot remount it read-write, as under runc:
    the tree is opened where the host's mounts are locked, as in the container's own
    mount namespace, not in the runtime's."""
    src, ro = open_dir / "src", open_dir / "ro"
    src.mkdir()
    ro.mkdir()
    (src / "f").write_text("x\n")
    subprocess.run(["mount", "--bind", str(src), str(ro)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], check=True)
        script = ("grep ' /mnt ' /proc/self/mountinfo | cut -d' ' -f6; "
                  "mount -o remount,rw,bind /mnt 2>/dev/null && echo remounted || echo refused; "
                  "touch /mnt/new 2>/dev/null && echo written || echo read-only")
        ours, theirs = _bundles(bundle, open_dir, script,
                                [{"destination": "/mnt", "type": "bind", "source": str(ro), "options": ["rbind"]}],
                                caps=["CAP_SYS_ADMIN"])
        p, ref = _run_both(ocirun, ours, theirs, tmp_path)
    finally:
        subprocess.run(["umount", str(ro)], check=False)
    assert ref.returncode == 0, ref.stderr
    assert p.returncode == 0, p.stderr
    assert p.stdout == ref.stdout == b"ro,relatime\nrefused\nread-only\n"
    assert sorted(os.listdir(src)) == ["f"]

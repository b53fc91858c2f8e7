"""tmpcopyup (runc's mount extension, sent by podman with --tmpfs): a tmpfs over
a directory starts with a copy of what the directory held. runc is the oracle."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

pytestmark = pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")

# every entry with type, mode, owner and size; symlink targets. Times are
# compared apart: ocirun keeps them, runc 1.1 sets them to the time of the copy.
LISTING = ("cd /data && find . | sort | while read -r f; do "
           "stat -c '%n %F %a %u:%g %s' \"$f\"; "
           "[ -L \"$f\" ] && readlink \"$f\"; done; "
           "grep ' /data ' /proc/mounts | cut -d' ' -f3,4 | cut -d, -f1; "
           "echo new > /data/new 2>&1 && echo wrote || echo refused")


def _populate(rootfs, fifo=False):
    data = rootfs / "data"
    (data / "sub" / "deeper").mkdir(parents=True)
    (data / "file").write_text("hello\n")
    (data / "sub" / "deeper" / "big").write_bytes(os.urandom(300_000))
    (data / "secret").write_text("s\n")
    os.chown(data / "secret", 12, 34)
    os.chmod(data / "secret", 0o4750)  # set-id bit survives the chown
    os.chmod(data / "sub", 0o710)
    os.symlink("../file", data / "sub" / "link")
    os.symlink("/nonexistent", data / "dangling")
    if fifo:
        os.mkfifo(data / "fifo")
    # fixed times everywhere (directories' included), so two copies compare equal
    for dirpath, dirnames, filenames in os.walk(data, topdown=False):
        for name in dirnames + filenames:
            os.utime(os.path.join(dirpath, name), (1_000_000_000, 1_000_000_000), follow_symlinks=False)
    return data


def _run(cmd, cwd):
    return subprocess.run(cmd, capture_output=True, stdin=subprocess.DEVNULL, timeout=60, cwd=cwd)


@pytest.mark.parametrize("options", [["tmpcopyup"], ["tmpcopyup", "ro", "nosuid", "mode=755"]])
def test_tmpcopyup_as_runc(options, ocirun, bundle, tmp_path):
    def edit(c):
        c["mounts"].append({"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": options})
        c["process"]["args"] = ["sh", "-c", LISTING]

    bundle.edit(edit)
    theirs = bundle.copy(tmp_path / "runc-bundle")  # before: copytree cannot copy a fifo
    data = _populate(bundle.rootfs)
    _populate(theirs.rootfs)
    ours = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id())
    ref = _run(["runc", "--root", str(tmp_path / "runc-root"), "run", "--bundle", str(theirs.path),
                f"runc-{uuid.uuid4().hex[:8]}"], theirs.path)
    assert ref.returncode == 0, ref.stderr
    assert ours.stdout.decode() == ref.stdout.decode()
    lines = ours.stdout.decode().splitlines()
    assert "./secret regular file 4750 12:34 2" in lines
    assert "./file regular file 644 0:0 6" in lines
    assert lines[-1] == ("refused" if "ro" in options else "wrote")
    assert not (data / "new").exists()  # writes went to the tmpfs, not the rootfs


def test_tmpcopyup_keeps_times_and_an_explicit_mode(ocirun, bundle):
    """Where ocirun differs from runc 1.1 on purpose: times are kept (runc: the
    time of the copy) and mode= is the tmpfs root's mode (runc: the directory's)."""
    def edit(c):
        c["mounts"].append({"destination": "/data", "type": "tmpfs", "source": "tmpfs",
                            "options": ["tmpcopyup", "mode=700"]})
        c["process"]["args"] = ["stat", "-c", "%n %a %Y", "/data", "/data/file", "/data/sub", "/data/dangling"]

    bundle.edit(edit)
    _populate(bundle.rootfs)
    out = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id()).stdout.decode().splitlines()
    assert out[0].startswith("/data 700 ")
    assert out[1:] == ["/data/file 644 1000000000", "/data/sub 710 1000000000", "/data/dangling 777 1000000000"]


def test_without_tmpcopyup_the_tmpfs_is_empty(ocirun, bundle):
    def edit(c):
        c["mounts"].append({"destination": "/data", "type": "tmpfs", "source": "tmpfs"})
        c["process"]["args"] = ["ls", "-A", "/data"]

    bundle.edit(edit)
    _populate(bundle.rootfs)
    assert ocirun("run", "--bundle", str(bundle.path), ocirun.new_id()).stdout == b""


def test_tmpcopyup_of_a_missing_directory_is_an_empty_tmpfs(ocirun, bundle):
    def edit(c):
        c["mounts"].append({"destination": "/not/there", "type": "tmpfs", "source": "tmpfs",
                            "options": ["tmpcopyup"]})
        c["process"]["args"] = ["sh", "-c", "ls -A /not/there; grep ' /not/there ' /proc/mounts | cut -d' ' -f3"]

    bundle.edit(edit)
    assert ocirun("run", "--bundle", str(bundle.path), ocirun.new_id()).stdout == b"tmpfs\n"


def test_tmpcopyup_copies_a_fifo(ocirun, bundle):
    """runc 1.1.5 fails here ("lchown .../fifo: no such file or directory": its
    copy skips the fifo, then chowns it); the fifo is part of the directory."""
    def edit(c):
        c["mounts"].append({"destination": "/data", "type": "tmpfs", "source": "tmpfs", "options": ["tmpcopyup"]})
        c["process"]["args"] = ["stat", "-c", "%F %a", "/data/fifo"]

    bundle.edit(edit)
    _populate(bundle.rootfs, fifo=True)
    os.chmod(bundle.rootfs / "data" / "fifo", 0o640)
    assert ocirun("run", "--bundle", str(bundle.path), ocirun.new_id()).stdout == b"fifo 640\n"

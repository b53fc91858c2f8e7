"""linux.devices over a file the rootfs already has at that path.

config-linux.md: "If a file already exists at path that does not match the
requested device, the runtime MUST generate an error." runc 1.1 keeps whatever
is there; ocirun follows the spec. A default device (/dev/null, ...) is
supplied on the tmpfs /dev ocirun mounts unless the bundle mounts its own, so
the case arises for devices outside /dev (or under a /dev the bundle binds).
"""

from __future__ import annotations

import os
import stat


def _rootfs_dir(bundle, *, device: dict, args: list[str]):
    """Request one device at /opt/<name>: a directory of the rootfs itself."""
    def edit(c):
        c["linux"]["devices"] = [device]
        c["process"]["args"] = args

    bundle.edit(edit)
    (bundle.rootfs / "opt").mkdir(exist_ok=True)
    return bundle.rootfs / "opt"


def test_a_file_that_is_not_the_device_is_an_error(ocirun, bundle):
    opt = _rootfs_dir(bundle, device={"path": "/opt/mydev", "type": "c", "major": 1, "minor": 3},
                      args=["true"])
    (opt / "mydev").write_text("a regular file\n")
    p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id(), check=False)
    assert p.returncode == 1
    err = p.stderr.decode()
    assert "a file that is not the requested device already exists at /opt/mydev" in err, err
    assert len(err.strip().splitlines()) == 1, err
    assert (opt / "mydev").read_text() == "a regular file\n"  # left alone
    assert not any(ocirun.root.iterdir())


def test_a_device_of_another_number_is_an_error(ocirun, bundle):
    opt = _rootfs_dir(bundle, device={"path": "/opt/mydev", "type": "c", "major": 1, "minor": 3},
                      args=["true"])
    os.mknod(opt / "mydev", stat.S_IFCHR | 0o600, os.makedev(1, 5))  # zero, not null
    p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id(), check=False)
    assert p.returncode == 1
    assert b"already exists at /opt/mydev" in p.stderr, p.stderr


def test_the_same_device_is_kept_with_the_requested_mode_and_owner(ocirun, bundle):
    opt = _rootfs_dir(bundle, device={"path": "/opt/mydev", "type": "c", "major": 1, "minor": 3,
                                      "fileMode": 0o620, "uid": 7, "gid": 9},
                      args=["stat", "-c", "%F %t:%T %a %u:%g", "/opt/mydev"])
    os.mknod(opt / "mydev", stat.S_IFCHR | 0o600, os.makedev(1, 3))
    p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id())
    assert p.stdout.decode().split() == ["character", "special", "file", "1:3", "620", "7:9"]

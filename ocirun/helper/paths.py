"""Where a helper lives: one per user (and user namespace) and installation (the
front end computes the same names: ocirun/frontend/frontend.c, rootless_caller,
helper_dir and install_id).

Root's helpers are in /run/ocirun-helper/ (next to /run/ocirun). A rootless
caller's (not root, or root in a user namespace that does not map every id:
ocirun.rootless.running_in_userns, as rootless podman calls the runtime) are in
$XDG_RUNTIME_DIR/ocirun-helper/, if XDG_RUNTIME_DIR is an absolute path to a
directory the caller owns; without one there is no helper (the direct path).
OCIRUN_HELPER_DIR overrides both. The directory is 0700. In it, for the
installation whose `ocirun` lives in directory D: ``<id>.sock`` (the socket),
``<id>.lock`` (held by the running helper), ``<id>.json`` (its status), with id =
FNV-1a 64 of D, in hex; for a rootless caller FNV-1a 64 of D, a NUL byte and the
inode of its user namespace in decimal, so that a user's shell (the initial
user namespace) and rootless podman's namespace each get a helper of their own
(a worker serves only callers of its own user namespace).
"""

from __future__ import annotations

import os
import stat
import sys

ROOT_DIR = "/run/ocirun-helper"


def rootless() -> bool:
    """The front end's rootless_caller(): not root, or root in a user namespace."""
    from ocirun.rootless import running_in_userns

    return os.geteuid() != 0 or running_in_userns()


def helper_dir() -> str | None:
    d = os.environ.get("OCIRUN_HELPER_DIR")
    if d:
        return d
    if not rootless():
        return ROOT_DIR
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    if not xdg or not xdg.startswith("/"):
        return None
    try:
        st = os.stat(xdg)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid():
        return None
    return os.path.join(xdg, "ocirun-helper")


def install_id(bindir: str, userns: int | None = None) -> str:
    """FNV-1a 64 of ``bindir`` (and, for a rootless caller, of a NUL and the inode
    ``userns`` of its user namespace in decimal), in hex."""
    data = os.fsencode(bindir)
    if userns is not None:
        data += b"\0" + str(userns).encode()
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


def userns_inode() -> int | None:
    """The inode of our user namespace if we are rootless (it names our helper), else None."""
    if not rootless():
        return None
    try:
        return os.stat("/proc/self/ns/user").st_ino
    except OSError:
        return None


def bindir() -> str:
    """The directory of this installation's `ocirun` and `ocirun-direct`."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    if os.path.basename(argv0) == "ocirun-direct":
        return os.path.dirname(os.path.realpath(argv0))
    import sysconfig

    return os.path.realpath(sysconfig.get_path("scripts"))


class Files:
    """The socket, lock and status file of one helper."""

    def __init__(self, directory: str, ident: str) -> None:
        self.dir = directory
        self.id = ident
        self.sock = os.path.join(directory, f"{ident}.sock")
        self.lock = os.path.join(directory, f"{ident}.lock")
        self.status = os.path.join(directory, f"{ident}.json")
        #: a rootless helper's own cgroup (ocirun.helper.cgroup), kept for `helper stop`
        self.cgroup = os.path.join(directory, f"{ident}.cgroup")
        #: the cgroups of a caller a rootless helper could not leave (it did not run)
        self.nocgroup = os.path.join(directory, f"{ident}.nocgroup")


def current() -> Files | None:
    d = helper_dir()
    return Files(d, install_id(bindir(), userns_inode())) if d else None

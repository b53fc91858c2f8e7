"""Where a helper lives: one per user and installation (the front end computes the
same names: ocirun/frontend/frontend.c, helper_dir and install_id).

Root's helpers are in /run/ocirun-helper/ (next to /run/ocirun), a user's in
$XDG_RUNTIME_DIR/ocirun-helper/ (for rootless callers, #13; until then the front
end sends non-root callers the direct path); OCIRUN_HELPER_DIR overrides both.
The directory is 0700. In it, for the installation whose `ocirun` lives in
directory D: ``<id>.sock`` (the socket), ``<id>.lock`` (held by the running
helper), ``<id>.json`` (its status), with id = FNV-1a 64 of D, in hex.
"""

from __future__ import annotations

import os
import sys

ROOT_DIR = "/run/ocirun-helper"


def helper_dir() -> str | None:
    d = os.environ.get("OCIRUN_HELPER_DIR")
    if d:
        return d
    if os.geteuid() == 0:
        return ROOT_DIR
    xdg = os.environ.get("XDG_RUNTIME_DIR")
    return os.path.join(xdg, "ocirun-helper") if xdg and xdg.startswith("/") else None


def install_id(bindir: str) -> str:
    h = 0xCBF29CE484222325
    for b in os.fsencode(bindir):
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


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


def current() -> Files | None:
    d = helper_dir()
    return Files(d, install_id(bindir())) if d else None

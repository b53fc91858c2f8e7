"""Rootless: is this runtime without privilege over the host, and where does its state live.

Two questions, answered as runc 1.1 answers them (main.go, utils_linux.go):

- **rootless** (``--rootless auto|true|false``): ``auto`` means rootless when the
  effective uid is not 0, or when it is 0 inside a user namespace that does not
  map the whole id range (rootless podman runs its OCI runtime as uid 0 in such a
  namespace). Rootless changes how cgroups are handled (``ocirun.cgroups``: a
  cgroup the user may not create is done without when no resource needs it),
  who opens bind mount sources and writes id maps (``ocirun.plan``,
  ``ocirun.shim``). See docs/rootless.md.
- **the default state root** (:func:`default_state_root`): ``/run/ocirun`` for
  the host's root, ``$XDG_RUNTIME_DIR/ocirun`` for everyone else (runc:
  ``$XDG_RUNTIME_DIR/runc``); a clear error naming the variable when a rootless
  user has none and gives no ``--root``.

:func:`default_state_root` is the one place that decides the state root; the
command line, the library and the warm helper (issue #12) all call it.
Cheap to import: ``os`` only (every command line imports it).
"""

from __future__ import annotations

import os

from ocirun.errors import UsageError

#: The state root of the host's root (runc: /run/runc).
PRIVILEGED_ROOT = "/run/ocirun"
#: What /proc/self/uid_map says in the initial user namespace.
_FULL_MAP = ("0", "0", "4294967295")

_in_userns: bool | None = None


def running_in_userns() -> bool:
    """True inside a user namespace that does not map every id (runc's
    ``userns.RunningInUserNS``: /proc/self/uid_map is not ``0 0 4294967295``).
    Read once per process."""
    global _in_userns
    if _in_userns is None:
        try:
            with open("/proc/self/uid_map", "rb") as f:
                lines = f.read().split(b"\n")
        except OSError:
            _in_userns = False  # no user namespaces in this kernel
        else:
            fields = tuple(x.decode() for x in lines[0].split()) if lines else ()
            _in_userns = not (fields == _FULL_MAP and not any(ln.strip() for ln in lines[1:]))
    return _in_userns


def is_rootless(mode: str = "auto") -> bool:
    """The global ``--rootless`` flag: "true", "false" or "auto" (see the module docstring)."""
    if mode == "true":
        return True
    if mode == "false":
        return False
    return os.geteuid() != 0 or running_in_userns()


def _honor_xdg_runtime_dir() -> bool:
    """runc's shouldHonorXDGRuntimeDir: not for the host's root (backward
    compatibility: /run/ocirun whatever its environment says); for uid 0 in a user
    namespace unless $USER says root (podman's rootless runtime has no $USER)."""
    if not os.environ.get("XDG_RUNTIME_DIR"):
        return False
    if os.geteuid() != 0:
        return True
    if not running_in_userns():
        return False
    return os.environ.get("USER") != "root"


def default_state_root() -> str:
    """The state root when no ``--root`` is given (see the module docstring).

    Raises UsageError naming ``XDG_RUNTIME_DIR`` for an unprivileged user who has
    none (a login session sets it; ``su`` and ``sudo -u`` often do not)."""
    if _honor_xdg_runtime_dir():
        return os.path.join(os.path.abspath(os.environ["XDG_RUNTIME_DIR"]), "ocirun")
    uid = os.geteuid()
    if uid != 0:
        raise UsageError(
            f"ocirun runs rootless (uid {uid}) and XDG_RUNTIME_DIR is not set, so it has no "
            f"state directory of its own: set XDG_RUNTIME_DIR to a directory you own "
            f"(a login session sets /run/user/{uid}), or give --root DIR")
    return PRIVILEGED_ROOT


__all__ = ["PRIVILEGED_ROOT", "default_state_root", "is_rootless", "running_in_userns"]

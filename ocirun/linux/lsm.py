"""AppArmor and SELinux: is the LSM on, and what the init writes to set the exec label.

Both labels take effect at the container process's execve: the init writes
them to its own ``/proc/<tid>/attr/...`` (through a procfs instance it
mounted itself, see ocirun/shim/src/process_attrs.c).

A profile or label asked for on a host whose LSM is off is an error (the
container would run unconfined while its config says otherwise).
``linux.mountLabel`` is applied to the container's mounts only when SELinux
is on; with SELinux off it is ignored, as crun does (runc 1.1 fails to
mount instead), because a label no kernel enforces confines nothing.
"""

from __future__ import annotations

import os

from ocirun.errors import ConfigError, Problem

_APPARMOR_ENABLED = "/sys/module/apparmor/parameters/enabled"
_APPARMOR_FS = "/sys/kernel/security/apparmor"
_SELINUX_FS = "/sys/fs/selinux"


def apparmor_enabled() -> bool:
    """AppArmor is the running kernel's LSM and its securityfs is there (runc's test)."""
    try:
        with open(_APPARMOR_ENABLED) as f:
            on = f.read().strip() == "Y"
    except OSError:
        return False
    return on and os.path.isdir(_APPARMOR_FS)


def selinux_enabled() -> bool:
    """selinuxfs is mounted (the kernel runs SELinux, enforcing or permissive)."""
    return os.path.exists(os.path.join(_SELINUX_FS, "enforce"))


def exec_label(apparmor_profile: str | None, selinux_label: str | None) -> tuple[bytes, bytes] | None:
    """(attr file below /proc/<tid>, bytes to write) for the process's exec label, or None."""
    problems = []
    if apparmor_profile and not apparmor_enabled():
        problems.append(Problem("$.process.apparmorProfile",
                                f"cannot apply AppArmor profile {apparmor_profile!r}: "
                                "AppArmor is not enabled on this host"))
    if selinux_label and not selinux_enabled():
        problems.append(Problem("$.process.selinuxLabel",
                                f"cannot apply SELinux label {selinux_label!r}: SELinux is not enabled on this host"))
    if apparmor_profile and selinux_label and not problems:
        problems.append(Problem("$.process", "apparmorProfile and selinuxLabel together are not supported"))
    if problems:
        raise ConfigError("config.json", problems)
    if apparmor_profile:
        # the per-LSM file (Linux 5.8+) is right even with stacked LSMs; else the shared one
        attr = b"attr/apparmor/exec" if os.path.exists("/proc/self/attr/apparmor/exec") else b"attr/exec"
        return attr, b"exec " + apparmor_profile.encode()
    if selinux_label:
        return b"attr/exec", selinux_label.encode()
    return None


def mount_label_option(mount_label: str | None) -> str | None:
    """The ``context=`` mount option for linux.mountLabel, or None (no label, or SELinux off)."""
    if not mount_label or not selinux_enabled():
        return None
    return f'context="{mount_label}"'

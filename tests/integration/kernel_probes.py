"""Probes of optional kernel features the integration tests use.

A test that needs something a kernel of this kind (Debian 12: 6.1 and the
backports' 6.x, any configuration) may lack asks here first and leaves that
part out, or skips saying what is missing; it never assumes. Each probe asks
the kernel directly (a file that exists or not, a syscall that says EINVAL or
not), never the kernel version, and never through ocirun's own code.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import subprocess
import time
from pathlib import Path

_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# x86_64 and arm64 share these numbers (the new syscall table)
SYS_OPEN_TREE, SYS_FSOPEN, SYS_FSCONFIG, SYS_FSMOUNT, SYS_MOUNT_SETATTR = 428, 430, 431, 432, 442
SYS_MSEAL = 462
SYS_SECCOMP = 317 if os.uname().machine == "x86_64" else 277
SYS_SET_MEMPOLICY = 238 if os.uname().machine == "x86_64" else 237


def v1_file(controller: str, name: str) -> bool:
    """A cgroup v1 interface file the hierarchy of ``controller`` offers (its root has
    the same files as a child, but for a few root-only ones)."""
    return Path("/sys/fs/cgroup", controller, name).exists()


def namespace(kind: str) -> bool:
    """The kernel has namespaces of this kind (/proc/self/ns/<kind>: time, cgroup...)."""
    return os.path.exists(f"/proc/self/ns/{kind}")


def hugepage_size(kib: int) -> bool:
    return os.path.isdir(f"/sys/kernel/mm/hugepages/hugepages-{kib}kB")


def syscall_exists(nr: int, *args: int) -> bool:
    """Whether syscall ``nr`` exists (called with harmless ``args``: anything but ENOSYS)."""
    if _libc.syscall(nr, *[ctypes.c_long(a) for a in args]) == -1:
        return ctypes.get_errno() != errno.ENOSYS
    return True


# seccomp(2) flags, as linux/seccomp.h numbers them
SECCOMP_FILTER_FLAGS = {"SECCOMP_FILTER_FLAG_TSYNC": 1, "SECCOMP_FILTER_FLAG_LOG": 2,
                        "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 4, "SECCOMP_FILTER_FLAG_NEW_LISTENER": 8,
                        "SECCOMP_FILTER_FLAG_TSYNC_ESRCH": 16, "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 32}


@functools.cache
def seccomp_flags(*names: str) -> bool:
    """Whether the kernel takes these filter flags together: seccomp(SET_MODE_FILTER,
    flags, NULL) checks the flags first (EINVAL) and only then reads the program (EFAULT)."""
    flags = 0
    for name in names:
        flags |= SECCOMP_FILTER_FLAGS[name]
    if _libc.syscall(SYS_SECCOMP, 1, flags, None) == -1:
        return ctypes.get_errno() == errno.EFAULT
    return True  # cannot happen with a NULL program


MPOL_MODES = {"MPOL_DEFAULT": 0, "MPOL_PREFERRED": 1, "MPOL_BIND": 2, "MPOL_INTERLEAVE": 3,
              "MPOL_LOCAL": 4, "MPOL_PREFERRED_MANY": 5, "MPOL_WEIGHTED_INTERLEAVE": 6}
MPOL_FLAGS = {"MPOL_F_NUMA_BALANCING": 1 << 13, "MPOL_F_RELATIVE_NODES": 1 << 14,
              "MPOL_F_STATIC_NODES": 1 << 15}


@functools.cache
def memory_policy(mode: str, flags: tuple[str, ...] = (), nodes: bool = True) -> bool:
    """Whether set_mempolicy(2) takes this mode and these flags (on node 0), tried in a
    child process so that ours keeps its policy."""
    value = MPOL_MODES[mode]
    for f in flags:
        value |= MPOL_FLAGS[f]
    pid = os.fork()
    if pid == 0:  # only the syscall: no Python cleanup in the child
        mask = ctypes.c_ulong(1)
        rc = _libc.syscall(SYS_SET_MEMPOLICY, value, ctypes.byref(mask) if nodes else None,
                           ctypes.c_ulong(64 if nodes else 0))
        os._exit(0 if rc == 0 else 1)
    return os.waitpid(pid, 0)[1] == 0


def _user_namespace_fd() -> tuple[int, subprocess.Popen]:
    """An fd of a new user namespace mapping 0 to 0 (a sleeping `unshare -Ur`)."""
    proc = subprocess.Popen(["unshare", "--user", "--map-root-user", "sleep", "30"])
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{proc.pid}/uid_map").read_text().strip() and \
                    os.readlink(f"/proc/{proc.pid}/ns/user") != os.readlink("/proc/self/ns/user"):
                return os.open(f"/proc/{proc.pid}/ns/user", os.O_RDONLY | os.O_CLOEXEC), proc
        except OSError:
            pass
        time.sleep(0.01)
    proc.kill()
    proc.wait()
    raise RuntimeError("unshare --user did not start")


def _idmap(tree: int, userns: int) -> bool:
    class MountAttr(ctypes.Structure):
        _fields_ = [("attr_set", ctypes.c_uint64), ("attr_clr", ctypes.c_uint64),
                    ("propagation", ctypes.c_uint64), ("userns_fd", ctypes.c_uint64)]

    attr = MountAttr(0x00100000, 0, 0, userns)  # MOUNT_ATTR_IDMAP
    return _libc.syscall(SYS_MOUNT_SETATTR, tree, b"", 0x1000, ctypes.byref(attr),  # AT_EMPTY_PATH
                         ctypes.c_size_t(ctypes.sizeof(attr))) == 0


@functools.cache
def idmapped_mounts(path: str | None = None) -> bool:
    """Whether the filesystem at ``path`` (None: a new tmpfs) can be id-mapped
    (mount_setattr(MOUNT_ATTR_IDMAP) on a detached copy; nothing is attached)."""
    userns, proc = _user_namespace_fd()
    tree = -1
    try:
        if path is not None:
            tree = _libc.syscall(SYS_OPEN_TREE, -100, path.encode(), 1 | os.O_CLOEXEC)  # OPEN_TREE_CLONE
        else:
            fs = _libc.syscall(SYS_FSOPEN, b"tmpfs", 1)  # FSOPEN_CLOEXEC
            if fs < 0:
                return False
            try:
                if _libc.syscall(SYS_FSCONFIG, fs, 6, None, None, 0) < 0:  # FSCONFIG_CMD_CREATE
                    return False
                tree = _libc.syscall(SYS_FSMOUNT, fs, 1, 0)  # FSMOUNT_CLOEXEC
            finally:
                os.close(fs)
        return tree >= 0 and _idmap(tree, userns)
    finally:
        if tree >= 0:
            os.close(tree)
        os.close(userns)
        proc.kill()
        proc.wait()


@functools.cache
def link_kind(kind: str) -> bool:
    """Whether ``ip link add ... type KIND`` works here (veth, dummy: drivers that
    may be modules, or missing)."""
    name = f"ocitest-p{os.getpid() % 100000}"
    args = ["ip", "link", "add", name, "type", kind]
    if kind == "veth":
        args += ["peer", "name", name + "b"]
    if subprocess.run(args, capture_output=True).returncode != 0:
        return False
    subprocess.run(["ip", "link", "del", name], capture_output=True)
    return True

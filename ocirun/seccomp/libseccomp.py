"""libseccomp.so.2 through cffi (out-of-line ABI mode), plus the kernel probes.

Imported lazily (only when a config has ``linux.seccomp`` or ``features`` asks):
nothing on the path of ``state``/``kill``/``delete`` loads it.

Everything host-dependent lives here: which actions, flags and architectures
this libseccomp and this kernel support. Answers are computed once per process.
"""

from __future__ import annotations

import errno as _errno
import functools
import os

from ocirun.errors import OcirunError

TYPE_CHECKING = False  # typing is for annotations only: not imported by create (docs/performance.md)
if TYPE_CHECKING:
    from typing import Any

# --------------------------------------------------------------------------- constants
# (seccomp.h of libseccomp, linux/seccomp.h)

SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_KILL_THREAD = 0x00000000
SCMP_ACT_TRAP = 0x00030000
SCMP_ACT_NOTIFY = 0x7FC00000
SCMP_ACT_ERRNO_BASE = 0x00050000
SCMP_ACT_TRACE_BASE = 0x7FF00000
SCMP_ACT_LOG = 0x7FFC0000
SCMP_ACT_ALLOW = 0x7FFF0000


def act_errno(err: int) -> int:
    return SCMP_ACT_ERRNO_BASE | (err & 0xFFFF)


def act_trace(msg: int) -> int:
    return SCMP_ACT_TRACE_BASE | (msg & 0xFFFF)


# enum scmp_compare
SCMP_CMP = {
    "SCMP_CMP_NE": 1,
    "SCMP_CMP_LT": 2,
    "SCMP_CMP_LE": 3,
    "SCMP_CMP_EQ": 4,
    "SCMP_CMP_GE": 5,
    "SCMP_CMP_GT": 6,
    "SCMP_CMP_MASKED_EQ": 7,
}

# enum scmp_filter_attr
SCMP_FLTATR_CTL_NNP = 3
SCMP_FLTATR_CTL_LOG = 6
SCMP_FLTATR_CTL_SSB = 7
SCMP_FLTATR_CTL_OPTIMIZE = 8

#: __NR_SCMP_ERROR: what seccomp_syscall_resolve_name returns for an unknown name.
NR_SCMP_ERROR = -1

# seccomp(2)
SECCOMP_SET_MODE_FILTER = 1
SECCOMP_GET_ACTION_AVAIL = 2
SECCOMP_FILTER_FLAG_TSYNC = 1 << 0
SECCOMP_FILTER_FLAG_LOG = 1 << 1
SECCOMP_FILTER_FLAG_SPEC_ALLOW = 1 << 2
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
SECCOMP_FILTER_FLAG_TSYNC_ESRCH = 1 << 4
SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV = 1 << 5

#: The kernel's return values (SECCOMP_RET_*), for the probes and for decoding.
SECCOMP_RET_KILL_PROCESS = 0x80000000
SECCOMP_RET_KILL_THREAD = 0x00000000
SECCOMP_RET_TRAP = 0x00030000
SECCOMP_RET_ERRNO = 0x00050000
SECCOMP_RET_USER_NOTIF = 0x7FC00000
SECCOMP_RET_TRACE = 0x7FF00000
SECCOMP_RET_LOG = 0x7FFC0000
SECCOMP_RET_ALLOW = 0x7FFF0000

#: Minimum libseccomp API level (seccomp_api_get) for each action beyond the base ones.
_ACTION_API = {SCMP_ACT_KILL_PROCESS: 3, SCMP_ACT_LOG: 3, SCMP_ACT_NOTIFY: 5}


class LibseccompMissing(OcirunError):
    def __init__(self, err: str) -> None:
        super().__init__(
            f"seccomp: cannot load libseccomp.so.2 ({err}): install the libseccomp2 package")


# --------------------------------------------------------------------------- loading


@functools.cache
def _load() -> tuple[Any, Any, Any]:
    from ocirun.seccomp._libseccomp_ffi import ffi

    try:
        lib = ffi.dlopen("libseccomp.so.2")
    except OSError as err:
        raise LibseccompMissing(str(err)) from None
    libc = ffi.dlopen(None)
    return ffi, lib, libc


def ffi() -> Any:
    return _load()[0]


def lib() -> Any:
    return _load()[1]


@functools.cache
def version() -> tuple[int, int, int]:
    v = lib().seccomp_version()
    return (int(v.major), int(v.minor), int(v.micro))


def version_string() -> str:
    return ".".join(map(str, version()))


@functools.cache
def api_level() -> int:
    return int(lib().seccomp_api_get())


@functools.cache
def native_arch() -> int:
    return int(lib().seccomp_arch_native())


def arch_token(name: str) -> int:
    """libseccomp's token for a lower-case arch name ("x86_64"); 0 when unknown to it."""
    return int(lib().seccomp_arch_resolve_name(name.encode()))


@functools.cache
def _nr_seccomp() -> int:
    nr = int(lib().seccomp_syscall_resolve_name(b"seccomp"))
    if nr < 0:
        raise OcirunError("seccomp: libseccomp does not know the seccomp syscall on this arch")
    return nr


def _seccomp(op: int, flags: int, arg: Any) -> int:
    """seccomp(2) through libc's syscall(); returns 0 or the errno."""
    f, _, libc = _load()
    f.errno = 0
    rc = libc.syscall(f.cast("long", _nr_seccomp()), f.cast("unsigned int", op),
                      f.cast("unsigned int", flags), arg)
    return 0 if rc == 0 else int(f.errno)


@functools.cache
def kernel_action_available(ret: int) -> bool:
    """SECCOMP_GET_ACTION_AVAIL: does this kernel know the SECCOMP_RET_* action?"""
    f = ffi()
    p = f.new("uint32_t *", ret & 0xFFFF0000)
    return _seccomp(SECCOMP_GET_ACTION_AVAIL, 0, p) == 0


@functools.cache
def kernel_flag_supported(flag: int) -> bool:
    """Does seccomp(SET_MODE_FILTER) accept the flag? (EFAULT for the NULL program: yes;
    EINVAL: no.) This is how libseccomp probes too. WAIT_KILLABLE_RECV is only valid
    together with NEW_LISTENER, so it is probed with it."""
    probe = flag
    if flag & SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV:
        probe |= SECCOMP_FILTER_FLAG_NEW_LISTENER
    return _seccomp(SECCOMP_SET_MODE_FILTER, probe, ffi().NULL) == _errno.EFAULT


def action_supported(action: int) -> bool:
    """Both this libseccomp (its API level) and this kernel know the action."""
    base = action & 0xFFFF0000
    if api_level() < _ACTION_API.get(base, 1):
        return False
    return kernel_action_available(base)


def strerror(rc: int) -> str:
    return os.strerror(-rc).lower() if rc < 0 else f"error {rc}"

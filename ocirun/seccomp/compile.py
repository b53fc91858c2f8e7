"""``linux.seccomp`` → a BPF program (``struct sock_filter[]`` bytes) + seccomp(2) flags.

Python decides, C does: the filter is compiled here, in the parent, with the
system libseccomp, exported as raw BPF, and handed to the C child, which only
calls ``seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog)``.

Semantics follow runc 1.1 (libcontainer/seccomp/seccomp_linux.go):

* ``SCMP_ACT_KILL`` is ``SCMP_ACT_KILL_THREAD``; ``SCMP_ACT_ERRNO`` and
  ``SCMP_ACT_TRACE`` return ``errnoRet`` (default ``EPERM``).
* The native arch is always in the filter (``seccomp_init`` adds it);
  ``architectures`` adds more.
* A rule whose action equals the default action is skipped (libseccomp refuses it).
* A syscall name this libseccomp does not know is skipped: the profile is
  written for many kernels.
* Several ``args`` on *different* indexes form one rule (all must match); when
  two or more share an index, each arg becomes a rule of its own (any matches),
  as runc does.
* ``SECCOMP_FILTER_FLAG_TSYNC`` is accepted and ignored (the init is single-threaded);
  ``LOG``, ``SPEC_ALLOW`` and ``WAIT_KILLABLE_RECV`` are passed to seccomp(2)
  by the child (they change how the filter is loaded, not the BPF);
  ``NEW_LISTENER`` is added when a rule uses ``SCMP_ACT_NOTIFY``.
* With more than 32 rules libseccomp's binary-tree optimisation is enabled.
* runc's -ENOSYS stub comes first: syscalls newer than the profile get ENOSYS,
  not the default action (``enosys.py``).
"""

from __future__ import annotations

import errno as _errno
import functools
import os

from ocirun.errors import ConfigError, OcirunError, Problem
from ocirun.util.record import record

TYPE_CHECKING = False  # typing: not imported by create (docs/performance.md)
if TYPE_CHECKING:
    from ocirun.seccomp.cache import FilterCache
    from ocirun.spec.model import Seccomp, SyscallRule

_BASE = "$.linux.seccomp"

#: Spec action name → libseccomp base action (ERRNO/TRACE take errnoRet in the low 16 bits).
ACTIONS = {
    "SCMP_ACT_KILL": 0x00000000,  # = SCMP_ACT_KILL_THREAD, as runc
    "SCMP_ACT_KILL_THREAD": 0x00000000,
    "SCMP_ACT_KILL_PROCESS": 0x80000000,
    "SCMP_ACT_TRAP": 0x00030000,
    "SCMP_ACT_ERRNO": 0x00050000,
    "SCMP_ACT_TRACE": 0x7FF00000,
    "SCMP_ACT_ALLOW": 0x7FFF0000,
    "SCMP_ACT_LOG": 0x7FFC0000,
    "SCMP_ACT_NOTIFY": 0x7FC00000,
}
_WITH_ERRNO = ("SCMP_ACT_ERRNO", "SCMP_ACT_TRACE")

OPERATORS = (
    "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE", "SCMP_CMP_EQ",
    "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_MASKED_EQ",
)

#: Spec flag name → seccomp(2) flag bit (0: accepted, nothing to pass).
FLAGS = {
    "SECCOMP_FILTER_FLAG_TSYNC": 0,
    "SECCOMP_FILTER_FLAG_LOG": 1 << 1,
    "SECCOMP_FILTER_FLAG_SPEC_ALLOW": 1 << 2,
    "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV": 1 << 5,
}
SECCOMP_FILTER_FLAG_NEW_LISTENER = 1 << 3
_EPERM = _errno.EPERM
#: Syscalls the init needs to pass the listener fd to its parent (runc refuses write).
_NOT_NOTIFIABLE = ("write", "sendmsg")
_OPTIMIZE_ABOVE = 32  # rules; runc's threshold for the binary tree
BPF_MAXINSNS = 4096  # the kernel refuses longer programs (EINVAL)


def arch_name(spec_arch: str) -> str:
    """``SCMP_ARCH_X86_64`` → libseccomp's name ``x86_64``."""
    return spec_arch.removeprefix("SCMP_ARCH_").lower()


@record(slots=True)
class CompiledFilter:
    #: The BPF program: ``struct sock_filter`` (u16 code, u8 jt, u8 jf, u32 k) × n, native endian.
    bpf: bytes
    #: Flags for seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog), NEW_LISTENER included.
    flags: int
    #: A rule uses SCMP_ACT_NOTIFY: loading returns a listener fd for listenerPath.
    uses_notify: bool

    @property
    def instructions(self) -> int:
        return len(self.bpf) // 8


class SeccompConfigError(ConfigError):
    """The seccomp section asks for something this host's libseccomp or kernel lacks,
    or that cannot work (a JSON path says where)."""

    def __init__(self, path: str, message: str, source: str = "config.json") -> None:
        self.path = path
        self.message = message
        super().__init__(source, [Problem(path, message)])

    def in_file(self, source: str) -> SeccompConfigError:
        """The same error naming the config file by its path, as the schema errors do."""
        return SeccompConfigError(self.path, self.message, source)


def compile_config_filter(sc: Seccomp, config_path: str) -> CompiledFilter:
    """compile_filter with the default cache, errors naming ``config_path`` (create, exec)."""
    from ocirun.seccomp.cache import FilterCache

    try:
        return compile_filter(sc, FilterCache())
    except SeccompConfigError as e:
        raise e.in_file(config_path) from None


# --------------------------------------------------------------------------- pure part


def action_value(name: str, errno_ret: int | None, path: str, errno_path: str | None = None) -> int:
    """The libseccomp action for a spec action name (runc's getAction)."""
    errno_path = errno_path or path
    try:
        base = ACTIONS[name]
    except KeyError:
        raise SeccompConfigError(path, f"unknown seccomp action {name!r}") from None
    if name in _WITH_ERRNO:
        err = _EPERM if errno_ret is None else errno_ret
        if not 0 <= err <= 0xFFFF:
            raise SeccompConfigError(errno_path, f"errnoRet {err} does not fit in 16 bits")
        return base | err
    if errno_ret is not None:
        raise SeccompConfigError(errno_path, f"{name} does not return an errno")
    return base


def filter_flags(sc: Seccomp) -> tuple[int, bool]:
    """(seccomp(2) flags, uses notify) from the config alone; refuses what cannot work."""
    flags = 0
    for i, name in enumerate(sc.flags):
        try:
            flags |= FLAGS[name]
        except KeyError:
            raise SeccompConfigError(f"{_BASE}.flags[{i}]", f"unknown seccomp flag {name!r}") from None
    uses_notify = False
    for i, rule in enumerate(sc.syscalls):
        if rule.action != "SCMP_ACT_NOTIFY":
            continue
        uses_notify = True
        for j, name in enumerate(rule.names):
            # The init hands the listener fd to its parent after loading the filter
            # (runc: write; ocirun: sendmsg with SCM_RIGHTS). Notified, that call would
            # wait for the agent, who waits for the fd: it never returns.
            if name in _NOT_NOTIFIABLE:
                raise SeccompConfigError(f"{_BASE}.syscalls[{i}].names[{j}]",
                                         f"SCMP_ACT_NOTIFY cannot be used for the {name} syscall "
                                         "(the runtime needs it to hand the listener fd over)")
    if sc.default_action == "SCMP_ACT_NOTIFY":
        raise SeccompConfigError(f"{_BASE}.defaultAction", "SCMP_ACT_NOTIFY cannot be the default action")
    if uses_notify:
        flags |= SECCOMP_FILTER_FLAG_NEW_LISTENER
    elif flags & FLAGS["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]:
        i = sc.flags.index("SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV")
        raise SeccompConfigError(f"{_BASE}.flags[{i}]",
                                 "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV needs an SCMP_ACT_NOTIFY rule "
                                 "(the kernel refuses it without a listener)")
    return flags, uses_notify


def canonical_json(sc: Seccomp) -> bytes:
    """What the BPF depends on, canonically (listenerPath/listenerMetadata do not count)."""
    d = sc.to_dict()
    d.pop("listenerPath", None)
    d.pop("listenerMetadata", None)
    from ocirun.util.jsonio import dumps  # json's encoder without importing json (~2 ms)

    return dumps(d, sort_keys=True, separators=(",", ":")).encode()


def cache_key(sc: Seccomp) -> str:
    """sha256 of the canonical seccomp section + libseccomp version + the kernel (release,
    arch) + the code that turns a config into BPF.

    The kernel release is in the key too: which actions and flags are accepted
    depends on it, and a cached filter must never skip those checks on a new kernel.
    The code is in it so that an upgraded ocirun (or a changed working tree) never
    loads a program an older compiler made for the same config.
    """
    from ocirun.seccomp import libseccomp as ls
    from ocirun.seccomp.cache import sha256

    u = os.uname()
    h = sha256(canonical_json(sc))
    h.update(f"\0libseccomp={ls.version_string()}\0{u.machine}\0{u.release}\0".encode())
    h.update(_compiler_digest())
    return h.hexdigest()


_COMPILER_SOURCES = ("compile.py", "enosys.py", "bpf.py")


@functools.cache
def _compiler_digest() -> bytes:
    """sha256 of the modules whose code decides the BPF (~20 µs: three small reads)."""
    from ocirun.seccomp.cache import sha256

    h = sha256()
    here = os.path.dirname(os.path.abspath(__file__))
    for name in _COMPILER_SOURCES:
        with open(os.path.join(here, name), "rb") as f:
            h.update(f.read())
    return h.digest()


# --------------------------------------------------------------------------- compile


def compile_filter(sc: Seccomp, cache: FilterCache | None = None) -> CompiledFilter:
    """Compile ``linux.seccomp``; with a cache, reuse a filter compiled from the same content."""
    flags, uses_notify = filter_flags(sc)
    key = None
    if cache is not None:
        key = cache_key(sc)
        bpf = cache.get(key)
        if bpf is not None:
            return CompiledFilter(bpf, flags, uses_notify)
    bpf = compile_bpf(sc)
    if cache is not None and key is not None:
        cache.put(key, bpf)
    return CompiledFilter(bpf, flags, uses_notify)


def compile_bpf(sc: Seccomp) -> bytes:
    """The BPF bytes for the seccomp section (always compiles; no cache)."""
    from ocirun.seccomp import libseccomp as ls

    lib, ffi = ls.lib(), ls.ffi()

    default = action_value(sc.default_action, sc.default_errno_ret, f"{_BASE}.defaultAction",
                           f"{_BASE}.defaultErrnoRet")
    _require_action(default, sc.default_action, f"{_BASE}.defaultAction")
    ctx = lib.seccomp_init(default)
    if ctx == ffi.NULL:
        raise SeccompConfigError(f"{_BASE}.defaultAction",
                                 f"libseccomp {ls.version_string()} refused {sc.default_action}")
    try:
        for i, arch in enumerate(sc.architectures):
            token = ls.arch_token(arch_name(arch))
            if token == 0:
                raise SeccompConfigError(f"{_BASE}.architectures[{i}]",
                                         f"{arch} is not supported by libseccomp {ls.version_string()}")
            rc = lib.seccomp_arch_add(ctx, token)
            if rc < 0 and rc != -_errno.EEXIST:  # the native arch is already there
                raise SeccompConfigError(f"{_BASE}.architectures[{i}]",
                                         f"libseccomp cannot add {arch}: {ls.strerror(rc)}")
        for i, name in enumerate(sc.flags):
            _check_flag(ctx, name, f"{_BASE}.flags[{i}]")
        if len(sc.syscalls) > _OPTIMIZE_ABOVE:
            lib.seccomp_attr_set(ctx, ls.SCMP_FLTATR_CTL_OPTIMIZE, 2)  # best effort, as runc
        for i, rule in enumerate(sc.syscalls):
            _add_rule(ctx, rule, i, default)
        bpf = _export(ctx)
    finally:
        lib.seccomp_release(ctx)
    # runc's -ENOSYS stub for syscalls newer than the profile (enosys.py says why).
    from ocirun.seccomp.bpf import encode
    from ocirun.seccomp.enosys import enosys_stub

    bpf = encode(enosys_stub(sc)) + bpf
    if len(bpf) // 8 > BPF_MAXINSNS:
        raise SeccompConfigError(f"{_BASE}.syscalls", f"the filter is {len(bpf) // 8} BPF instructions long: "
                                                      f"the kernel loads at most {BPF_MAXINSNS}")
    return bpf


def _require_action(action: int, name: str, path: str) -> None:
    from ocirun.seccomp import libseccomp as ls

    if not ls.action_supported(action):
        raise SeccompConfigError(
            path, f"{name} is not supported on this host (libseccomp {ls.version_string()}, "
                  f"API level {ls.api_level()}, kernel {os.uname().release})")


def _check_flag(ctx, name: str, path: str) -> None:
    """Refuse a flag this libseccomp/kernel cannot apply. LOG and SPEC_ALLOW go through
    seccomp_attr_set (libseccomp checks its API level and the kernel); libseccomp 2.5
    has no attribute for WAIT_KILLABLE_RECV, so the kernel is asked directly. The
    child passes all of them to seccomp(2) itself: the attributes only matter to
    seccomp_load, which ocirun does not use."""
    from ocirun.seccomp import libseccomp as ls

    bit = FLAGS[name]
    if name == "SECCOMP_FILTER_FLAG_LOG":
        rc = ls.lib().seccomp_attr_set(ctx, ls.SCMP_FLTATR_CTL_LOG, 1)
    elif name == "SECCOMP_FILTER_FLAG_SPEC_ALLOW":
        rc = ls.lib().seccomp_attr_set(ctx, ls.SCMP_FLTATR_CTL_SSB, 1)
    else:
        rc = 0
    if rc < 0 or (bit and not ls.kernel_flag_supported(bit)):
        raise SeccompConfigError(
            path, f"{name} is not supported on this host (libseccomp {ls.version_string()}, "
                  f"kernel {os.uname().release})")


def _add_rule(ctx, rule: SyscallRule, i: int, default: int) -> None:
    from ocirun.seccomp import libseccomp as ls

    lib, ffi = ls.lib(), ls.ffi()
    path = f"{_BASE}.syscalls[{i}]"
    action = action_value(rule.action, rule.errno_ret, f"{path}.action", f"{path}.errnoRet")
    _require_action(action, rule.action, f"{path}.action")
    if action == default:
        return  # redundant; libseccomp would refuse it

    conds = ffi.new("struct scmp_arg_cmp[]", max(1, len(rule.args)))
    indexes = []
    for j, arg in enumerate(rule.args):
        op = ls.SCMP_CMP.get(arg.op)
        if op is None:
            raise SeccompConfigError(f"{path}.args[{j}].op", f"unknown seccomp operator {arg.op!r}")
        if not 0 <= arg.index < 6:
            raise SeccompConfigError(f"{path}.args[{j}].index", f"{arg.index} is not a syscall argument index (0..5)")
        c = conds[j]
        c.arg = arg.index
        c.op = op
        c.datum_a = arg.value
        c.datum_b = arg.value_two or 0
        indexes.append(arg.index)
    # runc: two args on the same index cannot be one rule (libseccomp refuses it);
    # then every arg becomes a rule of its own.
    groups: list[tuple[int, int]]  # (first cond, count)
    if len(set(indexes)) < len(indexes):
        groups = [(j, 1) for j in range(len(indexes))]
    else:
        groups = [(0, len(indexes))]

    for j, name in enumerate(rule.names):
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr == ls.NR_SCMP_ERROR:
            continue  # unknown to this libseccomp: skipped, as runc does
        for first, count in groups:
            rc = lib.seccomp_rule_add_array(ctx, action, nr, count,
                                            conds + first if count else ffi.NULL)
            if rc < 0:
                raise SeccompConfigError(f"{path}.names[{j}]",
                                         f"libseccomp refused the rule for {name}: {ls.strerror(rc)}")


def _export(ctx) -> bytes:
    from ocirun.seccomp import libseccomp as ls

    # libseccomp 2.5 has no seccomp_export_bpf_mem (2.6 does): export into a memfd.
    fd = os.memfd_create("ocirun-seccomp-bpf", os.MFD_CLOEXEC)
    try:
        rc = ls.lib().seccomp_export_bpf(ctx, fd)
        if rc < 0:
            raise OcirunError(f"seccomp: export the BPF program: {ls.strerror(rc)}")
        size = os.fstat(fd).st_size
        data = os.pread(fd, size, 0)
    finally:
        os.close(fd)
    if not data or len(data) % 8:
        raise OcirunError(f"seccomp: libseccomp exported a malformed BPF program ({len(data)} bytes)")
    return data

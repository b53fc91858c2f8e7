"""The -ENOSYS stub runc prepends to every filter (its ``patchbpf``), same semantics.

Why: a profile is written for the syscalls its author knew. A newer syscall
(``fchmodat2``, ``mseal``, …) then falls to the default action, usually
``SCMP_ACT_ERRNO`` (EPERM); but libc only falls back to the older syscall on
*ENOSYS* ("the kernel does not have it"), so EPERM breaks programs in newer
images. runc therefore answers ENOSYS for every syscall number above the
largest one the profile names, and ocirun does the same, so that a profile
behaves the same under both.

runc's rules, kept exactly (checked by tests/integration/test_seccomp.py):

* No stub when the default action lets calls through (``SCMP_ACT_ALLOW``,
  ``SCMP_ACT_LOG``, ``SCMP_ACT_TRACE``), nor when the default already is ENOSYS.
* Only the architectures listed in ``architectures`` get a section; a profile
  without that list gets no stub at all.
* For each listed arch, the threshold is the largest number, on that arch, of
  any name in any rule (whatever the rule's action; names this libseccomp does
  not know do not count). An arch none of whose names resolve gets no section.
* x86_64 and x32 share AUDIT_ARCH_X86_64: the x32 bit (1<<30) of the number
  chooses the section; a call of the mode not listed goes to the filter.
* s390/s390x: syscall 0 (the multiplexer of unknown large numbers) is ENOSYS.
* Anything else falls through into libseccomp's program unchanged.
"""

from __future__ import annotations

import errno as _errno

from ocirun.seccomp.bpf import (
    BPF_ABS,
    BPF_JA,
    BPF_JEQ,
    BPF_JGT,
    BPF_JMP,
    BPF_JSET,
    BPF_K,
    BPF_LD,
    BPF_RET,
    BPF_W,
    X32_SYSCALL_BIT,
    Insn,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from ocirun.spec.model import Seccomp

SECCOMP_RET_ERRNO_ENOSYS = 0x00050000 | _errno.ENOSYS
#: Default actions that let unknown syscalls through: runc adds no stub then.
_PERMISSIVE = ("SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE")
_AUDIT_ARCH_X86_64 = 0xC000003E
_S390 = ("SCMP_ARCH_S390", "SCMP_ARCH_S390X")

# Labels of the two places every section ends at.
_ENOSYS, _FILTER = "enosys", "filter"
#: An instruction before assembly: (code, jt label, jf label, k).
_Asm = tuple[int, str | None, str | None, int]


def last_syscalls(sc: Seccomp) -> dict[int, dict[str, int]]:
    """{audit arch: {spec arch: largest syscall number of the profile on it}} (runc's
    findLastSyscalls). libseccomp's arch tokens are the kernel's AUDIT_ARCH_* values,
    except x32's, whose calls arrive as AUDIT_ARCH_X86_64 with the x32 bit set."""
    from ocirun.seccomp import libseccomp as ls
    from ocirun.seccomp.compile import arch_name

    lib = ls.lib()
    names = {n.encode() for rule in sc.syscalls for n in rule.names}
    out: dict[int, dict[str, int]] = {}
    for arch in dict.fromkeys(sc.architectures):
        token = ls.arch_token(arch_name(arch))
        if token == 0:
            continue  # refused with its JSON path by compile_bpf
        largest = max((lib.seccomp_syscall_resolve_name_arch(token, n) for n in names), default=0)
        if largest > 0:
            audit = _AUDIT_ARCH_X86_64 if arch == "SCMP_ARCH_X32" else token
            out.setdefault(audit, {})[arch] = largest
    return out


def needs_stub(sc: Seccomp) -> bool:
    if sc.default_action in _PERMISSIVE:
        return False
    # The default already answers ENOSYS (runc compares here too, wrongly, against
    # the whole action value, so it always adds the stub: the answers are the same).
    return not (sc.default_action == "SCMP_ACT_ERRNO" and sc.default_errno_ret == _errno.ENOSYS)


def enosys_stub(sc: Seccomp) -> list[Insn]:
    """The instructions to put before libseccomp's program (which only uses relative
    jumps, so it does not mind); [] when runc would add none."""
    if not needs_stub(sc):
        return []
    last = last_syscalls(sc)
    if not last:
        return []
    # A small assembler: labels are resolved at the end.
    prog: list[_Asm] = [(BPF_LD | BPF_W | BPF_ABS, None, None, 4)]  # arch
    sections: list[tuple[str, list[_Asm]]] = []
    for audit, per_arch in last.items():
        label = f"arch-{audit:#x}"
        prog.append((BPF_JMP | BPF_JEQ | BPF_K, label, None, audit))
        sections.append((label, _section(per_arch)))
    prog.append((BPF_JMP | BPF_JA, None, None, 0))  # other arches: to the filter
    jumps_to_filter = {len(prog) - 1}
    labels: dict[str, int] = {}
    for label, body in sections:
        labels[label] = len(prog)
        for insn in body:
            if insn[0] == BPF_JMP | BPF_JA:
                jumps_to_filter.add(len(prog))
            prog.append(insn)
    labels[_ENOSYS] = len(prog)
    prog.append((BPF_RET | BPF_K, None, None, SECCOMP_RET_ERRNO_ENOSYS))
    labels[_FILTER] = len(prog)

    out = []
    for pc, (code, jt, jf, k) in enumerate(prog):
        if pc in jumps_to_filter:
            k = labels[_FILTER] - pc - 1
        out.append(Insn(code, _offset(labels, jt, pc), _offset(labels, jf, pc), k))
    return out


def _section(per_arch: dict[str, int]) -> list[_Asm]:
    """ld nr; [s390: nr == 0 → ENOSYS]; nr > last → ENOSYS; else → the filter."""
    ld_nr: _Asm = (BPF_LD | BPF_W | BPF_ABS, None, None, 0)
    to_filter: _Asm = (BPF_JMP | BPF_JA, None, None, 0)
    if set(per_arch) == {"SCMP_ARCH_X86_64", "SCMP_ARCH_X32"}:
        return [ld_nr,
                (BPF_JMP | BPF_JSET | BPF_K, "x32", None, X32_SYSCALL_BIT),
                (BPF_JMP | BPF_JGT | BPF_K, _ENOSYS, _FILTER, per_arch["SCMP_ARCH_X86_64"]),
                (BPF_JMP | BPF_JGT | BPF_K, _ENOSYS, None, per_arch["SCMP_ARCH_X32"]),  # "x32"
                to_filter]
    ((arch, last),) = per_arch.items()
    body: list[_Asm] = [ld_nr]
    if arch == "SCMP_ARCH_X86_64":  # an x32 call: not this section's
        body.append((BPF_JMP | BPF_JSET | BPF_K, _FILTER, None, X32_SYSCALL_BIT))
    elif arch == "SCMP_ARCH_X32":  # an x86_64 call: not this section's
        body.append((BPF_JMP | BPF_JSET | BPF_K, None, _FILTER, X32_SYSCALL_BIT))
    if arch in _S390:
        body.append((BPF_JMP | BPF_JEQ | BPF_K, _ENOSYS, None, 0))
    body += [(BPF_JMP | BPF_JGT | BPF_K, _ENOSYS, None, last), to_filter]
    return body


def _offset(labels: dict[str, int], label: str | None, pc: int) -> int:
    if label is None:
        return 0
    if label == "x32":  # the instruction after the x86_64 comparison
        return 1
    off = labels[label] - pc - 1
    if not 0 <= off <= 255:
        raise ValueError(f"seccomp ENOSYS stub: conditional jump of {off}")
    return off

"""runc's -ENOSYS stub (patchbpf): syscalls newer than the profile get ENOSYS (no root).

The differential check against runc 1.1.5 is tests/integration/test_seccomp.py
(test_syscalls_newer_than_the_profile_*); here the rules, through the BPF interpreter.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from ocirun.seccomp import libseccomp as ls
from ocirun.seccomp.bpf import (
    AUDIT_ARCH_I386,
    AUDIT_ARCH_X86_64,
    BPF_K,
    BPF_RET,
    X32_SYSCALL_BIT,
    Insn,
    decode,
    evaluate,
)
from ocirun.seccomp.compile import compile_bpf
from ocirun.seccomp.enosys import enosys_stub, last_syscalls
from ocirun.spec.model import Seccomp

FIXTURE = Path(__file__).parent / "fixtures" / "seccomp-default-profile.json"
ENOSYS, EPERM, ALLOW = 0x50000 | errno.ENOSYS, 0x50000 | errno.EPERM, 0x7FFF0000
KILL_THREAD = 0
AUDIT_ARCH_S390X, AUDIT_ARCH_AARCH64 = 0x80000016, 0xC00000B7
NEWER = 1000  # above every syscall of every arch

pytestmark = pytest.mark.skipif(ls.native_arch() != AUDIT_ARCH_X86_64, reason="x86_64 numbers below")


def sc(default="SCMP_ACT_ERRNO", archs=("SCMP_ARCH_X86_64",), names=("getpid", "mkdir"), **kw) -> Seccomp:
    d = {"defaultAction": default, "syscalls": [{"names": list(names), "action": "SCMP_ACT_ALLOW"}], **kw}
    if archs is not None:
        d["architectures"] = list(archs)
    return Seccomp.from_dict(d)


def test_newer_syscalls_get_enosys_older_ones_the_default():
    f = compile_bpf(sc())
    assert evaluate(f, 83) == ALLOW  # mkdir: the largest listed, still the filter's
    assert evaluate(f, 84) == ENOSYS  # rmdir: above it
    assert evaluate(f, NEWER) == ENOSYS
    assert evaluate(f, 82) == EPERM  # rename: below it, not allowed: the default action


def test_the_threshold_counts_every_rule_whatever_its_action():
    # a rule with the default action is left out of libseccomp's program, but its
    # name still raises the threshold, as in runc
    s = Seccomp.from_dict({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_X86_64"],
                           "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ALLOW"},
                                        {"names": ["mount"], "action": "SCMP_ACT_ERRNO"}]})
    f = compile_bpf(s)
    assert evaluate(f, 165) == EPERM  # mount
    assert evaluate(f, 166) == ENOSYS


def test_names_unknown_to_libseccomp_do_not_count():
    assert last_syscalls(sc(names=("getpid", "no_such_syscall"))) == {AUDIT_ARCH_X86_64: {"SCMP_ARCH_X86_64": 39}}


@pytest.mark.parametrize("default", ["SCMP_ACT_ALLOW", "SCMP_ACT_LOG", "SCMP_ACT_TRACE"])
def test_no_stub_when_the_default_lets_calls_through(default):
    assert enosys_stub(sc(default)) == []


def test_no_stub_without_architectures():
    s = sc(archs=None)
    assert enosys_stub(s) == []
    assert evaluate(compile_bpf(s), NEWER) == EPERM


def test_no_stub_when_the_default_is_enosys_already():
    s = sc(defaultErrnoRet=errno.ENOSYS)
    assert enosys_stub(s) == []
    assert evaluate(compile_bpf(s), NEWER) == ENOSYS


@pytest.mark.parametrize("default", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_TRAP"])
def test_stub_with_other_defaults(default):
    assert evaluate(compile_bpf(sc(default)), NEWER) == ENOSYS


def test_only_listed_archs_get_a_section():
    f = compile_bpf(sc(archs=("SCMP_ARCH_X86",)))
    assert evaluate(f, NEWER, arch=AUDIT_ARCH_I386) == ENOSYS
    assert evaluate(f, NEWER) == EPERM  # native x86_64, not listed: no section


def test_x86_64_and_x32_are_told_apart_by_the_x32_bit():
    both = compile_bpf(sc(archs=("SCMP_ARCH_X86_64", "SCMP_ARCH_X32"), names=("mkdir",)))
    assert evaluate(both, 83) == ALLOW and evaluate(both, 84) == ENOSYS
    assert evaluate(both, 83 | X32_SYSCALL_BIT) == ALLOW and evaluate(both, 84 | X32_SYSCALL_BIT) == ENOSYS
    only64 = compile_bpf(sc(archs=("SCMP_ARCH_X86_64",), names=("mkdir",)))
    # an x32 call: not in the filter at all, libseccomp's bad-arch action
    assert evaluate(only64, NEWER | X32_SYSCALL_BIT) == KILL_THREAD
    only32 = compile_bpf(sc(archs=("SCMP_ARCH_X32",), names=("mkdir",)))
    assert evaluate(only32, NEWER | X32_SYSCALL_BIT) == ENOSYS
    assert evaluate(only32, NEWER) == EPERM  # x86_64 (native): no section


def test_s390x_syscall_zero_is_enosys():
    # libseccomp cannot put a big-endian arch in an x86_64 filter: the stub alone,
    # followed by "allow"
    f = [*enosys_stub(sc(archs=("SCMP_ARCH_S390X",), names=("mkdir",))), Insn(BPF_RET | BPF_K, 0, 0, ALLOW)]
    assert evaluate(f, 0, arch=AUDIT_ARCH_S390X) == ENOSYS
    assert evaluate(f, 39, arch=AUDIT_ARCH_S390X) == ALLOW  # s390x mkdir
    assert evaluate(f, 40, arch=AUDIT_ARCH_S390X) == ENOSYS


def test_other_arches_fall_through_to_the_filter():
    f = compile_bpf(sc(archs=("SCMP_ARCH_X86_64", "SCMP_ARCH_AARCH64"), names=("mkdirat",)))
    assert evaluate(f, 34, arch=AUDIT_ARCH_AARCH64) == ALLOW  # aarch64 mkdirat
    assert evaluate(f, NEWER, arch=AUDIT_ARCH_AARCH64) == ENOSYS
    assert evaluate(f, NEWER, arch=AUDIT_ARCH_I386) == KILL_THREAD


def test_default_profile():
    profile = Seccomp.from_dict(json.loads(FIXTURE.read_text()))
    f = compile_bpf(profile)
    stub = enosys_stub(profile)
    assert 0 < len(stub) < 32 and decode(f)[:len(stub)] == stub
    assert evaluate(f, NEWER) == ENOSYS and evaluate(f, NEWER, arch=AUDIT_ARCH_I386) == ENOSYS
    assert evaluate(f, NEWER | X32_SYSCALL_BIT) == ENOSYS
    assert evaluate(f, 165) == EPERM  # mount: known, refused
    assert evaluate(f, 39) == ALLOW

"""linux.seccomp → BPF: actions, operators, args, archs, flags, errors (no root needed).

The BPF is checked by running it through ocirun.seccomp.bpf.evaluate (a classic-BPF
interpreter over struct seccomp_data); test_seccomp_run.py loads filters for real.
"""

from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest

from ocirun.seccomp import CompiledFilter, SeccompConfigError, compile_filter
from ocirun.seccomp import libseccomp as ls
from ocirun.seccomp.bpf import (
    AUDIT_ARCH_I386,
    AUDIT_ARCH_X86_64,
    X32_SYSCALL_BIT,
    decode,
    evaluate,
    return_values,
)
from ocirun.seccomp.compile import canonical_json, compile_bpf, filter_flags
from ocirun.spec.model import Seccomp

FIXTURE = Path(__file__).parent / "fixtures" / "seccomp-default-profile.json"

pytestmark = pytest.mark.skipif(ls.native_arch() != AUDIT_ARCH_X86_64,
                                reason="syscall numbers below are x86_64's")

NR = {"getppid": 110, "getpid": 39, "mkdir": 83, "mount": 165, "personality": 135,
      "socket": 41, "clone": 56, "clone3": 435, "lseek": 8}
ALLOW, LOG, TRAP, NOTIFY = 0x7FFF0000, 0x7FFC0000, 0x00030000, 0x7FC00000
KILL_THREAD, KILL_PROCESS = 0x00000000, 0x80000000


def errno_ret(e: int) -> int:
    return 0x00050000 | e


def trace_ret(e: int) -> int:
    return 0x7FF00000 | e


def sc(default="SCMP_ACT_ALLOW", syscalls=(), **kw) -> Seccomp:
    return Seccomp.from_dict({"defaultAction": default, "syscalls": list(syscalls), **kw})


def rule(names, action, **kw) -> dict:
    return {"names": [names] if isinstance(names, str) else list(names), "action": action, **kw}


def run(f: Seccomp | bytes, name: str, *args: int, arch: int = AUDIT_ARCH_X86_64) -> int:
    bpf = f if isinstance(f, bytes) else compile_bpf(f)
    return evaluate(bpf, NR[name], arch=arch, args=args)


# --------------------------------------------------------------------------- actions


@pytest.mark.parametrize(("action", "expected"), [
    ("SCMP_ACT_KILL", KILL_THREAD),
    ("SCMP_ACT_KILL_THREAD", KILL_THREAD),
    ("SCMP_ACT_KILL_PROCESS", KILL_PROCESS),
    ("SCMP_ACT_TRAP", TRAP),
    ("SCMP_ACT_ERRNO", errno_ret(errno.EPERM)),  # runc's default errno
    ("SCMP_ACT_TRACE", trace_ret(errno.EPERM)),
    ("SCMP_ACT_LOG", LOG),
    ("SCMP_ACT_NOTIFY", NOTIFY),
])
def test_every_action_as_a_rule(action, expected):
    f = sc(syscalls=[rule("getppid", action)])
    assert run(f, "getppid") == expected
    assert run(f, "getpid") == ALLOW


@pytest.mark.parametrize(("action", "expected"), [
    ("SCMP_ACT_KILL", KILL_THREAD),
    ("SCMP_ACT_KILL_PROCESS", KILL_PROCESS),
    ("SCMP_ACT_KILL_THREAD", KILL_THREAD),
    ("SCMP_ACT_TRAP", TRAP),
    ("SCMP_ACT_ERRNO", errno_ret(errno.EPERM)),
    ("SCMP_ACT_TRACE", trace_ret(errno.EPERM)),
    ("SCMP_ACT_LOG", LOG),
])
def test_every_action_as_default(action, expected):
    f = sc(action, syscalls=[rule("getpid", "SCMP_ACT_ALLOW")])
    assert run(f, "getppid") == expected
    assert run(f, "getpid") == ALLOW
    # decoded: the default's return is in the program, the bad-arch kill is last
    insns = decode(compile_bpf(f))
    assert expected in [i.k for i in insns if i.is_ret_k]
    assert insns[-1].is_ret_k and insns[-1].k == KILL_THREAD


def test_allow_default_without_rules():
    assert return_values(compile_bpf(sc())) == [ALLOW, KILL_THREAD]


def test_errno_rule_returns_seccomp_ret_errno():
    values = return_values(compile_bpf(sc(syscalls=[rule("mkdir", "SCMP_ACT_ERRNO", errnoRet=errno.EROFS)])))
    assert ls.SECCOMP_RET_ERRNO | errno.EROFS in values


def test_errno_ret_and_default_errno_ret():
    f = sc("SCMP_ACT_ERRNO", defaultErrnoRet=errno.ENOSYS, syscalls=[
        rule("getpid", "SCMP_ACT_ALLOW"),
        rule("mkdir", "SCMP_ACT_ERRNO", errnoRet=errno.EACCES),
        rule("mount", "SCMP_ACT_TRACE", errnoRet=42),
    ])
    assert run(f, "getppid") == errno_ret(errno.ENOSYS)
    assert run(f, "mkdir") == errno_ret(errno.EACCES)
    assert run(f, "mount") == trace_ret(42)
    assert run(f, "getpid") == ALLOW


def test_errno_zero_is_kept():
    assert run(sc(syscalls=[rule("mkdir", "SCMP_ACT_ERRNO", errnoRet=0)]), "mkdir") == errno_ret(0)


def test_rule_with_the_default_action_is_skipped():
    f = sc("SCMP_ACT_ERRNO", syscalls=[rule("getpid", "SCMP_ACT_ERRNO"), rule("getppid", "SCMP_ACT_ALLOW")])
    assert compile_bpf(f) == compile_bpf(sc("SCMP_ACT_ERRNO", syscalls=[rule("getppid", "SCMP_ACT_ALLOW")]))
    # ... but ERRNO with another errno is another action
    g = sc("SCMP_ACT_ERRNO", syscalls=[rule("getpid", "SCMP_ACT_ERRNO", errnoRet=5)])
    assert run(g, "getpid") == errno_ret(5)


def test_unknown_syscalls_are_skipped():
    with_unknown = sc(syscalls=[rule(["no_such_syscall", "getppid", "fchmodat9"], "SCMP_ACT_ERRNO")])
    assert compile_bpf(with_unknown) == compile_bpf(sc(syscalls=[rule("getppid", "SCMP_ACT_ERRNO")]))
    # a rule of unknown names only still compiles
    compile_bpf(sc("SCMP_ACT_ERRNO", syscalls=[rule("no_such_syscall", "SCMP_ACT_ALLOW")]))


# --------------------------------------------------------------------------- operators


@pytest.mark.parametrize(("op", "value", "true_for", "false_for"), [
    ("SCMP_CMP_NE", 5, [0, 4, 6, 2**63], [5]),
    ("SCMP_CMP_LT", 5, [0, 4], [5, 6, 2**40]),
    ("SCMP_CMP_LE", 5, [0, 5], [6, 2**40]),
    ("SCMP_CMP_EQ", 5, [5], [4, 6, 5 + 2**32]),
    ("SCMP_CMP_GE", 5, [5, 6, 2**40], [0, 4]),
    ("SCMP_CMP_GT", 5, [6, 2**40], [0, 5]),
    ("SCMP_CMP_EQ", 2**40 + 7, [2**40 + 7], [7, 2**40]),  # 64-bit values compare both halves
])
def test_every_operator(op, value, true_for, false_for):
    f = compile_bpf(sc(syscalls=[rule("getppid", "SCMP_ACT_ERRNO", args=[{"index": 1, "value": value, "op": op}])]))
    for v in true_for:
        assert run(f, "getppid", 0, v) == errno_ret(1), (op, v)
    for v in false_for:
        assert run(f, "getppid", 0, v) == ALLOW, (op, v)


def test_masked_eq_uses_value_as_mask_and_value_two_as_the_value():
    f = compile_bpf(sc(syscalls=[rule("getppid", "SCMP_ACT_ERRNO", args=[
        {"index": 0, "value": 0xF0, "valueTwo": 0x30, "op": "SCMP_CMP_MASKED_EQ"}])]))
    assert run(f, "getppid", 0x31) == errno_ret(1)
    assert run(f, "getppid", 0x3F) == errno_ret(1)
    assert run(f, "getppid", 0x41) == ALLOW


def test_args_on_different_indexes_must_all_match():
    f = compile_bpf(sc(syscalls=[rule("getppid", "SCMP_ACT_ERRNO", args=[
        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
        {"index": 2, "value": 3, "op": "SCMP_CMP_EQ"}])]))
    assert run(f, "getppid", 1, 0, 3) == errno_ret(1)
    assert run(f, "getppid", 1, 0, 4) == ALLOW
    assert run(f, "getppid", 2, 0, 3) == ALLOW


def test_args_sharing_an_index_become_separate_rules_as_runc():
    # runc: "If two or more arguments have the same condition, revert to old
    # behavior, adding each condition as a separate rule" -> any one matches.
    f = compile_bpf(sc(syscalls=[rule("getppid", "SCMP_ACT_ERRNO", args=[
        {"index": 0, "value": 1, "op": "SCMP_CMP_EQ"},
        {"index": 0, "value": 2, "op": "SCMP_CMP_EQ"},
        {"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}])]))
    assert run(f, "getppid", 1) == errno_ret(1)
    assert run(f, "getppid", 2) == errno_ret(1)
    assert run(f, "getppid", 5, 9) == errno_ret(1)
    assert run(f, "getppid", 3, 8) == ALLOW


def test_several_rules_for_one_syscall_with_args():
    f = compile_bpf(sc("SCMP_ACT_ERRNO", syscalls=[
        rule("personality", "SCMP_ACT_ALLOW", args=[{"index": 0, "value": 0, "op": "SCMP_CMP_EQ"}]),
        rule("personality", "SCMP_ACT_ALLOW", args=[{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}])]))
    assert run(f, "personality", 0) == ALLOW
    assert run(f, "personality", 8) == ALLOW
    assert run(f, "personality", 1) == errno_ret(1)


# --------------------------------------------------------------------------- architectures


def test_native_arch_only_by_default_other_archs_killed():
    f = compile_bpf(sc(syscalls=[rule("mkdir", "SCMP_ACT_ERRNO")]))
    assert run(f, "getpid", arch=AUDIT_ARCH_I386) == KILL_THREAD  # bad arch: libseccomp's default
    assert evaluate(f, NR["getpid"] | X32_SYSCALL_BIT) == KILL_THREAD


def test_multi_arch_translates_syscall_numbers():
    f = compile_bpf(sc(architectures=["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
                       syscalls=[rule("mkdir", "SCMP_ACT_ERRNO")]))
    assert evaluate(f, 83) == errno_ret(1)  # x86_64 mkdir
    assert evaluate(f, 39, arch=AUDIT_ARCH_I386) == errno_ret(1)  # i386 mkdir is 39
    assert evaluate(f, 20, arch=AUDIT_ARCH_I386) == ALLOW  # i386 getpid
    assert evaluate(f, 83 | X32_SYSCALL_BIT) == errno_ret(1)
    assert evaluate(f, 39) == ALLOW  # x86_64 getpid
    # native arch listed or not: the same filter
    g = compile_bpf(sc(architectures=["SCMP_ARCH_X86", "SCMP_ARCH_X32"], syscalls=[rule("mkdir", "SCMP_ACT_ERRNO")]))
    assert g == f


def test_foreign_arch_only():
    f = compile_bpf(sc(architectures=["SCMP_ARCH_AARCH64"], syscalls=[rule("mkdirat", "SCMP_ACT_ERRNO")]))
    assert evaluate(f, 34, arch=0xC00000B7) == errno_ret(1)  # aarch64 mkdirat
    assert evaluate(f, 258) == errno_ret(1)  # x86_64 mkdirat


# --------------------------------------------------------------------------- flags


def test_flags():
    assert filter_flags(sc(flags=["SECCOMP_FILTER_FLAG_LOG"])) == (ls.SECCOMP_FILTER_FLAG_LOG, False)
    assert filter_flags(sc(flags=["SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"])) == (
        ls.SECCOMP_FILTER_FLAG_SPEC_ALLOW, False)
    f = compile_filter(sc(flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV", "SECCOMP_FILTER_FLAG_LOG"],
                          syscalls=[rule("mkdir", "SCMP_ACT_NOTIFY")], listenerPath="/x"))
    assert f.uses_notify
    assert f.flags == (ls.SECCOMP_FILTER_FLAG_NEW_LISTENER | ls.SECCOMP_FILTER_FLAG_LOG
                       | ls.SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV)


def test_flags_do_not_change_the_bpf():
    a = compile_bpf(sc(syscalls=[rule("mkdir", "SCMP_ACT_ERRNO")]))
    b = compile_bpf(sc(flags=["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"],
                       syscalls=[rule("mkdir", "SCMP_ACT_ERRNO")]))
    assert a == b


def test_wait_killable_recv_without_notify_is_refused():
    with pytest.raises(SeccompConfigError) as e:
        compile_filter(sc(flags=["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]))
    assert e.value.path == "$.linux.seccomp.flags[1]"


# --------------------------------------------------------------------------- errors


def test_notify_on_write_is_refused_as_runc():
    with pytest.raises(SeccompConfigError) as e:
        compile_filter(sc(syscalls=[rule("getpid", "SCMP_ACT_ALLOW"), rule(["read", "write"], "SCMP_ACT_NOTIFY")],
                          listenerPath="/x"))
    assert e.value.path == "$.linux.seccomp.syscalls[1].names[1]"
    assert "write" in str(e.value)


def test_notify_on_sendmsg_is_refused():
    # ocirun's init passes the listener fd with sendmsg(SCM_RIGHTS), as runc's with write
    with pytest.raises(SeccompConfigError) as e:
        compile_filter(sc(syscalls=[rule("sendmsg", "SCMP_ACT_NOTIFY")], listenerPath="/x"))
    assert e.value.path == "$.linux.seccomp.syscalls[0].names[0]"


def test_notify_as_default_is_refused():
    with pytest.raises(SeccompConfigError) as e:
        compile_filter(sc("SCMP_ACT_NOTIFY"))
    assert e.value.path == "$.linux.seccomp.defaultAction"


def test_errno_ret_on_an_action_without_errno():
    with pytest.raises(SeccompConfigError) as e:
        compile_filter(sc(syscalls=[rule("getpid", "SCMP_ACT_ERRNO"), rule("mkdir", "SCMP_ACT_KILL", errnoRet=1)]))
    assert e.value.path == "$.linux.seccomp.syscalls[1].errnoRet"


def test_errno_too_large_for_libseccomp():
    with pytest.raises(SeccompConfigError) as e:
        compile_filter(sc(syscalls=[rule("mkdir", "SCMP_ACT_ERRNO", errnoRet=5000)]))
    assert e.value.path.startswith("$.linux.seccomp.syscalls[0]")


def test_unsupported_action_names_its_path(monkeypatch):
    monkeypatch.setattr(ls, "action_supported", lambda action: action & 0xFFFF0000 != NOTIFY)
    with pytest.raises(SeccompConfigError) as e:
        compile_filter(sc(syscalls=[rule("getpid", "SCMP_ACT_ERRNO"), rule("getpid", "SCMP_ACT_LOG"),
                                    rule("mkdir", "SCMP_ACT_NOTIFY")], listenerPath="/x"))
    assert e.value.path == "$.linux.seccomp.syscalls[2].action"
    assert "not supported on this host" in str(e.value)
    assert str(e.value).startswith("config.json: $.linux.seccomp.syscalls[2].action: SCMP_ACT_NOTIFY")


def test_unsupported_flag_names_its_path(monkeypatch):
    monkeypatch.setattr(ls, "kernel_flag_supported", lambda flag: flag != ls.SECCOMP_FILTER_FLAG_SPEC_ALLOW)
    with pytest.raises(SeccompConfigError) as e:
        compile_filter(sc(flags=["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW"]))
    assert e.value.path == "$.linux.seccomp.flags[1]"


def test_arch_unknown_to_libseccomp(monkeypatch):
    real = ls.arch_token
    monkeypatch.setattr(ls, "arch_token", lambda name: 0 if name == "riscv64" else real(name))
    with pytest.raises(SeccompConfigError) as e:
        compile_filter(sc(architectures=["SCMP_ARCH_X86", "SCMP_ARCH_RISCV64"]))
    assert e.value.path == "$.linux.seccomp.architectures[1]"


# --------------------------------------------------------------------------- the realistic profile


def test_default_profile_shape_compiles_and_behaves():
    profile = Seccomp.from_dict(json.loads(FIXTURE.read_text()))
    assert len(profile.syscalls) > 32  # libseccomp's binary tree is used, as runc
    f = compile_filter(profile)
    assert isinstance(f, CompiledFilter) and f.flags == 0 and not f.uses_notify
    assert 500 < f.instructions < 4096  # BPF_MAXINSNS
    bpf = f.bpf
    assert run(bpf, "getpid") == ALLOW
    assert run(bpf, "mount") == errno_ret(1)
    assert run(bpf, "clone3") == errno_ret(errno.ENOSYS)
    assert run(bpf, "socket", 2) == ALLOW
    assert run(bpf, "socket", 40) == errno_ret(1)  # AF_VSOCK
    assert run(bpf, "clone", 0x11) == ALLOW  # SIGCHLD-ish fork
    assert run(bpf, "clone", 0x10000000 | 0x11) == errno_ret(1)  # CLONE_NEWUSER
    assert run(bpf, "personality", 8) == ALLOW
    assert run(bpf, "personality", 1) == errno_ret(1)
    assert evaluate(bpf, 20, arch=AUDIT_ARCH_I386) == ALLOW
    assert evaluate(bpf, 21, arch=AUDIT_ARCH_I386) == errno_ret(1)  # i386 mount
    assert evaluate(bpf, 999) == errno_ret(errno.ENOSYS)  # newer than the profile: runc's stub


def test_canonical_json_ignores_listener_and_order_of_keys():
    a = sc(syscalls=[rule("mkdir", "SCMP_ACT_NOTIFY")], listenerPath="/a", listenerMetadata="m")
    b = sc(syscalls=[rule("mkdir", "SCMP_ACT_NOTIFY")], listenerPath="/b")
    assert canonical_json(a) == canonical_json(b)
    assert canonical_json(a) != canonical_json(sc(syscalls=[rule("mkdirat", "SCMP_ACT_NOTIFY")]))

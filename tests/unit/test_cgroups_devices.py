"""Device rules: the v1 emulation, the v1 lines, the v2 eBPF program (decoded,
interpreted, and, as root with a cgroup2 mount, loaded and enforced for real)."""

from __future__ import annotations

import itertools
import os
import subprocess
import uuid

import pytest

from ocirun.cgroups import ebpf
from ocirun.cgroups.devices import DeviceRuleError, Emulator, evaluate, v1_lines
from ocirun.plan.device_rules import ALWAYS_ALLOWED, DeviceRule

DENY_ALL = DeviceRule(False, "a", None, None, "rwm")
ALLOW_ALL = DeviceRule(True, "a", None, None, "rwm")


def R(allow, t, major, minor, access="rwm"):
    return DeviceRule(allow, t, major, minor, access)


def test_deny_all_then_allows():
    default, exc = evaluate([DENY_ALL, R(True, "c", 1, 3, "rw"), R(True, "b", 8, None, "r")])
    assert default is False
    assert exc == [(("c", 1, 3), "rw"), (("b", 8, -1), "r")]


def test_exceptions_keep_the_listed_order_as_the_kernels_list_does():
    """config-linux.md: entries applied in the listed order. The kernel appends a new
    exception, merges more access into an existing one in place, drops an emptied one
    (so it goes to the end when given again)."""
    rules = [DENY_ALL, R(True, "c", 10, 229), R(True, "c", 4, 1, "r"), R(True, "b", 7, 0, "rw"),
             R(True, "c", 4, 1, "w"), R(True, "c", 1, 3), R(False, "c", 10, 229), R(True, "c", 10, 229, "m")]
    assert evaluate(rules)[1] == [(("c", 4, 1), "rw"), (("b", 7, 0), "rw"), (("c", 1, 3), "rwm"),
                                  (("c", 10, 229), "m")]


def test_rules_apply_in_order_later_deny_removes_access():
    default, exc = evaluate([DENY_ALL, R(True, "c", 1, 3), R(False, "c", 1, 3, "w")])
    assert exc == [(("c", 1, 3), "rm")]
    default, exc = evaluate([DENY_ALL, R(True, "c", 1, 3), R(False, "c", 1, 3)])
    assert exc == []


def test_a_rule_resets_whatever_came_before():
    default, exc = evaluate([DENY_ALL, R(True, "c", 1, 3), ALLOW_ALL, R(False, "c", 1, 5, "w")])
    assert default is True and exc == [(("c", 1, 5), "w")]


def test_no_rules_is_deny_all_as_runc():
    assert evaluate([]) == (False, [])


def test_punching_a_hole_in_a_wildcard_is_refused():
    with pytest.raises(DeviceRuleError, match="punches a hole"):
        evaluate([DENY_ALL, R(True, "c", None, None, "r"), R(False, "c", 1, 3, "r")])
    # a deny that does not overlap the wildcard's access is fine
    assert evaluate([DENY_ALL, R(True, "c", None, None, "m"), R(False, "c", 1, 3, "r")])[1] == \
        [(("c", -1, -1), "m")]


def test_bad_type_and_access():
    with pytest.raises(DeviceRuleError):
        Emulator().apply(R(True, "x", 1, 1))
    with pytest.raises(DeviceRuleError):
        Emulator().apply(R(True, "c", 1, 1, "rx"))


def test_v1_lines():
    assert v1_lines([DENY_ALL, R(True, "c", 136, None), R(True, "c", 1, 3, "rw")]) == [
        ("devices.deny", "a"), ("devices.allow", "c 136:* rwm"), ("devices.allow", "c 1:3 rw")]
    assert v1_lines([ALLOW_ALL, R(False, "b", 8, 0, "w")]) == [("devices.allow", "a"), ("devices.deny", "b 8:0 w")]


# --------------------------------------------------------------------------- eBPF


def test_program_instructions_match_runc_devicefilter():
    default, exceptions = evaluate([DENY_ALL, R(True, "c", 1, 3, "rw"), R(True, "b", None, None, "rwm")])
    insns = ebpf.assemble(default, sorted(exceptions))  # sorted, as the v2 driver gives them
    X = ebpf.Insn
    assert insns == [
        X(0x61, 2, 1, 0, 0),        # r2 = *(u32 *)(r1 + 0)
        X(0x54, 2, 0, 0, 0xFFFF),   # w2 &= 0xffff
        X(0x61, 3, 1, 0, 0),        # r3 = *(u32 *)(r1 + 0)
        X(0x74, 3, 0, 0, 16),       # w3 >>= 16
        X(0x61, 4, 1, 4, 0),        # r4 = major
        X(0x61, 5, 1, 8, 0),        # r5 = minor
        # block 0: b *:* rwm
        X(0x55, 2, 0, 2, 1),        # if r2 != BLOCK goto block 1
        X(0xB4, 0, 0, 0, 1),        # w0 = 1
        X(0x95, 0, 0, 0, 0),        # exit
        # block 1: c 1:3 rw
        X(0x55, 2, 0, 7, 2),        # if r2 != CHAR goto block 2
        X(0xBC, 1, 3, 0, 0),        # w1 = w3
        X(0x54, 1, 0, 0, 6),        # w1 &= READ|WRITE
        X(0x5D, 1, 3, 4, 0),        # if r1 != r3 goto block 2
        X(0x55, 4, 0, 3, 1),        # if r4 != 1 goto block 2
        X(0x55, 5, 0, 2, 3),        # if r5 != 3 goto block 2
        X(0xB4, 0, 0, 0, 1),
        X(0x95, 0, 0, 0, 0),
        # block 2: the default
        X(0xB4, 0, 0, 0, 0),        # w0 = 0 (deny)
        X(0x95, 0, 0, 0, 0),
    ]
    assert ebpf.decode(ebpf.encode(insns)) == insns
    assert ebpf.encode(insns)[:8] == bytes([0x61, 0x12, 0, 0, 0, 0, 0, 0])  # dst r2, src r1


def _expected(default, exceptions, t, acc, major, minor) -> int:
    node = {1: "b", 2: "c"}[t]
    want = {c for c, bit in (("m", 1), ("r", 2), ("w", 4)) if acc & bit}
    for (n, ma, mi), access in exceptions:
        if n == node and ma in (-1, major) and mi in (-1, minor) and want <= set(access):
            return 0 if default else 1
    return 1 if default else 0


@pytest.mark.parametrize("rules", [
    [DENY_ALL, *ALWAYS_ALLOWED],
    [DENY_ALL, R(True, "c", 1, 3, "r"), R(True, "c", 1, None, "m"), R(True, "b", 8, 0, "rw")],
    [ALLOW_ALL, R(False, "c", 1, 3, "w"), R(False, "b", None, None, "m")],
    [],
])
def test_program_decides_as_the_emulator(rules):
    default, exceptions = evaluate(rules)
    insns = ebpf.assemble(default, exceptions)
    for t, acc, major, minor in itertools.product((1, 2), range(1, 8), (1, 5, 8, 136), (0, 3, 5, 9)):
        assert ebpf.run(insns, t, acc, major, minor) == _expected(default, exceptions, t, acc, major, minor), \
            (t, acc, major, minor)


def _cgroup2_mount() -> str | None:
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            if fields[fields.index("-") + 1] == "cgroup2":
                return fields[4]
    return None


@pytest.fixture
def test_cgroup():
    mount = _cgroup2_mount()
    if os.geteuid() != 0 or mount is None:
        pytest.skip("needs root and a cgroup2 mount")
    path = os.path.join(mount, f"ocitest-bpf-{uuid.uuid4().hex[:8]}")
    os.mkdir(path)
    try:
        yield path
    finally:
        with open(os.path.join(path, "cgroup.procs")) as f:
            for pid in f.read().split():
                try:
                    os.kill(int(pid), 9)
                except ProcessLookupError:
                    pass
        for _ in range(200):
            try:
                os.rmdir(path)
                break
            except OSError:
                import time

                time.sleep(0.01)


def test_program_loads_attaches_and_is_enforced(test_cgroup):
    # /dev/null (1:3) allowed, /dev/zero (1:5) not
    rules = [DENY_ALL, R(True, "c", 1, 3, "rwm")]
    default, exceptions = evaluate(rules)
    prog = ebpf.install(test_cgroup, default, exceptions)
    assert prog > 0
    fd = os.open(test_cgroup, os.O_DIRECTORY)
    try:
        assert ebpf.query(fd) == [prog]
        script = (f"echo $$ > {test_cgroup}/cgroup.procs; "
                  "head -c1 /dev/null && echo null-ok; head -c1 /dev/zero >/dev/null && echo zero-ok; true")
        p = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
        assert "null-ok" in p.stdout
        assert "zero-ok" not in p.stdout and "Operation not permitted" in p.stderr
        ebpf.detach(fd, prog)
        assert ebpf.query(fd) == []
    finally:
        os.close(fd)


def test_load_rejection_carries_the_verifier_log():
    if os.geteuid() != 0:
        pytest.skip("needs root")
    from ocirun.errors import CgroupError

    bad = [ebpf.Insn(ebpf.LDX_MEM_W, 2, 1, 64)]  # out-of-bounds ctx read, no exit
    with pytest.raises(CgroupError, match="load the BPF_PROG_TYPE_CGROUP_DEVICE program"):
        ebpf.load(bad)

"""Reading and running a classic-BPF seccomp program, in Python.

``decode`` splits the bytes into ``struct sock_filter`` instructions;
``evaluate`` runs the program on a ``struct seccomp_data`` the way the kernel
would (the subset of classic BPF the kernel's seccomp checker accepts). Used
by the tests to check the semantics of a compiled filter without loading it,
and handy when debugging a profile.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import NamedTuple

_INSN = struct.Struct("=HBBI")  # struct sock_filter: u16 code, u8 jt, u8 jf, u32 k
_DATA = struct.Struct("=IIQ6Q")  # struct seccomp_data: int nr (packed as u32), u32 arch, u64 ip, u64 args[6]

# instruction classes and fields (linux/bpf_common.h)
BPF_LD, BPF_LDX, BPF_ST, BPF_STX, BPF_ALU, BPF_JMP, BPF_RET, BPF_MISC = range(8)
BPF_W, BPF_ABS, BPF_IMM, BPF_MEM = 0x00, 0x20, 0x00, 0x60
BPF_K, BPF_X, BPF_A = 0x00, 0x08, 0x10
BPF_JA, BPF_JEQ, BPF_JGT, BPF_JGE, BPF_JSET = 0x00, 0x10, 0x20, 0x30, 0x40

AUDIT_ARCH_X86_64 = 0xC000003E
AUDIT_ARCH_I386 = 0x40000003
X32_SYSCALL_BIT = 0x40000000

_M32 = 0xFFFFFFFF


class Insn(NamedTuple):
    code: int
    jt: int
    jf: int
    k: int

    @property
    def is_ret_k(self) -> bool:
        return self.code == BPF_RET | BPF_K


def decode(bpf: bytes) -> list[Insn]:
    if len(bpf) % _INSN.size:
        raise ValueError(f"a BPF program is a multiple of {_INSN.size} bytes, not {len(bpf)}")
    return [Insn(*t) for t in _INSN.iter_unpack(bpf)]


def encode(insns: Sequence[Insn]) -> bytes:
    return b"".join(_INSN.pack(*i) for i in insns)


def return_values(bpf: bytes) -> list[int]:
    """The constant values the program can return (``BPF_RET|BPF_K``), in program order."""
    return [i.k for i in decode(bpf) if i.is_ret_k]


def seccomp_data(nr: int, arch: int, args: Sequence[int] = (), ip: int = 0) -> bytes:
    a = [x & 0xFFFFFFFFFFFFFFFF for x in args] + [0] * (6 - len(args))
    return _DATA.pack(nr & _M32, arch, ip, *a)


def _alu(op: int, a: int, v: int) -> int:
    if op == 0x00:
        return (a + v) & _M32
    if op == 0x10:
        return (a - v) & _M32
    if op == 0x20:
        return (a * v) & _M32
    if op == 0x30:
        return a // v if v else 0
    if op == 0x40:
        return a | v
    if op == 0x50:
        return a & v
    if op == 0x60:
        return (a << v) & _M32 if v < 32 else 0
    if op == 0x70:
        return a >> v if v < 32 else 0
    if op == 0x80:
        return (-a) & _M32
    if op == 0x90:
        return a % v if v else 0
    if op == 0xA0:
        return a ^ v
    raise ValueError(f"unknown ALU op {op:#x}")


def evaluate(bpf: bytes | Sequence[Insn], nr: int, arch: int = AUDIT_ARCH_X86_64,
             args: Sequence[int] = (), ip: int = 0) -> int:
    """The SECCOMP_RET_* value the program returns for this syscall."""
    prog = decode(bpf) if isinstance(bpf, bytes | bytearray) else list(bpf)
    data = seccomp_data(nr, arch, args, ip)
    a = x = 0
    mem = [0] * 16
    pc = 0
    while pc < len(prog):
        code, jt, jf, k = prog[pc]
        pc += 1
        cls = code & 0x07
        if cls == BPF_LD:
            mode = code & 0xE0
            if mode == BPF_ABS:
                if k + 4 > len(data) or k % 4:
                    return 0  # the kernel's checker would refuse it; kill
                a = int.from_bytes(data[k:k + 4], "little")
            elif mode == BPF_IMM:
                a = k
            elif mode == BPF_MEM:
                a = mem[k]
            elif mode == 0x80:  # BPF_LEN
                a = len(data)
            else:
                raise ValueError(f"unsupported load {code:#x}")
        elif cls == BPF_LDX:
            mode = code & 0xE0
            x = {BPF_IMM: k, BPF_MEM: mem[k] if k < 16 else 0, 0x80: len(data)}[mode]
        elif cls == BPF_ST:
            mem[k] = a
        elif cls == BPF_STX:
            mem[k] = x
        elif cls == BPF_ALU:
            a = _alu(code & 0xF0, a, x if code & BPF_X else k)
        elif cls == BPF_JMP:
            op = code & 0xF0
            if op == BPF_JA:
                pc += k
                continue
            v = x if code & BPF_X else k
            cond = {BPF_JEQ: a == v, BPF_JGT: a > v, BPF_JGE: a >= v, BPF_JSET: bool(a & v)}[op]
            pc += jt if cond else jf
        elif cls == BPF_RET:
            src = code & 0x18
            return a if src == BPF_A else k
        elif cls == BPF_MISC:
            if code & 0xF8 == 0x00:  # TAX
                x = a
            else:  # TXA
                a = x
    raise ValueError("the program ran off its end")

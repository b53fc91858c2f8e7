"""cgroup v2 device rules: a BPF_PROG_TYPE_CGROUP_DEVICE program, assembled here.

The program is runc's (libcontainer/cgroups/devices/devicefilter.go), built
from the emulated rule set of ``ocirun.cgroups.devices``::

    r2 = ctx->access_type & 0xffff      device type (1 block, 2 char)
    r3 = ctx->access_type >> 16         access (1 mknod, 2 read, 4 write)
    r4 = ctx->major
    r5 = ctx->minor
    block i (one per exception):
        if r2 != type goto block i+1
        [if access != rwm]  r1 = r3; r1 &= access; if r1 != r3 goto block i+1
        [if major given]    if r4 != major goto block i+1
        [if minor given]    if r5 != minor goto block i+1
        r0 = allow; exit
    block n:  r0 = default; exit

It is loaded with bpf(BPF_PROG_LOAD) and attached to the container's cgroup
with bpf(BPF_PROG_ATTACH, BPF_F_ALLOW_MULTI) through libc's syscall(2) (ctypes,
imported only here, on the create path of a v2 host). Attached programs are
released by the kernel when the cgroup is removed; ``detach`` is for a cgroup
that outlives the container.
"""

from __future__ import annotations

import errno
import os
import platform
import struct
from typing import NamedTuple

from ocirun.errors import CgroupError

# opcodes (linux/bpf_common.h, linux/bpf.h)
LDX_MEM_W = 0x61  # BPF_LDX | BPF_MEM | BPF_W
ALU32_AND_K = 0x54
ALU32_RSH_K = 0x74
ALU32_MOV_K = 0xB4
ALU32_MOV_X = 0xBC
JMP_JNE_K = 0x55
JMP_JNE_X = 0x5D
JMP_EXIT = 0x95

BPF_DEVCG_ACC_MKNOD = 1
BPF_DEVCG_ACC_READ = 2
BPF_DEVCG_ACC_WRITE = 4
BPF_DEVCG_DEV_BLOCK = 1
BPF_DEVCG_DEV_CHAR = 2

BPF_PROG_LOAD = 5
BPF_PROG_ATTACH = 8
BPF_PROG_DETACH = 9
BPF_PROG_GET_FD_BY_ID = 13
BPF_OBJ_GET_INFO_BY_FD = 15
BPF_PROG_QUERY = 16
BPF_PROG_TYPE_CGROUP_DEVICE = 15
BPF_CGROUP_DEVICE = 6
BPF_F_ALLOW_MULTI = 2

LICENSE = b"Apache"

_SYS_BPF = {"x86_64": 321, "aarch64": 280, "arm64": 280, "ppc64le": 361, "s390x": 351,
            "riscv64": 280, "loongarch64": 280, "i686": 357, "armv7l": 386}


class Insn(NamedTuple):
    code: int
    dst: int = 0
    src: int = 0
    off: int = 0
    imm: int = 0

    def encode(self) -> bytes:
        return struct.pack("<BBhi", self.code, (self.src << 4) | self.dst, self.off, self.imm)


def encode(insns: list[Insn]) -> bytes:
    return b"".join(i.encode() for i in insns)


def decode(data: bytes) -> list[Insn]:
    out = []
    for pos in range(0, len(data), 8):
        code, regs, off, imm = struct.unpack_from("<BBhi", data, pos)
        out.append(Insn(code, regs & 0xF, regs >> 4, off, imm))
    return out


def _access_bits(access: str) -> int:
    bits = 0
    for c in access:
        bits |= {"r": BPF_DEVCG_ACC_READ, "w": BPF_DEVCG_ACC_WRITE, "m": BPF_DEVCG_ACC_MKNOD}[c]
    return bits


def assemble(default_allow: bool, exceptions) -> list[Insn]:
    """The program for a default and exceptions (``devices.evaluate``'s result)."""
    insns = [
        Insn(LDX_MEM_W, 2, 1, 0),
        Insn(ALU32_AND_K, 2, imm=0xFFFF),
        Insn(LDX_MEM_W, 3, 1, 0),
        Insn(ALU32_RSH_K, 3, imm=16),
        Insn(LDX_MEM_W, 4, 1, 4),
        Insn(LDX_MEM_W, 5, 1, 8),
    ]
    allow = 0 if default_allow else 1  # every exception has the other action
    for (node, major, minor), access in exceptions:
        dev = {"c": BPF_DEVCG_DEV_CHAR, "b": BPF_DEVCG_DEV_BLOCK}[node]
        bits = _access_bits(access)
        block: list[tuple[int, int, int, int]] = [(JMP_JNE_K, 2, 0, dev)]  # jumps: off filled below
        if bits != BPF_DEVCG_ACC_READ | BPF_DEVCG_ACC_WRITE | BPF_DEVCG_ACC_MKNOD:
            block += [(ALU32_MOV_X, 1, 3, 0), (ALU32_AND_K, 1, 0, bits), (JMP_JNE_X, 1, 3, 0)]
        if major >= 0:
            block.append((JMP_JNE_K, 4, 0, major))
        if minor >= 0:
            block.append((JMP_JNE_K, 5, 0, minor))
        block += [(ALU32_MOV_K, 0, 0, allow), (JMP_EXIT, 0, 0, 0)]
        for i, (code, dst, src, imm) in enumerate(block):
            off = len(block) - i - 1 if code in (JMP_JNE_K, JMP_JNE_X) else 0
            insns.append(Insn(code, dst, src, off, _s32(imm)))
    insns += [Insn(ALU32_MOV_K, 0, imm=1 if default_allow else 0), Insn(JMP_EXIT)]
    return insns


def _s32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v >= 1 << 31 else v


def run(insns: list[Insn], dev_type: int, access: int, major: int, minor: int) -> int:
    """Interpret the program (only the instructions ``assemble`` emits) for one
    access: what the kernel would return. For tests and for ``--debug``."""
    ctx = struct.pack("<III", (access << 16) | dev_type, major, minor)
    reg = [0] * 11
    pc = 0
    while True:
        i = insns[pc]
        pc += 1
        if i.code == LDX_MEM_W:
            reg[i.dst] = struct.unpack_from("<I", ctx, i.off)[0]
        elif i.code == ALU32_AND_K:
            reg[i.dst] = reg[i.dst] & (i.imm & 0xFFFFFFFF)
        elif i.code == ALU32_RSH_K:
            reg[i.dst] = (reg[i.dst] & 0xFFFFFFFF) >> i.imm
        elif i.code == ALU32_MOV_K:
            reg[i.dst] = i.imm & 0xFFFFFFFF
        elif i.code == ALU32_MOV_X:
            reg[i.dst] = reg[i.src] & 0xFFFFFFFF
        elif i.code == JMP_JNE_K:
            if reg[i.dst] != i.imm & 0xFFFFFFFFFFFFFFFF:  # the 64-bit compare sign-extends imm
                pc += i.off
        elif i.code == JMP_JNE_X:
            if reg[i.dst] != reg[i.src]:
                pc += i.off
        elif i.code == JMP_EXIT:
            return reg[0]
        else:
            raise ValueError(f"unexpected opcode {i.code:#x}")


# --------------------------------------------------------------------------- bpf(2)


def _bpf(cmd: int, attr: bytearray) -> int:
    import ctypes

    nr = _SYS_BPF.get(platform.machine())
    if nr is None:
        raise CgroupError("bpf", f"find the bpf syscall number for {platform.machine()} to call")
    libc = ctypes.CDLL(None, use_errno=True)
    buf = (ctypes.c_char * len(attr)).from_buffer(attr)
    ret = libc.syscall(ctypes.c_long(nr), ctypes.c_int(cmd), buf, ctypes.c_uint(len(attr)))
    if ret < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return int(ret)


def _addr(b) -> int:
    import ctypes

    return ctypes.addressof(b)


def load(insns: list[Insn]) -> int:
    """BPF_PROG_LOAD the program; return its fd. On a verifier rejection the
    CgroupError carries the verifier's log."""
    import ctypes

    code = ctypes.create_string_buffer(encode(insns))
    lic = ctypes.create_string_buffer(LICENSE)
    log = ctypes.create_string_buffer(65536)
    attr = bytearray(128)
    struct.pack_into("<IIQQIIQ", attr, 0, BPF_PROG_TYPE_CGROUP_DEVICE, len(insns),
                     _addr(code), _addr(lic), 0, 0, 0)
    struct.pack_into("<16s", attr, 48, b"ocirun_devices")
    struct.pack_into("<I", attr, 68, BPF_CGROUP_DEVICE)  # expected_attach_type
    try:
        return _bpf(BPF_PROG_LOAD, attr)
    except OSError as err:
        if err.errno not in (errno.EACCES, errno.EINVAL):
            raise CgroupError("BPF_PROG_TYPE_CGROUP_DEVICE program", "load the", err) from None
    # retry with the verifier log, to say why
    struct.pack_into("<IIQ", attr, 24, 1, len(log), _addr(log))
    try:
        return _bpf(BPF_PROG_LOAD, attr)
    except OSError as err:
        text = log.value.decode(errors="replace").strip().splitlines()
        detail = f" ({text[-1]})" if text else ""
        raise CgroupError("BPF_PROG_TYPE_CGROUP_DEVICE program" + detail, "load the", err) from None


def attach(prog_fd: int, cgroup_fd: int) -> None:
    attr = bytearray(20)
    struct.pack_into("<IIII", attr, 0, cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, BPF_F_ALLOW_MULTI)
    _bpf(BPF_PROG_ATTACH, attr)


def prog_id(prog_fd: int) -> int:
    import ctypes

    info = ctypes.create_string_buffer(256)
    attr = bytearray(16)
    struct.pack_into("<IIQ", attr, 0, prog_fd, len(info), _addr(info))
    _bpf(BPF_OBJ_GET_INFO_BY_FD, attr)
    return int(struct.unpack_from("<I", info.raw, 4)[0])


def query(cgroup_fd: int) -> list[int]:
    """Ids of the device programs attached to a cgroup (this one, not its parents)."""
    import ctypes

    ids = (ctypes.c_uint32 * 64)()
    attr = bytearray(40)
    struct.pack_into("<IIII", attr, 0, cgroup_fd, BPF_CGROUP_DEVICE, 0, 0)
    struct.pack_into("<QI", attr, 16, ctypes.addressof(ids), 64)
    _bpf(BPF_PROG_QUERY, attr)
    count = struct.unpack_from("<I", attr, 24)[0]
    return list(ids[:count])


def detach(cgroup_fd: int, pid: int) -> None:
    """Detach the program with id ``pid`` from the cgroup (ENOENT if it is not attached)."""
    attr = bytearray(12)
    struct.pack_into("<I", attr, 0, pid)
    prog_fd = _bpf(BPF_PROG_GET_FD_BY_ID, attr)
    try:
        attr = bytearray(16)
        struct.pack_into("<IIII", attr, 0, cgroup_fd, prog_fd, BPF_CGROUP_DEVICE, 0)
        _bpf(BPF_PROG_DETACH, attr)
    finally:
        os.close(prog_fd)


def install(cgroup_dir: str, default_allow: bool, exceptions) -> int:
    """Load the program for these rules and attach it to ``cgroup_dir``; return its id.
    The program fd is closed: the attachment keeps the program alive."""
    insns = assemble(default_allow, exceptions)
    try:
        cg_fd = os.open(cgroup_dir, os.O_DIRECTORY | os.O_RDONLY | os.O_CLOEXEC)
    except OSError as err:
        raise CgroupError(cgroup_dir, "open", err) from None
    try:
        prog_fd = load(insns)
        try:
            try:
                attach(prog_fd, cg_fd)
            except OSError as err:
                raise CgroupError(cgroup_dir, "attach the device eBPF program to", err) from None
            try:
                return prog_id(prog_fd)
            except OSError:
                return 0
        finally:
            os.close(prog_fd)
    finally:
        os.close(cg_fd)

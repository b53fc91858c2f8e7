"""The front end and the helper speak one protocol: the numbers and struct layouts
of ocirun/frontend/protocol.h and ocirun/helper/protocol.py agree, and the plan's
arena is relocatable (what the front end does with it, done here in Python)."""

from __future__ import annotations

import copy
import re
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from ocirun.helper import paths, protocol
from ocirun.plan.build import PlanOptions, build_plan
from ocirun.shim import _CPlan, load
from ocirun.shim.arena import FD_FIELDS, Arena, ArenaFull
from ocirun.spec.generate import default_spec
from ocirun.spec.model import Config

REPO = Path(__file__).resolve().parents[2]
HEADER = REPO / "ocirun" / "frontend" / "protocol.h"


def _c_values(tmp_path) -> dict[str, int]:
    """Compile a program printing the header's constants and struct sizes/offsets."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler")
    text = HEADER.read_text()
    names = re.findall(r"\b(OCIRUN_[A-Z0-9_]+)\s*=", text) + re.findall(r"#define (OCIRUN_[A-Z0-9_]+) ", text)
    names = [n for n in names if n != "OCIRUN_FRONTEND_PROTOCOL_H"]
    structs = {
        "ocirun_frame": ("type", "nfds", "len"),
        "ocirun_request": ("version", "flags", "argc", "envc", "nfds"),
        "ocirun_clone": ("kind", "n_relocs", "n_fd_slots", "floor", "base", "arena_len", "plan_offset",
                         "fifo", "cgroup", "stdio"),
        "ocirun_fd_slot": ("offset", "index"),
        "ocirun_spawn": ("n_actions", "argc", "envc", "sigdef"),
        "ocirun_spawn_action": ("kind", "a", "b"),
    }
    lines = [f'printf("{n} %lld\\n", (long long){n});' for n in names]
    for s, fields in structs.items():
        lines.append(f'printf("sizeof {s} %zu\\n", sizeof(struct {s}));')
        lines += [f'printf("offsetof {s}.{f} %zu\\n", offsetof(struct {s}, {f}));' for f in fields]
    src = tmp_path / "p.c"
    src.write_text('#include <stdio.h>\n#include <stddef.h>\n#include "protocol.h"\nint main(void){\n'
                   + "\n".join(lines) + "\nreturn 0;}\n")
    exe = tmp_path / "p"
    subprocess.run([cc, f"-I{HEADER.parent}", "-o", str(exe), str(src)], check=True)
    out = subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout
    return {k: int(v) for k, v in (line.rsplit(" ", 1) for line in out.splitlines())}


def test_constants_and_layouts_match_the_c_header(tmp_path):
    c = _c_values(tmp_path)
    assert c["OCIRUN_HELPER_PROTOCOL"] == protocol.PROTOCOL
    for name, value in c.items():
        if name.startswith("OCIRUN_FRAME_"):
            assert getattr(protocol, name[len("OCIRUN_FRAME_"):]) == value, name
    assert c["OCIRUN_REQUEST_HAS_TTY"] == protocol.REQUEST_HAS_TTY
    assert (c["OCIRUN_CLONE_SPAWN"], c["OCIRUN_CLONE_EXEC"]) == (protocol.CLONE_SPAWN, protocol.CLONE_EXEC)
    assert (c["OCIRUN_SPAWN_DUP2"], c["OCIRUN_SPAWN_CLOSE"]) == (protocol.SPAWN_DUP2, protocol.SPAWN_CLOSE)
    sizes = {"ocirun_frame": protocol.FRAME, "ocirun_request": protocol.REQUEST_HEAD,
             "ocirun_clone": protocol.CLONE_HEAD, "ocirun_fd_slot": protocol.FD_SLOT,
             "ocirun_spawn": protocol.SPAWN_HEAD, "ocirun_spawn_action": protocol.SPAWN_ACTION}
    for name, st in sizes.items():
        assert c[f"sizeof {name}"] == st.size, name
    # the Python formats list the fields in the C order, without padding
    assert c["offsetof ocirun_clone.base"] == struct.calcsize("=IIIi")
    assert c["offsetof ocirun_clone.fifo"] == struct.calcsize("=IIIiQQQ")
    assert c["offsetof ocirun_clone.stdio"] == struct.calcsize("=IIIiQQQii")
    assert c["offsetof ocirun_spawn.sigdef"] == struct.calcsize("=IIII")
    assert c["offsetof ocirun_frame.len"] == struct.calcsize("=II")


def _plan(tmp_path, **process):
    doc = copy.deepcopy(default_spec())
    doc["process"]["terminal"] = False
    doc["process"].update(process)
    doc["hostname"] = "relocated"
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir(exist_ok=True)
    opts = PlanOptions(container_id="c1", bundle=str(tmp_path), rootfs=str(rootfs))
    return build_plan(Config.from_dict(doc), opts, None)


def _relocate(ffi, arena: Arena, relocs, slots, fds_at) -> tuple[object, bytes]:
    """What the front end's do_clone does: copy, add the new base to every pointer,
    write the new fd numbers. Returns the copy (owning) and its plan pointer."""
    data = bytearray(arena.contents())
    copy_buf = ffi.new("char[]", len(data) + 64)
    new_base = int(ffi.cast("uintptr_t", copy_buf))
    for off in relocs:
        (v,) = struct.unpack_from("=Q", data, off)
        assert arena.base <= v < arena.base + arena.used
        struct.pack_into("=Q", data, off, v - arena.base + new_base)
    for off, fd in slots:
        struct.pack_into("=i", data, off, fds_at[fd])
    ffi.memmove(copy_buf, bytes(data), len(data))
    return copy_buf, new_base


def test_the_arena_relocates_to_another_address(tmp_path):
    ffi, _ = load()
    plan = _plan(tmp_path, args=["sh", "-c", "echo hi"], env=["A=1", "B=two"], cwd="/work")
    c = _CPlan(plan, [])
    relocs, slots = c.arena.tables()
    assert relocs and all(off % 8 == 0 for off in relocs)
    keep, new_base = _relocate(ffi, c.arena, relocs, slots, {})
    p = ffi.cast("struct ocirun_plan *", new_base + c.arena.offset_of(c.plan))
    # every pointer now leads into the copy, and reads what the original holds
    assert ffi.string(p.rootfs) == plan.rootfs
    assert ffi.string(p.hostname) == b"relocated"
    assert int(ffi.cast("uintptr_t", p.hostname)) - new_base == c.arena.offset_of(c.plan.hostname)
    pr = p.process
    assert [ffi.string(pr.argv[i]) for i in range(3)] == [b"sh", b"-c", b"echo hi"] and pr.argv[3] == ffi.NULL
    assert ffi.string(pr.cwd) == b"/work"
    assert [ffi.string(p.mounts[i].target) for i in range(p.n_mounts)] == [m.target for m in plan.mounts]
    assert [ffi.string(p.masked_paths[i]) for i in range(p.n_masked_paths)] == list(plan.masked_paths)
    del keep


def test_fd_fields_become_fd_slots(tmp_path):
    ffi, _ = load()
    plan = _plan(tmp_path)
    trees = [-1] * len(plan.mounts)
    trees[1] = 40
    c = _CPlan(plan, [], trees)
    _, slots = c.arena.tables()
    assert [fd for _, fd in slots] == [40]  # -1 is no fd: not a slot
    keep, new_base = _relocate(ffi, c.arena, *c.arena.tables(), {40: 7})
    p = ffi.cast("struct ocirun_plan *", new_base + c.arena.offset_of(c.plan))
    assert [p.mounts[i].tree_fd for i in range(p.n_mounts)] == [-1, 7] + [-1] * (len(plan.mounts) - 2)
    del keep
    assert set(FD_FIELDS) <= {f"struct {n}" for n in ("ocirun_nsjoin", "ocirun_mount")}


def test_a_full_arena_is_rebuilt_larger(tmp_path):
    ffi, _ = load()
    small = Arena(ffi, 64)
    small.new("char[]", b"x" * 40)
    with pytest.raises(ArenaFull):
        small.new("char[]", b"y" * 40)
    big_env = [f"V{i}={'x' * 200}" for i in range(400)]  # ~80 KB: more than the first arena
    c = _CPlan(_plan(tmp_path, env=big_env), [])
    assert c.arena.size > 16384 + 80000
    assert ffi.string(c.plan.process.envp[399]) == big_env[399].encode()


def test_a_pointer_out_of_the_arena_is_refused():
    ffi, _ = load()
    arena = Arena(ffi, 4096)
    p = arena.new("struct ocirun_symlink *")
    elsewhere = ffi.new("char[]", b"not in the arena")
    p.path = elsewhere
    with pytest.raises(ValueError, match="out of the arena"):
        arena.tables()


def _fnv1a64(data: bytes) -> int:
    h = 0xCBF29CE484222325
    for b in data:
        h = ((h ^ b) * 0x100000001B3) % 2**64
    return h


def test_install_id_is_the_front_ends():
    # FNV-1a 64 (frontend.c install_id): a known vector
    assert paths.install_id("") == "cbf29ce484222325"
    assert paths.install_id("a") == "af63dc4c8601ec8c"
    # a rootless caller's: the hash goes on over a NUL and its user namespace's inode
    # in decimal (frontend.c: the same loop, the NUL first)
    assert paths.install_id("/opt/x/bin", 4026531837) == f"{_fnv1a64(b'/opt/x/bin' + bytes(1) + b'4026531837'):016x}"
    assert paths.install_id("/opt/x/bin", 4026531837) != paths.install_id("/opt/x/bin", 4026532999)
    assert paths.install_id("/opt/x/bin", 4026531837) != paths.install_id("/opt/x/bin")


def test_a_rootless_callers_helper_lives_in_its_xdg_runtime_dir(monkeypatch, tmp_path):
    """frontend.c helper_dir: OCIRUN_HELPER_DIR; root's /run/ocirun-helper; a rootless
    caller's $XDG_RUNTIME_DIR/ocirun-helper when that is an absolute path to a
    directory of its own, else none (the direct path)."""
    monkeypatch.delenv("OCIRUN_HELPER_DIR", raising=False)
    monkeypatch.setattr(paths, "rootless", lambda: False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert paths.helper_dir() == "/run/ocirun-helper"  # root: whatever XDG_RUNTIME_DIR says
    monkeypatch.setattr(paths, "rootless", lambda: True)
    assert paths.helper_dir() == str(tmp_path / "ocirun-helper")  # (tmp_path is ours)
    monkeypatch.setenv("XDG_RUNTIME_DIR", "relative/run")
    assert paths.helper_dir() is None
    monkeypatch.delenv("XDG_RUNTIME_DIR")
    assert paths.helper_dir() is None
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "missing"))
    assert paths.helper_dir() is None
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "file"))
    assert paths.helper_dir() is None
    import os

    other = tmp_path / "other"
    other.mkdir()
    if os.geteuid() == 0:
        os.chown(other, 65534, 65534)
        monkeypatch.setenv("XDG_RUNTIME_DIR", str(other))
        assert paths.helper_dir() is None  # not the caller's own
    monkeypatch.setenv("OCIRUN_HELPER_DIR", "/somewhere")
    assert paths.helper_dir() == "/somewhere"


def test_a_parent_waiting_for_any_child_is_noticed():
    from ocirun.helper.server import _WAIT_SYSCALLS, waits_for_me

    wait4, waitid = _WAIT_SYSCALLS
    if wait4 < 0:
        pytest.skip("wait syscall numbers unknown on this machine")
    line = "{nr} {a0} 0x7ffd0 {a2} 0x0 0x1 0x8 0x7ffdfb646fb8 0x7fa11c871bd3"
    assert waits_for_me(line.format(nr=wait4, a0="0xffffffff", a2="0x0"), 42)  # waitpid(-1, ..., 0): conmon
    assert waits_for_me(line.format(nr=wait4, a0="0xffffffffffffffff", a2="0x0"), 42)
    assert waits_for_me(line.format(nr=wait4, a0=hex(42), a2="0x0"), 42)  # for us
    assert not waits_for_me(line.format(nr=wait4, a0=hex(43), a2="0x0"), 42)  # for another child (pytest)
    assert not waits_for_me(line.format(nr=wait4, a0="0xffffffff", a2="0x1"), 42)  # WNOHANG
    assert waits_for_me(f"{waitid} 0x0 0x0 0x7ffd0 0x4 0x0 0x0 0x7ff 0x7ff", 42)  # waitid(P_ALL, ..., WEXITED)
    assert not waits_for_me(f"{waitid} 0x0 0x0 0x7ffd0 0x5 0x0 0x0 0x7ff 0x7ff", 42)  # | WNOHANG
    assert not waits_for_me("running", 42)
    assert not waits_for_me("7 0x5 0x1 0xffffffff 0x0 0x0 0x0 0x7ff 0x7ff", 42)  # poll

"""Compiled filters loaded for real, in a child interpreter (no container, no root).

The child sets no_new_privs (so no CAP_SYS_ADMIN is needed), loads the BPF with
seccomp(SECCOMP_SET_MODE_FILTER, flags, &prog) through ctypes, then runs a
snippet; the parent checks its output and exit status.
"""

from __future__ import annotations

import errno
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ocirun.seccomp import compile_filter
from ocirun.seccomp import libseccomp as ls
from ocirun.seccomp.bpf import AUDIT_ARCH_X86_64
from ocirun.spec.model import Seccomp

FIXTURE = Path(__file__).parent / "fixtures" / "seccomp-default-profile.json"
pytestmark = pytest.mark.skipif(ls.native_arch() != AUDIT_ARCH_X86_64,
                                reason="syscall numbers below are x86_64's")

RUNNER = r"""
import ctypes, os, resource, sys
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
bpf = open(sys.argv[1], "rb").read()
flags, nr_seccomp = int(sys.argv[2]), int(sys.argv[3])
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
buf = ctypes.create_string_buffer(bpf, len(bpf))
prog = Prog(len(bpf) // 8, ctypes.cast(buf, ctypes.c_void_p))
if libc.prctl(38, 1, 0, 0, 0) != 0:  # PR_SET_NO_NEW_PRIVS
    sys.exit("prctl failed")
rc = libc.syscall(ctypes.c_long(nr_seccomp), ctypes.c_long(1), ctypes.c_long(flags), ctypes.byref(prog))
if rc < 0:
    print("LOAD", ctypes.get_errno(), flush=True)
    sys.exit(3)
LISTENER = rc if flags & 8 else None
def sys_(nr, *args):
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) for a in args])
    return r if r >= 0 else -ctypes.get_errno()
""" + "\n"

GETPPID, MKDIR, MOUNT, CLONE3 = 110, 83, 165, 435


def load_and_run(tmp_path, seccomp: dict, snippet: str) -> subprocess.CompletedProcess:
    f = compile_filter(Seccomp.from_dict(seccomp))
    bpf = tmp_path / "filter.bpf"
    bpf.write_bytes(f.bpf)
    return subprocess.run([sys.executable, "-c", RUNNER + snippet, str(bpf), str(f.flags), str(ls._nr_seccomp())],
                          capture_output=True, text=True, timeout=30, cwd=tmp_path)


def out(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
    return p.stdout.strip()


def test_errno_rule_with_arg_condition(tmp_path):
    p = load_and_run(tmp_path, {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES,
         "args": [{"index": 0, "value": 7, "op": "SCMP_CMP_EQ"}]}]},
        "print(sys_(110, 7), sys_(110, 8) > 0)")
    assert out(p) == f"{-errno.EACCES} True"


def test_mkdir_gets_the_chosen_errno(tmp_path):
    p = load_and_run(tmp_path, {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [
        {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EROFS}]},
        "try:\n    os.mkdir('d')\nexcept OSError as e:\n    print(e.errno)\nprint(os.getpid() > 0)")
    assert out(p).split() == [str(errno.EROFS), "True"]
    assert not (tmp_path / "d").exists()


def test_default_errno_ret_with_allow_list(tmp_path):
    profile = json.loads(FIXTURE.read_text())
    profile["defaultErrnoRet"] = errno.ENOTSUP
    p = load_and_run(tmp_path, profile,
                     "print(sys_(165, 0, 0, 0, 0, 0), sys_(435, 0, 0), sys_(9999), len(os.listdir('/')) > 0)")
    # 9999: newer than every syscall the profile names: runc's ENOSYS stub (enosys.py)
    assert out(p).split() == [str(-errno.ENOTSUP), str(-errno.ENOSYS), str(-errno.ENOSYS), "True"]


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP"])
def test_kill_and_trap_end_in_sigsys(tmp_path, action):
    p = load_and_run(tmp_path, {"defaultAction": "SCMP_ACT_ALLOW",
                                "syscalls": [{"names": ["getppid"], "action": action}]},
                     "print('before', flush=True)\nsys_(110)\nprint('after')")
    assert p.returncode == -signal.SIGSYS
    assert p.stdout == "before\n"


@pytest.mark.parametrize(("action", "survives"), [("SCMP_ACT_KILL_THREAD", True), ("SCMP_ACT_KILL_PROCESS", False)])
def test_kill_thread_kills_only_the_thread(tmp_path, action, survives):
    snippet = ("import threading, time\n"
               "t = threading.Thread(target=sys_, args=(110,), daemon=True)\n"
               "t.start()\n"
               # until the thread is gone (killed, or done if allowed), not a fixed time
               "deadline = time.monotonic() + 30\n"
               "while len(os.listdir('/proc/self/task')) > 1 and time.monotonic() < deadline:\n"
               "    time.sleep(0.01)\n"
               "print('alive', flush=True)\nos._exit(0)")
    p = load_and_run(tmp_path, {"defaultAction": "SCMP_ACT_ALLOW",
                                "syscalls": [{"names": ["getppid"], "action": action}]}, snippet)
    if survives:
        assert out(p) == "alive"
    else:
        assert p.returncode == -signal.SIGSYS


def test_log_allows(tmp_path):
    p = load_and_run(tmp_path, {"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"],
                                "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_LOG"}]},
                     "print(sys_(110) > 0)")
    assert out(p) == "True"


def test_trace_without_a_tracer_is_enosys(tmp_path):
    p = load_and_run(tmp_path, {"defaultAction": "SCMP_ACT_ALLOW",
                                "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_TRACE", "errnoRet": 3}]},
                     "print(sys_(110))")
    assert out(p) == str(-errno.ENOSYS)


def test_notify_gives_a_listener_and_enosys_once_it_is_closed(tmp_path):
    p = load_and_run(tmp_path, {"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/unused",
                                "flags": ["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
                                "syscalls": [{"names": ["getppid"], "action": "SCMP_ACT_NOTIFY"}]},
                     "print(LISTENER > 2)\nos.close(LISTENER)\nprint(sys_(110))")
    assert out(p).split() == ["True", str(-errno.ENOSYS)]


def test_spec_allow_flag_loads(tmp_path):
    p = load_and_run(tmp_path, {"defaultAction": "SCMP_ACT_ALLOW",
                                "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"]},
                     "print('ok')")
    assert out(p) == "ok"


def test_argument_operators_for_real(tmp_path):
    ops = [("SCMP_CMP_NE", 5), ("SCMP_CMP_LT", 5), ("SCMP_CMP_LE", 5), ("SCMP_CMP_EQ", 5),
           ("SCMP_CMP_GE", 5), ("SCMP_CMP_GT", 5)]
    # one syscall-argument slot per operator: getppid's arg i is tested by rule i
    rules = [{"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 100 + i,
              "args": [{"index": i, "value": v, "op": op}]} for i, (op, v) in enumerate(ops)]
    snippet = ("res = []\n"
               "for i in range(6):\n"
               "    for v in (4, 5, 6):\n"
               # a neutral vector: arg i makes rule i false (NE 5, LT 5, LE 5, EQ 5, GE 5, GT 5)
               "        a = [5, 10, 10, 4, 0, 0]\n"
               "        a[i] = v\n"
               "        res.append(sys_(110, *a))\n"
               "print(' '.join(map(str, res)))")
    p = load_and_run(tmp_path, {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": rules}, snippet)
    got = list(map(int, out(p).split()))
    expect = []
    truth = {"SCMP_CMP_NE": lambda v: v != 5, "SCMP_CMP_LT": lambda v: v < 5, "SCMP_CMP_LE": lambda v: v <= 5,
             "SCMP_CMP_EQ": lambda v: v == 5, "SCMP_CMP_GE": lambda v: v >= 5, "SCMP_CMP_GT": lambda v: v > 5}
    for i, (op, _) in enumerate(ops):
        for v in (4, 5, 6):
            expect.append(-(100 + i) if truth[op](v) else None)
    for g, e in zip(got, expect, strict=True):
        if e is None:
            assert g > 0
        else:
            assert g == e

"""Seccomp in real containers, differential against runc on fresh copies of the same bundle.

Each case runs the same config under runc and ocirun and compares the exit
status and the container's output. runc 1.1.5 (Debian) has no seccomp flags
support ("seccomp flags are not yet supported by runc"), so flag tests are
ocirun-only.
"""

from __future__ import annotations

import array
import errno
import fcntl
import json
import os
import shutil
import socket
import struct
import subprocess
import threading
import time
import uuid
from pathlib import Path

import pytest
import runtime_tools_seccomp as rts

REPO = Path(__file__).resolve().parents[2]
PROFILE = json.loads((REPO / "tests" / "unit" / "fixtures" / "seccomp-default-profile.json").read_text())
SIGSYS_EXIT = 128 + 31

pytestmark = [pytest.mark.root,
              pytest.mark.skipif(os.uname().machine != "x86_64", reason="x86_64 syscall set and i386 probe")]


# --------------------------------------------------------------------------- helpers


def i386_mkdir_binary(path: Path) -> None:
    """A 116-byte static i386 ELF: mkdir("/m32", 0777) through int 0x80, exit(errno)."""
    base, code_off = 0x08048000, 52 + 32
    path_off = code_off + 28
    code = (b"\xb8" + struct.pack("<I", 39)  # mov eax, 39 (i386 mkdir)
            + b"\xbb" + struct.pack("<I", base + path_off)  # mov ebx, path
            + b"\xb9" + struct.pack("<I", 0o777)  # mov ecx, 0777
            + b"\xcd\x80"  # int 0x80
            + b"\xf7\xd8\x89\xc3"  # neg eax; mov ebx, eax
            + b"\xb8" + struct.pack("<I", 1) + b"\xcd\x80")  # exit(ebx)
    body = code + b"/m32\0"
    size = code_off + len(body)
    ehdr = struct.pack("<16sHHIIIIIHHHHHH", b"\x7fELF\x01\x01\x01" + b"\0" * 9, 2, 3, 1, base + code_off,
                       52, 0, 0, 52, 32, 1, 0, 0, 0)
    phdr = struct.pack("<IIIIIIII", 1, 0, base, base, size, size, 5, 0x1000)
    path.write_bytes(ehdr + phdr + body)
    path.chmod(0o755)


def x86_64_syscall_binary(path: Path, nr: int) -> None:
    """A static x86_64 ELF: syscall(nr, 0, 0, 0), exit(-return value): its errno, or 0."""
    base, code_off = 0x400000, 64 + 56
    code = (b"\xb8" + struct.pack("<I", nr)  # mov eax, nr
            + b"\x31\xff\x31\xf6\x31\xd2\x0f\x05"  # xor edi/esi/edx; syscall
            + b"\xf7\xd8\x89\xc7"  # neg eax; mov edi, eax
            + b"\xb8" + struct.pack("<I", 60) + b"\x0f\x05")  # exit(edi)
    size = code_off + len(code)
    ehdr = struct.pack("<16sHHIQQQIHHHHHH", b"\x7fELF\x02\x01\x01" + b"\0" * 9, 2, 0x3E, 1, base + code_off,
                       64, 0, 0, 64, 56, 1, 0, 0, 0)
    phdr = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, size, size, 0x1000)
    path.write_bytes(ehdr + phdr + code)
    path.chmod(0o755)


class Result:
    def __init__(self, p: subprocess.CompletedProcess):
        self.code = p.returncode
        self.out = p.stdout.decode()
        self.err = p.stderr.decode()

    def __repr__(self) -> str:
        return f"Result({self.code}, out={self.out!r}, err={self.err!r})"


def prepare(bundle, seccomp: dict | None, *args: str, nnp: bool = True):
    def f(c):
        c["process"]["args"] = list(args)
        c["process"]["terminal"] = False
        c["process"]["noNewPrivileges"] = nnp
        if seccomp is None:
            c["linux"].pop("seccomp", None)
        else:
            c["linux"]["seccomp"] = seccomp

    bundle.edit(f)


def run_ocirun(ocirun, bundle) -> Result:
    return Result(ocirun("run", "--bundle", str(bundle.path), ocirun.new_id(), check=False))


def run_runc(bundle, root: Path) -> Result:
    cid = f"runc-{os.getpid()}-{len(list(root.glob('*'))) if root.exists() else 0}"
    try:
        p = subprocess.run(["runc", "--root", str(root), "run", "--bundle", str(bundle.path), cid],
                           capture_output=True, timeout=60, cwd=bundle.path)
    finally:
        subprocess.run(["runc", "--root", str(root), "delete", "--force", cid], capture_output=True)
    return Result(p)


def both(ocirun, bundle, tmp_path, seccomp: dict | None, *args: str, nnp: bool = True) -> tuple[Result, Result]:
    """(runc, ocirun) for the same config on fresh copies of the bundle."""
    prepare(bundle, seccomp, *args, nnp=nnp)
    n = len(list(tmp_path.glob("runc-bundle-*")))
    rb = bundle.copy(tmp_path / f"runc-bundle-{n}")
    ob = bundle.copy(tmp_path / f"ocirun-bundle-{n}")
    try:
        return run_runc(rb, tmp_path / "runc-root"), run_ocirun(ocirun, ob)
    finally:
        shutil.rmtree(rb.path, ignore_errors=True)
        shutil.rmtree(ob.path, ignore_errors=True)


def same(ocirun, bundle, tmp_path, seccomp, *args, nnp=True) -> Result:
    r, o = both(ocirun, bundle, tmp_path, seccomp, *args, nnp=nnp)
    assert (o.code, o.out) == (r.code, r.out), f"runc {r} vs ocirun {o}"
    assert o.err == r.err, f"runc {r} vs ocirun {o}"  # the container's own stderr
    return o


def allow_but(*rules: dict, **kw) -> dict:
    return {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": list(rules), **kw}


MKDIR = ["mkdir", "mkdirat"]
PROBE = "mkdir /probe; echo rc=$?"


# --------------------------------------------------------------------------- actions


@pytest.mark.parametrize("nnp", [True, False], ids=["nnp", "no-nnp"])
def test_errno_default_eperm_and_errno_ret(ocirun, bundle, tmp_path, nnp):
    o = same(ocirun, bundle, tmp_path, allow_but({"names": MKDIR, "action": "SCMP_ACT_ERRNO"}),
             "sh", "-c", PROBE, nnp=nnp)
    assert o.out == "rc=1\n" and "Operation not permitted" in o.err
    o = same(ocirun, bundle, tmp_path, allow_but({"names": MKDIR, "action": "SCMP_ACT_ERRNO",
                                                  "errnoRet": errno.EROFS}), "sh", "-c", PROBE, nnp=nnp)
    assert "Read-only file system" in o.err


def test_default_errno_ret(ocirun, bundle, tmp_path):
    profile = dict(PROFILE, defaultErrnoRet=errno.EROFS)
    profile["syscalls"] = [r for r in PROFILE["syscalls"]
                           if not set(r["names"]) & {"mkdir", "mkdirat"}] + [
        {"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES}]
    o = same(ocirun, bundle, tmp_path, profile, "sh", "-c", "mkdir /a; echo $?; mount -t tmpfs t /mnt; echo $?")
    assert "Permission denied" in o.err  # the rule's errnoRet
    assert "Read-only file system" in o.err  # mount: not in the allow list -> defaultErrnoRet


@pytest.mark.parametrize("action", ["SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP"])
def test_kill_actions_end_the_process_with_sigsys(ocirun, bundle, tmp_path, action):
    o = same(ocirun, bundle, tmp_path, allow_but({"names": MKDIR, "action": action}), "mkdir", "/x")
    assert o.code == SIGSYS_EXIT
    # the shell survives its child's death and reports it, as under runc
    o = same(ocirun, bundle, tmp_path, allow_but({"names": MKDIR, "action": action}), "sh", "-c", PROBE)
    assert o.out == f"rc={SIGSYS_EXIT}\n"


def test_kill_as_default_action(ocirun, bundle):
    # ocirun only: runc 1.1.5 hangs here (its init dies inside runc's own code, after
    # loading the filter, and `runc run` waits forever). ocirun loads the filter right
    # before execve, so execve itself is killed: exit 159.
    prepare(bundle, {"defaultAction": "SCMP_ACT_KILL"}, "true")
    o = run_ocirun(ocirun, bundle)
    assert o.code == SIGSYS_EXIT, o


@pytest.mark.parametrize("action", ["SCMP_ACT_LOG", "SCMP_ACT_ALLOW"])
def test_log_and_allow_let_the_call_through(ocirun, bundle, tmp_path, action):
    o = same(ocirun, bundle, tmp_path,
             {"defaultAction": "SCMP_ACT_ERRNO" if action == "SCMP_ACT_ALLOW" else "SCMP_ACT_ALLOW",
              "syscalls": [{"names": MKDIR, "action": action}, *PROFILE["syscalls"]]
              if action == "SCMP_ACT_ALLOW" else [{"names": MKDIR, "action": action}]},
             "sh", "-c", "mkdir /probe && echo made")
    assert o.out == "made\n"


def test_trace_without_tracer_is_enosys(ocirun, bundle, tmp_path):
    o = same(ocirun, bundle, tmp_path, allow_but({"names": MKDIR, "action": "SCMP_ACT_TRACE", "errnoRet": 7}),
             "sh", "-c", PROBE)
    assert "Function not implemented" in o.err or "not implemented" in o.err.lower()


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(("op", "value", "value_two", "refused"), [
    ("SCMP_CMP_EQ", 0o600, None, {600}),
    ("SCMP_CMP_NE", 0o600, None, {400, 644, 700}),
    ("SCMP_CMP_LT", 0o600, None, {400}),
    ("SCMP_CMP_LE", 0o600, None, {400, 600}),
    ("SCMP_CMP_GE", 0o600, None, {600, 644, 700}),
    ("SCMP_CMP_GT", 0o600, None, {644, 700}),
    ("SCMP_CMP_MASKED_EQ", 0o077, 0, {400, 600, 700}),  # group/other bits all clear
    ("SCMP_CMP_MASKED_EQ", 0o070, 0o040, {644}),  # value = mask, valueTwo = the value
])
def test_argument_operators(ocirun, bundle, tmp_path, op, value, value_two, refused):
    arg = {"index": 1, "value": value, "op": op}
    if value_two is not None:
        arg["valueTwo"] = value_two
    modes = (400, 600, 644, 700)
    script = f"touch /f; for m in {' '.join(map(str, modes))}; do chmod $m /f 2>/dev/null; echo $m=$?; done"
    o = same(ocirun, bundle, tmp_path, allow_but({"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "args": [arg]}),
             "sh", "-c", script)
    assert o.out == "".join(f"{m}={int(m in refused)}\n" for m in modes)


def test_two_args_on_one_index_are_either_or(ocirun, bundle, tmp_path):
    rule = {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "args": [
        {"index": 1, "value": 0o400, "op": "SCMP_CMP_EQ"}, {"index": 1, "value": 0o700, "op": "SCMP_CMP_EQ"}]}
    o = same(ocirun, bundle, tmp_path, allow_but(rule),
             "sh", "-c", "touch /f; for m in 400 600 700; do chmod $m /f 2>/dev/null; echo $m=$?; done")
    assert o.out == "400=1\n600=0\n700=1\n"


def test_args_on_two_indexes_are_both(ocirun, bundle, tmp_path):
    # chmod(path, mode): arg0 is a pointer (never 0), so "arg0 != 0 && mode == 0600"
    rule = {"names": ["chmod"], "action": "SCMP_ACT_ERRNO", "args": [
        {"index": 0, "value": 0, "op": "SCMP_CMP_NE"}, {"index": 1, "value": 0o600, "op": "SCMP_CMP_EQ"}]}
    o = same(ocirun, bundle, tmp_path, allow_but(rule),
             "sh", "-c", "touch /f; for m in 400 600; do chmod $m /f 2>/dev/null; echo $m=$?; done")
    assert o.out == "400=0\n600=1\n"


# --------------------------------------------------------------------------- architectures


@pytest.mark.parametrize(("archs", "expected"), [
    (None, SIGSYS_EXIT),  # i386 not in the filter: libseccomp's bad-arch action kills
    (["SCMP_ARCH_X86"], errno.EACCES),
    (["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"], errno.EACCES),
])
def test_multi_arch_i386_syscalls(ocirun, bundle, tmp_path, archs, expected):
    i386_mkdir_binary(bundle.rootfs / "bin" / "m32")
    sc = allow_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.EACCES})
    if archs is not None:
        sc["architectures"] = archs
    o = same(ocirun, bundle, tmp_path, sc, "/bin/m32")
    assert o.code == expected


# --------------------------------------------------------------------------- profiles


def test_default_profile_runs_busybox(ocirun, bundle, tmp_path):
    script = ("echo hello; ls / >/dev/null && echo ls-ok; mkdir /tmp/d && echo mkdir-ok; "
              "cat /proc/self/status | grep -c Seccomp; grep Seccomp: /proc/self/status; "
              "sleep 0.01 && echo sleep-ok; mount -t tmpfs t /mnt 2>/dev/null; echo mount=$?; "
              "unshare -n true 2>/dev/null; echo unshare=$?; id -u")
    o = same(ocirun, bundle, tmp_path, PROFILE, "sh", "-c", script)
    assert o.code == 0
    assert "hello\nls-ok\nmkdir-ok\n" in o.out and "Seccomp:\t2\n" in o.out
    assert "mount=255\n" in o.out or "mount=1\n" in o.out
    assert "unshare=1\n" in o.out


NEWER_SYSCALLS = (462, 1000)  # mseal (kernel 6.10, unknown to libseccomp 2.5.4); no syscall at all


@pytest.mark.parametrize("variant", ["profile", "no-architectures", "x86-only", "kill-default", "log-default"])
def test_syscalls_newer_than_the_profile_as_runc(ocirun, bundle, tmp_path, variant):
    """runc's -ENOSYS stub (ocirun/seccomp/enosys.py): ENOSYS above the largest syscall
    the profile names, on the listed architectures only, unless the default lets calls through."""
    for nr in NEWER_SYSCALLS:
        x86_64_syscall_binary(bundle.rootfs / "bin" / f"sys{nr}", nr)
    profile = json.loads(json.dumps(PROFILE))
    if variant == "no-architectures":
        del profile["architectures"]
    elif variant == "x86-only":
        profile["architectures"] = ["SCMP_ARCH_X86"]
    elif variant.endswith("-default"):
        profile["defaultAction"] = {"kill": "SCMP_ACT_KILL_PROCESS", "log": "SCMP_ACT_LOG"}[variant[:-8]]
        profile.pop("defaultErrnoRet", None)
    o = same(ocirun, bundle, tmp_path, profile, "sh", "-c",
             "; ".join(f"/bin/sys{nr}; echo {nr}=$?" for nr in NEWER_SYSCALLS))
    from kernel_probes import SYS_MSEAL, syscall_exists

    # log: mseal(0, 0, 0) reaches the kernel, which succeeds (Linux 6.10) or has no mseal
    logged = 0 if syscall_exists(SYS_MSEAL, 0, 0, 0) else errno.ENOSYS
    expected = {"profile": (errno.ENOSYS, errno.ENOSYS), "no-architectures": (errno.EPERM, errno.EPERM),
                "x86-only": (errno.EPERM, errno.EPERM), "kill-default": (errno.ENOSYS, errno.ENOSYS),
                "log-default": (logged, errno.ENOSYS)}[variant]
    assert o.out == "".join(f"{nr}={e}\n" for nr, e in zip(NEWER_SYSCALLS, expected, strict=True))


def test_unknown_syscall_names_are_skipped(ocirun, bundle, tmp_path):
    o = same(ocirun, bundle, tmp_path, allow_but({"names": ["no_such_syscall", *MKDIR], "action": "SCMP_ACT_ERRNO"}),
             "sh", "-c", PROBE)
    assert o.out == "rc=1\n"


def test_flags_ocirun_only(ocirun, bundle):
    # runc 1.1.5: "seccomp flags are not yet supported by runc"
    from kernel_probes import seccomp_flags

    if not seccomp_flags("SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC"):
        pytest.skip("the kernel lacks one of the flags LOG, SPEC_ALLOW, TSYNC")
    prepare(bundle, allow_but({"names": MKDIR, "action": "SCMP_ACT_LOG"},
                              flags=["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW",
                                     "SECCOMP_FILTER_FLAG_TSYNC"]),
            "sh", "-c", "mkdir /p && echo made")
    o = run_ocirun(ocirun, bundle)
    assert (o.code, o.out) == (0, "made\n"), o


def _kernel_log() -> list[str]:
    return subprocess.run(["dmesg"], capture_output=True, text=True, check=True).stdout.splitlines()


@pytest.mark.skipif(shutil.which("dmesg") is None, reason="no dmesg")
@pytest.mark.parametrize("flag", [True, False], ids=["log-flag", "no-flag"])
def test_log_flag_reaches_the_kernel(ocirun, bundle, flag):
    """SECCOMP_FILTER_FLAG_LOG makes the kernel log SECCOMP_RET_ERRNO answers too
    (type=1326 lines): proof that the child passes the flag to seccomp(2)."""
    if "errno" not in Path("/proc/sys/kernel/seccomp/actions_logged").read_text().split():
        pytest.skip("the kernel does not log errno actions (kernel.seccomp.actions_logged)")
    prepare(bundle, allow_but({"names": MKDIR, "action": "SCMP_ACT_ERRNO"},
                              flags=["SECCOMP_FILTER_FLAG_LOG"] if flag else []),
            "sh", "-c", "mkdir /p; echo rc=$?")
    before = set(_kernel_log())  # (the ring buffer may be full: not a count)
    o = run_ocirun(ocirun, bundle)
    assert (o.code, o.out) == (0, "rc=1\n"), o

    def logged() -> list[str]:  # the kernel logs the action without its data: ERRNO = 0x50000
        return [line for line in _kernel_log() if line not in before
                and 'comm="mkdir"' in line and "syscall=83 " in line and "code=0x50000" in line]

    # kauditd prints asynchronously (and late on a busy machine); waited for less
    # where nothing must come
    deadline = time.monotonic() + (10 if flag else 3)
    while not logged() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert bool(logged()) == flag, logged()


def test_filter_is_in_place_in_a_created_container(api, ocirun, bundle):
    prepare(bundle, allow_but({"names": MKDIR, "action": "SCMP_ACT_ERRNO"}), "sleep", "10")
    with api.create(ocirun.new_id(), bundle.path, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL) as c:
        pid = c.pid
        c.start()
        deadline = time.time() + 5
        while time.time() < deadline:
            status = Path(f"/proc/{pid}/status").read_text()
            if "sleep" in Path(f"/proc/{pid}/comm").read_text():
                break
            time.sleep(0.02)
        assert "Seccomp:\t2" in status


@pytest.mark.parametrize(("seccomp", "json_path", "words"), [
    # schema
    ({"defaultAction": "SCMP_ACT_BOGUS"}, "$.linux.seccomp.defaultAction", "SCMP_ACT_BOGUS"),
    (allow_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 1, "value": 1, "op": "EQ"}]}),
     "$.linux.seccomp.syscalls[0].args[0].op", "EQ"),
    # the spec's MUSTs (ocirun/spec/rules.py)
    ({"defaultAction": "SCMP_ACT_KILL", "defaultErrnoRet": 3}, "$.linux.seccomp.defaultErrnoRet",
     "does not return an errno"),
    (allow_but({"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}), "$.linux.seccomp.syscalls[0].action",
     "listenerPath"),
    (allow_but(listenerMetadata="m"), "$.linux.seccomp.listenerMetadata", "listenerPath"),
    # what the compiler refuses (ocirun/seccomp/compile.py), with the host's libseccomp
    (allow_but({"names": ["write"], "action": "SCMP_ACT_NOTIFY"}, listenerPath="/nowhere"),
     "$.linux.seccomp.syscalls[0].names[0]", "write"),
    (allow_but(architectures=["SCMP_ARCH_SH"]), "$.linux.seccomp.architectures[0]", "libseccomp"),
    (allow_but(flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]), "$.linux.seccomp.flags[0]", "SCMP_ACT_NOTIFY"),
    (allow_but({"names": ["mkdir"], "action": "SCMP_ACT_ERRNO", "errnoRet": 70000}),
     "$.linux.seccomp.syscalls[0].errnoRet", "16 bits"),
], ids=["action", "op", "errno-on-kill", "notify-no-listener", "metadata-no-listener", "notify-write",
        "arch", "flag", "errno-range"])
def test_bad_seccomp_is_one_clear_error_and_leaves_nothing(ocirun, bundle, seccomp, json_path, words):
    prepare(bundle, seccomp, "true")
    for verb in (("run",), ("create",)):
        p = ocirun(*verb, "--bundle", str(bundle.path), ocirun.new_id(), check=False)
        err = p.stderr.decode()
        assert p.returncode == 1, p
        # one line: "<bundle>/config.json: <JSON path>: <why>"
        assert err.count("\n") == 1 and err.startswith(f"{bundle.path}/config.json: {json_path}: "), err
        assert words in err
        assert not ocirun.root.exists() or os.listdir(ocirun.root) == [], os.listdir(ocirun.root)


# --------------------------------------------------------------------------- notify

SECCOMP_IOCTL_NOTIF_RECV = 0xC0502100  # _IOWR('!', 0, struct seccomp_notif), 80 bytes
SECCOMP_IOCTL_NOTIF_SEND = 0xC0182101  # _IOWR('!', 1, struct seccomp_notif_resp), 24 bytes
_NOTIF = struct.Struct("=QII" + "IIQ6Q")  # id, pid, flags, seccomp_data{nr, arch, ip, args[6]}
_RESP = struct.Struct("=QqiI")  # id, val, error, flags


class Agent:
    """A tiny seccomp agent: takes the fd from the runtime, answers each notified
    mkdir with ``error`` (0 = pretend success), records what it saw."""

    def __init__(self, path: Path, error: int, answers: int = 1, close_wait: float = 10):
        self.path = str(path)
        #: how long to wait for the runtime to close its end after the state
        self.close_wait = close_wait
        self.error = error
        self.answers = answers
        self.state: dict | None = None
        self.fds: list[int] = []
        self.seen: list[int] = []
        self.failure: BaseException | None = None
        self.closed_by_runtime: bool | None = None
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.srv.bind(self.path)
        self.srv.listen(1)
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            conn, _ = self.srv.accept()
            data, anc, _, _ = conn.recvmsg(1 << 16, socket.CMSG_SPACE(4 * 4))
            # read until the JSON is complete, not until EOF: runc 1.1.5 keeps the
            # connection open after sending (ocirun closes it, as the spec says)
            while True:
                try:
                    self.state = json.loads(data)
                    break
                except ValueError:
                    chunk = conn.recv(1 << 16)
                    if not chunk:
                        raise
                    data += chunk
            conn.settimeout(self.close_wait)
            try:
                self.closed_by_runtime = conn.recv(1) == b""
            except TimeoutError:
                self.closed_by_runtime = False
            conn.close()
            for level, kind, payload in anc:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    a = array.array("i")
                    a.frombytes(payload)
                    self.fds.extend(a)
            fd = self.fds[0]
            for _ in range(self.answers):
                buf = bytearray(_NOTIF.size)
                fcntl.ioctl(fd, SECCOMP_IOCTL_NOTIF_RECV, buf)
                nid, _pid, _flags, nr, *_ = _NOTIF.unpack(buf)
                self.seen.append(nr)
                resp = bytearray(_RESP.pack(nid, 0, -self.error if self.error else 0, 0))
                fcntl.ioctl(fd, SECCOMP_IOCTL_NOTIF_SEND, resp)
        except BaseException as e:  # reported by the test
            self.failure = e

    def close(self) -> None:
        self.thread.join(10)
        self.srv.close()
        for fd in self.fds:
            os.close(fd)


@pytest.mark.parametrize("nnp", [True, False], ids=["nnp", "no-nnp"])
@pytest.mark.parametrize(("error", "expected_out"), [(errno.EROFS, "rc=1\n"), (0, "rc=0\n")])
def test_notify_listener_answers_mkdir(ocirun, bundle, tmp_path, nnp, error, expected_out):
    agent = Agent(tmp_path / "agent.sock", error)
    try:
        prepare(bundle, allow_but({"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"},
                                  listenerPath=agent.path, listenerMetadata="hello-agent"),
                "sh", "-c", PROBE + "; ls -d /probe 2>/dev/null || echo absent", nnp=nnp)
        cid = ocirun.new_id()
        p = ocirun("run", "--bundle", str(bundle.path), cid, check=False, timeout=30)
        agent.thread.join(10)
        assert agent.failure is None, agent.failure
        assert p.returncode == 0, p
        # the agent decided; with success nothing was really created
        assert p.stdout.decode() == expected_out + "absent\n"
        if error:
            assert b"Read-only file system" in p.stderr
        assert agent.seen == [83]  # x86_64 mkdir
        st = agent.state
        assert st is not None
        assert st["fds"] == ["seccompFd"] and st["metadata"] == "hello-agent"
        assert st["state"]["id"] == cid and st["state"]["status"] == "creating"
        assert st["state"]["bundle"] == str(bundle.path) and st["pid"] == st["state"]["pid"] > 0
        assert len(agent.fds) == 1
        assert agent.closed_by_runtime  # "it MUST be closed after sending a seccomp state"
    finally:
        agent.close()


def test_notify_same_as_runc(ocirun, bundle, tmp_path):
    results = []
    for runtime in ("runc", "ocirun"):
        agent = Agent(tmp_path / f"{runtime}.sock", errno.EACCES, close_wait=0.5)  # runc keeps it open
        try:
            prepare(bundle, allow_but({"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"},
                                      listenerPath=agent.path, listenerMetadata="m"), "sh", "-c", PROBE)
            b = bundle.copy(tmp_path / f"{runtime}-bundle")
            r = run_runc(b, tmp_path / "runc-root") if runtime == "runc" else run_ocirun(ocirun, b)
            agent.thread.join(10)
            assert agent.failure is None
            results.append((r.code, r.out, r.err, sorted(agent.state), agent.state["fds"],
                            agent.state["metadata"], agent.state["state"]["status"]))
        finally:
            agent.close()
    assert results[0] == results[1]


def test_notify_without_a_listener_fails_create(ocirun, bundle, tmp_path):
    prepare(bundle, allow_but({"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"},
                              listenerPath=str(tmp_path / "nobody.sock")), "true")
    p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id(), check=False)
    assert p.returncode == 1
    assert b"nobody.sock" in p.stderr


def test_notify_with_wait_killable_recv(ocirun, bundle, tmp_path):
    # the kernel takes WAIT_KILLABLE_RECV only with NEW_LISTENER (6.0+); runc 1.1.5 refuses flags
    from kernel_probes import seccomp_flags

    if not seccomp_flags("SECCOMP_FILTER_FLAG_NEW_LISTENER", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"):
        pytest.skip("the kernel lacks SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (Linux 6.0)")
    agent = Agent(tmp_path / "agent.sock", errno.EROFS)
    try:
        prepare(bundle, allow_but({"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}, listenerPath=agent.path,
                                  flags=["SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]), "sh", "-c", PROBE)
        o = run_ocirun(ocirun, bundle)
        agent.thread.join(10)
        assert agent.failure is None, agent.failure
        assert (o.code, o.out) == (0, "rc=1\n") and "Read-only file system" in o.err, o
        assert agent.seen == [83]
    finally:
        agent.close()


def test_features_cover_runcs_on_this_host(ocirun):
    """`ocirun features` recognises at least what `runc features` does with the same
    libseccomp, and says which libseccomp that is, as runc does."""
    ours = json.loads(ocirun("features").stdout)
    theirs = json.loads(subprocess.run(["runc", "features"], capture_output=True, check=True, timeout=30).stdout)
    o, t = ours["linux"]["seccomp"], theirs["linux"]["seccomp"]
    assert o["enabled"] is t["enabled"] is True
    for key in ("actions", "operators", "archs"):
        assert set(t[key]) <= set(o[key]), key
    assert o["actions"] == t["actions"] and o["operators"] == t["operators"]
    lib = "io.github.seccomp.libseccomp.version"
    assert ours["annotations"][lib] == theirs["annotations"][lib]


@pytest.mark.parametrize("nnp", [True, False], ids=["nnp", "no-nnp"])
def test_exec_hands_its_listener_fd_to_the_agent(ocirun, bundle, tmp_path, nnp):
    """An exec'd process loads the container's filter too, so with SCMP_ACT_NOTIFY its
    own listener fd goes to listenerPath, with the state runc sends for it: status
    running, the state's pid the init's, the message's pid the exec'd process's."""
    sock = tmp_path / "agent.sock"
    first = Agent(sock, 0, answers=0)  # the init's fd, at create
    prepare(bundle, allow_but({"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}, listenerPath=str(sock),
                              listenerMetadata="md"), "sleep", "1000", nnp=nnp)
    cid = ocirun.new_id()
    try:
        ocirun("run", "-d", "--bundle", str(bundle.path), cid)
        first.thread.join(10)
        assert first.failure is None, first.failure
        assert first.state is not None and first.state["state"]["status"] == "creating"
    finally:
        first.close()
    sock.unlink()
    second = Agent(sock, errno.EROFS)
    try:
        p = ocirun("exec", cid, "sh", "-c", PROBE, check=False, timeout=30)
        second.thread.join(10)
        assert second.failure is None, second.failure
        assert (p.returncode, p.stdout) == (0, b"rc=1\n") and b"Read-only file system" in p.stderr, p
        assert second.seen == [83]
        st, init = second.state, ocirun.state(cid)["pid"]
        assert st is not None and st["fds"] == ["seccompFd"] and st["metadata"] == "md"
        assert st["state"]["status"] == "running" and st["state"]["id"] == cid
        assert st["state"]["pid"] == init and st["pid"] not in (init, 0)
        assert second.closed_by_runtime
    finally:
        second.close()


def test_exec_without_a_listener_fails_and_leaves_no_process(ocirun, bundle, tmp_path):
    sock = tmp_path / "agent.sock"
    first = Agent(sock, 0, answers=0)
    prepare(bundle, allow_but({"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}, listenerPath=str(sock)),
            "sleep", "1000")
    cid = ocirun.new_id()
    try:
        ocirun("run", "-d", "--bundle", str(bundle.path), cid)
        first.thread.join(10)
    finally:
        first.close()
    sock.unlink()  # nobody listens any more
    init = ocirun.state(cid)["pid"]
    p = ocirun("exec", cid, "sh", "-c", "echo ran", check=False, timeout=30)
    assert p.returncode != 0 and b"agent.sock" in p.stderr and b"ran" not in p.stdout, p
    pidns = os.readlink(f"/proc/{init}/ns/pid")
    inside = []
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            if os.readlink(f"/proc/{entry}/ns/pid") == pidns:
                inside.append(int(entry))
        except OSError:
            pass
    assert inside == [init] and ocirun.state(cid)["status"] == "running"


# --------------------------------------------------------------------------- fds under a profile

# A profile that does not let close_range(2) through, as runtime-tools' default
# profile (older than the syscall, so runc's stub answers ENOSYS for it) and the
# OCI conformance suite's every container: the runtime's own fd cleanup must not
# depend on it.
NO_CLOSE_RANGE = allow_but({"names": ["close_range"], "action": "SCMP_ACT_ERRNO", "errnoRet": errno.ENOSYS})


@pytest.mark.parametrize("nnp", [True, False], ids=["nnp", "no-nnp"])
def test_profile_refusing_close_range_runs_as_runc(ocirun, bundle, tmp_path, nnp):
    """Without no_new_privs the filter is loaded before the uid change, so the fds are
    made CLOEXEC before it is loaded (once failed: 'close_range: function not implemented')."""
    o = same(ocirun, bundle, tmp_path, NO_CLOSE_RANGE, "sh", "-c", "ls /proc/self/fd | wc -l", nnp=nnp)
    assert o.code == 0 and o.out.strip() == "4", o  # 0-2 and ls's own directory fd


@pytest.mark.parametrize("nnp", [True, False], ids=["nnp", "no-nnp"])
def test_exec_under_a_profile_refusing_close_range(ocirun, bundle, nnp):
    prepare(bundle, NO_CLOSE_RANGE, "sleep", "1000", nnp=nnp)
    cid = ocirun.new_id()
    ocirun("run", "-d", "--bundle", str(bundle.path), cid)
    p = ocirun("exec", cid, "sh", "-c", "ls /proc/self/fd | wc -l", check=False, timeout=30)
    assert p.returncode == 0 and p.stdout.strip() == b"4", p


# --------------------------------------------------------------------------- the runtime's cwd check under a profile

# runtime-tools' linux_seccomp test: a profile refusing getcwd(2). The init's
# CVE-2024-21626 check (getcwd must name a path inside the root) ran after a
# filter loaded early (no no_new_privs): create failed with "current working
# directory is outside of container mount namespace root", as runc 1.1.5's
# "failed to verify if current working directory is safe" does.
NO_GETCWD = allow_but({"names": ["getcwd"], "action": "SCMP_ACT_ERRNO"})


def test_profile_refusing_getcwd_with_nnp_runs_as_runc(ocirun, bundle, tmp_path):
    o = same(ocirun, bundle, tmp_path, NO_GETCWD, "echo", "started", nnp=True)
    assert o.code == 0 and o.out == "started\n", o


def test_profile_refusing_getcwd_without_nnp_still_starts(ocirun, bundle):
    # ocirun only: runc 1.1.5 fails create here (its check follows the filter).
    prepare(bundle, NO_GETCWD, "echo", "started", nnp=False)
    o = run_ocirun(ocirun, bundle)
    assert o.code == 0 and o.out == "started\n", o


@pytest.mark.parametrize("nnp", [True, False], ids=["nnp", "no-nnp"])
def test_exec_under_a_profile_refusing_getcwd(ocirun, bundle, nnp):
    prepare(bundle, NO_GETCWD, "sleep", "1000", nnp=nnp)
    cid = ocirun.new_id()
    ocirun("run", "-d", "--bundle", str(bundle.path), cid)
    p = ocirun("exec", cid, "echo", "exec'd", check=False, timeout=30)
    assert p.returncode == 0 and p.stdout == b"exec'd\n", p


# --------------------------------------------------------------------------- runtime-tools' default profile

# What runtime-tools' generator writes (default ERRNO, an allow-list with
# faccessat but not faccessat2), and the same list with the newer landlock_*
# calls allowed: faccessat2 (439) is then older than the newest syscall named,
# so runc's ENOSYS stub does not cover it and the filter answers EPERM. Without
# no_new_privs the filter is loaded before the uid change, so the runtime's own
# PATH lookup ran under it and failed: `exec: "sh": executable file not found in
# $PATH` (#11 item 2). runc (Go's LookPath) falls back to the mode bits on EPERM.
RT_VARIANTS = {"runtime-tools": (), "with-landlock": tuple(rts.LANDLOCK)}


def _rt_profile(bundle, variant: str) -> dict:
    return rts.default_profile(bundle.config(), list(RT_VARIANTS[variant]))


@pytest.mark.parametrize("variant", sorted(RT_VARIANTS))
@pytest.mark.parametrize("nnp", [True, False], ids=["nnp", "no-nnp"])
def test_runtime_tools_default_profile_runs_as_runc(ocirun, bundle, tmp_path, variant, nnp):
    o = same(ocirun, bundle, tmp_path, _rt_profile(bundle, variant),
             "sh", "-c", "echo ran; ls / >/dev/null && echo ls-ok; umask", nnp=nnp)
    assert o.code == 0 and o.out == "ran\nls-ok\n0022\n", o


@pytest.mark.parametrize("user", [0, 1000])
def test_lookup_under_the_filter_follows_the_mode_bits_as_runc(ocirun, bundle, tmp_path, user):
    """faccessat2 refused: the lookup falls back to "any x bit", as Go's findExecutable
    does (and runc 1.1.5's always): /z/other (0644) is never found, /x/tool (0700,
    root's) is found first for root and uid 1000 alike; uid 1000 cannot exec it, and
    both runtimes say so, naming /x/tool."""
    for d, mode in (("x", 0o700), ("y", 0o755)):
        (bundle.rootfs / d).mkdir()
        tool = bundle.rootfs / d / "tool"
        tool.write_text(f"#!/bin/sh\necho {d}\n")
        tool.chmod(mode)
    (bundle.rootfs / "z").mkdir()
    (bundle.rootfs / "z" / "other").write_text("#!/bin/sh\necho z\n")  # no x bit at all: never found
    profile = _rt_profile(bundle, "with-landlock")

    def edit(c):
        c["process"]["user"] = {"uid": user, "gid": user}
        c["process"]["env"] = ["PATH=/z:/x:/y:/bin"]

    bundle.edit(edit)
    if user == 0:
        o = same(ocirun, bundle, tmp_path, profile, "tool", nnp=False)
        assert o.code == 0 and o.out == "x\n", o
    else:
        r, o = both(ocirun, bundle, tmp_path, profile, "tool", nnp=False)
        assert r.code != 0 and o.code != 0 and not r.out and not o.out, (r, o)
        assert "exec /x/tool: permission denied" in r.err and "exec /x/tool: permission denied" in o.err
    r, o = both(ocirun, bundle, tmp_path, profile, "other", nnp=False)
    assert r.code == o.code == 1, (r, o)
    assert 'exec: "other": executable file not found in $PATH' in o.err


@pytest.mark.parametrize("nnp", [True, False], ids=["nnp", "no-nnp"])
def test_exec_under_the_runtime_tools_profile_as_runc(ocirun, bundle, tmp_path, nnp):
    prepare(bundle, _rt_profile(bundle, "with-landlock"), "sleep", "1000", nnp=nnp)
    theirs = bundle.copy(tmp_path / "runc-bundle")
    cid = ocirun.new_id()
    ocirun("run", "-d", "--bundle", str(bundle.path), cid)
    root, rid = tmp_path / "runc-root", f"runc-{uuid.uuid4().hex[:8]}"
    try:
        subprocess.run(["runc", "--root", str(root), "run", "-d", "--bundle", str(theirs.path), rid],
                       check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
        script = "echo exec-ran; umask"
        ours = ocirun("exec", cid, "sh", "-c", script, check=False, timeout=30)
        ref = subprocess.run(["runc", "--root", str(root), "exec", rid, "sh", "-c", script],
                             capture_output=True, timeout=60)
    finally:
        subprocess.run(["runc", "--root", str(root), "delete", "--force", rid], capture_output=True)
    assert ref.returncode == 0, ref.stderr
    assert (ours.returncode, ours.stdout) == (ref.returncode, ref.stdout) == (0, b"exec-ran\n0022\n"), ours


@pytest.mark.parametrize("nnp", [True, False], ids=["nnp", "no-nnp"])
def test_notify_when_the_filter_refuses_sendmsg(ocirun, bundle, tmp_path, nnp):
    """The listener fd cannot go up the sync socket with SCM_RIGHTS when the filter
    (loaded first without no_new_privs) refuses sendmsg(2): the parent takes it
    with pidfd_getfd(2) instead, as runc does."""
    agent = Agent(tmp_path / "agent.sock", errno.EROFS)
    try:
        profile = _rt_profile(bundle, "with-landlock")
        profile["syscalls"][0]["names"] = [n for n in profile["syscalls"][0]["names"]
                                           if n not in ("sendmsg", "mkdir")]
        profile["syscalls"].append({"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"})
        profile["listenerPath"] = agent.path
        prepare(bundle, profile, "sh", "-c", PROBE, nnp=nnp)
        o = run_ocirun(ocirun, bundle)
        agent.thread.join(10)
        assert agent.failure is None, agent.failure
        assert (o.code, o.out) == (0, "rc=1\n") and "Read-only file system" in o.err, o
        assert agent.seen == [83]
    finally:
        agent.close()

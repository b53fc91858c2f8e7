"""The container's defences, per setting, against runc (the oracle) on fresh
copies of the same bundle: capabilities, rlimits, no_new_privs, oom score,
/dev, masked and read-only paths, sysctls, device access. Settings runc 1.1.5
ignores (personality, scheduler, ioPriority) are checked against the values
the config asks for; execCPUAffinity through the shim (it does not apply to
the init). Negative cases: one clear error, nothing left behind.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid

import pytest
from shim_fixtures import (  # noqa: F401  (_box_fixture provides the `box` fixture)
    Box,
    _box_fixture,
    with_process,
)

from ocirun.plan import process_attrs as pa

SH = b"sh", b"-c"
OCIRUN_CLI = [sys.executable, "-m", "ocirun"]
needs_runc = pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")

ALL_CAPS_BUT_SYS_RESOURCE = [
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_FSETID", "CAP_KILL", "CAP_SETGID",
    "CAP_SETUID", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_NET_RAW", "CAP_SYS_CHROOT",
    "CAP_MKNOD", "CAP_AUDIT_WRITE", "CAP_SETFCAP", "CAP_SYS_ADMIN", "CAP_SYS_NICE",
]


def _ocirun(ocirun, bundle, check=True):
    cid = ocirun.new_id()
    return ocirun("run", "--bundle", str(bundle.path), cid, check=check)


def _runc(bundle, tmp_path):
    root = tmp_path / "runc-root"
    cid = f"runc-{uuid.uuid4().hex[:8]}"
    p = subprocess.run(["runc", "--root", str(root), "run", "--bundle", str(bundle.path), cid],
                       capture_output=True, stdin=subprocess.DEVNULL, timeout=60, cwd=bundle.path)
    subprocess.run(["runc", "--root", str(root), "delete", "--force", cid], capture_output=True)
    return p


def both(ocirun, bundle, tmp_path, script: str, edit=None):
    """(ocirun's result, runc's result) of the same script on copies of one bundle."""
    def f(c):
        c["process"]["args"] = ["sh", "-c", script]
        c["process"]["terminal"] = False
        if edit is not None:
            edit(c)

    bundle.edit(f)
    theirs = bundle.copy(tmp_path / f"runc-bundle-{uuid.uuid4().hex[:6]}")
    ours = _ocirun(ocirun, bundle, check=False)
    reference = _runc(theirs, tmp_path)
    return ours, reference


def same_output(ocirun, bundle, tmp_path, script: str, edit=None) -> str:
    ours, ref = both(ocirun, bundle, tmp_path, script, edit)
    assert ref.returncode == 0, ref.stderr
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout.decode() == ref.stdout.decode()
    return ours.stdout.decode()


def _caps(c, **sets):
    c["process"]["capabilities"] = sets


# ---------------------------------------------------------------- against runc

CAP_CASES = {
    "default": None,
    "absent": lambda c: c["process"].pop("capabilities"),
    "absent_as_user": lambda c: (c["process"].pop("capabilities"), c["process"]["user"].update(uid=1000, gid=1000)),
    "five_sets_as_user": lambda c: (
        _caps(c, bounding=["CAP_CHOWN", "CAP_NET_RAW", "CAP_KILL", "CAP_SETPCAP"],
              effective=["CAP_CHOWN", "CAP_KILL"], permitted=["CAP_CHOWN", "CAP_KILL", "CAP_NET_RAW"],
              inheritable=["CAP_NET_RAW", "CAP_KILL"], ambient=["CAP_KILL"]),
        c["process"]["user"].update(uid=1000, gid=1000)),
    "only_bounding": lambda c: _caps(c, bounding=["CAP_KILL"]),
    "empty_sets": lambda c: _caps(c, bounding=[], effective=[], permitted=[], inheritable=[], ambient=[]),
    "many": lambda c: _caps(c, **{k: ALL_CAPS_BUT_SYS_RESOURCE for k in
                                  ("bounding", "effective", "permitted", "inheritable", "ambient")}),
    # `runc spec` writes ambient without inheritable: the kernel refuses the raise (EPERM),
    # runc and crun go on with CapAmb empty (#11 item 1)
    "ambient_without_inheritable": lambda c: _caps(
        c, **{k: ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
              for k in ("bounding", "effective", "permitted", "ambient")}),
    "ambient_partly_raisable_as_user": lambda c: (
        _caps(c, bounding=["CAP_KILL", "CAP_CHOWN", "CAP_NET_RAW"], permitted=["CAP_KILL", "CAP_CHOWN"],
              effective=["CAP_KILL"], inheritable=["CAP_KILL", "CAP_NET_RAW"],
              ambient=["CAP_KILL", "CAP_CHOWN", "CAP_NET_RAW"]),
        c["process"]["user"].update(uid=1000, gid=1000)),
}


@needs_runc
@pytest.mark.parametrize("case", sorted(CAP_CASES))
def test_capabilities_as_runc(case, ocirun, bundle, tmp_path):
    out = same_output(ocirun, bundle, tmp_path, "grep -E '^Cap' /proc/self/status", CAP_CASES[case])
    assert out.count("Cap") == 5


@needs_runc
@pytest.mark.parametrize("tool", ["runc", "ocirun"])
def test_spec_bundles_run_without_the_ambient_set_they_ask_for(tool, ocirun, bundle, tmp_path):
    """`runc spec` and `ocirun spec` bundles run as with runc: ambient is asked for without
    inheritable, the kernel refuses to raise it and the process runs with CapAmb empty;
    create and validate say so on stderr (#11 item 1)."""
    import json

    made = tmp_path / f"{tool}-spec"
    made.mkdir()
    spec = ["runc", "spec"] if tool == "runc" else [*OCIRUN_CLI, "spec"]
    subprocess.run(spec, cwd=made, check=True, capture_output=True)
    config = json.loads((made / "config.json").read_text())
    assert config["process"]["capabilities"]["ambient"]
    assert not config["process"]["capabilities"].get("inheritable")
    config["process"].update(terminal=False, args=["sh", "-c", "grep -E '^Cap' /proc/self/status"])
    bundle.write(config)  # the busybox rootfs, the spec's config.json
    ours, ref = both(ocirun, bundle, tmp_path, "grep -E '^Cap' /proc/self/status")
    assert ref.returncode == 0, ref.stderr
    assert ours.returncode == 0, ours.stderr
    assert ours.stdout == ref.stdout
    assert b"CapAmb:\t0000000000000000" in ours.stdout
    warning = b"warning: $.process.capabilities.ambient: CAP_AUDIT_WRITE, CAP_KILL, CAP_NET_BIND_SERVICE not also in"
    assert warning in ours.stderr
    v = subprocess.run([*OCIRUN_CLI, "validate", "--bundle", str(bundle.path)], capture_output=True)
    assert v.returncode == 0 and warning in v.stderr


def _rlimits(c):
    c["process"]["rlimits"] = [
        {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1000},
        {"type": "RLIMIT_NPROC", "soft": 100, "hard": 200},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 4096},
        {"type": "RLIMIT_STACK", "soft": 4 << 20, "hard": 8 << 20},
        {"type": "RLIMIT_MSGQUEUE", "soft": 1024, "hard": 2048},
        {"type": "RLIMIT_MEMLOCK", "soft": 65536, "hard": 65536},
    ]


@needs_runc
def test_rlimits_as_runc(ocirun, bundle, tmp_path):
    out = same_output(ocirun, bundle, tmp_path, "ulimit -a; ulimit -H -a", _rlimits)
    assert "512" in out and "1000" in out


@needs_runc
@pytest.mark.parametrize("nnp", [True, False])
def test_no_new_privileges_as_runc(nnp, ocirun, bundle, tmp_path):
    out = same_output(ocirun, bundle, tmp_path, "grep NoNewPrivs /proc/self/status",
                      lambda c: c["process"].update(noNewPrivileges=nnp))
    assert out == f"NoNewPrivs:\t{int(nnp)}\n"


@needs_runc
def test_oom_score_adj_below_ours_fails_as_in_runc(ocirun, bundle, tmp_path):
    """Lowering it needs CAP_SYS_RESOURCE, which root lacks here: both refuse."""
    if int(open("/proc/self/oom_score_adj").read()) > -500 and _has_cap(24):
        pytest.skip("this host may lower oom_score_adj")
    ours, ref = both(ocirun, bundle, tmp_path, "true", lambda c: c["process"].update(oomScoreAdj=-500))
    assert ref.returncode == 1 and b"oom_score_adj: Permission denied" in ref.stderr
    assert ours.returncode == 1 and b"oom_score_adj: permission denied" in ours.stderr


def _has_cap(number: int) -> bool:
    with open("/proc/self/status") as f:
        eff = int(next(line for line in f if line.startswith("CapEff")).split()[1], 16)
    return bool(eff >> number & 1)


@needs_runc
@pytest.mark.parametrize("score", [None, 0, 123, 1000])
def test_oom_score_adj_as_runc(score, ocirun, bundle, tmp_path):
    def edit(c):
        if score is not None:
            c["process"]["oomScoreAdj"] = score

    out = same_output(ocirun, bundle, tmp_path, "cat /proc/self/oom_score_adj", edit)
    if score is not None:
        assert out == f"{score}\n"


def _devices(c):
    c["linux"]["devices"] = [
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 0o640, "uid": 1, "gid": 2},
        {"path": "/dev/sub/loopy", "type": "b", "major": 7, "minor": 200, "fileMode": 0o600},
        {"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11},
    ]


@needs_runc
def test_dev_as_runc(ocirun, bundle, tmp_path):
    out = same_output(ocirun, bundle, tmp_path,
                      "ls -ln /dev /dev/sub | awk '{print $1, $3, $4, $5, $6, $NF}'; ls -ln /dev/pts/ptmx | cut -c1-10",
                      _devices)
    assert "crw-r----- 1 2 10, 229 fuse" in out
    assert "brw------- 0 0 7, 200 loopy" in out


@needs_runc
def test_dev_in_a_user_namespace_as_runc(ocirun, bundle, tmp_path):
    """In a user namespace mknod is refused: the nodes are bound from the host."""
    if not os.path.exists("/dev/fuse"):
        pytest.skip("needs the host's /dev/fuse")

    def edit(c):
        _userns(c)
        c["linux"]["devices"] = [{"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229}]

    out = same_output(ocirun, bundle, tmp_path,
                      "ls -ln /dev | awk '{print $1, $3, $4, $5, $6, $NF}'; echo x > /dev/null && echo written", edit)
    assert "crw------- 0 0 10, 229 fuse" in out and "written" in out


@needs_runc
def test_masked_and_readonly_paths_as_runc(ocirun, bundle, tmp_path):
    script = ("wc -c < /proc/kcore; ls /sys/firmware | wc -l; cat /proc/timer_list | wc -c; "
              "echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo writable || echo read-only; "
              "touch /proc/sysrq-trigger 2>/dev/null && echo writable || echo read-only; "
              "grep -E ' /proc/(kcore|sys|sysrq-trigger|timer_list) ' /proc/mounts | awk '{print $2, $4}' | cut -d, -f1")
    out = same_output(ocirun, bundle, tmp_path, script,
                      lambda c: c["process"]["capabilities"].update(
                          {k: ALL_CAPS_BUT_SYS_RESOURCE for k in ("bounding", "effective", "permitted")}))
    assert "writable" not in out
    assert out.split()[:4] == ["0", "0", "read-only", "read-only"]  # kcore is absent on this kernel


def _sysctls(c):
    c["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "net.core.somaxconn": "256",
                            "kernel.shmmax": "4096", "kernel.msgmax": "9000",
                            "fs.mqueue.msg_max": "20", "kernel.domainname": "example.org"}


@needs_runc
def test_sysctls_as_runc(ocirun, bundle, tmp_path):
    out = same_output(ocirun, bundle, tmp_path,
                      "for k in net/ipv4/ip_forward net/core/somaxconn kernel/shmmax kernel/msgmax "
                      "fs/mqueue/msg_max kernel/domainname; do cat /proc/sys/$k; done", _sysctls)
    assert out.split() == ["1", "256", "4096", "9000", "20", "example.org"]
    # nothing leaked to the host
    with open("/proc/sys/kernel/domainname") as f:
        assert f.read().strip() != "example.org"


def _userns(c):
    c["linux"]["namespaces"].append({"type": "user"})
    c["linux"]["uidMappings"] = c["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 0, "size": 65536}]


@needs_runc
def test_sysctls_and_capabilities_in_a_user_namespace_as_runc(ocirun, bundle, tmp_path):
    """Our own procfs works from a new user namespace; there every capability is
    grantable, CAP_SYS_RESOURCE included (no warning, nothing dropped)."""
    def edit(c):
        _userns(c)
        _sysctls(c)
        c["process"]["capabilities"] = {k: ["CAP_SYS_RESOURCE", "CAP_KILL"] for k in
                                        ("bounding", "effective", "permitted")}

    ours, ref = both(ocirun, bundle, tmp_path, "cat /proc/sys/net/core/somaxconn /proc/sys/kernel/shmmax; "
                     "grep -E '^Cap(Eff|Bnd)' /proc/self/status", edit)
    assert ref.returncode == 0, ref.stderr
    assert ours.returncode == 0 and b"warning" not in ours.stderr, ours.stderr
    assert ours.stdout == ref.stdout
    assert ours.stdout.split()[:2] == [b"256", b"4096"]


@needs_runc
def test_no_device_rules_denies_what_runc_denies(ocirun, bundle, tmp_path):
    """No linux.resources.devices at all: deny-all plus runc's default devices."""
    script = ("mknod /tmp/kmsg c 1 11 && (head -c 1 /tmp/kmsg >/dev/null 2>&1 && echo kmsg-read || echo kmsg-denied); "
              "mknod /tmp/null c 1 3 && (echo x > /tmp/null && echo null-ok); echo x > /dev/full 2>/dev/null || echo full-enospc")

    def edit(c):
        c["linux"].pop("resources", None)
        c["process"]["capabilities"] = {k: ALL_CAPS_BUT_SYS_RESOURCE for k in ("bounding", "effective", "permitted")}

    out = same_output(ocirun, bundle, tmp_path, script, edit)
    assert out.split() == ["kmsg-denied", "null-ok", "full-enospc"]


@needs_runc
def test_init_cpu_affinity_as_runc(ocirun, bundle, tmp_path):
    """execCPUAffinity "is not applicable to the container's init process" (config.md)."""
    out = same_output(ocirun, bundle, tmp_path, "grep Cpus_allowed_list /proc/self/status",
                      lambda c: c["process"].update(execCPUAffinity={"initial": "0", "final": "0"}))
    with open("/proc/self/status") as f:
        mine = next(line for line in f if line.startswith("Cpus_allowed_list"))
    assert out == mine


# ------------------------------------------- settings runc 1.1.5 does not apply

def _run_ours(ocirun, bundle, script, edit) -> str:
    def f(c):
        c["process"]["args"] = ["sh", "-c", script]
        edit(c)

    bundle.edit(f)
    p = _ocirun(ocirun, bundle)
    return p.stdout.decode()


@pytest.mark.parametrize("domain, machine", [("LINUX32", "i686"), ("LINUX", os.uname().machine)])
def test_personality(domain, machine, ocirun, bundle):
    if os.uname().machine != "x86_64":
        pytest.skip("the 32-bit name is checked on x86_64")
    out = _run_ours(ocirun, bundle, "uname -m; cat /proc/self/personality",
                    lambda c: c["linux"].update(personality={"domain": domain}))
    assert out.split() == [machine, "00000008" if domain == "LINUX32" else "00000000"]


def test_personality_flags_are_refused(ocirun, bundle):
    bundle.edit(lambda c: c["linux"].update(personality={"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]}))
    p = _ocirun(ocirun, bundle, check=False)
    assert p.returncode == 1
    assert b"unsupported personality flag 'ADDR_NO_RANDOMIZE'" in p.stderr


SCHED_PROBE = "grep -E '^(policy|prio) ' /proc/self/sched | awk '{print $NF}'; cut -d' ' -f19 /proc/self/stat"


@pytest.mark.parametrize("sched, policy, prio, nice", [
    ({"policy": "SCHED_OTHER", "nice": 7}, 0, 127, 7),
    ({"policy": "SCHED_BATCH", "nice": -5}, 3, 115, -5),
    ({"policy": "SCHED_IDLE"}, 5, 120, 0),
    ({"policy": "SCHED_FIFO", "priority": 10}, 1, 89, 0),
    ({"policy": "SCHED_RR", "priority": 50}, 2, 49, 0),
])
def test_scheduler(sched, policy, prio, nice, ocirun, bundle):
    def edit(c):
        c["process"]["scheduler"] = sched
        if sched["policy"] in ("SCHED_FIFO", "SCHED_RR"):
            # a v1 cpu cgroup starts with no real-time budget
            c["linux"].setdefault("resources", {})["cpu"] = {"realtimeRuntime": 10000, "realtimePeriod": 1000000}

    out = _run_ours(ocirun, bundle, SCHED_PROBE, edit)
    assert out.split() == [str(policy), str(prio), str(nice)]


def test_scheduler_deadline(ocirun, bundle):
    """Read back with sched_getattr(2) from outside (a SCHED_DEADLINE task cannot fork,
    and /proc/PID/sched shows the runtime left, not the one set)."""
    import ctypes
    import struct

    if os.uname().machine != "x86_64":
        pytest.skip("syscall number below is x86_64's")
    bundle.edit(lambda c: c["process"].update(args=["sleep", "30"], scheduler={
        "policy": "SCHED_DEADLINE", "runtime": 10_000_000, "deadline": 30_000_000, "period": 40_000_000}))
    cid = ocirun.new_id()
    ocirun("create", "--bundle", str(bundle.path), cid)
    pid = ocirun.state(cid)["pid"]
    buf = ctypes.create_string_buffer(56)
    libc = ctypes.CDLL(None, use_errno=True)
    r = libc.syscall(315, pid, buf, 56, 0)  # SYS_sched_getattr
    ocirun("kill", cid, "KILL")
    assert r == 0, os.strerror(ctypes.get_errno())
    _size, policy, _flags, _nice, _prio, runtime, deadline, period = struct.unpack_from("=IIQiIQQQ", buf.raw)
    assert (policy, runtime, deadline, period) == (6, 10_000_000, 30_000_000, 40_000_000)


def test_scheduler_reset_on_fork(ocirun, bundle):
    """RESET_ON_FORK: the shell runs SCHED_RR, what it forks is back to SCHED_OTHER."""
    def edit(c):
        c["process"]["scheduler"] = {"policy": "SCHED_RR", "priority": 5, "flags": ["SCHED_FLAG_RESET_ON_FORK"]}
        c["linux"].setdefault("resources", {})["cpu"] = {"realtimeRuntime": 10000, "realtimePeriod": 1000000}

    out = _run_ours(ocirun, bundle, "grep -E '^policy ' /proc/$$/sched | awk '{print $NF}';"
                    " grep -E '^policy ' /proc/self/sched | awk '{print $NF}'", edit)
    assert out.split() == ["2", "0"]


def test_scheduler_real_time_without_budget_says_why(ocirun, bundle):
    if not os.path.exists("/sys/fs/cgroup/cpu/cpu.rt_runtime_us"):
        pytest.skip("no RT group scheduling on this host")
    bundle.edit(lambda c: c["process"].update(scheduler={"policy": "SCHED_FIFO", "priority": 1}))
    p = _ocirun(ocirun, bundle, check=False)
    assert p.returncode == 1
    assert b"set scheduler (sched_setattr): operation not permitted" in p.stderr
    assert b"realtimeRuntime" in p.stderr


@pytest.mark.parametrize("io, expect", [
    ({"class": "IOPRIO_CLASS_IDLE", "priority": 4}, (3, 4)),
    ({"class": "IOPRIO_CLASS_BE", "priority": 2}, (2, 2)),
    ({"class": "IOPRIO_CLASS_RT", "priority": 7}, (1, 7)),
])
def test_io_priority(io, expect, ocirun, bundle, tmp_path):
    """Read from outside with ioprio_get(2) on the running container's process."""
    import ctypes

    if os.uname().machine != "x86_64":
        pytest.skip("syscall number below is x86_64's")
    bundle.edit(lambda c: c["process"].update(args=["sleep", "30"], ioPriority=io))
    cid = ocirun.new_id()
    ocirun("create", "--bundle", str(bundle.path), cid)
    pid = ocirun.state(cid)["pid"]
    ocirun("start", cid)
    libc = ctypes.CDLL(None, use_errno=True)
    value = libc.syscall(252, 1, pid)  # SYS_ioprio_get (x86_64), IOPRIO_WHO_PROCESS
    ocirun("kill", cid, "KILL")
    assert value >= 0, os.strerror(ctypes.get_errno())
    assert (value >> 13, value & 0xff) == expect


# ------------------------------------------------------------ negative cases

@needs_runc
def test_unknown_capability_is_an_error(ocirun, bundle, tmp_path):
    """runc 1.1 warns and ignores it; runtime-tools expects an error, and so does ocirun."""
    bundle.edit(lambda c: c["process"]["capabilities"]["bounding"].append("CAP_NO_SUCH_THING"))
    p = _ocirun(ocirun, bundle, check=False)
    assert p.returncode == 1
    assert b"unknown capability 'CAP_NO_SUCH_THING'" in p.stderr


@needs_runc
def test_capability_the_host_lacks_is_a_warning(ocirun, bundle, tmp_path):
    """config.md: a capability that cannot be granted is logged as a warning and
    SHOULD NOT fail the container (runc 1.1 fails in capset)."""
    with open("/proc/self/status") as f:
        bnd = int(next(line for line in f if line.startswith("CapBnd")).split()[1], 16)
    if bnd >> 24 & 1:
        pytest.skip("this host's bounding set has CAP_SYS_RESOURCE")

    def edit(c):
        c["process"]["capabilities"] = {k: ["CAP_KILL", "CAP_SYS_RESOURCE"] for k in
                                        ("bounding", "effective", "permitted", "inheritable", "ambient")}

    ours, ref = both(ocirun, bundle, tmp_path, "grep -E '^Cap' /proc/self/status", edit)
    assert ref.returncode == 1 and b"unable to apply caps: operation not permitted" in ref.stderr
    assert ours.returncode == 0, ours.stderr
    assert b"warning: ignoring unknown or unavailable capabilities: [CAP_SYS_RESOURCE]" in ours.stderr
    assert ours.stdout.decode().split() == ["CapInh:", "0000000000000020", "CapPrm:", "0000000000000020",
                                            "CapEff:", "0000000000000020", "CapBnd:", "0000000000000020",
                                            "CapAmb:", "0000000000000020"]


@needs_runc
def test_rlimit_above_hard_limit_in_runcs_words(ocirun, bundle, tmp_path):
    with open("/proc/sys/fs/nr_open") as f:
        too_many = int(f.read()) + 1

    def edit(c):
        c["process"]["rlimits"] = [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": too_many}]

    ours, ref = both(ocirun, bundle, tmp_path, "true", edit)
    wording = b"error setting rlimit type 7: operation not permitted"
    assert ref.returncode == 1 and wording in ref.stderr
    assert ours.returncode == 1 and wording in ours.stderr


@needs_runc
@pytest.mark.parametrize("case", ["pid_max", "net_in_host_ns", "ipc_in_host_ns", "hostname", "joined_host_netns"])
def test_sysctl_outside_the_containers_namespaces(case, ocirun, bundle, tmp_path):
    def drop(c, kind):
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != kind]

    def edit(c):
        if case == "pid_max":
            c["linux"]["sysctl"] = {"kernel.pid_max": "1000"}
        elif case == "net_in_host_ns":
            c["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
            drop(c, "network")
        elif case == "ipc_in_host_ns":
            c["linux"]["sysctl"] = {"kernel.shmmax": "4096"}
            drop(c, "ipc")
        elif case == "hostname":
            c["linux"]["sysctl"] = {"kernel.hostname": "x"}
        else:
            c["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
            drop(c, "network")
            c["linux"]["namespaces"].append({"type": "network", "path": f"/proc/{os.getpid()}/ns/net"})

    before = open("/proc/sys/net/ipv4/ip_forward").read()
    ours, ref = both(ocirun, bundle, tmp_path, "true", edit)
    assert ref.returncode == 1 and ours.returncode == 1
    runc_msg = ref.stderr.decode().split("runc run failed: ", 1)[1].split('"\n')[0].replace('\\"', '"')
    assert runc_msg in ours.stderr.decode(), (runc_msg, ours.stderr)
    assert open("/proc/sys/net/ipv4/ip_forward").read() == before


@needs_runc
@pytest.mark.parametrize("key, value, why", [
    ("net.ipv4.ip_forward", "abc", b"invalid argument"),
    ("net.ipv4.no_such_key", "1", b"no such file or directory"),
])
def test_bad_sysctl_value_or_key_fails_create(key, value, why, ocirun, bundle, tmp_path):
    ours, ref = both(ocirun, bundle, tmp_path, "true", lambda c: c["linux"].update(sysctl={key: value}))
    assert ref.returncode == 1 and why in ref.stderr.lower()
    assert ours.returncode == 1
    step = "write" if value == "abc" else "open"
    assert ours.stderr.decode().strip() == f'{step} sysctl "{key}" = {value!r}: {why.decode()}'


def test_masked_path_with_dev_null_symlink_is_not_followed(ocirun, bundle, tmp_path):
    """CVE-2025-31133: the bundle's /dev (bound in) has null -> a host-sensitive file;
    masking must refuse it, not bind that file over /proc/kcore or write through it."""
    fake = bundle.path / "fakedev"
    fake.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("host secret\n")
    os.symlink(str(victim), fake / "null")

    def edit(c):
        c["mounts"] = [m for m in c["mounts"] if not m["destination"].startswith("/dev")]
        c["mounts"].append({"destination": "/dev", "type": "bind", "source": str(fake), "options": ["rbind"]})
        c["linux"]["maskedPaths"] = ["/proc/timer_list"]
        c["process"]["args"] = ["cat", "/proc/timer_list"]

    bundle.edit(edit)
    p = _ocirun(ocirun, bundle, check=False)
    assert p.returncode == 1, p.stdout
    assert p.stderr.decode().strip() == (
        "mask /proc/timer_list: refusing to bind /dev/null over it: /dev/null in the container "
        "is not the null device (char 1:3)")
    assert b"host secret" not in p.stdout
    assert victim.read_text() == "host secret\n"


def test_apparmor_profile_without_apparmor(ocirun, bundle):
    if os.path.exists("/sys/kernel/security/apparmor"):
        pytest.skip("AppArmor is enabled here")
    bundle.edit(lambda c: c["process"].update(apparmorProfile="docker-default"))
    p = _ocirun(ocirun, bundle, check=False)
    assert p.returncode == 1
    assert p.stderr.decode().strip().endswith(
        "$.process.apparmorProfile: cannot apply AppArmor profile 'docker-default': "
        "AppArmor is not enabled on this host")


def test_selinux_label_without_selinux_and_mount_label_ignored(ocirun, bundle):
    if os.path.exists("/sys/fs/selinux/enforce"):
        pytest.skip("SELinux is enabled here")
    bundle.edit(lambda c: c["process"].update(selinuxLabel="system_u:system_r:container_t:s0"))
    p = _ocirun(ocirun, bundle, check=False)
    assert p.returncode == 1 and b"SELinux is not enabled on this host" in p.stderr
    bundle.edit(lambda c: (c["process"].pop("selinuxLabel"),
                           c["linux"].update(mountLabel="system_u:object_r:container_file_t:s0"),
                           c["process"].update(args=["grep", " /dev ", "/proc/mounts"])))
    out = _ocirun(ocirun, bundle).stdout.decode()
    assert "tmpfs" in out and "context=" not in out


# ------------------------------------------- execCPUAffinity through the shim

def _cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def test_exec_cpu_affinity_initial_and_final(box: Box):
    cpus = _cpus()
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    first, last = cpus[0], cpus[-1]
    plan = with_process(box.plan(*SH, b"grep Cpus_allowed_list /proc/self/status"),
                        cpu_affinity_initial=pa.cpu_mask(str(first)),
                        cpu_affinity_final=pa.cpu_mask(str(last)))
    code, out = box.run(plan)
    assert code == 0, out
    assert out.split() == ["Cpus_allowed_list:", str(last)]


def test_exec_cpu_affinity_initial_only_holds(box: Box):
    cpus = _cpus()
    if len(cpus) < 2:
        pytest.skip("needs two CPUs")
    plan = with_process(box.plan(*SH, b"grep Cpus_allowed_list /proc/self/status"),
                        cpu_affinity_initial=pa.cpu_mask(str(cpus[-1])))
    code, out = box.run(plan)
    assert code == 0, out
    assert out.split() == ["Cpus_allowed_list:", str(cpus[-1])]


def test_exec_cpu_affinity_offline_cpu_fails_cleanly(box: Box):
    from ocirun.errors import SetupError

    plan = with_process(box.plan(b"true"), cpu_affinity_initial=pa.cpu_mask("1000"))
    with pytest.raises(SetupError, match=r"set initial CPU affinity \(execCPUAffinity.initial\): invalid argument"):
        box.spawn(plan)


def test_sysctl_write_failure_names_the_key(box: Box):
    from dataclasses import replace

    from ocirun.errors import SetupError

    plan = replace(box.plan(b"true"), sysctl=((b"net/ipv4/no_such_key", b"1"),))
    with pytest.raises(SetupError, match=r'open sysctl "net.ipv4.no_such_key" = \'1\': no such file or directory'):
        box.spawn(plan)


def test_sysctl_path_cannot_climb_out(box: Box):
    from dataclasses import replace

    from ocirun.errors import SetupError

    plan = replace(box.plan(b"true"), sysctl=((b"../self/oom_score_adj", b"1"),))
    with pytest.raises(SetupError, match="open sysctl"):
        box.spawn(plan)


def test_exec_label_is_written_through_our_own_procfs(box: Box):
    """Without an LSM the kernel refuses the write (EINVAL): the path to
    /proc/<tid>/attr/exec was built and opened, and the failure is named."""
    from ocirun.errors import SetupError

    if os.path.exists("/sys/kernel/security/apparmor") or os.path.exists("/sys/fs/selinux/enforce"):
        pytest.skip("an LSM is enabled here")
    plan = with_process(box.plan(b"true"), lsm_attr=b"attr/exec", lsm_label=b"some_label")
    with pytest.raises(SetupError, match="set exec label some_label: invalid argument"):
        box.spawn(plan)


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


# ------------------------------------------------------------ linux.memoryPolicy
# runc 1.1.5 does not know linux.memoryPolicy: checked against what the config
# asks for, read from outside in /proc/PID/numa_maps (the task policy is what a
# mapping without a policy of its own shows; mpol_to_str's words). This host
# has one NUMA node, 0.


@pytest.mark.parametrize("policy, shown", [
    ({"mode": "MPOL_DEFAULT"}, "default"),
    ({"mode": "MPOL_LOCAL"}, "local"),
    ({"mode": "MPOL_PREFERRED"}, "local"),  # no nodes: the kernel's local allocation
    ({"mode": "MPOL_PREFERRED", "nodes": "0"}, "prefer:0"),
    ({"mode": "MPOL_PREFERRED_MANY", "nodes": "0"}, "prefer (many):0"),
    ({"mode": "MPOL_BIND", "nodes": "0"}, "bind:0"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_STATIC_NODES"]}, "bind=static:0"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_RELATIVE_NODES"]}, "bind=relative:0"),
    ({"mode": "MPOL_BIND", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]}, "bind=balancing:0"),
    ({"mode": "MPOL_INTERLEAVE", "nodes": "0"}, "interleave:0"),
    ({"mode": "MPOL_WEIGHTED_INTERLEAVE", "nodes": "0"}, "weighted interleave:0"),
])
def test_memory_policy(policy, shown, ocirun, bundle):
    from kernel_probes import memory_policy

    if not os.path.exists("/proc/self/numa_maps"):
        pytest.skip("no NUMA support (CONFIG_NUMA): no numa_maps to read the policy from")
    if not memory_policy(policy["mode"], tuple(policy.get("flags", ())), nodes="nodes" in policy):
        pytest.skip(f"set_mempolicy(2) here refuses {policy['mode']} {policy.get('flags', [])}"
                    " (MPOL_PREFERRED_MANY: Linux 5.15, MPOL_WEIGHTED_INTERLEAVE: 6.9)")
    bundle.edit(lambda c: (c["process"].update(args=["sleep", "30"]),
                           c["linux"].update(memoryPolicy=policy)))
    cid = ocirun.new_id()
    ocirun("create", "--bundle", str(bundle.path), cid)
    pid = ocirun.state(cid)["pid"]
    ocirun("start", cid)
    try:
        with open(f"/proc/{pid}/numa_maps") as f:
            policies = {line.split(" ", 1)[1].split(" file=")[0].split(" anon=")[0].split(" heap")[0]
                        .split(" stack")[0] for line in f}
    finally:
        ocirun("kill", cid, "KILL")
    assert shown in policies, policies


def test_memory_policy_a_node_the_host_lacks_is_a_step_error(ocirun, bundle):
    """The kernel refuses a node that is not online (EINVAL): one message naming the step."""
    if os.path.exists("/sys/devices/system/node/node7"):
        pytest.skip("this host has a node 7")
    bundle.edit(lambda c: c["linux"].update(memoryPolicy={"mode": "MPOL_BIND", "nodes": "7"}))
    p = _ocirun(ocirun, bundle, check=False)
    assert p.returncode == 1
    assert p.stderr.decode().strip().splitlines() == [
        "set memory policy (set_mempolicy) of linux.memoryPolicy: invalid argument"]


@pytest.mark.parametrize("policy, path, why", [
    ({"mode": "MPOL_BIND"}, "$.linux.memoryPolicy.nodes", "MPOL_BIND needs at least one node"),
    ({"mode": "MPOL_LOCAL", "nodes": "0"}, "$.linux.memoryPolicy.nodes", "MPOL_LOCAL takes no nodes"),
    ({"mode": "MPOL_INTERLEAVE", "nodes": "1-0"}, "$.linux.memoryPolicy.nodes", "backwards"),
    ({"mode": "MPOL_INTERLEAVE", "nodes": "0", "flags": ["MPOL_F_NUMA_BALANCING"]},
     "$.linux.memoryPolicy.flags", "MPOL_F_NUMA_BALANCING needs MPOL_BIND"),
])
def test_memory_policy_refused_before_anything_exists(policy, path, why, ocirun, bundle):
    bundle.edit(lambda c: c["linux"].update(memoryPolicy=policy))
    p = _ocirun(ocirun, bundle, check=False)
    assert p.returncode == 1
    err = p.stderr.decode()
    assert path in err and why in err and len(err.strip().splitlines()) == 1, err
    assert not list(ocirun.root.iterdir()) if ocirun.root.exists() else True

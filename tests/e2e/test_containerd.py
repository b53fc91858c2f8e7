"""containerd (ctr, through containerd-shim-runc-v2) driving the runtime.

`ctr run --runc-binary PATH` is the runc v2 runtime's BinaryName option: the
shim calls PATH with runc's command line (see docs/engines.md).
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid

import pytest
from engines import (
    COUNTER,
    IMAGE,
    REPO,
    SHOW_LIMITS,
    SHOW_MEMORY,
    Containerd,
    cmdline,
    release,
    spawn,
    until,
)
from ptyrun import run_in_pty

pytestmark = pytest.mark.root


def new_id() -> str:
    return f"ocitest-{uuid.uuid4().hex[:8]}"


def lingering(script: str) -> str:
    """``script``, then a moment before the shell exits: Debian's ctr (1.6.20) `ctr run` closes
    its FIFO readers at task delete before its copies have drained, losing the output of a
    process that exits at once (a ctr race, as for exec in
    test_detached_run_then_exec_prints_output); what is tested is what the process prints.
    The script's exit status stays the shell's."""
    return f"{script}; s=$?; sleep 0.5; exit $s"


def tasks(ctr: Containerd) -> dict[str, tuple[int, str]]:
    """`ctr task ls`: id -> (pid, status)."""
    out = {}
    for line in ctr.ctr("tasks", "list").stdout.splitlines()[1:]:
        cid, pid, st = line.split()
        out[cid] = (int(pid), st)
    return out


def task_status(ctr: Containerd, cid: str) -> str | None:
    t = tasks(ctr).get(cid)
    return t[1] if t else None


def detached(ctr: Containerd, *cmd: str, opts: tuple[str, ...] = ()) -> str:
    cid = new_id()
    ctr.run("--detach", *opts, IMAGE, cid, *cmd)
    assert task_status(ctr, cid) == "RUNNING"
    return cid


def rootfs(ctr: Containerd, cid: str) -> str:
    return str(ctr.root / "state" / "io.containerd.runtime.v2.task" / ctr.namespace / cid / "rootfs")


class Foreground:
    """`ctr run` (not detached) in the background: its exit status is the task's."""

    def __init__(self, ctr: Containerd, *cmd: str):
        self.cid = new_id()
        self.proc = spawn([*ctr.ctr_argv, "run", *ctr.runtime_opts, IMAGE, self.cid, *cmd],
                          stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          env=ctr.env)
        until(lambda: task_status(ctr, self.cid) == "RUNNING" or self.proc.poll() is not None,
              what="the task to run")

    def wait(self) -> int:
        try:
            self.proc.communicate(timeout=60)
        finally:
            release(self.proc)
        return self.proc.returncode


# --- run ---------------------------------------------------------------------------------------------

def test_run_rm_prints_output(ctr):
    r = ctr.run("--rm", IMAGE, new_id(), "sh", "-c", lingering("echo 'hello from ctr'"))
    assert r.stdout == "hello from ctr\n"
    assert ctr.containers() == []


def test_run_passes_exit_status_through(ctr):
    assert ctr.run("--rm", IMAGE, new_id(), "sh", "-c", "exit 42", check=False).returncode == 42


def test_run_missing_binary_reports_the_runtimes_message(ctr):
    # The shim never reads the runtime's stderr for create: the message must be the
    # last error line of the --log file (log.json).
    r = ctr.run("--rm", IMAGE, new_id(), "/no/such/binary", check=False)
    assert r.returncode == 1, r
    assert "OCI runtime create failed" in r.stderr, r
    assert '"/no/such/binary"' in r.stderr and "no such file or directory" in r.stderr, r


def test_run_bad_cwd_reports_the_runtimes_message(ctr):
    r = ctr.run("--rm", "--cwd", "/etc/passwd", IMAGE, new_id(), "true", check=False)
    assert r.returncode == 1, r
    assert "OCI runtime create failed" in r.stderr, r
    assert "/etc/passwd" in r.stderr and "not a directory" in r.stderr, r


def test_run_options_reach_the_process(ctr, tmp_path):
    (tmp_path / "greeting").write_text("hello from the host\n")
    r = ctr.run("--rm", "--cwd", "/tmp", "--env", "FOO=bar", "--read-only", "--mount",
                f"type=bind,src={tmp_path},dst=/data,options=rbind:ro", IMAGE, new_id(), "sh", "-c",
                lingering("pwd; echo $FOO; cat /data/greeting; touch /x 2>/dev/null || echo rootfs-ro; "
                          "touch /data/x 2>/dev/null || echo data-ro"))
    assert r.stdout.splitlines() == ["/tmp", "bar", "hello from the host", "rootfs-ro", "data-ro"]


def test_run_tty(ctr):
    # the sleep: see lingering
    r = run_in_pty([*ctr.ctr_argv, "run", "--rm", "--tty", *ctr.runtime_opts, IMAGE, new_id(),
                    "sh", "-c", "tty; test -t 0 && test -t 1 && echo stdio-is-a-tty; sleep 0.5; exit 4"],
                   env=ctr.env)
    assert r.returncode == 4, r
    assert "/dev/pts/0\n" in r.stdout and "stdio-is-a-tty\n" in r.stdout, r


def test_device_is_created_in_the_container(ctr):
    # containerd sends fileMode with the file-type bits (S_IFCHR | mode)
    r = ctr.run("--rm", "--device", "/dev/zero", IMAGE, new_id(), "sh", "-c",
                lingering("test -c /dev/zero && head -c 4 /dev/zero | od -An -tx1"))
    assert r.stdout.split() == ["00", "00", "00", "00"]


# --- detached tasks and exec ---------------------------------------------------------------------

def test_detached_run_then_exec_prints_output(ctr):
    cid = detached(ctr, "sleep", "1000")
    # a moment between the output and the exit: Debian's ctr (1.6) returns on the exit status and
    # its deferred process delete cancels the stdout reader with output still in flight (a ctr
    # race, whatever the runtime: containerd#13931 drains it first); what is tested here is that
    # the exec'd process's output reaches the engine through the runtime
    r = ctr.ctr("tasks", "exec", "--exec-id", "e1", "--fifo-dir", str(ctr.fifo_dir), cid,
                "sh", "-c", "cat /proc/1/cmdline; sleep 0.5")
    assert r.stdout == "sleep\x001000\x00"


def test_exec_passes_exit_status_through(ctr):
    cid = detached(ctr, "sleep", "1000")
    r = ctr.ctr("tasks", "exec", "--exec-id", "e1", "--fifo-dir", str(ctr.fifo_dir), cid,
                "sh", "-c", "exit 7", check=False)
    assert r.returncode == 7, r


def test_exec_missing_binary_reports_the_runtimes_message(ctr):
    cid = detached(ctr, "sleep", "1000")
    r = ctr.ctr("tasks", "exec", "--exec-id", "e1", "--fifo-dir", str(ctr.fifo_dir), cid,
                "/no/such/binary", check=False)
    assert r.returncode != 0, r
    assert "OCI runtime exec failed" in r.stderr and "/no/such/binary" in r.stderr, r


def test_exec_with_a_tty(ctr):
    cid = detached(ctr, "sleep", "1000")
    r = run_in_pty([*ctr.ctr_argv, "tasks", "exec", "--tty", "--exec-id", "e1", "--fifo-dir",
                    str(ctr.fifo_dir), cid, "sh", "-c",
                    # a moment before exiting: the engines' console copy can miss the output of
                    # a tty process that exits at once (a known race, e.g. cri-o#8483 with runc);
                    # what is tested here is the terminal and the status
                    "tty; test -t 0 && test -t 1 && echo stdio-is-a-tty; sleep 0.5; exit 3"], env=ctr.env)
    assert r.returncode == 3, r
    assert "/dev/pts/" in r.stdout and "stdio-is-a-tty\n" in r.stdout, r


# --- pause, kill, rm ----------------------------------------------------------------------------------

def test_pause_and_resume(ctr):
    cid = detached(ctr, "sh", "-c", COUNTER)
    counter = os.path.join(rootfs(ctr, cid), "tmp", "n")
    until(lambda: os.path.exists(counter) and open(counter).read().strip(), what="the counter")
    ctr.ctr("tasks", "pause", cid)
    assert task_status(ctr, cid) == "PAUSED"
    frozen = open(counter).read()
    time.sleep(0.3)
    assert open(counter).read() == frozen, "the counter moved while the task was paused"
    ctr.ctr("tasks", "resume", cid)
    assert task_status(ctr, cid) == "RUNNING"
    until(lambda: open(counter).read() != frozen, what="the counter to move after resume")


def test_kill_sends_sigterm_by_default(ctr):
    fg = Foreground(ctr, "sh", "-c", "trap 'exit 3' TERM; touch /ready; sleep 1000 & wait")
    until(lambda: os.path.exists(os.path.join(rootfs(ctr, fg.cid), "ready")), what="the trap")
    ctr.ctr("tasks", "kill", fg.cid)
    assert fg.wait() == 3


def test_sigterm_ignored_then_sigkill(ctr):
    # sleep as pid 1 of its namespace has no SIGTERM handler: TERM is ignored
    fg = Foreground(ctr, "sleep", "1000")
    ctr.ctr("tasks", "kill", "--signal", "SIGTERM", fg.cid)
    assert task_status(ctr, fg.cid) == "RUNNING"
    ctr.ctr("tasks", "kill", "--signal", "SIGKILL", fg.cid)
    assert fg.wait() == 137


def test_kill_all_processes(ctr):
    fg = Foreground(ctr, "sh", "-c", "sleep 1000 & sleep 1001 & touch /ready; wait")
    until(lambda: os.path.exists(os.path.join(rootfs(ctr, fg.cid), "ready")), what="the children")
    ctr.ctr("tasks", "kill", "--all", "--signal", "SIGKILL", fg.cid)
    assert fg.wait() == 137


def test_task_rm_force_removes_a_running_task(ctr):
    cid = detached(ctr, "sleep", "1000")
    pid = tasks(ctr)[cid][0]
    ctr.ctr("tasks", "delete", "--force", cid)
    assert cid not in tasks(ctr)
    assert cid in ctr.containers()            # the container (its snapshot) stays
    until(lambda: not os.path.exists(f"/proc/{pid}"), what="the task's process to go")
    ctr.ctr("containers", "delete", cid)


# --- resources, ps -------------------------------------------------------------------------------------

# ctr's default spec has no cgroup mount (CRI adds one): mount it as a client would.
CGROUP_MOUNT = ("--mount", "type=cgroup,src=cgroup,dst=/sys/fs/cgroup,options=ro:nosuid:nodev:noexec")


def test_memory_limit_visible_in_the_container(ctr):
    r = ctr.run("--rm", *CGROUP_MOUNT, "--memory-limit", str(64 << 20), IMAGE, new_id(), "sh", "-c",
                lingering(SHOW_MEMORY))
    assert r.stdout.strip() == str(64 << 20)


def test_memory_and_pids_limits_from_a_full_spec(ctr, tmp_path):
    # ctr has no pids flag: give it a whole spec (`ctr oci spec`, edited) and a rootfs (--config)
    bundle = tmp_path / "bundle"
    subprocess.run([str(REPO / "bundles" / "make-busybox-bundle"), "--no-image", str(bundle)],
                   check=True, stdout=subprocess.DEVNULL)
    cid = new_id()
    spec = json.loads(ctr.ctr("oci", "spec").stdout)
    spec["root"] = {"path": str(bundle / "rootfs")}
    spec["process"]["args"] = ["/bin/sh", "-c", lingering(SHOW_LIMITS)]   # the spec has no PATH in env
    spec["linux"]["cgroupsPath"] = f"/{ctr.namespace}/{cid}"
    spec["linux"].setdefault("resources", {}).update(memory={"limit": 64 << 20}, pids={"limit": 77})
    spec["mounts"].append({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
                           "options": ["ro", "nosuid", "noexec", "nodev"]})
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    r = ctr.run("--rm", "--config", str(tmp_path / "spec.json"), cid)
    assert r.stdout.split() == [str(64 << 20), "77"]


def test_cpu_quota_visible_in_the_container(ctr):
    show = ("if [ -f /sys/fs/cgroup/cpu.max ]; then cat /sys/fs/cgroup/cpu.max; "
            "else echo $(cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us) $(cat /sys/fs/cgroup/cpu/cpu.cfs_period_us); fi")
    r = ctr.run("--rm", *CGROUP_MOUNT, "--cpus", "0.5", IMAGE, new_id(), "sh", "-c", lingering(show))
    assert r.stdout.split() == ["50000", "100000"]


def test_task_ps_lists_the_containers_processes(ctr):
    # `: >` is a builtin (a forked touch could still be there: a third child)
    cid = detached(ctr, "sh", "-c", "sleep 1000 & sleep 1001 & : > /ready; wait")
    until(lambda: os.path.exists(os.path.join(rootfs(ctr, cid), "ready")), what="the children")
    init_pid = tasks(ctr)[cid][0]

    def two_sleeps() -> list[str] | None:
        # a child may not have exec'd sleep yet (its cmdline still sh's)
        lines = ctr.ctr("tasks", "ps", cid).stdout.splitlines()[1:]
        children = {int(line.split()[0]) for line in lines} - {init_pid}
        if len(children) == 2 and all(cmdline(p)[:1] == ["sleep"] for p in children):
            return lines
        return None

    lines = until(two_sleeps, what="the two sleeps in `ctr tasks ps`")
    pids = {int(line.split()[0]) for line in lines}
    assert init_pid in pids
    children = {p for p in pids if p != init_pid}
    assert len(children) == 2, lines
    for p in children:
        assert open(f"/proc/{p}/cmdline").read().split("\0")[0] == "sleep"


# --- namespaces joined by path (what a pod sandbox is to containerd) ------------------------------------

def test_containers_join_a_sandboxs_namespaces_by_path(ctr):
    sandbox = detached(ctr, "sleep", "1000")
    pid = tasks(ctr)[sandbox][0]
    joins = [f"--with-ns={ns}:/proc/{pid}/ns/{link}" for ns, link in
             (("network", "net"), ("ipc", "ipc"), ("uts", "uts"))]
    r = ctr.run("--rm", *joins, IMAGE, new_id(), "sh", "-c",
                lingering("for ns in uts ipc net pid; do readlink /proc/self/ns/$ns; done"))
    uts, ipc, net, pidns = r.stdout.split()
    assert uts == os.readlink(f"/proc/{pid}/ns/uts")
    assert ipc == os.readlink(f"/proc/{pid}/ns/ipc")
    assert net == os.readlink(f"/proc/{pid}/ns/net")
    assert pidns != os.readlink(f"/proc/{pid}/ns/pid")


# --- restart ---------------------------------------------------------------------------------------------

def test_restart_a_stopped_container(ctr):
    cid = new_id()
    ctr.run("--detach", IMAGE, cid, "sh", "-c", "echo run >> /runs")
    until(lambda: task_status(ctr, cid) == "STOPPED", what="the task to stop")
    ctr.ctr("tasks", "delete", cid)
    ctr.ctr("tasks", "start", "--detach", "--fifo-dir", str(ctr.fifo_dir), cid)
    until(lambda: task_status(ctr, cid) == "STOPPED", what="the second task to stop")
    assert open(os.path.join(rootfs(ctr, cid), "runs")).read() == "run\nrun\n"
    ctr.ctr("tasks", "delete", cid)
    ctr.ctr("containers", "delete", cid)

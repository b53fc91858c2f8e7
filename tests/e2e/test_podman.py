"""podman (through conmon) driving the runtime: what a podman user sees."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from engines import COUNTER, IMAGE, SHOW_LIMITS, SHOW_MEMORY, Podman, until
from ptyrun import run_in_pty

pytestmark = pytest.mark.root


def inspect(podman: Podman, cid: str, fmt: str) -> str:
    return podman("inspect", "--format", fmt, cid).stdout.strip()


def status(podman: Podman, cid: str) -> str:
    return inspect(podman, cid, "{{.State.Status}}")


def detached(podman: Podman, *cmd: str, opts: tuple[str, ...] = ()) -> str:
    cid = podman.run("--detach", *opts, IMAGE, *cmd).stdout.strip()
    assert status(podman, cid) == "running"
    return cid


def wait_ready(podman: Podman, cid: str, word: str = "ready") -> None:
    until(lambda: word in podman("logs", cid).stdout, what=f"{word!r} in the container's log")


def merged_dir(podman: Podman, cid: str) -> str:
    return inspect(podman, cid, "{{.GraphDriver.Data.MergedDir}}")


# --- run ---------------------------------------------------------------------------------------------

def test_run_rm_prints_output(podman):
    r = podman.run("--rm", IMAGE, "echo", "hello from podman")
    assert r.stdout == "hello from podman\n"
    assert podman("ps", "--all", "--quiet").stdout == ""


def test_run_passes_exit_status_through(podman):
    assert podman.run("--rm", IMAGE, "sh", "-c", "exit 42", check=False).returncode == 42


def test_run_missing_binary_is_127_with_the_runtimes_message(podman):
    r = podman.run("--rm", IMAGE, "/no/such/binary", check=False)
    assert r.returncode == 127, r
    # podman passes --log-format json (the runtime is in runtime_supports_json), reads the
    # runtime's --log file and prints its message, prefixed with the runtime's name.
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("Error:")]
    assert len(lines) == 1, r
    assert lines[0].startswith(f"Error: {podman.runtime_name}: "), r
    assert '"/no/such/binary"' in lines[0] and "no such file or directory" in lines[0], r
    assert '{"level"' not in r.stderr, r    # the JSON was parsed, not passed through


def test_run_tty(podman):
    r = run_in_pty(["podman", "run", "--rm", "--tty", *podman.create_opts, IMAGE,
                    "sh", "-c", "tty; test -t 0 && test -t 1 && echo stdio-is-a-tty"], env=podman.env)
    assert r.returncode == 0, r
    assert "/dev/pts/0\n" in r.stdout and "stdio-is-a-tty\n" in r.stdout, r


def test_run_options_reach_the_process(podman, tmp_path):
    (tmp_path / "greeting").write_text("hello from the host\n")
    tmp_path.chmod(0o755)     # readable by the container's user 65534
    r = podman.run("--rm", "--user", "65534:65534", "--workdir", "/tmp", "--env", "FOO=bar",
                   "--hostname", "e2e-host", "--read-only", "--volume", f"{tmp_path}:/data:ro",
                   "--tmpfs", "/scratch", IMAGE, "sh", "-c",
                   "id -u; id -g; pwd; echo $FOO; hostname; cat /data/greeting; "
                   "touch /x 2>/dev/null || echo rootfs-ro; touch /data/x 2>/dev/null || echo data-ro; "
                   "grep -q ' /scratch tmpfs ' /proc/mounts && echo scratch-tmpfs")
    assert r.stdout.splitlines() == ["65534", "65534", "/tmp", "bar", "e2e-host", "hello from the host",
                                     "rootfs-ro", "data-ro", "scratch-tmpfs"]


def test_sysctls_reach_the_containers_namespaces(podman):
    host = open("/proc/sys/kernel/msgmax").read()
    r = podman.run("--rm", "--sysctl", "kernel.msgmax=4097", "--sysctl", "net.ipv4.ping_group_range=0 0",
                   IMAGE, "cat", "/proc/sys/kernel/msgmax", "/proc/sys/net/ipv4/ping_group_range")
    assert r.stdout.split() == ["4097", "0", "0"]
    assert open("/proc/sys/kernel/msgmax").read() == host      # the container's IPC namespace only


def test_rlimits_within_the_hosts_hard_limits(podman):
    # containers.conf default_ulimits (engines.host_ulimits) reach the container process.
    nofile = podman.run("--rm", IMAGE, "sh", "-c", "ulimit -n").stdout.strip()
    conf = podman.containers_conf.read_text()
    assert f'"nofile={nofile}:{nofile}"' in conf


def test_device_is_created_in_the_container(podman):
    # podman sends fileMode with the file-type bits (S_IFCHR | 0600)
    r = podman.run("--rm", "--device", "/dev/zero:/dev/e2e-zero", IMAGE, "sh", "-c",
                   "test -c /dev/e2e-zero && head -c 4 /dev/e2e-zero | od -An -tx1")
    assert r.stdout.split() == ["00", "00", "00", "00"]


def test_privileged_has_every_capability_and_the_hosts_devices(podman):
    host_bounding = next(ln for ln in open("/proc/self/status") if ln.startswith("CapBnd:")).split()[1]
    r = podman.run("--rm", "--privileged", IMAGE, "sh", "-c",
                   "grep -E '^(CapEff|Seccomp):' /proc/self/status; test -c /dev/zero && ls /dev | wc -l")
    lines = r.stdout.split("\n")
    assert lines[0].split() == ["CapEff:", host_bounding]
    assert lines[1].split() == ["Seccomp:", "0"]
    assert int(lines[2]) > 20            # the host's devices, not just the default six


# --- detached containers and exec ---------------------------------------------------------------

def test_detached_run_then_exec_prints_output(podman):
    cid = detached(podman, "sleep", "1000")
    assert podman("exec", cid, "echo", "from exec").stdout == "from exec\n"
    # the exec'd process is inside the container: pid 1 of its pid namespace is the sleep
    assert podman("exec", cid, "cat", "/proc/1/cmdline").stdout == "sleep\x001000\x00"


def test_exec_passes_exit_status_through(podman):
    cid = detached(podman, "sleep", "1000")
    assert podman("exec", cid, "sh", "-c", "exit 7", check=False).returncode == 7


def test_exec_missing_binary_is_127(podman):
    cid = detached(podman, "sleep", "1000")
    r = podman("exec", cid, "/no/such/binary", check=False)
    assert r.returncode == 127, r
    assert "/no/such/binary" in r.stderr, r


def test_exec_with_a_tty(podman):
    cid = detached(podman, "sleep", "1000")
    r = run_in_pty(["podman", "exec", "--tty", cid, "sh", "-c",
                    "tty; test -t 0 && test -t 1 && echo stdio-is-a-tty; exit 3"], env=podman.env)
    assert r.returncode == 3, r
    assert "/dev/pts/" in r.stdout and "stdio-is-a-tty\n" in r.stdout, r


# --- pause, stop, kill, rm ---------------------------------------------------------------------------

def test_pause_and_unpause(podman):
    cid = detached(podman, "sh", "-c", COUNTER)
    counter = os.path.join(merged_dir(podman, cid), "tmp", "n")
    until(lambda: os.path.exists(counter) and open(counter).read().strip(), what="the counter")
    podman("pause", cid)
    assert status(podman, cid) == "paused"
    frozen = open(counter).read()
    time.sleep(0.3)
    assert open(counter).read() == frozen, "the counter moved while the container was paused"
    podman("unpause", cid)
    assert status(podman, cid) == "running"
    until(lambda: open(counter).read() != frozen, what="the counter to move after unpause")


def test_stop_sends_sigterm_first(podman):
    cid = detached(podman, "sh", "-c", "trap 'exit 3' TERM; echo ready; sleep 1000 & wait")
    wait_ready(podman, cid)
    podman("stop", "--time", "60", cid)
    assert status(podman, cid) == "exited"
    assert inspect(podman, cid, "{{.State.ExitCode}}") == "3"


def test_stop_kills_a_process_that_ignores_sigterm(podman):
    # sleep as pid 1 of its namespace has no SIGTERM handler, so TERM is ignored
    cid = detached(podman, "sleep", "1000")
    podman("stop", "--time", "1", cid)
    assert status(podman, cid) == "exited"
    assert inspect(podman, cid, "{{.State.ExitCode}}") == "137"


def test_kill_with_a_signal(podman):
    cid = detached(podman, "sh", "-c", "trap 'exit 5' USR1; echo ready; sleep 1000 & wait")
    wait_ready(podman, cid)
    podman("kill", "--signal", "USR1", cid)
    assert podman("wait", cid).stdout.strip() == "5"


def test_kill_defaults_to_sigkill(podman):
    cid = detached(podman, "sleep", "1000")
    podman("kill", cid)
    assert podman("wait", cid).stdout.strip() == "137"


def test_rm_force_removes_a_running_container(podman):
    cid = detached(podman, "sleep", "1000")
    pid = int(inspect(podman, cid, "{{.State.Pid}}"))
    podman("rm", "--force", "--time", "0", cid)
    assert cid not in podman("ps", "--all", "--quiet", "--no-trunc").stdout
    until(lambda: not os.path.exists(f"/proc/{pid}"), what="the container's process to go")


# --- resources -----------------------------------------------------------------------------------------

def test_memory_and_pids_limits_visible_in_the_container(podman):
    r = podman.run("--rm", "--memory", "64m", "--pids-limit", "77", IMAGE, "sh", "-c", SHOW_LIMITS)
    assert r.stdout.split() == [str(64 << 20), "77"]


def test_update_changes_the_memory_limit_of_a_running_container(podman):
    cid = detached(podman, "sh", "-c",
                   f"trap '{SHOW_MEMORY}' USR1; echo ready; while :; do sleep 1000 & wait; done",
                   opts=("--memory", "64m"))
    wait_ready(podman, cid)
    podman("update", "--memory", "96m", cid)
    podman("kill", "--signal", "USR1", cid)
    # (podman 4.3's inspect keeps showing the old limit: only the container's view counts)
    until(lambda: str(96 << 20) in podman("logs", cid).stdout, what="the new limit in the log")


# --- pods and restarts -----------------------------------------------------------------------------

def test_pod_containers_join_the_infra_namespaces(podman):
    pod = podman("pod", "create", "--cgroup-parent", podman.cgroup_parent, "--network", "none",
                 "--hostname", "podhost", "--infra-image", IMAGE,
                 "--infra-command", "sleep infinity").stdout.strip()
    podman("pod", "start", pod)
    infra = podman("pod", "inspect", "--format", "{{.InfraContainerID}}", pod).stdout.strip()
    infra_pid = int(inspect(podman, infra, "{{.State.Pid}}"))
    r = podman("run", "--rm", "--pod", pod, IMAGE, "sh", "-c",
               "hostname; for ns in uts ipc net pid; do readlink /proc/self/ns/$ns; done")
    hostname, uts, ipc, net, pid = r.stdout.split()
    assert hostname == "podhost"
    # joined by path: the same namespaces as the infra container's (the pod shares ipc,net,uts)
    assert uts == os.readlink(f"/proc/{infra_pid}/ns/uts")
    assert ipc == os.readlink(f"/proc/{infra_pid}/ns/ipc")
    assert net == os.readlink(f"/proc/{infra_pid}/ns/net")
    assert pid != os.readlink(f"/proc/{infra_pid}/ns/pid")
    podman("pod", "rm", "--force", "--time", "0", pod)


def test_restart_a_stopped_container(podman):
    name = f"ocitest-{uuid.uuid4().hex[:8]}"
    podman.run("--name", name, IMAGE, "sh", "-c", "echo run")
    assert status(podman, name) == "exited"
    assert podman("start", "--attach", name).stdout == "run\n"
    assert podman("logs", name).stdout == "run\nrun\n"


def test_restart_a_running_container(podman):
    cid = detached(podman, "sleep", "1000")
    before = inspect(podman, cid, "{{.State.Pid}}")
    podman("restart", "--time", "0", cid)
    assert status(podman, cid) == "running"
    assert inspect(podman, cid, "{{.State.Pid}}") != before

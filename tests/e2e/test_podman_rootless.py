"""Rootless podman (issue #13): an unprivileged user of the tests' own runs podman
with ocirun as its runtime, its own containers.conf and storage, no network.

Podman makes a user namespace from the user's /etc/subuid and /etc/subgid
ranges (newuidmap) and runs conmon and the runtime in it as uid 0: ocirun runs
rootless there (auto), keeps its state under the user's $XDG_RUNTIME_DIR/ocirun
(podman passes no --root) and, on a cgroup v1 host, makes no cgroup. The user
(tests/integration/rootless_user.py) and everything it ran are removed at the
end; after each test no container, no runtime state and no process but
podman's pause process may be left. ``--e2e-runtime /usr/sbin/runc`` runs the
same tests with runc, the oracle.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from engines import IMAGE, REPO, RootlessPodman, cmdline, reap_orphans, until
from ptyrun import run_in_pty

sys.path.insert(0, str(REPO / "tests" / "integration"))
from rootless_user import fresh_user  # noqa: E402

pytestmark = pytest.mark.root


@pytest.fixture(scope="session")
def rootless_podman(runtime_binary, layout) -> Iterator[RootlessPodman]:
    try:
        with fresh_user() as user:
            runtime = runtime_binary
            if runtime.parent == REPO / ".venv" / "bin" and runtime.name in ("ocirun", "ocirun-direct"):
                runtime = user.venv / "bin" / runtime.name  # the ocirun (or its direct path) the user can run
            pm = RootlessPodman(user.workdir / "podman", runtime, user)
            try:
                pm.load_image(layout)
                yield pm
            finally:
                leaks = pm.close()
    finally:
        reap_orphans()  # what the user's removal killed
    assert not leaks, "rootless podman teardown: " + "; ".join(leaks)


@pytest.fixture
def pm(rootless_podman) -> Iterator[RootlessPodman]:
    p = rootless_podman
    state_root = p.user.runtime_dir / p.runtime_name   # podman passes no --root
    yield p
    p.remove_all()
    # the user's warm helpers (started by the runtime's calls in podman's user namespace)
    problems = p.user.stop_helpers()
    reap_orphans()
    if left := p("ps", "--all", "--quiet", check=False).stdout.split():
        problems.append(f"containers left: {left}")
    if state_root.exists() and (left := os.listdir(state_root)):
        problems.append(f"runtime state left in {state_root}: {left}")
    pause = p.pause_pids()

    def stray_processes() -> list[int]:
        reap_orphans()
        return [pid for pid in p.user.processes() if pid not in pause]

    try:  # conmon and the container's last process may still be exiting
        until(lambda: not stray_processes(), timeout=10, what="the user's processes to exit")
    except AssertionError:
        pass
    if stray := stray_processes():
        problems.append(f"processes left: {[(pid, ' '.join(cmdline(pid)), _status(pid)) for pid in stray]}")
    assert not problems, "after the test: " + "; ".join(problems)


def _status(pid: int) -> str:
    try:
        return " ".join(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines()
                        if ln.startswith(("Name", "State", "PPid", "Uid")))
    except OSError:
        return "gone"


def status(p: RootlessPodman, name: str) -> str:
    return p("inspect", "--format", "{{.State.Status}}", name).stdout.strip()


def test_run_rm_prints_output_as_root_of_the_users_namespace(pm):
    r = pm.run("--rm", "--network", "none", IMAGE, "sh", "-c", "echo hello; id -u; cat /proc/self/uid_map")
    lines = r.stdout.splitlines()
    assert lines[:2] == ["hello", "0"], r
    assert [ln.split() for ln in lines[2:]] == [["0", str(pm.user.uid), "1"],
                                               ["1", str(pm.user.subuid[0]), str(pm.user.subuid[1])]], r
    assert pm("ps", "--all", "--quiet").stdout == ""


def test_run_passes_exit_status_through(pm):
    assert pm.run("--rm", "--network", "none", IMAGE, "sh", "-c", "exit 42", check=False).returncode == 42


def test_detached_run_exec_stop_rm(pm):
    name = "ocitest-rl-detached"
    pm.run("--detach", "--name", name, "--network", "none", IMAGE, "sh", "-c",
           "trap 'exit 0' TERM; echo ready; while :; do sleep 0.1; done")
    try:
        assert status(pm, name) == "running"
        until(lambda: "ready" in pm("logs", name).stdout, what="the container's output")
        cid = pm("inspect", "--format", "{{.Id}}", name).stdout.strip()
        # the runtime's default state root: the user's XDG_RUNTIME_DIR (podman passes no --root)
        assert (pm.user.runtime_dir / pm.runtime_name / cid).is_dir()
        r = pm("exec", name, "sh", "-c", "echo from-exec; id -u")
        assert r.stdout.splitlines() == ["from-exec", "0"]
        assert pm("exec", name, "sh", "-c", "exit 3", check=False).returncode == 3
        pm("stop", "--time", "10", name)
        assert status(pm, name) == "exited"
        assert pm("inspect", "--format", "{{.State.ExitCode}}", name).stdout.strip() == "0"
    finally:
        pm("rm", "--force", name, check=False)
    assert pm("ps", "--all", "--quiet").stdout == ""


def test_run_tty(pm):
    r = run_in_pty(pm.argv("run", "--rm", "--tty", "--network", "none", IMAGE,
                           "sh", "-c", "tty; test -t 0 && test -t 1 && echo stdio-is-a-tty"), env=pm.env,
                   cwd=pm.user.home)  # podman chdirs back to its cwd: the checkout may be out of reach
    assert r.returncode == 0, r
    assert "/dev/pts/0\n" in r.stdout and "stdio-is-a-tty\n" in r.stdout, r


def test_top(pm):
    name = "ocitest-rl-top"
    pm.run("--detach", "--name", name, "--network", "none", IMAGE, "sleep", "1000")
    try:
        r = pm("top", name)
        header, *rows = r.stdout.splitlines()
        assert header.split()[:2] == ["USER", "PID"], r
        assert any(row.split()[0] == "root" and row.split()[1] == "1" and "sleep 1000" in row
                   for row in rows), r
        r = pm("top", name, "pid", "args")
        assert any(row.split()[:3] == ["1", "sleep", "1000"] for row in r.stdout.splitlines()[1:]), r
    finally:
        pm("rm", "--force", "--time", "0", name, check=False)

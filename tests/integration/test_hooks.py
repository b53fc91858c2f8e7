"""Lifecycle hooks: each kind once, in order, with the right state, in the right
namespace; failures of each kind with the outcome runtime.md specifies."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess

import pytest

KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")

# Logs one JSON line: the kind, argv, env, the state from stdin, and where it ran.
HOOK = """#!/bin/sh
log="$1"; kind="$2"; fail="$3"
state=$(cat)
printf '{"kind": "%s", "argc": %s, "env": "%s", "state": %s, "mnt": "%s", "pid_ns": "%s", "uts": "%s", "root": "%s"}\\n' \\
  "$kind" "$#" "$(env | grep '^HOOKVAR=' )" "$state" "$(readlink /proc/self/ns/mnt)" \\
  "$(readlink /proc/self/ns/pid)" "$(hostname)" "$(ls / | tr '\\n' ' ')" >> "$log"
case "$fail" in
  fail) echo "hook says no" >&2; exit 3 ;;
  hang) exec sleep 1000 ;;
esac
exit 0
"""


def _install(path: str) -> None:
    with open(path, "w") as f:
        f.write(HOOK)
    os.chmod(path, stat.S_IRWXU | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)


def _setup(bundle, tmp_path, fail: dict[str, str] | None = None, timeout: dict[str, int] | None = None):
    """Hooks of every kind. Host hooks log to tmp_path/log; startContainer runs in
    the container (after pivot_root) and logs to /hooks.log there."""
    fail = fail or {}
    host_hook = str(tmp_path / "hook.sh")
    _install(host_hook)
    _install(str(bundle.rootfs / "hook.sh"))
    host_log = str(tmp_path / "log")

    def hook(kind):
        in_container = kind == "startContainer"
        h = {"path": "/hook.sh" if in_container else host_hook,
             "args": ["hook.sh", "/hooks.log" if in_container else host_log, kind, fail.get(kind, "ok")],
             "env": ["HOOKVAR=" + kind]}
        if timeout and kind in timeout:
            h["timeout"] = timeout[kind]
        return [h]

    def f(c):
        c["process"]["args"] = ["sleep", "1000"]
        c["hostname"] = "hooked"
        c["hooks"] = {k: hook(k) for k in KINDS}

    bundle.edit(f)
    return tmp_path / "log", bundle.rootfs / "hooks.log"


def _entries(*logs):
    out = []
    for log in logs:
        if log.exists():
            out += [json.loads(line) for line in log.read_text().splitlines()]
    return out


def test_every_hook_runs_once_in_order_with_its_state_and_namespace(ocirun, bundle, tmp_path):
    host_log, container_log = _setup(bundle, tmp_path)
    cid = ocirun.new_id()
    ocirun("create", "--bundle", str(bundle.path), cid)
    init = ocirun.state(cid)["pid"]
    init_mnt = os.readlink(f"/proc/{init}/ns/mnt")
    init_pid_ns = os.readlink(f"/proc/{init}/ns/pid")
    created = _entries(host_log)
    assert [e["kind"] for e in created] == ["prestart", "createRuntime", "createContainer"]
    ocirun("start", cid)
    started = _entries(container_log)
    assert [e["kind"] for e in started] == ["startContainer"]
    assert [e["kind"] for e in _entries(host_log)][3:] == ["poststart"]
    ocirun("kill", cid, "KILL")
    assert ocirun.wait_status(cid, "stopped") == "stopped"
    ocirun("delete", cid)
    entries = {e["kind"]: e for e in _entries(host_log, container_log)}
    assert [e["kind"] for e in _entries(host_log)] == [k for k in KINDS if k != "startContainer"]

    host_mnt = os.readlink("/proc/self/ns/mnt")
    for kind, e in entries.items():
        st = e["state"]
        assert st["id"] == cid and st["bundle"] == str(bundle.path) and st["ociVersion"]
        assert e["env"] == "HOOKVAR=" + kind  # exactly the hook's env
        assert e["argc"] == 3
    # runtime.md: "created" is "after step 2" of the lifecycle; the create-time hooks are
    # steps 3-5 (crun passes created; runc 1.1 creating)
    want_status = {"prestart": "created", "createRuntime": "created", "createContainer": "created",
                   "startContainer": "created", "poststart": "running", "poststop": "stopped"}
    assert {k: e["state"]["status"] for k, e in entries.items()} == want_status
    for kind in ("prestart", "createRuntime", "poststart", "poststop"):  # runtime namespace
        assert entries[kind]["mnt"] == host_mnt and entries[kind]["uts"] != "hooked"
    for kind in ("prestart", "createRuntime", "poststart"):
        assert entries[kind]["state"]["pid"] == init
    assert "pid" not in entries["poststop"]["state"]
    for kind in ("createContainer", "startContainer"):  # container namespace
        e = entries[kind]
        assert e["mnt"] == init_mnt and e["pid_ns"] == init_pid_ns and e["uts"] == "hooked"
        assert e["state"]["pid"] == 1  # as the container sees it
    # createContainer: before pivot_root (the host's tree); startContainer: after (the rootfs)
    assert "hook.sh" not in entries["createContainer"]["root"].split()
    assert "hook.sh" in entries["startContainer"]["root"].split()


@pytest.mark.parametrize("kind", ["prestart", "createRuntime", "createContainer"])
def test_failing_create_hook_fails_create_and_leaves_nothing(ocirun, bundle, tmp_path, kind):
    host_log, _ = _setup(bundle, tmp_path, fail={kind: "fail"})
    cid = ocirun.new_id()
    p = ocirun("create", "--bundle", str(bundle.path), cid, check=False)
    assert p.returncode == 1
    assert f"error running {kind} hook #0".encode() in p.stderr and b"hook says no" in p.stderr
    kinds = [e["kind"] for e in _entries(host_log)]
    assert kinds == [k for k in KINDS[: KINDS.index(kind) + 1]] + ["poststop"]
    assert ocirun("state", cid, check=False).returncode == 1
    # the leak check of the fixture: no process, cgroup, mount or state dir remains


@pytest.mark.parametrize("kind", ["startContainer", "poststart"])
def test_failing_start_hook_fails_start_and_tears_down(ocirun, bundle, tmp_path, kind):
    host_log, container_log = _setup(bundle, tmp_path, fail={kind: "fail"})
    cid = ocirun.new_id()
    ocirun("create", "--bundle", str(bundle.path), cid)
    init = ocirun.state(cid)["pid"]
    p = ocirun("start", cid, check=False)
    assert p.returncode == 1
    assert f"error running {kind} hook #0".encode() in p.stderr
    assert ocirun("state", cid, check=False).returncode == 1
    assert not os.path.exists(f"/proc/{init}") or open(f"/proc/{init}/stat").read().split(") ")[1][0] == "Z"
    host_kinds = [e["kind"] for e in _entries(host_log)]
    assert host_kinds[-1] == "poststop"  # the lifecycle went on to destroy + poststop
    assert [e["kind"] for e in _entries(host_log, container_log)].count(kind) == 1


def test_failing_poststop_hook_is_a_warning(ocirun, bundle, tmp_path):
    _setup(bundle, tmp_path, fail={"poststop": "fail"})
    cid = ocirun.new_id()
    ocirun("run", "-d", "--bundle", str(bundle.path), cid)
    ocirun("kill", cid, "KILL")
    assert ocirun.wait_status(cid, "stopped") == "stopped"
    p = ocirun("delete", cid)
    assert p.returncode == 0
    assert b"warning: error running poststop hook #0" in p.stderr
    assert ocirun("state", cid, check=False).returncode == 1


def test_a_hook_that_hangs_is_killed_at_its_timeout(ocirun, bundle, tmp_path):
    _setup(bundle, tmp_path, fail={"createRuntime": "hang"}, timeout={"createRuntime": 1})
    cid = ocirun.new_id()
    p = ocirun("create", "--bundle", str(bundle.path), cid, check=False)
    assert p.returncode == 1
    assert b"error running createRuntime hook #0" in p.stderr
    assert b"hook ran past specified timeout of 1.0s" in p.stderr
    assert ocirun("state", cid, check=False).returncode == 1


def test_features_lists_every_hook(ocirun):
    doc = json.loads(ocirun("features").stdout)
    assert doc["hooks"] == list(KINDS)


def test_a_missing_container_hook_is_a_hook_failure(ocirun, bundle, tmp_path):
    def f(c):
        c["hooks"] = {"startContainer": [{"path": "/no/such/hook"}]}

    bundle.edit(f)
    cid = ocirun.new_id()
    ocirun("create", "--bundle", str(bundle.path), cid)
    p = ocirun("start", cid, check=False)
    assert p.returncode == 1
    assert p.stderr.decode().strip() == (
        "error running startContainer hook #0 (/no/such/hook): exec /no/such/hook: no such file or directory")
    assert ocirun("state", cid, check=False).returncode == 1


ENV_HOOK = """#!/bin/sh
# $1: where to write; the environment as the hook got it (the shell's own PWD,
# OLDPWD and SHLVL left out: they follow the cwd, not what the runtime passed)
env | grep -v -E '^(PWD|OLDPWD|SHLVL|_)=' | sort > "$1"
"""


def _env_hooks(bundle, out_dir, with_env: bool) -> None:
    """A hook of every kind that writes its environment to out_dir/<kind> (the
    startContainer one, run after pivot_root, to /<kind> in the rootfs)."""
    host_hook = out_dir / "env-hook.sh"
    for path in (host_hook, bundle.rootfs / "env-hook.sh"):
        path.write_text(ENV_HOOK)
        path.chmod(0o755)

    def hook(kind):
        in_container = kind == "startContainer"
        h = {"path": "/env-hook.sh" if in_container else str(host_hook),
             "args": ["env-hook.sh", f"/{kind}" if in_container else str(out_dir / kind)]}
        if with_env:
            h["env"] = []
        return [h]

    def f(c):
        c["process"]["args"] = ["true"]
        c["process"]["env"] = ["PATH=/bin:/sbin", "FROM_PROCESS=1", "FROM_PROCESS=2"]
        c["hooks"] = {k: hook(k) for k in KINDS}

    bundle.edit(f)


def _hook_envs(out_dir, rootfs) -> dict[str, str]:
    return {kind: ((rootfs if kind == "startContainer" else out_dir) / kind).read_text() for kind in KINDS}


#: What the runtimes are given: a small, known environment.
RUNTIME_ENV = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "OCIRUN_TEST_FROM_CALLER": "yes", "LANG": "C.UTF-8"}


@pytest.mark.parametrize("with_env", [False, True], ids=["no-env", "empty-env"])
@pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")
def test_hooks_env_as_runc_gives_it(ocirun, bundle, tmp_path, with_env):
    """No `env`: runtime-namespace hooks get the runtime's own environment, the
    container-namespace ones the container process's (runc: Go's exec.Cmd with a
    nil Env, run from runc itself or from its init; startContainer after the init
    has added HOME). `"env": []`: nothing. Compared with runc."""
    ours_out, theirs_out = tmp_path / "ours-out", tmp_path / "theirs-out"
    ours_out.mkdir()
    theirs_out.mkdir()
    theirs = bundle.copy(tmp_path / "runc-bundle")
    _env_hooks(bundle, ours_out, with_env)
    _env_hooks(theirs, theirs_out, with_env)
    cid = ocirun.new_id()
    import sys

    for cmd, b in (([sys.executable, "-m", "ocirun", "--root", str(ocirun.root)], bundle),
                   (["runc", "--root", str(tmp_path / "runc-root")], theirs)):
        p = subprocess.run([*cmd, "run", "--bundle", str(b.path), cid], env=RUNTIME_ENV,
                           capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        assert p.returncode == 0, p.stderr
    ours, reference = _hook_envs(ours_out, bundle.rootfs), _hook_envs(theirs_out, theirs.rootfs)
    assert ours == reference
    runtime_env = "".join(sorted(f"{k}={v}\n" for k, v in RUNTIME_ENV.items()))
    for kind in ("prestart", "createRuntime", "poststart", "poststop"):
        assert ours[kind] == ("" if with_env else runtime_env), kind
    if not with_env:
        assert ours["createContainer"] == "FROM_PROCESS=2\nPATH=/bin:/sbin\n"
        assert ours["startContainer"] == "FROM_PROCESS=2\nHOME=/root\nPATH=/bin:/sbin\n"

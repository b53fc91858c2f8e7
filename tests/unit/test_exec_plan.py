"""The exec process plan: runc's overrides on the container's process, --process
validation, the namespaces to join, hook plans."""

from __future__ import annotations

import os

import pytest

from ocirun.errors import ConfigError, UsageError
from ocirun.linux import namespaces
from ocirun.plan.exec_plan import (
    ExecOptions,
    build_exec_plan,
    dedup_env,
    exec_process_dict,
    hook_plan,
    init_namespaces,
    validate_process,
)

CONFIG_PROCESS = {
    "cwd": "/home",
    "args": ["sleep", "1000"],
    "env": ["PATH=/bin", "A=1"],
    "user": {"uid": 5, "gid": 6, "additionalGids": [7]},
    "capabilities": {"bounding": ["CAP_CHOWN"], "effective": ["CAP_CHOWN"], "permitted": ["CAP_CHOWN"],
                     "ambient": ["CAP_CHOWN"], "inheritable": ["CAP_CHOWN"]},
    "rlimits": [{"type": "RLIMIT_NOFILE", "soft": 100, "hard": 100}],
    "noNewPrivileges": False,
    "terminal": True,
    "consoleSize": {"height": 1, "width": 2},
}


def test_without_flags_the_containers_process_runs_the_command():
    p = exec_process_dict(CONFIG_PROCESS, ExecOptions(args=("id",)))
    assert p["args"] == ["id"]
    assert p["terminal"] is False and "consoleSize" not in p
    assert p["cwd"] == "/home" and p["env"] == ["PATH=/bin", "A=1"]
    assert p["user"] == {"uid": 5, "gid": 6, "additionalGids": [7]}
    assert p["rlimits"] == CONFIG_PROCESS["rlimits"]
    assert CONFIG_PROCESS["args"] == ["sleep", "1000"]  # the stored process is not changed


def test_flags_override_as_runc_does():
    p = exec_process_dict(CONFIG_PROCESS, ExecOptions(
        args=("sh",), cwd="/tmp", env=("B=2", "A=3"), user="1000", additional_gids=("8", "9"),
        caps=("CAP_SYS_ADMIN", "net_admin", "CAP_CHOWN"), no_new_privs=True))
    assert p["cwd"] == "/tmp"
    assert p["env"] == ["PATH=/bin", "A=1", "B=2", "A=3"]  # appended; the last A wins in execve's env
    assert p["user"] == {"uid": 1000, "gid": 6, "additionalGids": [7, 8, 9]}  # gid kept without ":gid"
    assert p["noNewPrivileges"] is True
    caps = p["capabilities"]
    for kind in ("bounding", "effective", "permitted"):
        assert caps[kind] == ["CAP_CHOWN", "CAP_SYS_ADMIN", "CAP_NET_ADMIN"]
    assert caps["ambient"] == ["CAP_CHOWN"] and caps["inheritable"] == ["CAP_CHOWN"]
    assert exec_process_dict(CONFIG_PROCESS, ExecOptions(args=("x",), user="1:2"))["user"]["gid"] == 2


def test_bad_user_and_empty_args_are_usage_errors():
    with pytest.raises(UsageError, match="exec args cannot be empty"):
        exec_process_dict(CONFIG_PROCESS, ExecOptions())
    with pytest.raises(UsageError, match="invalid syntax"):
        exec_process_dict(CONFIG_PROCESS, ExecOptions(args=("x",), user="root"))
    with pytest.raises(UsageError):
        exec_process_dict(CONFIG_PROCESS, ExecOptions(args=("x",), additional_gids=("-1",)))


def test_process_file_replaces_the_process_and_is_validated():
    given = {"args": ["true"], "cwd": "/", "user": {"uid": 1, "gid": 1}}
    assert exec_process_dict(CONFIG_PROCESS, ExecOptions(args=("ignored",), env=("X=1",), process=given)) == given
    with pytest.raises(ConfigError) as e:
        validate_process({"args": ["true"], "cwd": "/", "user": {"uid": "x", "gid": 0}})
    assert any(p.path == "$.process.user.uid" for p in e.value.problems)
    with pytest.raises(ConfigError, match="args"):
        validate_process({"args": [], "cwd": "/", "user": {"uid": 0, "gid": 0}})
    with pytest.raises(ConfigError, match="cwd"):
        validate_process({"args": ["x"], "cwd": "rel", "user": {"uid": 0, "gid": 0}})
    with pytest.raises(ConfigError):
        validate_process(["not", "an", "object"])


def test_init_namespaces_skips_our_own_and_orders_user_first_mount_last(monkeypatch):
    assert init_namespaces(os.getpid()) == ()  # every one of ours is ours
    real_stat = os.stat
    shared = {"ipc", "time"}

    def fake_stat(path, *a, **k):
        st = real_stat(path.replace("/proc/999999/", "/proc/self/"), *a, **k)
        if path.startswith("/proc/999999/") and path.rsplit("/", 1)[1] not in shared:
            return os.stat_result((st.st_mode, st.st_ino + 1, *tuple(st)[2:]))
        return st

    monkeypatch.setattr(os, "stat", fake_stat)
    joins = init_namespaces(999999)
    names = {v: k for k, v in namespaces.CLONE_FLAGS.items()}
    kinds = [names[j.clone_flag] for j in joins]
    assert kinds == [k for k in namespaces.JOIN_ORDER if namespaces.PROC_NS_NAMES[k] not in shared]
    assert kinds[0] == "user" and kinds[-1] == "mount"
    assert joins[0].path == b"/proc/999999/ns/user"


def test_build_exec_plan_has_the_process_and_joins_only():
    joins = init_namespaces(os.getpid())
    plan = build_exec_plan(dict(CONFIG_PROCESS, args=["id"], terminal=False), container_id="c",
                           bundle="/b", rootfs="/nonexistent", joins=joins, seccomp=None, preserve_fds=2)
    assert plan.process is not None
    assert plan.process.args == (b"id",) and plan.process.uid == 5 and plan.process.preserve_fds == 2
    assert plan.process.exe is None and plan.process.search_path == (b"/bin",)
    assert plan.mounts == () and plan.new_namespaces == 0 and plan.seccomp_bpf is None


def test_hook_plan_runs_the_path_as_root_without_restrictions():
    plan = hook_plan("/usr/bin/hook", ("hook", "a"), ("X=1",), rootfs="/r", joins=())
    p = plan.process
    assert p is not None
    assert p.exe == b"/usr/bin/hook" and p.args == (b"hook", b"a") and p.env == (b"X=1",)
    assert (p.uid, p.gid, p.capabilities, p.rlimits, p.no_new_privileges) == (0, 0, None, (), False)
    assert plan.seccomp_bpf is None
    assert hook_plan("/h", (), (), rootfs="/r", joins=()).process.args == (b"/h",)


def test_unknown_cap_is_a_warning_and_ignored(capsys):
    p = exec_process_dict(CONFIG_PROCESS, ExecOptions(args=("x",), caps=("CAP_BOGUS", "CAP_KILL")))
    assert p["capabilities"]["bounding"] == ["CAP_CHOWN", "CAP_KILL"]
    assert "ignoring unknown or unavailable capabilities: [CAP_BOGUS]" in capsys.readouterr().err


def test_env_is_deduplicated_as_runc_does():
    assert dedup_env(["PATH=/bin", "TERM=xterm", "HOME=/x", "A=1", "TERM=dumb", "A=2"]) == [
        "PATH=/bin", "TERM=dumb", "HOME=/x", "A=2"]
    plan = build_exec_plan(dict(CONFIG_PROCESS, args=["env"], terminal=False, env=["PATH=/bin", "PATH=/sbin"]),
                           container_id="c", bundle="/b", rootfs="/nonexistent", joins=(), seccomp=None)
    assert plan.process is not None and plan.process.search_path == (b"/sbin",)
    assert plan.process.env[0] == b"PATH=/sbin"

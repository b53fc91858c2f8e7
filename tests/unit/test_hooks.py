"""Runtime-namespace hooks: state on stdin, exact env and argv, order,
failures with their output, timeouts; poststop only warns."""

from __future__ import annotations

import json
import os
import stat

import pytest

from ocirun import hooks
from ocirun.errors import HookError
from ocirun.spec.model import Hooks


def _script(tmp_path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(stat.S_IRWXU)
    return str(path)


STATE = {"ociVersion": "1.3.0", "id": "c1", "bundle": "/b", "pid": 42}


def test_state_on_stdin_exact_env_and_argv(tmp_path):
    out = tmp_path / "out"
    path = _script(tmp_path, "h", f'cat > {out}.state; env > {out}.env; echo "$0 $@" > {out}.argv\n')
    hooks.run_hooks("createRuntime", [{"path": path, "args": ["name", "x"], "env": ["K=v"]}], STATE)
    assert json.loads((tmp_path / "out.state").read_text()) == dict(STATE, status="created")
    env = (tmp_path / "out.env").read_text().split()
    assert "K=v" in env and not any(e.startswith("HOME=") for e in env)
    assert (tmp_path / "out.argv").read_text().split() == [path, "x"]  # sh sets $0 to the script


def test_args_default_to_the_path_and_hooks_run_in_order(tmp_path):
    log = tmp_path / "log"
    a = _script(tmp_path, "a", f"echo a >> {log}\n")
    b = _script(tmp_path, "b", f"echo b >> {log}\n")
    hooks.run_hooks("poststart", [{"path": a}, {"path": b}, {"path": a}], STATE)
    assert log.read_text().split() == ["a", "b", "a"]


def test_failure_stops_the_kind_and_reports_the_output(tmp_path):
    log = tmp_path / "log"
    bad = _script(tmp_path, "bad", "echo out-text; echo err-text >&2; exit 4\n")
    never = _script(tmp_path, "never", f"echo ran >> {log}\n")
    with pytest.raises(HookError) as e:
        hooks.run_hooks("prestart", [{"path": bad}, {"path": never}], STATE)
    msg = e.value.message
    assert msg.startswith(f"error running prestart hook #0 ({bad}): exit status 4")
    assert "stdout: out-text" in msg and "stderr: err-text" in msg
    assert not log.exists()


def test_signal_death_and_missing_file(tmp_path):
    with pytest.raises(HookError, match="signal: term"):
        hooks.run_hooks("prestart", [{"path": _script(tmp_path, "k", "kill -TERM $$\n")}], STATE)
    with pytest.raises(HookError, match="no such file or directory"):
        hooks.run_hooks("prestart", [{"path": str(tmp_path / "missing")}], STATE)


def test_timeout_kills_the_hook(tmp_path, monkeypatch):
    # the hook's pid as the runtime waits for it (a pid file the hook writes may not be
    # written yet when the timeout kills it)
    pids = []
    real_wait = hooks._wait

    def wait(pid, timeout):
        pids.append(pid)
        return real_wait(pid, timeout)

    monkeypatch.setattr(hooks, "_wait", wait)
    path = _script(tmp_path, "slow", "exec sleep 1000\n")
    with pytest.raises(HookError, match="hook ran past specified timeout of 1.0s"):
        hooks.run_hooks("createRuntime", [{"path": path, "timeout": 1}], STATE)
    [pid] = pids
    assert not os.path.exists(f"/proc/{pid}")  # killed and reaped


def test_poststop_failures_warn_and_the_rest_still_run(tmp_path, capsys):
    log = tmp_path / "log"
    bad = _script(tmp_path, "bad", "exit 1\n")
    good = _script(tmp_path, "good", f"cat >> {log}\n")
    hooks.run_poststop([{"path": bad}, {"path": good}], {"id": "c1"})
    assert "warning: error running poststop hook #0" in capsys.readouterr().err
    assert json.loads(log.read_text())["status"] == "stopped"


def test_hooks_dict_and_kinds():
    model = Hooks.from_dict({"poststop": [{"path": "/x", "timeout": 3}], "createRuntime": [{"path": "/y"}]})
    assert hooks.hooks_dict(model) == {"createRuntime": [{"path": "/y"}],
                                       "poststop": [{"path": "/x", "timeout": 3}]}
    assert hooks.hooks_dict(None) == {}
    assert set(hooks.STATUS) == set(hooks.KINDS)
    assert set(hooks.RUNTIME_NS) | set(hooks.CONTAINER_NS) == set(hooks.KINDS)


def test_container_kinds_need_a_runner(tmp_path):
    seen = []

    def runner(hook, stdin, out, err):
        seen.append(json.loads(os.pread(stdin, 4096, 0)))
        return os.posix_spawn("/bin/true", ["true"], {})

    hooks.run_hooks("startContainer", [{"path": "/in/container"}], dict(STATE, pid=1), in_container=runner)
    assert seen == [dict(STATE, pid=1, status="created")]


def test_state_document_and_container_pid():
    doc = hooks.state_document(oci_version="1.3.0", container_id="c", status="stopped", pid=0,
                               bundle="/b", annotations={})
    assert doc == {"ociVersion": "1.3.0", "id": "c", "status": "stopped", "bundle": "/b"}
    assert hooks.container_pid(os.getpid()) > 0


def test_runtime_hooks_get_no_inherited_fd(tmp_path):
    out = tmp_path / "fds"
    marker = tmp_path / "leaked-marker"
    marker.write_text("")
    leaked = os.open(marker, os.O_RDONLY)
    os.set_inheritable(leaked, True)
    try:
        # by target, not by number: a shell keeps its script and saved stdio on fds >= 10,
        # which could be the leaked fd's number; `exec` lists ls's own table
        path = _script(tmp_path, "h", f"exec ls -l /proc/self/fd > {out}\n")
        hooks.run_hooks("prestart", [{"path": path}], STATE)
    finally:
        os.close(leaked)
    listing = out.read_text()
    assert str(out) in listing  # the listing is real: fd 1 is the redirect target
    assert marker.name not in listing

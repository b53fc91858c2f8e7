"""ocirun.testhooks: the robustness suite's fault injection points."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

CODE = "from ocirun.testhooks import reached; reached('create:claimed'); reached('create:READY'); print('through')"


def _run(**env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OCIRUN_TEST_")}
    return subprocess.run([sys.executable, "-c", CODE], env={**clean, **env}, capture_output=True, timeout=60)


def test_points_do_nothing_unless_asked():
    p = _run()
    assert p.returncode == 0 and p.stdout == b"through\n"
    p = _run(OCIRUN_TEST_KILL_AT="create:saved")  # another point
    assert p.returncode == 0 and p.stdout == b"through\n"


def test_kill_at_a_point():
    p = _run(OCIRUN_TEST_KILL_AT="create:READY")
    assert p.returncode == -signal.SIGKILL and p.stdout == b""


def test_stop_at_a_point():
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OCIRUN_TEST_")}
    p = subprocess.Popen([sys.executable, "-c", CODE], env={**clean, "OCIRUN_TEST_STOP_AT": "create:claimed"},
                         stdout=subprocess.PIPE)
    try:
        _, status = os.waitpid(p.pid, os.WUNTRACED)
        assert os.WIFSTOPPED(status) and os.WSTOPSIG(status) == signal.SIGSTOP
        p.send_signal(signal.SIGCONT)
        out, _ = p.communicate(timeout=60)
        assert out == b"through\n" and p.returncode == 0
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()

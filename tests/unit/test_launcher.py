"""bin/ocirun-direct, the direct path's launcher (what the `ocirun` front end runs when there
is no helper): Python without `site`, the same sys.path as with it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
LAUNCHER = REPO / "bin" / "ocirun-direct"
IN_VENV = sys.prefix != sys.base_prefix


def launcher_with(tmp_path: Path, tail: str) -> Path:
    """The launcher's Python part with its last lines (import ocirun, run main) replaced."""
    text = LAUNCHER.read_text()
    head, sep, _ = text.partition("from ocirun.cli import exit_now, main")
    assert sep, "the launcher must end by importing ocirun.cli.main and exit_now"
    path = tmp_path / "probe.py"
    path.write_text(head + tail)
    return path


@pytest.mark.skipif(not IN_VENV, reason="the fast path is for venvs")
def test_sys_path_is_what_site_gives(tmp_path):
    probe = launcher_with(tmp_path, "import sys\nprint(repr((sys.path[1:], sys.prefix, 'site' in sys.modules)))\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    ours = subprocess.run([sys.executable, "-S", str(probe)], capture_output=True, text=True, check=True, env=env)
    with_site = subprocess.run([sys.executable, "-c", "import sys; print(repr((sys.path[1:], sys.prefix)))"],
                               capture_output=True, text=True, check=True, env=env)
    paths, prefix, site_loaded = eval(ours.stdout)
    site_paths, site_prefix = eval(with_site.stdout)
    assert not site_loaded  # the point: `site` costs every call ~4 ms
    assert prefix == site_prefix
    assert paths == site_paths


def test_not_a_venv_falls_back_to_site(tmp_path):
    # a Python with no pyvenv.cfg above it: `site` sets sys.path as usual
    probe = launcher_with(tmp_path, "import sys\nprint('site' in sys.modules)\n")
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    if not base.exists():
        pytest.skip("no base interpreter")
    out = subprocess.run([str(base), "-S", str(probe)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def test_is_sh_and_python():
    text = LAUNCHER.read_text()
    assert text.startswith("#!/bin/sh\n''''") and os.access(LAUNCHER, os.X_OK)
    compile(text, str(LAUNCHER), "exec")  # the sh line is a Python string
    sh_part = "".join(text.splitlines(keepends=True)[:2])  # sh never reads past its exec
    subprocess.run(["sh", "-n", "-c", sh_part], check=True)


@pytest.mark.skipif(not (Path(sys.prefix) / "bin" / "ocirun").exists(), reason="not installed")
def test_installed_commands_run_through_it(tmp_path):
    direct = Path(sys.prefix) / "bin" / "ocirun-direct"
    assert direct.read_text() == LAUNCHER.read_text()
    front = Path(sys.prefix) / "bin" / "ocirun"
    assert front.read_bytes()[:4] == b"\x7fELF"  # the C front end (docs/helper.md)
    link = tmp_path / "ocirun"
    link.symlink_to(front)  # e.g. /usr/local/bin/ocirun -> the venv's
    env = dict(os.environ, OCIRUN_HELPER="off")  # no helper started by a unit test
    for cmd in ([str(direct)], [str(front)], [str(link)]):
        res = subprocess.run([*cmd, "--version"], capture_output=True, text=True, env=env)
        assert res.returncode == 0 and res.stdout.startswith("ocirun version "), res.stderr
        res = subprocess.run([*cmd, "--root", str(tmp_path / "r"), "state", "nosuch"], capture_output=True,
                             text=True, env=env)
        assert res.returncode == 1 and res.stderr == "container does not exist: nosuch\n"

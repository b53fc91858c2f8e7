"""A fresh `pip install .` into a new venv gives a working `ocirun` command (the C front
end, docs/helper.md) and `ocirun-direct` (bin/ocirun-direct, the direct path).

Slow (builds the C shim in pip's isolated build env): ~10-30 s.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
import venv
from pathlib import Path

from conftest import reap_orphans

REPO = Path(__file__).resolve().parents[2]


def test_pip_install_gives_a_working_ocirun(tmp_path):
    src = tmp_path / "src"
    files = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                           cwd=REPO, capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        if (REPO / name).is_file():
            (src / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, src / name)
    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=True)
    py = env_dir / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(src)],
                   check=True, capture_output=True)
    direct = env_dir / "bin" / "ocirun-direct"
    assert direct.read_text() == (REPO / "bin" / "ocirun-direct").read_text()
    exe = env_dir / "bin" / "ocirun"
    assert exe.read_bytes()[:4] == b"\x7fELF" and os.access(exe, os.X_OK)
    helper_dir = tempfile.mkdtemp(prefix="ocirun-h.")  # this install's helper, stopped below
    env = dict(os.environ, OCIRUN_HELPER_DIR=helper_dir)
    env.pop("OCIRUN_HELPER", None)
    try:
        for cmd in ([str(exe)], [str(direct)]):
            out = subprocess.run([*cmd, "--version"], capture_output=True, text=True, check=True, cwd=tmp_path,
                                 env=env)
            assert out.stdout.startswith("ocirun version 0.1.0\nspec: ")
            # the installed package, not the checkout; the C shim built and importable
            where = subprocess.run([*cmd, "--root", str(tmp_path / "r"), "state", "x"], capture_output=True,
                                   text=True, cwd=tmp_path, env=env)
            assert where.returncode == 1 and where.stderr == "container does not exist: x\n"
        # the installed front end starts this installation's helper, which serves the next call
        for _ in range(600):
            if any(n.endswith(".sock") for n in os.listdir(helper_dir)):
                break
            time.sleep(0.05)
        status = subprocess.run([str(direct), "helper", "status"], capture_output=True, text=True, env=env)
        assert status.returncode == 0 and f"package: {env_dir}" in status.stdout, status.stdout
        where = subprocess.run([str(exe), "--root", str(tmp_path / "r"), "state", "x"], capture_output=True,
                               text=True, cwd=tmp_path, env=env)
        assert where.returncode == 1 and where.stderr == "container does not exist: x\n"
    finally:
        subprocess.run([str(direct), "helper", "stop"], capture_output=True, env=env, timeout=60)
        shutil.rmtree(helper_dir, ignore_errors=True)
        reap_orphans()
    shim = subprocess.run([str(py), "-c", "import ocirun, ocirun.shim._shim; print(ocirun.__file__)"],
                          capture_output=True, text=True, check=True, cwd=tmp_path)
    assert shim.stdout.startswith(str(env_dir))
    assert subprocess.run([str(py), "-m", "ocirun", "--version"], capture_output=True, text=True,
                          cwd=tmp_path).stdout == out.stdout

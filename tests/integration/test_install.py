"""A fresh `pip install .` into a new venv gives a working `ocirun` command (bin/ocirun).

Slow (builds the C shim in pip's isolated build env): ~10-30 s.
"""

from __future__ import annotations

import shutil
import subprocess
import venv
from pathlib import Path

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
    exe = env_dir / "bin" / "ocirun"
    assert exe.read_text() == (REPO / "bin" / "ocirun").read_text()
    out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, check=True, cwd=tmp_path)
    assert out.stdout.startswith("ocirun version 0.1.0\nspec: ")
    # the installed package, not the checkout; the C shim built and importable
    where = subprocess.run([str(exe), "--root", str(tmp_path / "r"), "state", "x"], capture_output=True,
                           text=True, cwd=tmp_path)
    assert where.returncode == 1 and where.stderr == "container does not exist: x\n"
    shim = subprocess.run([str(py), "-c", "import ocirun, ocirun.shim._shim; print(ocirun.__file__)"],
                          capture_output=True, text=True, check=True, cwd=tmp_path)
    assert shim.stdout.startswith(str(env_dir))
    assert subprocess.run([str(py), "-m", "ocirun", "--version"], capture_output=True, text=True,
                          cwd=tmp_path).stdout == out.stdout

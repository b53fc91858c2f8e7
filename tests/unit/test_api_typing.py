"""The library is typed for its users: a script using it passes ``mypy --strict``
(and a wrong call fails it), with ocirun found as an installed package (its
py.typed marker), as after ``pip install ocirun``."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

GOOD = '''
import subprocess

import ocirun
from ocirun.errors import ContainerNotFound, OcirunError

rt = ocirun.Runtime(root="/run/ocirun")
with rt.create("web", bundle="/srv/bundles/web", stdout=subprocess.PIPE) as c:
    c.start()
    state: dict[str, object] = c.state()
    status: str = c.status
    r: subprocess.CompletedProcess[bytes] = c.exec(["sh", "-c", "echo hi"], stdout=subprocess.PIPE)
    out: bytes | None = r.stdout
    line: bytes = c.stdout.readline() if c.stdout is not None else b""
    c.kill("TERM")
    c.kill(9, all=True)
    code: int | None = c.wait(timeout=10)
try:
    rt.get("web")
except ContainerNotFound as e:
    missing: str = e.container_id
except OcirunError as e:
    message: str = e.message
states: list[dict[str, object]] = rt.list()
done: subprocess.CompletedProcess[bytes] = rt.run("job", bundle="/srv/bundles/job", capture_output=True,
                                                   timeout=5.0, check=True)
doc: dict[str, object] = rt.explain("/srv/bundles/web")
'''

BAD = '''
import ocirun

rt = ocirun.Runtime()
c = rt.get("x")
c.kill(1.5)
n: int = c.exec(["true"])
'''


@pytest.fixture(scope="module")
def python_with_ocirun(tmp_path_factory) -> Path:
    """A venv whose site-packages has ocirun (this tree's, through a .pth entry)."""
    pytest.importorskip("mypy")
    base = tmp_path_factory.mktemp("typing")
    venv.EnvBuilder(with_pip=False).create(base / "venv")
    (base / "lib").mkdir()
    (base / "lib" / "ocirun").symlink_to(REPO / "ocirun")
    site = next((base / "venv" / "lib").glob("python3*/site-packages"))
    (site / "ocirun-tree.pth").write_text(str(base / "lib") + "\n")
    return base / "venv" / "bin" / "python"


def _mypy(python: Path, tmp_path: Path, source: str) -> subprocess.CompletedProcess:
    script = tmp_path / "user.py"
    script.write_text(source)
    return subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--python-executable",
                           str(python), "--cache-dir", str(tmp_path / "cache"), str(script)],
                          capture_output=True, text=True, timeout=300, cwd=tmp_path,
                          env=dict(os.environ, MYPYPATH=""))


def test_py_typed_is_there():
    assert (REPO / "ocirun" / "py.typed").exists()
    assert '"ocirun" = ["py.typed"]' in (REPO / "pyproject.toml").read_text()


def test_a_user_script_passes_mypy_strict(python_with_ocirun, tmp_path):
    p = _mypy(python_with_ocirun, tmp_path, GOOD)
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Success: no issues found in 1 source file" in p.stdout


def test_a_wrong_call_fails_mypy(python_with_ocirun, tmp_path):
    p = _mypy(python_with_ocirun, tmp_path, BAD)
    assert p.returncode == 1, p.stdout + p.stderr
    assert 'Argument 1 to "kill" of "Container" has incompatible type "float"' in p.stdout, p.stdout
    assert 'Incompatible types in assignment (expression has type "CompletedProcess[bytes]"' in p.stdout, p.stdout

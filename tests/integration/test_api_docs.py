"""docs/api.md's runnable example, run as written (as root, on a fresh busybox
bundle, with this test's state root and a unique name), and its output as the
document shows it."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO


def _example() -> tuple[str, str]:
    text = (REPO / "docs" / "api.md").read_text()
    section = text[text.index("## A runnable example"):]
    blocks = re.findall(r"```(\w*)\n(.*?)```", section, re.S)
    code = next(body for lang, body in blocks if lang == "python")
    output = next(body for lang, body in blocks if lang == "")
    return code, output


def test_the_example_runs_and_prints_what_the_doc_says(ocirun, bundle, tmp_path):
    code, output = _example()
    script = tmp_path / "example.py"
    script.write_text(code)
    name = ocirun.new_id()
    ocirun.ids.append(name + "-job")  # the leak check looks for it too
    p = subprocess.run([sys.executable, str(script), str(bundle.path), str(ocirun.root), name],
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout == output.replace("container does not exist: web", f"container does not exist: {name}")

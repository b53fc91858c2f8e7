"""Compile the `ocirun` front end (frontend.c with the shim's C) into an executable.

Run by setup.py's build_scripts at install (pip install ., the editable install of
scripts/setup), like the cffi shim; ``python ocirun/frontend/build_frontend.py OUT``
by hand. The compiler is $CC, else the one Python was built with.

Linked statically (``-static-pie``: position independent, so still randomized)
where the C library's static archive is installed (Debian's libc6-dev has it):
every call of `ocirun` starts this executable, and the dynamic loader's work
(mapping libc, relocating) is ~0.5 ms of a ~6 ms `state` here
(docs/performance.md). Without a static libc, or with OCIRUN_FRONTEND_STATIC=0,
it is linked dynamically, as before.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import sysconfig
from pathlib import Path

HERE = Path(__file__).resolve().parent
SHIM = HERE.parent / "shim"
CFLAGS = ["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers",
          "-Wno-unused-function"]


def sources() -> list[Path]:
    """Every file the executable is made of (for up-to-date checks)."""
    return [HERE / "frontend.c", HERE / "protocol.h", SHIM / "shim.c", SHIM / "shim.h",
            SHIM / "shim_cdef.h", *sorted((SHIM / "src").glob("*.c"))]


def compile_frontend(out: str | os.PathLike[str]) -> None:
    cc = shlex.split(os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc")
    cmd = [*cc, *CFLAGS, *shlex.split(os.environ.get("CFLAGS", "")), f"-I{SHIM}", "-o", str(out),
           str(HERE / "frontend.c"), *shlex.split(os.environ.get("LDFLAGS", ""))]
    if os.environ.get("OCIRUN_FRONTEND_STATIC", "1") != "0":
        static = subprocess.run([*cmd, "-static-pie"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        if static.returncode == 0:
            return
        print("ocirun front end: not linked statically (no static C library?); dynamically instead",
              file=sys.stderr)
    subprocess.run(cmd, check=True)


if __name__ == "__main__":
    compile_frontend(sys.argv[1] if len(sys.argv) > 1 else "ocirun")

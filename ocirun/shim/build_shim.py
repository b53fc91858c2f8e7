"""cffi build script (API mode) for the C shim; run by setup.py at install time."""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).parent

ffibuilder = FFI()
ffibuilder.cdef((HERE / "shim_cdef.h").read_text())
ffibuilder.set_source(
    "ocirun.shim._shim",
    '#include "shim.h"\n' + (HERE / "shim.c").read_text(),
    include_dirs=[str(HERE)],
    extra_compile_args=["-O2", "-Wall", "-Wno-unused-function"],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)

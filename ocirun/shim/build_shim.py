"""cffi build script (API mode) for the C shim; run by setup.py at install time.

shim_cdef.h is both the cdef and (through shim.h) the C declarations, so the
structs Python fills and the ones C reads are the same text.
"""

from pathlib import Path

from cffi import FFI

HERE = Path(__file__).parent

ffibuilder = FFI()
ffibuilder.cdef((HERE / "shim_cdef.h").read_text())
ffibuilder.set_source(
    "ocirun.shim._shim",
    (HERE / "shim.c").read_text(),
    include_dirs=[str(HERE)],
    extra_compile_args=["-O2", "-Wall", "-Wextra", "-Wno-unused-parameter",
                        "-Wno-missing-field-initializers"],
    depends=[str(HERE / n) for n in ("shim.c", "shim.h", "shim_cdef.h")]
    + [str(p) for p in sorted((HERE / "src").glob("*.c"))],
)

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)

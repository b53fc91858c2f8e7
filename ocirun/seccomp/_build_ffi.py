"""Generates ``_libseccomp_ffi.py``: cffi's out-of-line ABI mode for libseccomp.so.2.

Run ``python -m ocirun.seccomp._build_ffi`` after changing CDEF; the generated
module is checked in. Out-of-line ABI mode needs neither the libseccomp -dev
headers nor a compiler, and at run time not even pycparser: importing the
generated module costs ~1 ms, where ``FFI().cdef(...)`` costs ~30 ms.

The declarations are written here, from seccomp.h of libseccomp 2.5 (only what
ocirun calls). Enums are declared as ``int``, which is their ABI.
"""

from __future__ import annotations

from pathlib import Path

CDEF = """
typedef void *scmp_filter_ctx;
typedef uint64_t scmp_datum_t;

struct scmp_version {
    unsigned int major;
    unsigned int minor;
    unsigned int micro;
};

struct scmp_arg_cmp {
    unsigned int arg;      /* argument index, 0..5 */
    int op;                /* enum scmp_compare */
    scmp_datum_t datum_a;
    scmp_datum_t datum_b;
};

const struct scmp_version *seccomp_version(void);
unsigned int seccomp_api_get(void);

scmp_filter_ctx seccomp_init(uint32_t def_action);
void seccomp_release(scmp_filter_ctx ctx);

uint32_t seccomp_arch_resolve_name(const char *arch_name);
uint32_t seccomp_arch_native(void);
int seccomp_arch_add(scmp_filter_ctx ctx, uint32_t arch_token);

int seccomp_attr_set(scmp_filter_ctx ctx, int attr, uint32_t value);

int seccomp_syscall_resolve_name(const char *name);
int seccomp_syscall_resolve_name_arch(uint32_t arch_token, const char *name);
int seccomp_rule_add_array(scmp_filter_ctx ctx, uint32_t action, int syscall,
                           unsigned int arg_cnt, const struct scmp_arg_cmp *arg_array);

int seccomp_export_bpf(const scmp_filter_ctx ctx, int fd);

/* from libc, for the kernel probes (SECCOMP_GET_ACTION_AVAIL, flag checks) */
long syscall(long number, ...);
"""

HERE = Path(__file__).parent
TARGET = HERE / "_libseccomp_ffi.py"


def build():
    from cffi import FFI

    ffibuilder = FFI()
    ffibuilder.cdef(CDEF)
    ffibuilder.set_source("ocirun.seccomp._libseccomp_ffi", None)
    return ffibuilder


if __name__ == "__main__":
    build().emit_python_code(str(TARGET))
    print(f"wrote {TARGET}")

"""The ``linux.seccomp`` part of the features document, as this host supports it."""

from __future__ import annotations

from ocirun.seccomp.compile import ACTIONS, FLAGS, OPERATORS, arch_name

TYPE_CHECKING = False  # typing is for annotations only: not imported by create (docs/performance.md)
if TYPE_CHECKING:
    from typing import Any

#: Every architecture name the runtime-spec knows (defs-linux.json SeccompArch).
SPEC_ARCHS = (
    "SCMP_ARCH_X86", "SCMP_ARCH_X86_64", "SCMP_ARCH_X32", "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64", "SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_M68K", "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64", "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL", "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC", "SCMP_ARCH_PPC64", "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390", "SCMP_ARCH_S390X", "SCMP_ARCH_SH", "SCMP_ARCH_SHEB",
    "SCMP_ARCH_PARISC", "SCMP_ARCH_PARISC64", "SCMP_ARCH_RISCV64",
)


def features() -> dict[str, Any]:
    """``{"enabled": …, "actions": …, "operators": …, "archs": …, "knownFlags": …,
    "supportedFlags": …}``; ``{"enabled": False}`` without libseccomp.

    actions: those this libseccomp (API level) and kernel (SECCOMP_GET_ACTION_AVAIL)
    both support. archs: those this libseccomp can resolve. supportedFlags: the
    known flags seccomp(2) accepts on this kernel (TSYNC is accepted and ignored, as runc).
    """
    from ocirun.seccomp import libseccomp as ls

    try:
        ls.lib()
    except ls.LibseccompMissing:
        return {"enabled": False}
    actions = sorted(a for a, v in ACTIONS.items() if ls.action_supported(v))
    archs = sorted(a for a in SPEC_ARCHS if ls.arch_token(arch_name(a)) != 0)
    known = list(FLAGS)
    supported = [f for f in known if ls.kernel_flag_supported(FLAGS[f] or ls.SECCOMP_FILTER_FLAG_TSYNC)]
    return {
        "enabled": True,
        "actions": actions,
        "operators": sorted(OPERATORS),
        "archs": archs,
        "knownFlags": known,
        "supportedFlags": supported,
    }

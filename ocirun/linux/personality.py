"""linux.personality in personality(2) terms.

The spec defines two execution domains, LINUX and LINUX32 (``uname -m``
then shows a 32-bit machine such as i686), and no flags: "currently no flag
values are supported", so a config naming one is refused by the validator
(ocirun.spec.rules.personality) rather than ignored with a warning as runc
1.2 does: a setting that cannot be applied is an error (runtime.md).
"""

from __future__ import annotations

#: domain -> persona (linux/personality.h)
DOMAINS: dict[str, int] = {"LINUX": 0x0000, "LINUX32": 0x0008}
#: flag -> bit; empty until the spec defines some
FLAGS: dict[str, int] = {}


def persona(domain: str, flags=()) -> int:
    value = DOMAINS[domain]
    for f in flags:
        value |= FLAGS[f]
    return value

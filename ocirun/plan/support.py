"""Config properties ocirun cannot apply yet.

runtime.md: "If the runtime cannot apply a property as specified in the
configuration, it MUST generate an error and a new container MUST NOT be
created." So every property that is set but not implemented is reported
here, all at once, before anything is created. The list shrinks as features land.
"""

from __future__ import annotations

from ocirun.errors import OcirunError, Problem


class UnsupportedConfig(OcirunError):
    def __init__(self, problems: list[Problem]) -> None:
        self.problems = tuple(problems)
        text = "; ".join(str(p) for p in problems)
        super().__init__(f"config.json: not supported by ocirun: {text}")


def unsupported(config) -> list[Problem]:
    from ocirun.cgroups import unsupported_resources

    problems: list[Problem] = []

    def need(value, path: str, what: str) -> None:
        if value:
            problems.append(Problem(path, what))

    # process.apparmorProfile/selinuxLabel: refused by the planner when the LSM is off
    # (ocirun.linux.lsm); linux.mountLabel is ignored then, as crun does.
    linux = config.linux
    if linux is not None:
        need(linux.intel_rdt, "$.linux.intelRdt", "not implemented")
        if linux.resources is not None:
            problems.extend(unsupported_resources(linux.resources))
    return problems


def require_supported(config) -> None:
    problems = unsupported(config)
    if problems:
        raise UnsupportedConfig(problems)

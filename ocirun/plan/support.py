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

    from ocirun.plan.mount_options import IDMAP_BIND_ONLY, is_idmapped_non_bind

    for i, m in enumerate(config.mounts or ()):
        # runc refuses these too; the kernel could id-map a new filesystem
        # instance (fsmount), but no runtime does and the spec does not ask it.
        need(is_idmapped_non_bind(m), f"$.mounts[{i}].options", IDMAP_BIND_ONLY)
    # process.apparmorProfile/selinuxLabel: refused by the planner when the LSM is off
    # (ocirun.linux.lsm); linux.mountLabel is ignored then, as crun does.
    linux = config.linux
    if linux is not None:
        if linux.intel_rdt:  # the mount table is read only then
            problems.append(Problem("$.linux.intelRdt", _intel_rdt_problem()))
        if linux.resources is not None:
            problems.extend(unsupported_resources(linux.resources))
    return problems


def _intel_rdt_problem() -> str:
    # config-linux.md: with no resctrl mounted in the runtime mount namespace the
    # runtime MUST generate an error; say that, since it is the fix for the user
    if resctrl_mounted():
        return "not implemented (resctrl is mounted, but ocirun does not manage Intel RDT groups)"
    return "no resctrl filesystem is mounted in the runtime's mount namespace (Intel RDT needs one)"


def resctrl_mounted(mountinfo: str = "/proc/self/mountinfo") -> bool:
    with open(mountinfo) as f:
        for line in f:
            _, _, after = line.partition(" - ")
            if after.split(" ", 1)[0] == "resctrl":
                return True
    return False


def require_supported(config) -> None:
    problems = unsupported(config)
    if problems:
        raise UnsupportedConfig(problems)

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

    p = config.process
    if p is not None:
        need(p.apparmor_profile, "$.process.apparmorProfile", "AppArmor is not enabled on this host")
        need(p.selinux_label, "$.process.selinuxLabel", "SELinux is not enabled on this host")
        need(p.scheduler, "$.process.scheduler", "not implemented")
        need(p.io_priority, "$.process.ioPriority", "not implemented")
        need(p.exec_cpu_affinity, "$.process.execCPUAffinity", "not implemented")
    linux = config.linux
    if linux is not None:
        need(linux.sysctl, "$.linux.sysctl", "not implemented")
        need(linux.personality, "$.linux.personality", "not implemented")
        need(linux.intel_rdt, "$.linux.intelRdt", "not implemented")
        need(linux.net_devices, "$.linux.netDevices", "not implemented")
        need(linux.memory_policy, "$.linux.memoryPolicy", "not implemented")
        need(linux.mount_label, "$.linux.mountLabel", "SELinux is not enabled on this host")
        if linux.resources is not None:
            problems.extend(unsupported_resources(linux.resources))
    return problems


def require_supported(config) -> None:
    problems = unsupported(config)
    if problems:
        raise UnsupportedConfig(problems)

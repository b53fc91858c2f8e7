"""Device cgroup rules: the config's linux.resources.devices in their listed order,
then the devices the container always needs, then an allow rule per linux.devices
entry (runc's order: specconv appends its AllowedDevices after the configured rules,
so a config cannot deny /dev/null; then the linux.devices nodes). The list is
evaluated from "deny all", so no rules at all means only those. On cgroup v1 the
configured allow rules therefore come first in devices.list, in their order."""

from __future__ import annotations

from ocirun.util.record import record


@record
class DeviceRule:
    allow: bool
    type: str  # "a", "c", "b"
    major: int | None  # None: any
    minor: int | None
    access: str  # subset of "rwm"

    def v1_line(self) -> str:
        """As written to devices.allow / devices.deny."""
        if self.type == "a":
            return "a"

        def num(n: int | None) -> str:
            return "*" if n is None or n < 0 else str(n)

        return f"{self.type} {num(self.major)}:{num(self.minor)} {self.access}"

    def to_dict(self) -> dict:
        return {"allow": self.allow, "type": self.type, "major": self.major,
                "minor": self.minor, "access": self.access}

    @classmethod
    def from_dict(cls, d: dict) -> DeviceRule:
        return cls(d["allow"], d["type"], d["major"], d["minor"], d["access"])


#: Always allowed, as runc's AllowedDevices: mknod of anything, the default
#: device nodes, ptys and /dev/ptmx, and tun.
ALWAYS_ALLOWED: tuple[DeviceRule, ...] = (
    DeviceRule(True, "c", None, None, "m"),
    DeviceRule(True, "b", None, None, "m"),
    DeviceRule(True, "c", 1, 3, "rwm"),
    DeviceRule(True, "c", 1, 8, "rwm"),
    DeviceRule(True, "c", 1, 7, "rwm"),
    DeviceRule(True, "c", 5, 0, "rwm"),
    DeviceRule(True, "c", 1, 5, "rwm"),
    DeviceRule(True, "c", 1, 9, "rwm"),
    DeviceRule(True, "c", 136, None, "rwm"),
    DeviceRule(True, "c", 5, 2, "rwm"),
    DeviceRule(True, "c", 10, 200, "rwm"),
)


def device_rules(resource_devices, linux_devices) -> tuple[DeviceRule, ...]:
    """The rules to apply, in order, to a devices cgroup that starts denying
    everything (runc's emulator): a config without any device rule still gets
    only ALWAYS_ALLOWED and its linux.devices, never the inherited allow-all."""
    rules = [
        DeviceRule(bool(d.allow), d.type or "a", d.major, d.minor, d.access or "rwm")
        for d in resource_devices or ()
    ]
    rules.extend(ALWAYS_ALLOWED)
    for d in linux_devices or ():
        if d.type in ("c", "u", "b"):
            rules.append(DeviceRule(True, "b" if d.type == "b" else "c", d.major, d.minor, "rwm"))
    return tuple(rules)

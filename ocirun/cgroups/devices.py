"""Device rules evaluated the way the v1 devices cgroup evaluates them (pure).

The config's rules (plus the devices every container needs) are applied in
order to an emulator of the kernel's v1 devices cgroup, as runc's
``devices.Emulator`` does. What comes out is a default (allow or deny) and a
list of exceptions, all with the opposite action, so their order no longer
matters for what is allowed. Both drivers then apply that one result:

* v1: reset with ``a`` (devices.deny or devices.allow), then one line per
  exception, in the order the rules first gave them (config-linux.md: "The
  runtime MUST apply entries in the listed order"; the kernel's list, and so
  devices.list, keeps the order of the writes). The result is what writing
  every rule in turn would leave, as the emulator models the kernel's list:
  an exception keeps its place when more access is added to it, and one that
  is removed and given again goes to the end. (runc sorts them instead.)
* v2: an eBPF program (``ocirun.cgroups.ebpf``) that checks the exceptions
  (sorted, as runc's program does: order does not change its verdicts) and
  returns the default.

So a rule list means the same thing on either hierarchy. Like runc, a rule
that would punch a hole in a wildcard exception (deny ``c 1:3 r`` after
allowing ``c *:* r``) is an error: the v1 kernel would silently ignore it.
"""

from __future__ import annotations

from ocirun.errors import OcirunError

#: (type "c"|"b", major, minor) with -1 for "any"
Key = tuple[str, int, int]


class DeviceRuleError(OcirunError):
    """A device rule list the devices cgroup cannot express."""


def _num(n: int | None) -> int:
    return -1 if n is None or n < 0 else n


class Emulator:
    """The v1 devices cgroup's state: a default and exceptions with their access."""

    def __init__(self, default_allow: bool = False) -> None:
        self.default_allow = default_allow
        self.exceptions: dict[Key, set[str]] = {}

    def apply(self, rule) -> None:
        """One rule (``ocirun.plan.device_rules.DeviceRule``), as a write to
        devices.allow (``rule.allow``) or devices.deny would be applied."""
        if rule.type == "a":
            # "a" resets the cgroup: a new default, no exceptions (whatever the access)
            self.default_allow = bool(rule.allow)
            self.exceptions = {}
            return
        if rule.type not in ("b", "c"):
            raise DeviceRuleError(f"invalid device type {rule.type!r} in device rule")
        perms = set(rule.access or "rwm")
        if not perms <= {"r", "w", "m"}:
            raise DeviceRuleError(f"invalid device access {rule.access!r}")
        key: Key = (rule.type, _num(rule.major), _num(rule.minor))
        # an allow in allow-by-default mode (or a deny in deny mode) removes an exception
        if bool(rule.allow) == self.default_allow:
            self._remove(key, perms)
        else:
            self.exceptions.setdefault(key, set()).update(perms)

    def _remove(self, key: Key, perms: set[str]) -> None:
        node, major, minor = key
        for partial in ((node, -1, minor), (node, major, -1), (node, -1, -1)):
            if partial == key:
                continue
            overlap = self.exceptions.get(partial, set()) & perms
            if overlap:
                raise DeviceRuleError(
                    f"device rule {_line(key, perms)} cannot be applied: it punches a hole in the "
                    f"wildcard rule {_line(partial, self.exceptions[partial])}, which the devices "
                    "cgroup does not support"
                )
        left = self.exceptions.get(key, set()) - perms
        if left:
            self.exceptions[key] = left
        else:
            self.exceptions.pop(key, None)

    def result(self) -> tuple[bool, list[tuple[Key, str]]]:
        """(default_allow, [(key, access)]) with the exceptions in the kernel's order: the
        order they were first given in (a dict keeps insertion order, as the kernel's
        list does: list_add_tail, merged in place, removed when emptied)."""
        return self.default_allow, [
            (key, "".join(c for c in "rwm" if c in perms))
            for key, perms in self.exceptions.items()
        ]


def _line(key: Key, perms) -> str:
    node, major, minor = key
    access = "".join(c for c in "rwm" if c in perms)

    def n(x: int) -> str:
        return "*" if x < 0 else str(x)

    return f"{node} {n(major)}:{n(minor)} {access}"


def evaluate(rules) -> tuple[bool, list[tuple[Key, str]]]:
    """Apply ``rules`` in order to a deny-all cgroup (runc's starting point on
    both drivers); return the default and the exceptions."""
    emu = Emulator(default_allow=False)
    for rule in rules:
        emu.apply(rule)
    return emu.result()


def v1_lines(rules) -> list[tuple[str, str]]:
    """(file, line) writes that put a v1 devices cgroup into the state ``rules``
    describe: the reset first, then each exception."""
    default_allow, exceptions = evaluate(rules)
    reset = ("devices.allow", "a") if default_allow else ("devices.deny", "a")
    exc_file = "devices.deny" if default_allow else "devices.allow"
    return [reset] + [(exc_file, _line(key, access)) for key, access in exceptions]

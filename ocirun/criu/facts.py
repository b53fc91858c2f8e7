"""What a checkpoint needs to know of a container, recorded by create (later
commands never re-read config.json): the mounts CRIU must be told are external,
and the stdio the container got from its runtime (runc's descriptors.json).

Small and cheap on purpose: ``create`` imports it for every container.
"""

from __future__ import annotations

import os

_MS_BIND = 0x1000
_MS_REMOUNT = 0x20


def checkpoint_facts(plan, init_pid: int) -> dict:
    """The ``checkpoint`` entry of the container's record.

    ``binds``: targets (config paths) of every bind mount (user binds, cgroup
    hierarchies, devices bound from the host): CRIU cannot dump what they show,
    it is told they are external and restore binds the new sources there.
    ``masked``: masked paths (a file there is covered by /dev/null).
    ``stdio``: what the init's fds 0, 1, 2 are (``pipe:[N]``, a path, "" when
    closed), read now, as runc records them for descriptors.json.
    ``idmapped``, ``netDevices``: what CRIU cannot carry (checkpoint refuses them).
    """
    facts: dict = {"binds": [target for target, _ in binds_of(plan)],
                   "stdio": external_descriptors(init_pid)}
    if plan.masked_paths:
        facts["masked"] = [_text(p) for p in plan.masked_paths]
    idmapped = [_text(m.target) for m in plan.mounts if m.idmap is not None]
    if idmapped:
        facts["idmapped"] = idmapped
    if plan.net_devices:
        facts["netDevices"] = [d.host_name for d in plan.net_devices]
    return facts


def binds_of(plan) -> list[tuple[str, str]]:
    """(target, host source) of every bind mount of the plan but id-mapped ones:
    the config's binds, the cgroup hierarchies, devices bound from the host."""
    out = [(_text(m.target), _text(m.source or b"")) for m in plan.mounts
           if m.flags & _MS_BIND and not m.flags & _MS_REMOUNT and m.idmap is None]
    out.extend((_text(d.path), _text(d.path)) for d in plan.devices if d.bind_from_host)
    return out


def external_descriptors(pid: int) -> list[str]:
    """runc's getPipeFds: what /proc/PID/fd/0, 1, 2 point to ("" for a closed fd)."""
    out = []
    for fd in range(3):
        try:
            out.append(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            out.append("")
    return out


def _text(b: bytes) -> str:
    return b.decode(errors="surrogateescape")

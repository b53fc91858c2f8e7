"""linux.sysctl: which keys a container may set, and where they are written.

A sysctl is only the container's own when it belongs to a namespace the
container has; anything else would change the host. The policy and the
wording are runc's (libcontainer/configs/validate), because clients match on
it:

* ipc keys (``kernel.msgmax``, ``kernel.msgmnb``, ``kernel.msgmni``,
  ``kernel.sem``, ``kernel.shmall``, ``kernel.shmmax``, ``kernel.shmmni``,
  ``kernel.shm_rmid_forced``, ``fs.mqueue.*``) need an ipc namespace (new or
  joined);
* ``net.*`` needs a network namespace that is not the runtime's own (a joined
  path naming the current network namespace counts as the host's);
* with a uts namespace, ``kernel.domainname`` is allowed and
  ``kernel.hostname`` is refused (it conflicts with the ``hostname`` field);
* everything else is refused.

Keys are written as paths below /proc/sys: ``net.ipv4.ip_forward`` becomes
``net/ipv4/ip_forward``; a key written with slashes (sysctl(8)'s other
spelling, for names holding dots such as ``net/ipv4/conf/eth0.100/forwarding``)
is used as it is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from ocirun.errors import ConfigError, Problem

IPC_KEYS = frozenset(
    {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem", "kernel.shmall",
     "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}
)


def _dotted(key: str) -> str:
    return key.replace("/", ".")


def namespace_of(key: str) -> str | None:
    """The namespace kind ("ipc", "network", "uts") a key belongs to, or None (host-wide)."""
    k = _dotted(key)
    if k in IPC_KEYS or k.startswith("fs.mqueue."):
        return "ipc"
    if k.startswith("net."):
        return "network"
    if k in ("kernel.hostname", "kernel.domainname"):
        return "uts"
    return None


def refusal(key: str, namespaces: Mapping[str, str | None], *,
            is_host_netns=None) -> str | None:
    """runc's message refusing ``key``, or None when the container may set it.

    ``namespaces``: kind -> path (None or "" for a new namespace) of the
    container's namespaces. ``is_host_netns(path)``: whether a joined network
    namespace is the runtime's own; None skips that check (static validation).
    """
    k = _dotted(key)
    kind = namespace_of(key)
    if kind == "ipc":
        if "ipc" in namespaces:
            return None
        return f'sysctl "{key}" is not allowed in the hosts ipc namespace'
    if kind == "network":
        if "network" not in namespaces:
            return f'sysctl "{key}" not allowed in host network namespace'
        path = namespaces["network"]
        if path and is_host_netns is not None and is_host_netns(path):
            return f'sysctl "{key}" not allowed in host network namespace'
        return None
    if "uts" in namespaces:
        if k == "kernel.domainname":
            return None
        if k == "kernel.hostname":
            return f'sysctl "{key}" is not allowed as it conflicts with the OCI "hostname" field'
    return f'sysctl "{key}" is not in a separate kernel namespace'


def is_current_netns(path: str) -> bool:
    """Whether ``path`` names the network namespace this process is in."""
    try:
        theirs = os.stat(path)
    except OSError as e:
        raise ConfigError("config.json", [Problem("$.linux.namespaces",
                          f"invalid netns path: stat {path}: {os.strerror(e.errno or 0).lower()}")]) from None
    mine = os.stat("/proc/self/ns/net")
    return (theirs.st_dev, theirs.st_ino) == (mine.st_dev, mine.st_ino)


def proc_path(key: str) -> str:
    """The file below /proc/sys for a key."""
    return key if "/" in key else key.replace(".", "/")


def plan_sysctls(sysctl: Mapping[str, str], namespaces: Mapping[str, str | None]) -> tuple[tuple[bytes, bytes], ...]:
    """Validate every key (all problems at once) and return (path, value) pairs."""
    problems = []
    for key in sysctl:
        why = refusal(key, namespaces, is_host_netns=is_current_netns)
        if why:
            problems.append(Problem(f"$.linux.sysctl[{key!r}]", why))
    if problems:
        raise ConfigError("config.json", problems)
    return tuple((proc_path(k).encode(), str(v).encode()) for k, v in sysctl.items())

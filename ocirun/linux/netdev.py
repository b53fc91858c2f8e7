"""linux.netDevices: move host network interfaces into the container's network namespace.

Python only, in the parent, over rtnetlink (pyroute2, imported here and only
when a config has netDevices: every ocirun call starts an interpreter).

What config-linux.md asks, and how:

* the device must exist in the runtime's namespace and its (new) name must be
  free in the container's: ``check_movable`` looks before anything is created;
  the kernel checks again at the move (EEXIST);
* a name ending in ``%d`` is a template: the kernel picks the number;
* permanent addresses (IFA_F_PERMANENT) of global scope (RT_SCOPE_UNIVERSE),
  of any family, are kept: read before the move (the kernel drops every
  address when a device changes namespace, and IPv6 ones already when it goes
  down), added again inside;
* the device is set up inside;
* move and rename are one RTM_NEWLINK (IFLA_NET_NS_FD + IFLA_IFNAME), as runc
  1.3 does, so the host name never appears in the container's namespace and
  the new name never on the host.

Nothing is done at delete: the spec says the runtime MUST NOT move the device
out before deletion; when the namespace goes away the kernel moves physical
devices back to the initial namespace and destroys virtual ones (veth, ...).
``move_back`` is only for a create that fails after the move (see create.py).

The container's namespace is reached by a short-lived thread that setns(2)s
into it and opens its own netlink socket there: the runtime's main thread
never leaves its namespace.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from typing import Any

from ocirun.errors import ConfigError, Problem, SetupError
from ocirun.plan.model import NetDeviceMove

_CLONE_NEWNET = 0x40000000
_IFA_F_PERMANENT = 0x80
_RT_SCOPE_UNIVERSE = 0
_IFF_UP = 0x1


def _json_path(host_name: str, *more: str) -> str:
    from ocirun.spec._paths import json_path

    return json_path(["linux", "netDevices", host_name, *more])


def _iproute():
    from pyroute2 import IPRoute

    return IPRoute()


def _netlink_errno(err: BaseException) -> int:
    code = getattr(err, "code", None)
    if isinstance(code, int) and code > 0:
        return code
    return getattr(err, "errno", 0) or 0


def in_netns(ns_fd: int, fn: Callable[[Any], Any]) -> Any:
    """Run ``fn(ipr)`` with an IPRoute opened inside the network namespace ``ns_fd``,
    in a thread of its own (setns(CLONE_NEWNET) changes only the calling thread)."""
    import ctypes

    result: dict[str, Any] = {}

    def run() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(ns_fd, _CLONE_NEWNET) != 0:
            result["error"] = SetupError("setns to the container's network namespace", ctypes.get_errno())
            return
        try:
            with _iproute() as ipr:
                result["value"] = fn(ipr)
        except BaseException as e:  # handed to the caller's thread
            result["error"] = e

    t = threading.Thread(target=run, name="ocirun-netns")
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result.get("value")


def _links(ipr) -> dict[str, int]:
    return {link.get_attr("IFLA_IFNAME"): link["index"] for link in ipr.get_links()}


def check_movable(moves: tuple[NetDeviceMove, ...], joined_netns: str | None) -> None:
    """Before anything exists: every device is in our namespace and every new
    name is free in the container's (a new namespace has only "lo"; a joined
    one is looked at). All problems at once, as a ConfigError."""
    problems: list[Problem] = []
    with _iproute() as ipr:
        ours = _links(ipr)
    for m in moves:
        if m.host_name not in ours:
            problems.append(Problem(_json_path(m.host_name),
                                    f"no network device {m.host_name!r} in the runtime's network namespace"))
    if joined_netns is None:
        theirs = {"lo"}
    else:
        fd = os.open(joined_netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            theirs = set(in_netns(fd, _links))
        finally:
            os.close(fd)
    for m in moves:
        if not m.name.endswith("%d") and m.name in theirs:
            where = "a new network namespace" if joined_netns is None else f"the network namespace {joined_netns}"
            problems.append(Problem(_json_path(m.host_name, "name") if m.renamed else _json_path(m.host_name),
                                    f"a network device {m.name!r} already exists in {where}"))
    if problems:
        raise ConfigError("config.json", problems)


def _kept_addresses(ipr, index: int) -> list[dict[str, Any]]:
    """The permanent, global-scope addresses of a device, as arguments for RTM_NEWADDR."""
    kept = []
    for a in ipr.get_addr(index=index):
        flags = a.get_attr("IFA_FLAGS")
        if flags is None:
            flags = a["flags"]
        if not flags & _IFA_F_PERMANENT or a["scope"] != _RT_SCOPE_UNIVERSE:
            continue
        spec: dict[str, Any] = {"address": a.get_attr("IFA_ADDRESS"), "prefixlen": a["prefixlen"]}
        local = a.get_attr("IFA_LOCAL")
        if local is not None and local != spec["address"]:  # point-to-point: local + peer
            spec["local"] = local
        broadcast = a.get_attr("IFA_BROADCAST")
        if broadcast is not None:
            spec["broadcast"] = broadcast
        kept.append(spec)
    return kept


#: (the move, its index inside, its kept addresses, whether it was up on the host)
Moved = list[tuple[NetDeviceMove, int, list[dict[str, Any]], bool]]


def move_devices(moves: tuple[NetDeviceMove, ...], ns_fd: int, moved: Moved) -> None:
    """Move each device into the namespace ``ns_fd``, renamed, with its kept
    addresses, and set it up. ``moved`` gets an entry for each device that left
    our namespace, so a failed create can bring it back as it was."""
    with _iproute() as host:
        for m in moves:
            _move_one(host, m, ns_fd, moved)


def _move_one(host, m: NetDeviceMove, ns_fd: int, moved: Moved) -> None:
    from pyroute2.netlink.exceptions import NetlinkError

    what = f"move network device {m.host_name} into the container" + (f" as {m.name}" if m.renamed else "")
    try:
        found = host.link_lookup(ifname=m.host_name)
        if not found:
            raise ConfigError("config.json", [Problem(
                _json_path(m.host_name), f"no network device {m.host_name!r} in the runtime's network namespace")])
        index = found[0]
        was_up = bool(host.get_links(index)[0]["flags"] & _IFF_UP)
        addresses = _kept_addresses(host, index)  # before "down": IPv6 drops them then
        # Down first, as runc: nothing on the host sees a half-moved device.
        host.link("set", index=index, state="down")
        before = in_netns(ns_fd, lambda ipr: set(_links(ipr).values()))
        host.link("set", index=index, net_ns_fd=ns_fd, ifname=m.name)
    except NetlinkError as e:
        raise SetupError(what, _netlink_errno(e)) from None

    def finish(ipr) -> int:
        if m.name.endswith("%d"):  # the kernel chose the name: the one new device
            new = [i for i in _links(ipr).values() if i not in before]
            if len(new) != 1:
                raise SetupError(what, detail="cannot tell which device the kernel named from the template")
            inside = new[0]
        else:
            inside = ipr.link_lookup(ifname=m.name)[0]
        moved.append((m, inside, addresses, was_up))
        try:
            for spec in addresses:
                ipr.addr("add", index=inside, **spec)
            ipr.link("set", index=inside, state="up")
        except NetlinkError as e:
            raise SetupError(f"{what}: restore its addresses and set it up", _netlink_errno(e)) from None
        return inside

    try:
        in_netns(ns_fd, finish)
    except NetlinkError as e:
        raise SetupError(what, _netlink_errno(e)) from None


def move_back(moved: Moved, ns_fd: int) -> None:
    """Undo of a failed create: each moved device back into our namespace under
    its host name, with its kept addresses, up if it was. Best effort: a failure here must not hide the one that made create fail."""
    if not moved:
        return
    own = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        def back(ipr) -> None:
            for m, inside, _, _ in reversed(moved):
                try:
                    ipr.link("set", index=inside, state="down")
                    ipr.link("set", index=inside, net_ns_fd=own, ifname=m.host_name)
                except Exception:  # noqa: BLE001 - best effort, see above
                    pass

        in_netns(ns_fd, back)
        with _iproute() as host:
            for m, _, addresses, was_up in moved:
                try:
                    index = host.link_lookup(ifname=m.host_name)[0]
                    for spec in addresses:
                        host.addr("add", index=index, **spec)
                    if was_up:
                        host.link("set", index=index, state="up")
                except Exception:  # noqa: BLE001
                    pass
    except Exception:  # noqa: BLE001
        pass
    finally:
        os.close(own)


__all__ = ["check_movable", "move_devices", "move_back", "in_netns"]

"""linux.netDevices: host interfaces moved into the container's network namespace.

runc 1.1.5 (the oracle elsewhere) does not know netDevices (runc 1.3 does), so
these tests check what config-linux.md asks: the device appears under its new
name with its permanent global addresses and up; errors are one message, exit
1, nothing left behind; at delete nothing is moved (the kernel destroys a
virtual device with the namespace, or leaves it in a joined one).

This host has no dummy driver: the devices are veth pairs, one end moved in.
Every test deletes what it made, whatever happens.
"""

from __future__ import annotations

import os
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def _exists(name: str, netns: str | None = None) -> bool:
    cmd = ["link", "show", "dev", name]
    if netns:
        cmd = ["-n", netns, *cmd]
    return _ip(*cmd, check=False).returncode == 0


def _gone(name: str, timeout: float = 30.0) -> bool:
    """The kernel frees a network namespace asynchronously: poll."""
    end = time.monotonic() + timeout
    while _exists(name):
        if time.monotonic() > end:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def veth() -> Iterator[tuple[str, str]]:
    """A veth pair with unique names (the first end gets an IPv4 and an IPv6
    address and is up); both ends deleted after the test if still on the host."""
    from kernel_probes import link_kind

    if not link_kind("veth"):
        pytest.skip("no veth driver here (CONFIG_VETH)")
    tag = uuid.uuid4().hex[:6]
    a, b = f"ndA{tag}", f"ndB{tag}"
    _ip("link", "add", a, "type", "veth", "peer", "name", b)
    try:
        _ip("addr", "add", "10.213.7.2/24", "dev", a)
        _ip("-6", "addr", "add", "fd00:213:7::2/64", "dev", a)
        _ip("link", "set", a, "up")
        yield a, b
    finally:
        for name in (a, b):
            if _exists(name):
                _ip("link", "del", name, check=False)


@pytest.fixture
def netns() -> Iterator[str]:
    name = f"ocitest-{uuid.uuid4().hex[:8]}"
    _ip("netns", "add", name)
    try:
        yield name
    finally:
        _ip("netns", "del", name, check=False)


def _config(bundle, devices, script="sleep 30", netns_path=None):
    def f(c):
        c["process"]["args"] = ["sh", "-c", script]
        c["process"]["terminal"] = False
        c["linux"]["netDevices"] = devices
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"]
        c["linux"]["namespaces"].append({"type": "network", **({"path": netns_path} if netns_path else {})})

    bundle.edit(f)


def test_device_moved_renamed_with_addresses_and_up(veth, ocirun, bundle):
    a, b = veth
    mac = open(f"/sys/class/net/{a}/address").read().strip()
    _config(bundle, {a: {"name": "ctr0"}},
            "cat /sys/class/net/ctr0/address /sys/class/net/ctr0/operstate /sys/class/net/ctr0/flags;"
            " ip addr show dev ctr0; ls /sys/class/net")
    out = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id()).stdout.decode()
    lines = out.splitlines()
    assert lines[0] == mac
    assert int(lines[2], 16) & 0x1, "IFF_UP"  # operstate is lowerlayerdown: the peer is down
    assert "inet 10.213.7.2/24" in out and "inet6 fd00:213:7::2/64" in out
    assert "scope global" in out
    assert sorted(lines[-2:]) == ["ctr0", "lo"] or set(out.split()) >= {"ctr0", "lo"}
    assert a not in out
    # the container is gone, and with its namespace the veth pair (a virtual device)
    assert _gone(a) and _gone(b)


def test_device_keeps_its_name_and_template_name(veth, ocirun, bundle):
    a, _ = veth
    _config(bundle, {a: {}}, f"ls /sys/class/net; cat /sys/class/net/{a}/operstate")
    out = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id()).stdout.decode()
    assert a in out.split()


def test_template_name_is_chosen_by_the_kernel(veth, ocirun, bundle):
    a, _ = veth
    _config(bundle, {a: {"name": "eth%d"}}, "ls /sys/class/net")
    out = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id()).stdout.decode()
    assert out.split() == ["eth0", "lo"]


def test_only_permanent_global_addresses_are_kept(veth, ocirun, bundle):
    a, _ = veth
    _ip("addr", "add", "10.213.8.2/24", "dev", a, "scope", "link")
    _ip("addr", "add", "10.213.9.2/24", "dev", a, "valid_lft", "100", "preferred_lft", "100")
    _config(bundle, {a: {"name": "ctr0"}}, "ip -4 addr show dev ctr0")
    out = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id()).stdout.decode()
    assert "10.213.7.2/24" in out
    assert "10.213.8.2" not in out  # scope link
    assert "10.213.9.2" not in out  # dynamic (not IFA_F_PERMANENT)


def test_delete_moves_nothing_back_from_a_joined_namespace(veth, netns, ocirun, bundle):
    """config-linux.md: the runtime MUST NOT move the device out before deletion; in a
    namespace the container does not own, it stays after delete."""
    a, _ = veth
    _config(bundle, {a: {"name": "ctr1"}}, netns_path=f"/var/run/netns/{netns}")
    cid = ocirun.new_id()
    ocirun("create", "--bundle", str(bundle.path), cid)
    assert _exists("ctr1", netns) and not _exists(a)
    ocirun("start", cid)
    ocirun("kill", cid, "KILL")
    ocirun.wait_status(cid, "stopped")
    ocirun("delete", cid)
    assert _exists("ctr1", netns) and not _exists(a)
    assert "10.213.7.2/24" in _ip("-n", netns, "addr", "show", "dev", "ctr1").stdout


def test_name_taken_in_a_joined_namespace_is_refused(veth, netns, ocirun, bundle):
    a, _ = veth
    _ip("-n", netns, "link", "add", "taken0", "type", "veth", "peer", "name", "taken1")
    _config(bundle, {a: {"name": "taken0"}}, netns_path=f"/var/run/netns/{netns}")
    p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id(), check=False)
    assert p.returncode == 1
    assert p.stderr.decode().strip() == (
        f"config.json: $.linux.netDevices.{a}.name: a network device 'taken0' already exists"
        f" in the network namespace /var/run/netns/{netns}")
    assert _exists(a) and not list(ocirun.root.glob("*"))


@pytest.mark.parametrize("devices, why", [
    ({"nosuchdev0": {}}, "$.linux.netDevices.nosuchdev0: no network device 'nosuchdev0'"
                         " in the runtime's network namespace"),
    ({"VETH": {"name": "lo"}}, "$.linux.netDevices.VETH.name: a network device 'lo' already exists"
                               " in a new network namespace"),
    ({"VETH": {"name": "a b"}}, "$.linux.netDevices.VETH.name: 'a b' is not a valid interface name"),
    ({"VETH": {"name": "x" * 16}}, "is longer than 15 characters"),
    ({"VETH": {"name": "e%d%d"}}, "is not a valid interface name"),
])
def test_refused_before_anything_exists(devices, why, veth, ocirun, bundle):
    a, _ = veth
    devices = {(a if k == "VETH" else k): v for k, v in devices.items()}
    _config(bundle, devices)
    p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id(), check=False)
    err = p.stderr.decode().strip()
    assert p.returncode == 1 and len(err.splitlines()) == 1, err
    assert why.replace("VETH", a) in err
    assert _exists(a) and "10.213.7.2/24" in _ip("addr", "show", "dev", a).stdout
    assert not list(ocirun.root.glob("*"))


def test_without_a_network_namespace_is_refused(veth, ocirun, bundle):
    a, _ = veth

    def f(c):
        c["linux"]["netDevices"] = {a: {}}
        c["linux"]["namespaces"] = [n for n in c["linux"]["namespaces"] if n["type"] != "network"]

    bundle.edit(f)
    p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id(), check=False)
    assert p.returncode == 1
    assert "$.linux.netDevices: need a network namespace in linux.namespaces" in p.stderr.decode()
    assert _exists(a)


def test_the_runtimes_own_namespace_is_refused(veth, ocirun, bundle):
    a, _ = veth
    _config(bundle, {a: {}}, netns_path=f"/proc/{os.getpid()}/ns/net")
    p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id(), check=False)
    assert p.returncode == 1
    assert "is the runtime's own: devices would not leave the host" in p.stderr.decode()
    assert _exists(a)


def test_failed_create_brings_the_device_back(veth, ocirun, bundle):
    """A step after the move fails (the executable is missing): the device comes back
    under its host name, with its address, up, instead of dying with the namespace."""
    a, b = veth
    bundle.edit(lambda c: c["process"].update(args=["/nonexistent"]))
    _config(bundle, {a: {"name": "ctr0"}}, "true")
    bundle.edit(lambda c: c["process"].update(args=["/nonexistent"]))
    p = ocirun("run", "--bundle", str(bundle.path), ocirun.new_id(), check=False)
    assert p.returncode == 1 and b"/nonexistent" in p.stderr
    assert _exists(a) and _exists(b)
    shown = _ip("addr", "show", "dev", a).stdout
    assert "10.213.7.2/24" in shown and "fd00:213:7::2/64" in shown and ",UP" in shown

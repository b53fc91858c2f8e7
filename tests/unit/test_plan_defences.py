"""The defences in plan terms, without root: sysctl policy (runc's wording),
personality, scheduler, ioprio, CPU masks, LSM labels, capabilities the
runtime lacks, device rules with no config."""

from __future__ import annotations

import copy
import os

import pytest

from ocirun.errors import ConfigError
from ocirun.linux import lsm
from ocirun.plan import process_attrs as pa
from ocirun.plan import sysctl
from ocirun.plan.build import PlanOptions, build_plan
from ocirun.plan.device_rules import ALWAYS_ALLOWED, DeviceRule, device_rules
from ocirun.plan.support import unsupported
from ocirun.spec.generate import default_spec
from ocirun.spec.model import Config
from ocirun.spec.rules import check_rules


@pytest.fixture
def rootfs(tmp_path):
    root = tmp_path / "rootfs"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    return root


def spec():
    doc = copy.deepcopy(default_spec())
    doc["process"]["terminal"] = False
    return doc


def plan_for(doc, rootfs):
    opts = PlanOptions(container_id="c1", bundle=str(rootfs.parent), rootfs=str(rootfs))
    return build_plan(Config.from_dict(doc), opts, None)


ALL = {"ipc": None, "network": None, "uts": None, "mount": None, "pid": None}


@pytest.mark.parametrize("key, nss, message", [
    ("kernel.shmmax", {"mount": None}, 'sysctl "kernel.shmmax" is not allowed in the hosts ipc namespace'),
    ("fs.mqueue.msg_max", {"mount": None}, 'sysctl "fs.mqueue.msg_max" is not allowed in the hosts ipc namespace'),
    ("net.ipv4.ip_forward", {"mount": None}, 'sysctl "net.ipv4.ip_forward" not allowed in host network namespace'),
    ("kernel.hostname", ALL, 'sysctl "kernel.hostname" is not allowed as it conflicts with the OCI "hostname" field'),
    ("kernel.domainname", {"mount": None}, 'sysctl "kernel.domainname" is not in a separate kernel namespace'),
    ("kernel.pid_max", ALL, 'sysctl "kernel.pid_max" is not in a separate kernel namespace'),
    ("vm.swappiness", ALL, 'sysctl "vm.swappiness" is not in a separate kernel namespace'),
])
def test_sysctl_refusals_in_runcs_words(key, nss, message):
    assert sysctl.refusal(key, nss) == message


@pytest.mark.parametrize("key, nss", [
    ("kernel.shmmax", {"ipc": None}),
    ("kernel.sem", {"ipc": "/proc/1/ns/ipc"}),  # joined counts, as in runc
    ("fs.mqueue.queues_max", {"ipc": None}),
    ("net.ipv4.ip_forward", {"network": None}),
    ("net/ipv4/conf/eth0.100/forwarding", {"network": None}),
    ("kernel.domainname", {"uts": None}),
])
def test_sysctl_allowed(key, nss):
    assert sysctl.refusal(key, nss, is_host_netns=lambda p: False) is None


def test_sysctl_joined_host_netns_is_refused():
    path = "/proc/self/ns/net"
    assert sysctl.is_current_netns(path)
    assert sysctl.refusal("net.core.somaxconn", {"network": path}, is_host_netns=sysctl.is_current_netns) == \
        'sysctl "net.core.somaxconn" not allowed in host network namespace'


def test_sysctl_paths():
    assert sysctl.proc_path("net.ipv4.ip_forward") == "net/ipv4/ip_forward"
    assert sysctl.proc_path("net/ipv4/conf/eth0.100/forwarding") == "net/ipv4/conf/eth0.100/forwarding"


def test_sysctl_validator_uses_runcs_wording():
    doc = spec()
    doc["linux"]["sysctl"] = {"kernel.pid_max": "100", "net.ipv4.ip_forward": "1"}
    doc["linux"]["namespaces"] = [{"type": "mount"}]
    messages = sorted(p.message for p in check_rules(doc))
    assert 'sysctl "kernel.pid_max" is not in a separate kernel namespace' in messages
    assert 'sysctl "net.ipv4.ip_forward" not allowed in host network namespace' in messages


def test_sysctl_in_plan(rootfs):
    doc = spec()
    doc["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1", "kernel.shmmax": "4096"}
    plan = plan_for(doc, rootfs)
    assert plan.sysctl == ((b"net/ipv4/ip_forward", b"1"), (b"kernel/shmmax", b"4096"))


def test_sysctl_in_host_netns_by_path_is_an_error(rootfs):
    doc = spec()
    doc["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    doc["linux"]["namespaces"] = [n for n in doc["linux"]["namespaces"] if n["type"] != "network"]
    doc["linux"]["namespaces"].append({"type": "network", "path": f"/proc/{os.getpid()}/ns/net"})
    with pytest.raises(ConfigError, match="not allowed in host network namespace"):
        plan_for(doc, rootfs)


def test_no_longer_unsupported():
    doc = spec()
    doc["process"]["scheduler"] = {"policy": "SCHED_BATCH"}
    doc["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_BE", "priority": 3}
    doc["process"]["execCPUAffinity"] = {"initial": "0"}
    doc["process"]["apparmorProfile"] = "p"
    doc["linux"]["sysctl"] = {"net.ipv4.ip_forward": "1"}
    doc["linux"]["personality"] = {"domain": "LINUX32"}
    doc["linux"]["mountLabel"] = "l"
    assert unsupported(Config.from_dict(doc)) == []


def test_process_attrs_in_plan(rootfs):
    doc = spec()
    doc["process"]["scheduler"] = {"policy": "SCHED_DEADLINE", "runtime": 1, "deadline": 2, "period": 3,
                                   "flags": ["SCHED_FLAG_RESET_ON_FORK", "SCHED_FLAG_DL_OVERRUN"]}
    doc["process"]["ioPriority"] = {"class": "IOPRIO_CLASS_IDLE", "priority": 4}
    doc["process"]["execCPUAffinity"] = {"initial": "0", "final": "1"}
    doc["linux"]["personality"] = {"domain": "LINUX32"}
    pr = plan_for(doc, rootfs).process
    assert pr.personality == 0x0008
    assert (pr.scheduler.policy, pr.scheduler.flags) == (6, 0x05)
    assert (pr.scheduler.runtime, pr.scheduler.deadline, pr.scheduler.period, pr.scheduler.nice) == (1, 2, 3, 0)
    assert pr.io_priority == (3 << 13) | 4
    # config.md: execCPUAffinity "is not applicable to the container's init process"
    assert pr.cpu_affinity_initial is None and pr.cpu_affinity_final is None


def test_nothing_set_leaves_the_process_alone(rootfs):
    pr = plan_for(spec(), rootfs).process
    assert (pr.personality, pr.scheduler, pr.io_priority, pr.lsm_attr, pr.lsm_label) == (None,) * 5


@pytest.mark.parametrize("text, mask", [
    ("0", b"\x01" + bytes(7)),
    ("0-3,7", b"\x8f" + bytes(7)),
    ("1,64", b"\x02" + bytes(7) + b"\x01" + bytes(7)),
    ("", None),
    (None, None),
])
def test_cpu_masks(text, mask):
    assert pa.cpu_mask(text) == mask


def test_lsm_requested_without_the_lsm_is_an_error(monkeypatch):
    monkeypatch.setattr(lsm, "apparmor_enabled", lambda: False)
    monkeypatch.setattr(lsm, "selinux_enabled", lambda: False)
    with pytest.raises(ConfigError, match="AppArmor is not enabled on this host"):
        lsm.exec_label("docker-default", None)
    with pytest.raises(ConfigError, match="SELinux is not enabled on this host"):
        lsm.exec_label(None, "system_u:system_r:container_t:s0")
    assert lsm.exec_label(None, None) is None
    assert lsm.mount_label_option("system_u:object_r:container_file_t:s0") is None


def test_lsm_labels_when_enabled(monkeypatch):
    monkeypatch.setattr(lsm, "apparmor_enabled", lambda: True)
    monkeypatch.setattr(lsm, "selinux_enabled", lambda: True)
    attr, label = lsm.exec_label("docker-default", None)
    assert attr in (b"attr/apparmor/exec", b"attr/exec") and label == b"exec docker-default"
    assert lsm.exec_label(None, "a:b:c:s0") == (b"attr/exec", b"a:b:c:s0")
    assert lsm.mount_label_option("x:y:z:s0") == 'context="x:y:z:s0"'


def test_mount_label_applied_only_with_selinux(monkeypatch, rootfs):
    doc = spec()
    doc["linux"]["mountLabel"] = "x:y:z:s0"
    monkeypatch.setattr(lsm, "selinux_enabled", lambda: False)
    assert all(b"context=" not in (m.data or b"") for m in plan_for(doc, rootfs).mounts)
    monkeypatch.setattr(lsm, "selinux_enabled", lambda: True)
    by_target = {m.target: m for m in plan_for(doc, rootfs).mounts}
    assert by_target[b"/dev"].data.endswith(b',context="x:y:z:s0"')
    assert b"context=" not in (by_target[b"/proc"].data or b"")
    assert b"context=" not in (by_target[b"/sys"].data or b"")


def test_capabilities_the_runtime_lacks_are_dropped_with_a_warning(monkeypatch, rootfs, capsys):
    from ocirun.linux import capabilities as caps

    everything_but_sys_resource = ((1 << (caps.last_cap() + 1)) - 1) & ~(1 << caps.CAPABILITIES["CAP_SYS_RESOURCE"])
    monkeypatch.setattr(caps, "own_available", lambda: everything_but_sys_resource)
    doc = spec()
    doc["process"]["capabilities"] = {k: ["CAP_KILL", "CAP_SYS_RESOURCE"] for k in
                                      ("bounding", "effective", "permitted", "inheritable", "ambient")}
    pr = plan_for(doc, rootfs).process
    kill = 1 << caps.CAPABILITIES["CAP_KILL"]
    c = pr.capabilities
    assert (c.bounding, c.effective, c.permitted, c.inheritable, c.ambient) == (kill,) * 5
    assert "warning: ignoring unknown or unavailable capabilities: [CAP_SYS_RESOURCE]" in capsys.readouterr().err


def test_capabilities_kept_in_a_user_namespace(monkeypatch, rootfs, capsys):
    from ocirun.linux import capabilities as caps

    monkeypatch.setattr(caps, "own_available", lambda: 0)
    doc = spec()
    doc["linux"]["namespaces"].append({"type": "user"})
    doc["linux"]["uidMappings"] = doc["linux"]["gidMappings"] = [{"containerID": 0, "hostID": 1000, "size": 1}]
    doc["process"]["capabilities"] = {"bounding": ["CAP_SYS_RESOURCE"]}
    pr = plan_for(doc, rootfs).process
    assert pr.capabilities.bounding == 1 << caps.CAPABILITIES["CAP_SYS_RESOURCE"]
    assert capsys.readouterr().err == ""


def test_no_device_rules_means_deny_all_but_the_defaults():
    rules = device_rules((), ())
    assert rules == ALWAYS_ALLOWED
    from ocirun.cgroups.devices import evaluate

    default_allow, exceptions = evaluate(rules)
    assert default_allow is False
    assert (("c", 1, 3), "rwm") in exceptions


def test_linux_devices_are_allowed_after_the_defaults():
    class D:
        type, major, minor = "c", 10, 229

    rules = device_rules((), (D(),))
    assert rules[-1] == DeviceRule(True, "c", 10, 229, "rwm")


def test_capabilities_the_kernel_lacks_are_dropped_with_a_warning(monkeypatch, rootfs, capsys):
    from ocirun.linux import capabilities as caps

    monkeypatch.setattr(caps, "last_cap", lambda: caps.CAPABILITIES["CAP_AUDIT_READ"])
    monkeypatch.setattr(caps, "own_available", lambda: ~0)
    doc = spec()
    doc["process"]["capabilities"] = {"bounding": ["CAP_KILL", "CAP_BPF"], "effective": ["CAP_PERFMON"]}
    c = plan_for(doc, rootfs).process.capabilities
    assert (c.bounding, c.effective, c.permitted) == (1 << caps.CAPABILITIES["CAP_KILL"], 0, 0)
    assert "ignoring unknown or unavailable capabilities: [CAP_BPF CAP_PERFMON]" in capsys.readouterr().err


def test_no_capabilities_object_means_none(rootfs):
    doc = spec()
    del doc["process"]["capabilities"]
    c = plan_for(doc, rootfs).process.capabilities
    assert (c.bounding, c.effective, c.permitted, c.inheritable, c.ambient) == (0,) * 5


@pytest.mark.parametrize("policy, mode, mask", [
    ({"mode": "MPOL_DEFAULT"}, 0, b""),
    ({"mode": "MPOL_LOCAL"}, 4, b""),
    ({"mode": "MPOL_BIND", "nodes": "0-2,7", "flags": ["MPOL_F_STATIC_NODES"]}, 2 | 1 << 15,
     (0b10000111).to_bytes(8, "little")),
    ({"mode": "MPOL_PREFERRED_MANY", "nodes": "64", "flags": ["MPOL_F_NUMA_BALANCING"]}, 5 | 1 << 13,
     bytes(8) + b"\x01" + bytes(7)),
    ({"mode": "MPOL_WEIGHTED_INTERLEAVE", "nodes": "1", "flags": ["MPOL_F_RELATIVE_NODES"]}, 6 | 1 << 14,
     (2).to_bytes(8, "little")),
])
def test_memory_policy_in_plan(policy, mode, mask, rootfs):
    doc = spec()
    doc["linux"]["memoryPolicy"] = policy
    plan = plan_for(doc, rootfs)
    assert plan.process is not None and plan.process.memory_policy is not None
    assert (plan.process.memory_policy.mode, plan.process.memory_policy.nodemask) == (mode, mask)
    assert unsupported(Config.from_dict(doc)) == []


def test_no_memory_policy_leaves_it_alone(rootfs):
    assert plan_for(spec(), rootfs).process.memory_policy is None


def test_net_devices_in_plan(rootfs):
    from ocirun.plan.model import NetDeviceMove

    doc = spec()
    doc["linux"]["netDevices"] = {"eth1": {"name": "ctr0"}, "eth2": {}, "eth3": {"name": "e%d"}}
    plan = plan_for(doc, rootfs)
    assert plan.net_devices == (NetDeviceMove("eth1", "ctr0"), NetDeviceMove("eth2", "eth2"),
                                NetDeviceMove("eth3", "e%d"))
    assert [m.renamed for m in plan.net_devices] == [True, False, True]
    assert unsupported(Config.from_dict(doc)) == []
    assert plan_for(spec(), rootfs).net_devices == ()


def test_net_devices_into_the_runtimes_own_namespace_are_refused(rootfs):
    doc = spec()
    doc["linux"]["namespaces"] = [n for n in doc["linux"]["namespaces"] if n["type"] != "network"]
    doc["linux"]["namespaces"].append({"type": "network", "path": "/proc/self/ns/net"})
    doc["linux"]["netDevices"] = {"eth1": {}}
    with pytest.raises(ConfigError, match=r"\$\.linux\.netDevices: the network namespace /proc/self/ns/net"
                                          r" is the runtime's own"):
        plan_for(doc, rootfs)

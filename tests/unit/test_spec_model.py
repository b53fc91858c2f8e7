"""The typed model: complete round trip, immutability, interpretation done once."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from ocirun.spec import model
from ocirun.spec.model import Config

FULL = Path(__file__).parent / "fixtures" / "full-config.json"


def full() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(FULL.read_text())
    return doc


def test_full_config_round_trips() -> None:
    doc = full()
    config = Config.from_dict(doc)
    assert config.to_dict() == doc
    assert Config.from_dict(config.to_dict()) == config


def test_full_config_is_typed() -> None:
    c = Config.from_dict(full())
    assert c.oci_version == "1.3.0"
    assert c.root == model.Root("rootfs", True)
    assert c.process is not None and c.linux is not None and c.hooks is not None
    p = c.process
    assert p.console_size == model.ConsoleSize(25, 80)
    assert p.user.additional_gids == (5, 6) and p.user.umask == 18
    assert p.capabilities is not None and p.capabilities.inheritable == ()
    assert model.Rlimit("RLIMIT_NOFILE", 1024, 1024) in p.rlimits
    assert p.io_priority == model.IoPriority("IOPRIO_CLASS_BE", 4)
    assert p.exec_cpu_affinity == model.ExecCpuAffinity("0", "0-3,7")
    assert p.scheduler is not None and p.scheduler.flags == ("SCHED_FLAG_RESET_ON_FORK",)
    assert [h.path for h in c.hooks.create_runtime] == ["/usr/bin/createruntime"]
    assert c.hooks.create_runtime[0].timeout == 5
    lx = c.linux
    assert lx.namespaces[0] == model.Namespace("pid", None)
    assert lx.uid_mappings[0] == model.IdMapping(0, 1000, 32000)
    assert lx.time_offsets["monotonic"].secs is not None
    assert lx.devices[0].file_mode == 438
    assert lx.net_devices["eth1"] == model.NetDevice("ctr0")
    assert lx.net_devices["eth2"] == model.NetDevice(None)
    assert lx.memory_policy == model.MemoryPolicy("MPOL_INTERLEAVE", "0-1", ("MPOL_F_STATIC_NODES",))
    assert lx.intel_rdt is not None and lx.intel_rdt.clos_id == "guaranteed_group"
    r = lx.resources
    assert r is not None and r.block_io is not None and r.memory is not None and r.cpu is not None
    assert r.block_io.weight_device[0] == model.WeightDevice(8, 0, 500, 300)
    assert r.block_io.throttle_write_iops_device[0].rate == 300
    assert r.rdma["mlx5_1"] == model.RdmaLimit(3, 10000)
    assert r.unified["memory.high"] == "1G"
    assert r.cpu.burst == 1000 and r.memory.check_before_update is True
    s = lx.seccomp
    assert s is not None and s.default_errno_ret == 1 and s.listener_path == "/run/seccomp-agent.sock"
    notify = s.syscalls[1]
    assert notify.action == "SCMP_ACT_NOTIFY"
    assert notify.args == (model.SeccompArg(1, 2, "SCMP_CMP_MASKED_EQ", 3),)
    assert c.mounts[-1].uid_mappings == (model.IdMapping(0, 100000, 65536),)


def test_immutable() -> None:
    c = Config.from_dict(full())
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.hostname = "x"  # type: ignore[misc]
    with pytest.raises(TypeError):
        c.annotations["x"] = "y"  # type: ignore[index]
    assert c.linux is not None
    with pytest.raises(TypeError):
        c.linux.sysctl["x"] = "y"  # type: ignore[index]
    assert isinstance(c.mounts, tuple) and isinstance(c.linux.masked_paths, tuple)
    assert not hasattr(c, "__dict__")  # slots


def test_every_class_is_frozen_with_slots() -> None:
    classes = [getattr(model, n) for n in model.__all__ if isinstance(getattr(model, n), type)]
    assert len(classes) >= 37
    for cls in classes:
        assert dataclasses.is_dataclass(cls)
        assert vars(cls)["__dataclass_params__"].frozen, cls
        assert "__slots__" in cls.__dict__, cls


def test_minimal_config_defaults() -> None:
    c = Config.from_dict({"ociVersion": "1.3.0", "root": {"path": "rootfs"}, "process": {"cwd": "/", "args": ["sh"]}})
    assert c.mounts == () and c.linux is None and c.hooks is None and dict(c.annotations) == {}
    assert c.process is not None
    assert c.process.user == model.User(0, 0, None, ())
    assert c.process.capabilities is None and c.process.terminal is False
    assert c.root is not None and c.root.readonly is False
    assert c.to_dict() == {"ociVersion": "1.3.0", "root": {"path": "rootfs"},
                           "process": {"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0}}}


def test_unknown_properties_are_ignored() -> None:
    doc = full()
    doc["futureThing"] = {"a": 1}
    doc["process"]["futureField"] = True
    doc["linux"]["resources"]["memory"]["futureKnob"] = 3
    doc["windows"] = {"layerFolders": ["C:\\a"]}
    assert Config.from_dict(doc) == Config.from_dict(full())


def test_interpretations() -> None:
    doc = {
        "ociVersion": "1.3.0",
        "mounts": [{"destination": "data"}],
        "process": {"cwd": "/", "args": ["sh"], "consoleSize": {"height": 1, "width": 2}},
        "linux": {"namespaces": [{"type": "pid", "path": ""}], "cgroupsPath": ""},
    }
    c = Config.from_dict(doc)
    assert c.mounts[0].destination == "/data"  # relative to "/"
    assert c.process is not None and c.process.console_size is None  # ignored without terminal
    assert c.linux is not None and c.linux.namespaces[0].path is None and c.linux.cgroups_path is None


def test_json_keys() -> None:
    assert model.json_key("oci_version") == "ociVersion"
    assert model.json_key("container_id") == "containerID"
    assert model.json_key("exec_cpu_affinity") == "execCPUAffinity"
    assert model.json_key("throttle_read_iops_device") == "throttleReadIOPSDevice"
    assert model.json_key("io_class") == "class"

"""The typed, immutable config: what everything after ``ocirun.spec`` reads.

Frozen, slotted records (``ocirun.util.record``, dataclass-like) mirroring config.json (Linux parts) in snake_case:
lists become tuples, maps become read-only mappings, absent optional things
are ``None``. Build one with :meth:`Config.from_dict` from a config that has
passed the schema check and the rules (``ocirun.spec.load`` does that); it
trusts the shapes the schema guarantees. :meth:`Config.to_dict` gives JSON
back (``ociVersion`` …).

Interpretations made once, here, so nobody downstream repeats them:

* A relative mount ``destination`` (deprecated) is made absolute, as the spec
  says it MUST be interpreted: relative to ``/``.
* Absent ``process.user`` is uid 0, gid 0 (as runc reads it).
* Absent lists are empty tuples, except where absence means something of its
  own (each capability set; ``None`` = not given, ``()`` = given and empty).

Unknown properties are ignored (config.md "Extensibility": runtimes MUST
ignore them). Windows, Solaris, VM, z/OS and FreeBSD sections are schema-
checked but not modelled: ocirun runs Linux containers.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from ocirun.util.record import FIELDS, record

TYPE_CHECKING = False  # typing costs every `create` ~3 ms to import
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, ClassVar, TypeVar

    T = TypeVar("T")
_EMPTY: Mapping[str, Any] = MappingProxyType({})


# --------------------------------------------------------------------------- helpers


def _tuple(d: Mapping[str, Any], key: str, fn: Callable[[Any], T]) -> tuple[T, ...]:
    return tuple(fn(x) for x in d.get(key) or ())


def _strs(d: Mapping[str, Any], key: str) -> tuple[str, ...]:
    return tuple(d.get(key) or ())


def _opt_strs(d: Mapping[str, Any], key: str) -> tuple[str, ...] | None:
    value = d.get(key)
    return None if value is None else tuple(value)


def _opt(d: Mapping[str, Any], key: str, fn: Callable[[Any], T]) -> T | None:
    value = d.get(key)
    return None if value is None else fn(value)


def _map(d: Mapping[str, Any], key: str, fn: Callable[[Any], T] | None = None) -> Mapping[str, Any]:
    value = d.get(key)
    if not value:
        return _EMPTY
    return MappingProxyType({k: (fn(v) if fn else v) for k, v in value.items()})


#: JSON keys that are not the plain camelCase of the field name.
_JSON_KEYS = {
    "container_id": "containerID",
    "host_id": "hostID",
    "exec_cpu_affinity": "execCPUAffinity",
    "disable_oom_killer": "disableOOMKiller",
    "kernel_tcp": "kernelTCP",
    "class_id": "classID",
    "clos_id": "closID",
    "throttle_read_iops_device": "throttleReadIOPSDevice",
    "throttle_write_iops_device": "throttleWriteIOPSDevice",
    "io_class": "class",
    "block_io": "blockIO",
}


def json_key(name: str) -> str:
    """The config.json property a model field comes from."""
    key = _JSON_KEYS.get(name)
    if key is None:
        head, *rest = name.split("_")
        key = head + "".join(w[:1].upper() + w[1:] for w in rest)
    return key


def _dump(value: Any) -> Any:
    names = getattr(type(value), FIELDS, None)
    if names is not None:
        keep_empty: frozenset[str] = getattr(value, "_KEEP_EMPTY", frozenset())
        omit_false: frozenset[str] = getattr(value, "_OMIT_FALSE", frozenset())
        out: dict[str, Any] = {}
        for name in names:
            v = getattr(value, name)
            if v is None:
                continue
            if (isinstance(v, tuple) or isinstance(v, Mapping)) and not v and name not in keep_empty:
                continue
            if v is False and name in omit_false:
                continue
            out[json_key(name)] = _dump(v)
        return out
    if isinstance(value, tuple):
        return [_dump(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _dump(v) for k, v in value.items()}
    return value


class _Node:
    """Shared behaviour: ``to_dict()`` renders the node as config.json would have it."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = _dump(self)
        return out


# --------------------------------------------------------------------------- common


@record(slots=True)
class IdMapping(_Node):
    """One uid/gid range mapping (``containerID``, ``hostID``, ``size``)."""

    container_id: int
    host_id: int
    size: int

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IdMapping:
        return cls(d["containerID"], d["hostID"], d["size"])


@record(slots=True)
class Root(_Node):
    """``root``: the rootfs path as written (relative to the bundle or absolute)."""

    _OMIT_FALSE: ClassVar[frozenset[str]] = frozenset({"readonly"})
    path: str
    readonly: bool = False

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Root:
        return cls(d["path"], bool(d.get("readonly", False)))


@record(slots=True)
class Mount(_Node):
    """One ``mounts`` entry; ``destination`` is always absolute here."""

    destination: str
    type: str | None = None
    source: str | None = None
    options: tuple[str, ...] = ()
    uid_mappings: tuple[IdMapping, ...] = ()
    gid_mappings: tuple[IdMapping, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Mount:
        dest = d["destination"]
        if not dest.startswith("/"):
            dest = "/" + dest  # config.md: relative destinations are relative to "/"
        return cls(
            destination=dest,
            type=d.get("type"),
            source=d.get("source"),
            options=_strs(d, "options"),
            uid_mappings=_tuple(d, "uidMappings", IdMapping.from_dict),
            gid_mappings=_tuple(d, "gidMappings", IdMapping.from_dict),
        )


# --------------------------------------------------------------------------- process


@record(slots=True)
class ConsoleSize(_Node):
    """``process.consoleSize`` (kept only when ``terminal`` is true)."""

    height: int
    width: int

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ConsoleSize:
        return cls(d["height"], d["width"])


@record(slots=True)
class User(_Node):
    """``process.user`` (POSIX): ids in the container's user namespace."""

    uid: int = 0
    gid: int = 0
    umask: int | None = None
    additional_gids: tuple[int, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> User:
        return cls(d.get("uid", 0), d.get("gid", 0), d.get("umask"), tuple(d.get("additionalGids") or ()))


@record(slots=True)
class Capabilities(_Node):
    """``process.capabilities``: each set None (absent) or the names given."""

    _KEEP_EMPTY: ClassVar[frozenset[str]] = frozenset(
        {"bounding", "effective", "inheritable", "permitted", "ambient"}
    )
    bounding: tuple[str, ...] | None = None
    effective: tuple[str, ...] | None = None
    inheritable: tuple[str, ...] | None = None
    permitted: tuple[str, ...] | None = None
    ambient: tuple[str, ...] | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Capabilities:
        return cls(
            _opt_strs(d, "bounding"),
            _opt_strs(d, "effective"),
            _opt_strs(d, "inheritable"),
            _opt_strs(d, "permitted"),
            _opt_strs(d, "ambient"),
        )


@record(slots=True)
class Rlimit(_Node):
    """One ``process.rlimits`` entry."""

    type: str
    hard: int
    soft: int

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Rlimit:
        return cls(d["type"], d["hard"], d["soft"])


@record(slots=True)
class Scheduler(_Node):
    """``process.scheduler`` (sched_setattr(2))."""

    policy: str
    nice: int | None = None
    priority: int | None = None
    flags: tuple[str, ...] = ()
    runtime: int | None = None
    deadline: int | None = None
    period: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Scheduler:
        return cls(
            d["policy"], d.get("nice"), d.get("priority"), _strs(d, "flags"),
            d.get("runtime"), d.get("deadline"), d.get("period"),
        )


@record(slots=True)
class IoPriority(_Node):
    """``process.ioPriority``; ``io_class`` is the JSON ``class``."""

    io_class: str  # JSON "class"
    priority: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IoPriority:
        return cls(d["class"], d.get("priority"))


@record(slots=True)
class ExecCpuAffinity(_Node):
    """``process.execCPUAffinity`` (CPU lists such as ``0-3,7``)."""

    initial: str | None = None
    final: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ExecCpuAffinity:
        return cls(d.get("initial"), d.get("final"))


@record(slots=True)
class Process(_Node):
    """``process``: what ``start`` runs."""

    _OMIT_FALSE: ClassVar[frozenset[str]] = frozenset({"terminal", "no_new_privileges"})
    cwd: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] = ()
    terminal: bool = False
    console_size: ConsoleSize | None = None
    command_line: str | None = None
    user: User = User()
    capabilities: Capabilities | None = None
    rlimits: tuple[Rlimit, ...] = ()
    no_new_privileges: bool = False
    apparmor_profile: str | None = None
    oom_score_adj: int | None = None
    selinux_label: str | None = None
    scheduler: Scheduler | None = None
    io_priority: IoPriority | None = None
    exec_cpu_affinity: ExecCpuAffinity | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Process:
        terminal = bool(d.get("terminal", False))
        return cls(
            cwd=d["cwd"],
            args=_strs(d, "args"),
            env=_strs(d, "env"),
            terminal=terminal,
            # config.md: consoleSize MUST be ignored unless terminal is true
            console_size=_opt(d, "consoleSize", ConsoleSize.from_dict) if terminal else None,
            command_line=d.get("commandLine"),
            user=User.from_dict(d.get("user") or {}),
            capabilities=_opt(d, "capabilities", Capabilities.from_dict),
            rlimits=_tuple(d, "rlimits", Rlimit.from_dict),
            no_new_privileges=bool(d.get("noNewPrivileges", False)),
            apparmor_profile=d.get("apparmorProfile"),
            oom_score_adj=d.get("oomScoreAdj"),
            selinux_label=d.get("selinuxLabel"),
            scheduler=_opt(d, "scheduler", Scheduler.from_dict),
            io_priority=_opt(d, "ioPriority", IoPriority.from_dict),
            exec_cpu_affinity=_opt(d, "execCPUAffinity", ExecCpuAffinity.from_dict),
        )


# --------------------------------------------------------------------------- hooks


@record(slots=True)
class Hook(_Node):
    """One hook: an absolute ``path`` run with ``args``/``env``, optional ``timeout`` (s).

    ``env`` None (absent) is not ``()``: a hook without ``env`` inherits an
    environment (ocirun.hooks), one with ``"env": []`` gets none."""

    _KEEP_EMPTY: ClassVar[frozenset[str]] = frozenset({"env"})
    path: str
    args: tuple[str, ...] = ()
    env: tuple[str, ...] | None = None
    timeout: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Hook:
        return cls(d["path"], _strs(d, "args"), _opt_strs(d, "env"), d.get("timeout"))


@record(slots=True)
class Hooks(_Node):
    """``hooks``, each kind in the order the hooks run."""

    prestart: tuple[Hook, ...] = ()
    create_runtime: tuple[Hook, ...] = ()
    create_container: tuple[Hook, ...] = ()
    start_container: tuple[Hook, ...] = ()
    poststart: tuple[Hook, ...] = ()
    poststop: tuple[Hook, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Hooks:
        return cls(
            _tuple(d, "prestart", Hook.from_dict),
            _tuple(d, "createRuntime", Hook.from_dict),
            _tuple(d, "createContainer", Hook.from_dict),
            _tuple(d, "startContainer", Hook.from_dict),
            _tuple(d, "poststart", Hook.from_dict),
            _tuple(d, "poststop", Hook.from_dict),
        )


# --------------------------------------------------------------------------- linux


@record(slots=True)
class Namespace(_Node):
    """One ``linux.namespaces`` entry; ``path`` None means create a new one."""

    type: str
    path: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Namespace:
        return cls(d["type"], d.get("path") or None)


@record(slots=True)
class TimeOffset(_Node):
    """One ``linux.timeOffsets`` clock offset."""

    secs: int | None = None
    nanosecs: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TimeOffset:
        return cls(d.get("secs"), d.get("nanosecs"))


@record(slots=True)
class Device(_Node):
    """One ``linux.devices`` entry (a node to create in the container)."""

    type: str
    path: str
    major: int | None = None
    minor: int | None = None
    file_mode: int | None = None
    uid: int | None = None
    gid: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Device:
        return cls(
            d["type"], d["path"], d.get("major"), d.get("minor"),
            d.get("fileMode"), d.get("uid"), d.get("gid"),
        )


@record(slots=True)
class DeviceRule(_Node):
    """One ``linux.resources.devices`` cgroup allow/deny rule."""

    allow: bool
    type: str | None = None
    major: int | None = None
    minor: int | None = None
    access: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> DeviceRule:
        return cls(d["allow"], d.get("type"), d.get("major"), d.get("minor"), d.get("access"))


@record(slots=True)
class Memory(_Node):
    """``linux.resources.memory``."""

    limit: int | None = None
    reservation: int | None = None
    swap: int | None = None
    kernel: int | None = None
    kernel_tcp: int | None = None
    swappiness: int | None = None
    disable_oom_killer: bool | None = None
    use_hierarchy: bool | None = None
    check_before_update: bool | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Memory:
        return cls(
            d.get("limit"), d.get("reservation"), d.get("swap"), d.get("kernel"),
            d.get("kernelTCP"), d.get("swappiness"), d.get("disableOOMKiller"),
            d.get("useHierarchy"), d.get("checkBeforeUpdate"),
        )


@record(slots=True)
class Cpu(_Node):
    """``linux.resources.cpu``."""

    shares: int | None = None
    quota: int | None = None
    burst: int | None = None
    period: int | None = None
    realtime_runtime: int | None = None
    realtime_period: int | None = None
    cpus: str | None = None
    mems: str | None = None
    idle: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Cpu:
        return cls(
            d.get("shares"), d.get("quota"), d.get("burst"), d.get("period"),
            d.get("realtimeRuntime"), d.get("realtimePeriod"), d.get("cpus"),
            d.get("mems"), d.get("idle"),
        )


@record(slots=True)
class Pids(_Node):
    """``linux.resources.pids``."""

    limit: int

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Pids:
        return cls(d["limit"])


@record(slots=True)
class WeightDevice(_Node):
    """One ``blockIO.weightDevice`` entry."""

    major: int
    minor: int
    weight: int | None = None
    leaf_weight: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> WeightDevice:
        return cls(d["major"], d["minor"], d.get("weight"), d.get("leafWeight"))


@record(slots=True)
class ThrottleDevice(_Node):
    """One ``blockIO.throttle*Device`` entry."""

    major: int
    minor: int
    rate: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ThrottleDevice:
        return cls(d["major"], d["minor"], d.get("rate"))


@record(slots=True)
class BlockIo(_Node):
    """``linux.resources.blockIO``."""

    weight: int | None = None
    leaf_weight: int | None = None
    weight_device: tuple[WeightDevice, ...] = ()
    throttle_read_bps_device: tuple[ThrottleDevice, ...] = ()
    throttle_write_bps_device: tuple[ThrottleDevice, ...] = ()
    throttle_read_iops_device: tuple[ThrottleDevice, ...] = ()
    throttle_write_iops_device: tuple[ThrottleDevice, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> BlockIo:
        return cls(
            d.get("weight"),
            d.get("leafWeight"),
            _tuple(d, "weightDevice", WeightDevice.from_dict),
            _tuple(d, "throttleReadBpsDevice", ThrottleDevice.from_dict),
            _tuple(d, "throttleWriteBpsDevice", ThrottleDevice.from_dict),
            _tuple(d, "throttleReadIOPSDevice", ThrottleDevice.from_dict),
            _tuple(d, "throttleWriteIOPSDevice", ThrottleDevice.from_dict),
        )


@record(slots=True)
class HugepageLimit(_Node):
    """One ``linux.resources.hugepageLimits`` entry."""

    page_size: str
    limit: int

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> HugepageLimit:
        return cls(d["pageSize"], d["limit"])


@record(slots=True)
class InterfacePriority(_Node):
    """One ``linux.resources.network.priorities`` entry."""

    name: str
    priority: int

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> InterfacePriority:
        return cls(d["name"], d["priority"])


@record(slots=True)
class Network(_Node):
    """``linux.resources.network``."""

    class_id: int | None = None
    priorities: tuple[InterfacePriority, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Network:
        return cls(d.get("classID"), _tuple(d, "priorities", InterfacePriority.from_dict))


@record(slots=True)
class RdmaLimit(_Node):
    """One ``linux.resources.rdma`` device's limits."""

    hca_handles: int | None = None
    hca_objects: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RdmaLimit:
        return cls(d.get("hcaHandles"), d.get("hcaObjects"))


@record(slots=True)
class Resources(_Node):
    """``linux.resources``: the cgroup settings."""

    devices: tuple[DeviceRule, ...] = ()
    memory: Memory | None = None
    cpu: Cpu | None = None
    pids: Pids | None = None
    block_io: BlockIo | None = None
    hugepage_limits: tuple[HugepageLimit, ...] = ()
    network: Network | None = None
    rdma: Mapping[str, RdmaLimit] = _EMPTY
    unified: Mapping[str, str] = _EMPTY

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Resources:
        return cls(
            devices=_tuple(d, "devices", DeviceRule.from_dict),
            memory=_opt(d, "memory", Memory.from_dict),
            cpu=_opt(d, "cpu", Cpu.from_dict),
            pids=_opt(d, "pids", Pids.from_dict),
            block_io=_opt(d, "blockIO", BlockIo.from_dict),
            hugepage_limits=_tuple(d, "hugepageLimits", HugepageLimit.from_dict),
            network=_opt(d, "network", Network.from_dict),
            rdma=_map(d, "rdma", RdmaLimit.from_dict),
            unified=_map(d, "unified"),
        )



@record(slots=True)
class IntelRdt(_Node):
    """``linux.intelRdt``."""

    _OMIT_FALSE: ClassVar[frozenset[str]] = frozenset({"enable_monitoring"})
    clos_id: str | None = None
    l3_cache_schema: str | None = None
    mem_bw_schema: str | None = None
    schemata: tuple[str, ...] = ()
    enable_monitoring: bool = False

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> IntelRdt:
        return cls(
            d.get("closID"), d.get("l3CacheSchema"), d.get("memBwSchema"),
            _strs(d, "schemata"), bool(d.get("enableMonitoring", False)),
        )



@record(slots=True)
class SeccompArg(_Node):
    """One syscall argument comparison of a seccomp rule."""

    index: int
    value: int
    op: str
    value_two: int | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SeccompArg:
        return cls(d["index"], d["value"], d["op"], d.get("valueTwo"))


@record(slots=True)
class SyscallRule(_Node):
    """One ``linux.seccomp.syscalls`` entry."""

    names: tuple[str, ...]
    action: str
    errno_ret: int | None = None
    args: tuple[SeccompArg, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> SyscallRule:
        return cls(_strs(d, "names"), d["action"], d.get("errnoRet"), _tuple(d, "args", SeccompArg.from_dict))


@record(slots=True)
class Seccomp(_Node):
    """``linux.seccomp``."""

    default_action: str
    default_errno_ret: int | None = None
    architectures: tuple[str, ...] = ()
    flags: tuple[str, ...] = ()
    listener_path: str | None = None
    listener_metadata: str | None = None
    syscalls: tuple[SyscallRule, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Seccomp:
        return cls(
            d["defaultAction"], d.get("defaultErrnoRet"), _strs(d, "architectures"),
            _strs(d, "flags"), d.get("listenerPath"), d.get("listenerMetadata"),
            _tuple(d, "syscalls", SyscallRule.from_dict),
        )


@record(slots=True)
class Personality(_Node):
    """``linux.personality``."""

    domain: str
    flags: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Personality:
        return cls(d["domain"], _strs(d, "flags"))


@record(slots=True)
class NetDevice(_Node):
    """One ``linux.netDevices`` entry (keyed by the host interface name)."""

    name: str | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NetDevice:
        return cls(d.get("name"))


@record(slots=True)
class MemoryPolicy(_Node):
    """``linux.memoryPolicy`` (set_mempolicy(2))."""

    mode: str
    nodes: str | None = None
    flags: tuple[str, ...] = ()

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> MemoryPolicy:
        return cls(d["mode"], d.get("nodes"), _strs(d, "flags"))


@record(slots=True)
class Linux(_Node):
    """``linux``: the Linux-specific configuration."""

    namespaces: tuple[Namespace, ...] = ()
    uid_mappings: tuple[IdMapping, ...] = ()
    gid_mappings: tuple[IdMapping, ...] = ()
    time_offsets: Mapping[str, TimeOffset] = _EMPTY
    devices: tuple[Device, ...] = ()
    cgroups_path: str | None = None
    resources: Resources | None = None
    intel_rdt: IntelRdt | None = None
    sysctl: Mapping[str, str] = _EMPTY
    seccomp: Seccomp | None = None
    rootfs_propagation: str | None = None
    masked_paths: tuple[str, ...] = ()
    readonly_paths: tuple[str, ...] = ()
    mount_label: str | None = None
    personality: Personality | None = None
    net_devices: Mapping[str, NetDevice] = _EMPTY
    memory_policy: MemoryPolicy | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Linux:
        return cls(
            namespaces=_tuple(d, "namespaces", Namespace.from_dict),
            uid_mappings=_tuple(d, "uidMappings", IdMapping.from_dict),
            gid_mappings=_tuple(d, "gidMappings", IdMapping.from_dict),
            time_offsets=_map(d, "timeOffsets", TimeOffset.from_dict),
            devices=_tuple(d, "devices", Device.from_dict),
            cgroups_path=d.get("cgroupsPath") or None,
            resources=_opt(d, "resources", Resources.from_dict),
            intel_rdt=_opt(d, "intelRdt", IntelRdt.from_dict),
            sysctl=_map(d, "sysctl"),
            seccomp=_opt(d, "seccomp", Seccomp.from_dict),
            rootfs_propagation=d.get("rootfsPropagation"),
            masked_paths=_strs(d, "maskedPaths"),
            readonly_paths=_strs(d, "readonlyPaths"),
            mount_label=d.get("mountLabel"),
            personality=_opt(d, "personality", Personality.from_dict),
            net_devices=_map(d, "netDevices", NetDevice.from_dict),
            memory_policy=_opt(d, "memoryPolicy", MemoryPolicy.from_dict),
        )


# --------------------------------------------------------------------------- top


@record(slots=True)
class Config(_Node):
    """The whole config.json (Linux parts)."""

    oci_version: str
    root: Root | None = None
    mounts: tuple[Mount, ...] = ()
    process: Process | None = None
    hostname: str | None = None
    domainname: str | None = None
    hooks: Hooks | None = None
    annotations: Mapping[str, str] = _EMPTY
    linux: Linux | None = None

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Config:
        """Build from a parsed config.json that passed the schema check (unknown keys ignored)."""
        return cls(
            oci_version=d["ociVersion"],
            root=_opt(d, "root", Root.from_dict),
            mounts=_tuple(d, "mounts", Mount.from_dict),
            process=_opt(d, "process", Process.from_dict),
            hostname=d.get("hostname"),
            domainname=d.get("domainname"),
            hooks=_opt(d, "hooks", Hooks.from_dict),
            annotations=_map(d, "annotations"),
            linux=_opt(d, "linux", Linux.from_dict),
        )


__all__ = [
    "BlockIo", "Capabilities", "Config", "ConsoleSize", "Cpu", "Device", "DeviceRule",
    "ExecCpuAffinity", "HugepageLimit", "Hook", "Hooks", "IdMapping", "IntelRdt",
    "InterfacePriority", "IoPriority", "Linux", "Memory", "MemoryPolicy", "Mount",
    "Namespace", "NetDevice", "Network", "Personality", "Pids", "Process", "RdmaLimit",
    "Resources", "Rlimit", "Root", "Scheduler", "Seccomp", "SeccompArg", "SyscallRule",
    "ThrottleDevice", "TimeOffset", "User", "WeightDevice", "json_key",
]

"""`ocirun update`: change a live container's cgroup resources.

``--resources FILE`` (or ``-`` for stdin) is a JSON LinuxResources object;
without it runc's individual flags are read (``--memory 512m`` ...). As in
runc, a value of 0 means "leave as is" (containerd sends whole structs with
zeros for what it does not change), the flags are ignored when ``--resources``
is given, and device rules are not changed by update. Only what is given is
written; the live cgroup files are the record of what is set.
"""

from __future__ import annotations

import argparse
import sys

from ocirun.cli import GlobalOptions
from ocirun.container.common import cgroup_of, open_store, status_of
from ocirun.errors import InvalidStateError, UsageError
from ocirun.util.record import replace


def cmd_update(g: GlobalOptions, args: argparse.Namespace) -> int:
    resources = resources_from_args(args)
    store = open_store(g)
    with store.lock(args.id):
        record = store.load(args.id)
        if status_of(store, record) not in ("created", "running", "paused"):
            raise InvalidStateError("container not running")
        cg = cgroup_of(record)
        if cg is None:
            raise InvalidStateError(f"container {args.id} has no cgroup")
        if resources is not None:
            if resources.memory is not None and resources.memory.kernel is not None:
                # as at create (ocirun.spec.rules.warnings) and as runc 1.1
                sys.stderr.write("warning: kernel memory limits are deprecated and ignored "
                                 "(not enforced by Linux since 5.16, absent from cgroup v2)\n")
            cg.apply(resources, None, update=True)
    return 0


_UINT_FLAGS = ("cpu_period", "cpu_rt_period", "cpu_share")
_INT_FLAGS = ("cpu_quota", "cpu_rt_runtime")
_SIZE_FLAGS = ("memory", "memory_swap", "kernel_memory", "kernel_memory_tcp", "memory_reservation")


def resources_from_args(args: argparse.Namespace, stdin=None):
    """The ``Resources`` to apply (fields None: unchanged), or None for nothing."""
    from ocirun.spec.model import Resources

    if getattr(args, "l3_cache_schema", None) or getattr(args, "mem_bw_schema", None):
        raise UsageError("Intel RDT (--l3-cache-schema, --mem-bw-schema) is not supported by ocirun")
    if args.resources:
        data = _read_json(args.resources, stdin or sys.stdin)
        try:
            res = Resources.from_dict(data)
        except (KeyError, TypeError, AttributeError, ValueError) as exc:
            raise UsageError(f"invalid resources JSON: {type(exc).__name__}: {exc}") from None
        if res.devices:
            sys.stderr.write("warning: update does not change device rules; linux.resources.devices ignored\n")
        return drop_zeros(replace(res, devices=()))
    return resources_from_flags(vars(args))


def _read_json(name: str, stdin) -> dict:
    from ocirun.errors import BundleError, ConfigError
    from ocirun.spec.load import parse_config, read_config_file

    try:
        if name == "-":
            text = stdin.read()
        else:  # never waits on a fifo, never reads a device or an endless file
            text = read_config_file(name, f"open {name}: no such file or directory")
    except OSError as err:
        raise UsageError(f"open {name}: {err.strerror.lower() if err.strerror else err}") from None
    except BundleError as err:
        raise UsageError(err.message) from None
    try:
        data = parse_config(text, name)  # lone surrogates refused too
    except ConfigError as exc:
        raise UsageError(f"invalid resources JSON in {exc.message}") from None
    except RecursionError:
        raise UsageError(f"invalid resources JSON in {name}: nested too deeply") from None
    if not isinstance(data, dict):
        raise UsageError(f"invalid resources JSON in {name}: not an object")
    _check_types(data)
    return data


def _check_types(data: dict) -> None:
    """The numeric fields a LinuxResources object must have as numbers (what Go's
    decoder would refuse); the rest is checked when written."""
    numeric = {"memory": ("limit", "reservation", "swap", "kernel", "kernelTCP", "swappiness"),
               "cpu": ("shares", "quota", "burst", "period", "realtimeRuntime", "realtimePeriod", "idle"),
               "pids": ("limit",), "blockIO": ("weight", "leafWeight")}
    for section, keys in numeric.items():
        sub = data.get(section)
        if sub is None:
            continue
        if not isinstance(sub, dict):
            raise UsageError(f"invalid resources JSON: {section} must be an object")
        for k in keys:
            v = sub.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, int)):
                raise UsageError(f"invalid resources JSON: {section}.{k} must be an integer")
    cpu = data.get("cpu") or {}
    for k in ("cpus", "mems"):
        if cpu.get(k) is not None and not isinstance(cpu[k], str):
            raise UsageError(f"invalid resources JSON: cpu.{k} must be a string")


def drop_zeros(res):
    """runc's update semantics: a zero means "unchanged"."""
    from ocirun.spec.model import BlockIo, Cpu, Memory

    def nz(v):
        return None if v == 0 else v

    changes: dict = {}
    m = res.memory
    if m is not None:
        changes["memory"] = Memory(nz(m.limit), nz(m.reservation), nz(m.swap), nz(m.kernel), nz(m.kernel_tcp),
                                   m.swappiness, m.disable_oom_killer, m.use_hierarchy, m.check_before_update)
    c = res.cpu
    if c is not None:
        changes["cpu"] = Cpu(nz(c.shares), nz(c.quota), c.burst, nz(c.period), nz(c.realtime_runtime),
                             nz(c.realtime_period), c.cpus or None, c.mems or None, c.idle)
    if res.pids is not None and res.pids.limit == 0:
        changes["pids"] = None
    b = res.block_io
    if b is not None and not b.weight:
        changes["block_io"] = BlockIo(None, b.leaf_weight, b.weight_device, b.throttle_read_bps_device,
                                      b.throttle_write_bps_device, b.throttle_read_iops_device,
                                      b.throttle_write_iops_device)
    return replace(res, **changes)


def resources_from_flags(flags: dict):
    """runc update's individual flags -> Resources (None when no flag is given)."""
    from ocirun.spec.model import BlockIo, Cpu, Memory, Pids, Resources

    def given(name: str) -> str | None:
        v = flags.get(name)
        return v if v not in (None, "") else None

    values: dict[str, int] = {}
    for name in _UINT_FLAGS:
        v = given(name)
        if v is not None:
            if not v.isdigit():
                raise UsageError(f'invalid value for {name.replace("_", "-")}: strconv.ParseUint: parsing "{v}": invalid syntax')
            values[name] = int(v)
    for name in _INT_FLAGS:
        v = given(name)
        if v is not None:
            try:
                values[name] = int(v, 10)
            except ValueError:
                raise UsageError(f'invalid value for {name.replace("_", "-")}: strconv.ParseInt: parsing "{v}": invalid syntax') from None
    for name in _SIZE_FLAGS:
        v = given(name)
        if v is not None:
            values[name] = -1 if v == "-1" else _size(name, v)
    for name in ("blkio_weight", "pids_limit"):
        v = given(name)
        if v is not None:
            try:
                values[name] = int(v, 0)
            except ValueError:
                raise UsageError(f'invalid value "{v}" for flag -{name.replace("_", "-")}: parse error') from None

    def nz(name: str) -> int | None:
        return values.get(name) or None

    memory = Memory(limit=nz("memory"), reservation=nz("memory_reservation"), swap=nz("memory_swap"),
                    kernel=nz("kernel_memory"), kernel_tcp=nz("kernel_memory_tcp"))
    cpu = Cpu(shares=nz("cpu_share"), quota=nz("cpu_quota"), period=nz("cpu_period"),
              realtime_runtime=nz("cpu_rt_runtime"), realtime_period=nz("cpu_rt_period"),
              cpus=given("cpuset_cpus"), mems=given("cpuset_mems"))
    res = Resources(
        memory=memory if memory != Memory() else None,
        cpu=cpu if cpu != Cpu() else None,
        pids=Pids(values["pids_limit"]) if values.get("pids_limit") else None,
        block_io=BlockIo(weight=values["blkio_weight"]) if values.get("blkio_weight") else None,
    )
    return None if res == Resources() else res


def _size(name: str, text: str) -> int:
    from ocirun.cgroups.convert import parse_ram_size

    try:
        return parse_ram_size(text)
    except ValueError as exc:
        raise UsageError(f"invalid value for {name.replace('_', '-')}: {exc}") from None

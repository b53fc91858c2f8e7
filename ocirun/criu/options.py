"""The flags of ``checkpoint`` and ``restore`` (runc's meanings, defaults and
messages) and the CRIU options they and the container's record become.

Pure functions of their inputs, so the unit tests read them without CRIU.
"""

from __future__ import annotations

import os

from ocirun.criu import rpc
from ocirun.errors import UsageError
from ocirun.util.record import record

TYPE_CHECKING = False  # typing costs every import ~5 ms (checkpoint and restore start cold too)
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

CLONE_NEWNET = 0x40000000

#: runc's --empty-ns values (only the network namespace) -> clone flag
EMPTY_NS = {"network": CLONE_NEWNET}

#: runc's descriptors.json: the container's stdio as its runtime gave it
DESCRIPTORS = "descriptors.json"
#: What ocirun adds to the images: the container's mounts CRIU was told of
#: (restore checks the bundle against them), its terminal, its id
METADATA = "ocirun.json"

#: The key CRIU knows a bind mount of /dev/null over a masked path by (runc's).
DEV_NULL = "/dev/null"


@record
class CriuFlags:
    """What checkpoint and restore share."""

    image_path: str
    work_path: str | None
    tcp_established: bool
    ext_unix_sk: bool
    shell_job: bool
    file_locks: bool
    manage_cgroups_mode: int | None  # None: CRIU's default (soft)
    empty_ns: int  # clone flags; runc always includes CLONE_NEWNET
    auto_dedup: bool
    lazy_pages: bool


@record
class CheckpointFlags:
    common: CriuFlags
    parent_path: str | None
    leave_running: bool
    pre_dump: bool
    status_fd: int
    page_server: tuple[str, int] | None


@record
class RestoreFlags:
    common: CriuFlags
    lsm_profile: str | None
    lsm_mount_context: str | None


def default_image_path() -> str:
    """runc's getDefaultImagePath: ./checkpoint."""
    return os.path.join(os.getcwd(), "checkpoint")


def cg_mode(value: str | None) -> int | None:
    """--manage-cgroups-mode: soft|full|strict|ignore; none given: CRIU's default (soft)."""
    if not value:
        return None
    mode = rpc.CG_MODES.get(value.upper()) if value in ("soft", "full", "strict", "ignore") else None
    if mode is None:
        raise UsageError("invalid manage-cgroups-mode value")
    return mode


def empty_ns(values: list[str] | None) -> int:
    """--empty-ns (repeatable): runc knows only "network", and always empties the
    network namespace anyway ("runc doesn't manage network devices and their
    configuration"): the restored container gets a new, empty one."""
    mask = CLONE_NEWNET
    for ns in values or ():
        flag = EMPTY_NS.get(ns)
        if flag is None:
            raise UsageError(f'namespace "{ns}" is not supported')
        mask |= flag
    return mask


def page_server(value: str | None) -> tuple[str, int] | None:
    """--page-server ADDRESS:PORT (Go's net.SplitHostPort: [v6]:port too)."""
    if not value:
        return None
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif ":" in host:
        sep = ""  # an unbracketed IPv6 address: "too many colons"
    if not sep or not host or not port:
        raise UsageError("Use --page-server ADDRESS:PORT to specify page server")
    try:
        number = int(port)
    except ValueError:
        raise UsageError("Invalid port number") from None
    return host, number


def common_flags(args: Any) -> CriuFlags:
    image = getattr(args, "image_path", None) or default_image_path()
    return CriuFlags(
        image_path=os.path.abspath(image),
        work_path=os.path.abspath(args.work_path) if getattr(args, "work_path", None) else None,
        tcp_established=bool(args.tcp_established),
        ext_unix_sk=bool(args.ext_unix_sk),
        shell_job=bool(args.shell_job),
        file_locks=bool(args.file_locks),
        manage_cgroups_mode=cg_mode(args.manage_cgroups_mode),
        empty_ns=empty_ns(args.empty_ns),
        auto_dedup=bool(args.auto_dedup),
        lazy_pages=bool(args.lazy_pages),
    )


def checkpoint_flags(args: Any) -> CheckpointFlags:
    common = common_flags(args)
    parent = args.parent_path or None
    if parent is not None and os.path.isabs(parent):
        raise UsageError("--parent-path must be relative")
    return CheckpointFlags(common=common, parent_path=parent, leave_running=bool(args.leave_running),
                           pre_dump=bool(args.pre_dump), status_fd=int(args.status_fd),
                           page_server=page_server(args.page_server))


def restore_flags(args: Any) -> RestoreFlags:
    return RestoreFlags(common=common_flags(args), lsm_profile=args.lsm_profile or None,
                        lsm_mount_context=args.lsm_mount_context or None)


def shared_opts(flags: CriuFlags) -> dict[str, Any]:
    """The criu_opts both a dump and a restore carry (runc's Checkpoint and Restore)."""
    opts: dict[str, Any] = {
        "log_level": 4,
        "manage_cgroups": True,  # obsoleted by manage_cgroups_mode, still sent (runc)
        "notify_scripts": True,
        "shell_job": flags.shell_job,
        "tcp_established": flags.tcp_established,
        "ext_unix_sk": flags.ext_unix_sk,
        "file_locks": flags.file_locks,
        "empty_ns": flags.empty_ns,
        "orphan_pts_master": True,
        "auto_dedup": flags.auto_dedup,
        "lazy_pages": flags.lazy_pages,
    }
    if flags.manage_cgroups_mode is not None:
        opts["manage_cgroups_mode"] = flags.manage_cgroups_mode
    return opts


def config_file(annotations: Mapping[str, str]) -> str | None:
    """runc's org.criu.config annotation: a CRIU configuration file for this
    container ("" for none); without it, ocirun's own (CRIU skips a missing one)."""
    if "org.criu.config" in annotations:
        return annotations["org.criu.config"] or None
    return "/etc/criu/ocirun.conf"


def dump_ext_mounts(facts: dict, resolve) -> list[dict[str, str]]:
    """ext_mnt of a dump: each bind mount target (as the container's mount table
    names it: ``resolve`` follows symlinks inside the container's root) is
    external, known by its config path; each masked file by /dev/null (runc)."""
    out = []
    for target in facts.get("binds", ()):
        out.append({"key": resolve(target), "val": target})
    for path in facts.get("masked", ()):
        resolved = resolve(path, must_be_file=True)
        if resolved is not None:
            out.append({"key": resolved, "val": DEV_NULL})
    return out


def restore_ext_mounts(plan) -> list[dict[str, str]]:
    """ext_mnt of a restore: what each external key of the dump is bound from now
    (the bundle's bind sources, the new cgroup's directories), /dev/null for masks."""
    from ocirun.criu.facts import binds_of

    out = [{"key": target, "val": source} for target, source in binds_of(plan)]
    if plan.masked_paths:
        out.append({"key": DEV_NULL, "val": DEV_NULL})
    return out

"""`ocirun checkpoint`: dump a running container's process tree with CRIU (runc's checkpoint).

Order (runc's Checkpoint, libcontainer/criu_linux.go):

1. lock the container; it must be running or paused   — a created or stopped one has nothing to dump
2. CRIU new enough; what it cannot carry refused      — stdio outside the container's mounts, id-mapped
                                                        mounts, netDevices: before CRIU touches anything
3. the features asked for                             — pre-dump: mem_track; --lazy-pages: lazy_pages
4. the image (and work) directory, descriptors.json   — restore reads descriptors.json (runc's format)
5. CRIU dumps (or pre-dumps)                          — the bind mounts, cgroup hierarchies and masks
                                                        declared external; frozen through the cgroup
6. without --leave-running or --pre-dump: destroyed   — CRIU has killed the processes; as runc, the
                                                        cgroup and the state go, poststop hooks run
"""

from __future__ import annotations

import os

from ocirun.cli import GlobalOptions
from ocirun.errors import CriuError, InvalidStateError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from ocirun.criu.options import CheckpointFlags
    from ocirun.store import ContainerRecord

LOG_FILE = "dump.log"
_PTY_MAJORS = range(136, 144)  # UNIX98 pty slaves


def cmd_checkpoint(g: GlobalOptions, args: argparse.Namespace) -> int:
    from ocirun.criu.options import checkpoint_flags

    checkpoint_container(g, args.id, checkpoint_flags(args), criu=args.criu)
    return 0


def checkpoint_container(g: GlobalOptions, container_id: str, flags: CheckpointFlags,
                         criu: str = "criu") -> None:
    from ocirun.container.common import open_store, status_of
    from ocirun.store import validate_id

    validate_id(container_id)
    store = open_store(g)
    with store.lock(container_id):
        record = store.load(container_id)
        status = status_of(store, record)
        if status not in ("running", "paused"):
            raise InvalidStateError(f"Container cannot be checkpointed in {status} state")
        _dump(record, flags, criu)
        if flags.leave_running or flags.pre_dump:
            return
        # CRIU killed the processes; runc's destroy: the rest of the container goes
        from ocirun.container.delete import kill_and_wait

        kill_and_wait(record)
        from ocirun.container.common import cgroup_of

        cg = cgroup_of(record)
        if cg is not None:
            cg.destroy()
        store.remove(container_id)
    poststop = (record.runtime or {}).get("hooks", {}).get("poststop")
    if poststop:
        from ocirun.container.start import hook_state
        from ocirun.hooks import run_poststop

        run_poststop(poststop, hook_state(record))


def _dump(record: ContainerRecord, flags: CheckpointFlags, criu: str) -> None:
    from ocirun.criu import host, options, rpc
    from ocirun.criu.swrk import Swrk

    facts = (record.runtime or {}).get("checkpoint")
    if facts is None:
        raise CriuError(f"container {record.id} was created by an ocirun that did not record what a "
                        "checkpoint needs; create it again to checkpoint it")
    _refuse_what_criu_cannot_carry(facts)
    common = flags.common
    have = host.require_version(criu)
    _refuse_stdio_outside(record.pid)
    if flags.pre_dump:
        host.require_feature(criu, "mem_track", "--pre-dump")
    if common.lazy_pages:
        host.require_feature(criu, "lazy_pages", "--lazy-pages")
        if flags.status_fd >= 0:
            _check_status_fd(flags.status_fd)

    image_dir = _make_dir(common.image_path, "image")
    if flags.parent_path is not None:
        real = os.path.join(common.image_path, flags.parent_path)
        if not os.path.isdir(real):
            why = "not a directory" if os.path.exists(real) else "no such file or directory"
            raise CriuError(f"invalid --parent-path: stat {real}: {why}")
    fds = [image_dir]
    try:
        opts = options.shared_opts(common)
        opts.update(images_dir_fd=image_dir, log_file=LOG_FILE, root=record.rootfs, pid=record.pid,
                    leave_running=flags.leave_running)
        log_dir = common.image_path
        if common.work_path is not None:
            work_dir = _make_dir(common.work_path, "work")
            fds.append(work_dir)
            opts["work_dir_fd"] = work_dir
            log_dir = common.work_path
        config = options.config_file(record.annotations)
        if config:
            opts["config_file"] = config
        external = _external_namespaces(record, have)
        if external:
            opts["external"] = external
        freeze = _freezer(record, have)
        if freeze:
            opts["freeze_cgroup"] = freeze
        if flags.page_server is not None:
            opts["ps"] = {"address": flags.page_server[0], "port": flags.page_server[1]}
        if flags.parent_path is not None:
            # pre-dump chains: the images of the previous (pre-)dump, memory tracked
            opts["parent_img"] = flags.parent_path
            opts["track_mem"] = True
        if common.lazy_pages and flags.status_fd >= 0 and have < (3, 15, 0):
            opts["status_fd"] = flags.status_fd  # newer CRIU says "status-ready" instead
        if not flags.pre_dump:  # a pre-dump only saves memory
            opts["ext_mnt"] = options.dump_ext_mounts(facts, _resolver(record.pid))
            _write_images_metadata(common.image_path, record, facts)
        kind = "PRE_DUMP" if flags.pre_dump else "DUMP"
        try:
            Swrk(criu).call({"type": rpc.REQ_TYPES[kind], "opts": opts}, pass_fds=fds,
                            on_notify=_notify_handler(flags))
        except CriuError as err:
            raise host.explain_failure(err, criu, "checkpoint", os.path.join(log_dir, LOG_FILE)) from None
    finally:
        for fd in fds:
            os.close(fd)


def _refuse_what_criu_cannot_carry(facts: dict) -> None:
    if facts.get("idmapped"):
        raise CriuError(f"checkpoint: CRIU cannot dump id-mapped mounts ({', '.join(facts['idmapped'])})")
    if facts.get("netDevices"):
        raise CriuError("checkpoint: a container with linux.netDevices "
                        f"({', '.join(facts['netDevices'])}) cannot be checkpointed: CRIU cannot "
                        "give host network devices back to a restored container")


def _refuse_stdio_outside(pid: int) -> None:
    """The init's stdio on a file or terminal the container's mounts do not show
    (the caller's terminal with process.terminal false, a log file of the host):
    CRIU finds no mount for it and fails half way ("Can't lookup mount"), with
    or without --shell-job, as under runc. Said before CRIU freezes anything.
    Pipes and sockets are fine (restore hands CRIU new ones), and so is the
    container's own terminal (process.terminal: CRIU gives restore a new master)."""
    visible = _mount_ids(pid)
    if visible is None:
        return
    for fd in range(3):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
            mnt = _fd_mount_id(pid, fd)
            st = os.stat(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if not target.startswith("/") or mnt is None or mnt in visible:
            continue
        name = ("stdin", "stdout", "stderr")[fd]
        if (st.st_mode & 0o170000) == 0o020000 and os.major(st.st_rdev) in (*_PTY_MAJORS, 4, 5):
            raise CriuError(f"checkpoint: the container's {name} is a terminal from outside it ({target}): "
                            "CRIU cannot dump a terminal the container does not own, with or without "
                            "--shell-job; give the container its own (process.terminal) or pipes")
        raise CriuError(f"checkpoint: the container's {name} is {target}, a file outside its mounts, which "
                        "CRIU cannot dump; give the container pipes (as engines do) or a file inside it")


def _mount_ids(pid: int) -> set[int] | None:
    try:
        with open(f"/proc/{pid}/mountinfo", "rb") as f:
            return {int(line.split(b" ", 1)[0]) for line in f if line.strip()}
    except (OSError, ValueError):
        return None


def _fd_mount_id(pid: int, fd: int) -> int | None:
    try:
        with open(f"/proc/{pid}/fdinfo/{fd}") as f:
            for line in f:
                if line.startswith("mnt_id:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        pass
    return None


def _check_status_fd(fd: int) -> None:
    import fcntl

    try:
        fl = fcntl.fcntl(fd, fcntl.F_GETFL)
    except OSError as e:
        raise CriuError(f"invalid --status-fd argument {fd}: {os.strerror(e.errno or 0).lower()}") from None
    if fl & os.O_ACCMODE == os.O_RDONLY:
        raise CriuError(f"invalid --status-fd argument {fd}: not writable")


def _make_dir(path: str, what: str) -> int:
    """mkdir -p (0700; it may exist: a container is checkpointed again and again), open it."""
    try:
        os.makedirs(path, 0o700, exist_ok=True)
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise CriuError(f"checkpoint: {what} directory {path}: {os.strerror(e.errno or 0).lower()}") from None


def _external_namespaces(record: ContainerRecord, have: tuple[int, int, int]) -> list[str]:
    """runc's handleCheckpointingExternalNamespaces: a network or pid namespace the
    container joined by path is not dumped; restore gets one again by that path."""
    out = []
    namespaces = (record.runtime or {}).get("namespaces") or {}
    for kind, key, minimum in (("network", "net", (3, 11, 0)), ("pid", "pid", (3, 15, 0))):
        path = namespaces.get(kind)
        if not path:
            continue
        if have < minimum:
            raise CriuError(f"checkpoint: CRIU {'.'.join(map(str, have))} cannot leave out the external "
                            f"{key} namespace ({path}): it needs CRIU {'.'.join(map(str, minimum))}")
        try:
            ino = os.stat(path).st_ino
        except OSError as e:
            raise CriuError(f"checkpoint: {kind} namespace {path}: {os.strerror(e.errno or 0).lower()}") from None
        out.append(f"{key}[{ino}]:{external_key(kind)}")
    return out


def external_key(kind: str) -> str:
    """runc's criuNsToKey: extRootNetNS, extRootPidNS."""
    return {"network": "extRootNetNS", "pid": "extRootPidNS"}[kind]


def _freezer(record: ContainerRecord, have: tuple[int, int, int]) -> str | None:
    """The cgroup CRIU freezes the tree with (else it stops each task with ptrace):
    v1's freezer hierarchy; v2's own cgroup, CRIU 3.14 or newer."""
    cg = (record.runtime or {}).get("cgroup") or {}
    if cg.get("version") == 2:
        return cg.get("path") if have >= (3, 14, 0) else None
    return (cg.get("paths") or {}).get("freezer")


def _resolver(pid: int):
    """A mount target as the container's mount table names it (symlinks followed inside its root)."""
    from ocirun.linux.safepath import resolve_in_root

    root = f"/proc/{pid}/root"

    def resolve(path: str, must_be_file: bool = False) -> str | None:
        resolved = resolve_in_root(root, path)
        if not must_be_file:
            return resolved
        # runc's addMaskPaths: only a masked path that exists and is no directory is a bind of /dev/null
        try:
            st = os.stat(root + resolved)
        except OSError:
            return None
        return None if (st.st_mode & 0o170000) == 0o040000 else resolved

    return resolve


def _write_images_metadata(image_path: str, record: ContainerRecord, facts: dict) -> None:
    """descriptors.json (runc's: the container's stdio as its runtime gave it, so
    that restore can hand CRIU the new pipes in their place) and ocirun.json (what
    restore checks the bundle against)."""
    from ocirun.criu.options import DESCRIPTORS, METADATA
    from ocirun.util import jsonio

    process = (record.runtime or {}).get("process") or {}
    meta = {"id": record.id, "binds": list(facts.get("binds", ())),
            "masked": bool(facts.get("masked")), "terminal": bool(process.get("terminal"))}
    for name, value in ((DESCRIPTORS, list(facts.get("stdio", ()))), (METADATA, meta)):
        path = os.path.join(image_path, name)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(jsonio.dumps(value))
        except OSError as e:
            raise CriuError(f"checkpoint: write {path}: {os.strerror(e.errno or 0).lower()}") from None


def _notify_handler(flags: CheckpointFlags):
    status_fd = [flags.status_fd if flags.common.lazy_pages else -1]

    def on_notify(script: str, pid: int, fd: int | None) -> None:
        if script == "status-ready" and status_fd[0] >= 0:
            # the lazy-pages page server is ready: runc writes "\0" to --status-fd
            try:
                os.write(status_fd[0], b"\0")
            except OSError:
                pass
            os.close(status_fd[0])
            status_fd[0] = -1

    return on_notify

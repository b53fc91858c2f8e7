"""`ocirun restore`: a container brought back from CRIU images (runc's restore).

Create's steps, but CRIU brings the processes (each step undone if a later one
fails: a failed restore leaves no process, mount, cgroup or state behind):

1. the images: a dump, with runc's descriptors.json   — before anything is touched
2. validate the bundle, build the launch plan        — create's own code (prepare_create: the
                                                       --pid-file directory checked too); the bundle
                                                       must have the mounts the images were told
                                                       are external
3. CRIU new enough for what is asked                 — and what it cannot do refused
4. claim <root>/<id>, lock it                        — a restored id that exists is an error
5. creating.json, as create (save_intent)            — a restore killed from here on is undone by
                                                       `delete --force`: the cgroup's processes (CRIU
                                                       and what it restored) killed, the cgroup
                                                       removed, CRIU's root detached
6. the cgroup: refused if it holds processes,        — create's code (make_cgroup); CRIU restores into
   created, every resource but the pids limit          it
7. prepare the rootfs exactly as create does         — the shim's own init runs the mount sequence
                                                       (every mount point) and exits; it dies with us
                                                       until then, as create's children before COMMIT
8. CRIU restores the tree (criu swrk, rst_sibling)   — the init is our child (a subreaper gets it when
                                                       we exit); setup-namespaces: prestart and
                                                       createRuntime hooks (runc); post-restore: the
                                                       pids limit (the tree exists, nothing of it has
                                                       run; CRIU's own tasks no longer need room in
                                                       the cgroup); a terminal's new master to
                                                       --console-socket or our proxy
9. write state.json (running), the pid file, drop    — then, in the foreground, wait and delete (runc)
   creating.json

The test hooks (ocirun.testhooks) name these points ``restore:<step>``:
``claimed``, ``intent``, ``cgroup``, ``cgroup-applied``, the shim's (``clone``,
``placed``, ``NS_READY``, ``INIT_PID``, ``READY``), ``criu-root``,
``restored`` (CRIU's post-restore), ``saved``, ``pid-file``.

CRIU gets the rootfs as its root at ``<state dir>/criu-root`` (CRIU wants a
mount point whose parent is not overmounted): a recursive bind, as runc's,
detached again as soon as CRIU is done.
"""

from __future__ import annotations

import os
from contextlib import ExitStack

from ocirun.cli import GlobalOptions
from ocirun.errors import CriuError
from ocirun.testhooks import reached

TYPE_CHECKING = False
if TYPE_CHECKING:
    import argparse

    from ocirun.container.create import CreateOptions, Prepared
    from ocirun.criu.options import RestoreFlags

LOG_FILE = "restore.log"
CRIU_ROOT = "criu-root"

_MS_BIND, _MS_REC = 0x1000, 0x4000


def cmd_restore(g: GlobalOptions, args: argparse.Namespace) -> int:
    from ocirun.container.create import CreateOptions
    from ocirun.criu.options import restore_flags

    flags = restore_flags(args)
    opts = CreateOptions(
        bundle=os.path.abspath(args.bundle or "."),
        pid_file=os.path.abspath(args.pid_file) if args.pid_file else None,
        console_socket=args.console_socket,
        no_pivot=args.no_pivot,
        detach=args.detach,
    )
    if not args.no_subreaper and not args.detach:
        # runc's signal handler: what the container leaves behind is reparented to us and reaped
        from ocirun.shim._shim import lib

        lib.ocirun_set_child_subreaper()
    master = forwarder = None
    if not args.detach:
        from ocirun.console import KeepMaster
        from ocirun.container.foreground import SignalForwarder

        master = KeepMaster()  # a terminal in the foreground: we proxy the restored pty
        forwarder = SignalForwarder()  # before the restore: nothing is lost meanwhile
    try:
        try:
            record = restore_container(g, args.id, opts, flags, criu=args.criu, keep_master=master)
        except BaseException:
            if forwarder is not None:
                forwarder.restore()
            raise
        if forwarder is None:
            return 0
        from ocirun.container.foreground import wait_in_foreground

        status = wait_in_foreground(record.pid, master, forwarder)
    finally:
        if master is not None:
            master.close()
    # runc: a restore that does not detach destroys the container once it exits
    from ocirun.container.delete import delete_container

    try:
        delete_container(g, args.id, force=True)
    except Exception:  # noqa: BLE001 - the container's own status matters more
        pass
    return status


def restore_container(g: GlobalOptions, container_id: str, opts: CreateOptions, flags: RestoreFlags,
                      criu: str = "criu", keep_master=None):
    """Restore the container from ``flags``' images; return its saved record."""
    from ocirun.container.create import console_receiver, prepare_create
    from ocirun.criu import host
    from ocirun.store import Store

    images = read_images(flags.common.image_path)
    prepared = prepare_create(g, container_id, opts)
    _check_bundle_against_images(prepared, images)
    have = host.require_version(criu)
    if flags.common.lazy_pages:
        host.require_feature(criu, "lazy_pages", "--lazy-pages")
    if flags.lsm_profile or flags.lsm_mount_context:
        host.require_version(criu, (3, 16, 0), "--lsm-profile and --lsm-mount-context")

    hooks = prepared.hooks
    with ExitStack() as console_undo:
        on_console_fd = console_receiver(prepared, opts, keep_master, console_undo)
        store = Store(g.root)
        claim_lock = store.claim_locked(container_id)
        reached("restore:claimed")
        try:
            return _restore_claimed(store, claim_lock, container_id, opts, flags, prepared, images,
                                    on_console_fd, criu, have)
        except BaseException as err:
            from ocirun.errors import HookError

            if isinstance(err, HookError) and hooks.get("poststop"):
                from ocirun.hooks import run_poststop

                run_poststop(hooks["poststop"], prepared.state)
            raise
        finally:
            claim_lock.__exit__(None, None, None)


class Images:
    """What restore reads of a checkpoint's image directory."""

    def __init__(self, path: str, descriptors: list[str], meta: dict | None) -> None:
        self.path = path
        self.descriptors = descriptors
        self.meta = meta  # ocirun.json; None for images made by runc


def read_images(path: str) -> Images:
    from ocirun.criu.options import DESCRIPTORS, METADATA
    from ocirun.util import jsonio

    if not os.path.isdir(path):
        raise CriuError(f"restore: no checkpoint at {path}: no such directory (--image-path)")
    # A pre-dump writes inventory.img and the memory (pagemap-*, pages-*) too;
    # only a dump writes the process tree (pstree.img).
    names = set(os.listdir(path))
    missing = next((n for n in ("inventory.img", "pstree.img") if n not in names), None)
    if missing:
        pre = " (only a pre-dump: restore needs the final checkpoint)" if any(
            n.startswith("pagemap-") for n in names) else ""
        raise CriuError(f"restore: no checkpoint in {path}: it has no {missing}{pre}")
    try:
        with open(os.path.join(path, DESCRIPTORS), "rb") as f:
            descriptors = jsonio.loads(f.read())
    except FileNotFoundError:
        raise CriuError(f"restore: {path} holds no container checkpoint: no {DESCRIPTORS} "
                        "(images of a process, not of a container made by ocirun or runc?)") from None
    except (OSError, ValueError) as e:
        raise CriuError(f"restore: {path}/{DESCRIPTORS}: {e}") from None
    if not isinstance(descriptors, list) or not all(isinstance(d, str) for d in descriptors):
        raise CriuError(f"restore: {path}/{DESCRIPTORS}: not a list of strings")
    meta = None
    try:
        with open(os.path.join(path, METADATA), "rb") as f:
            meta = jsonio.loads(f.read())
    except FileNotFoundError:
        pass  # runc's images
    except (OSError, ValueError) as e:
        raise CriuError(f"restore: {path}/{METADATA}: {e}") from None
    return Images(path, descriptors, meta if isinstance(meta, dict) else None)


def _check_bundle_against_images(prepared: Prepared, images: Images) -> None:
    """What CRIU cannot do, and images of another container: the bind mounts the
    dump declared external must be this bundle's (CRIU would stop half way with
    "no mapping for mountpoint"), its terminal the same."""
    from ocirun.criu.facts import binds_of

    plan, config = prepared.plan, prepared.config
    if plan.net_devices:
        raise CriuError("restore: linux.netDevices cannot be given to a restored container")
    idmapped = [m.target.decode(errors="replace") for m in plan.mounts if m.idmap is not None]
    if idmapped:
        raise CriuError(f"restore: CRIU cannot restore id-mapped mounts ({', '.join(idmapped)})")
    linux = config.linux
    for ns in linux.namespaces if linux else ():
        if ns.path and ns.type in ("mount", "cgroup"):
            raise CriuError(f"restore: CRIU cannot restore a container into an existing {ns.type} "
                            f"namespace ({ns.path})")
    meta = images.meta
    if meta is None:
        return
    theirs = sorted(meta.get("binds", ()))
    ours = sorted(target for target, _ in binds_of(plan))
    if theirs != ours:
        missing = sorted(set(theirs) - set(ours))
        extra = sorted(set(ours) - set(theirs))
        detail = "; ".join(part for part in (
            f"the images have {', '.join(missing)}" if missing else "",
            f"the bundle has {', '.join(extra)}" if extra else "") if part)
        raise CriuError(f"restore: the images in {images.path} are of another container "
                        f"({meta.get('id', '?')}): its bind mounts differ from this bundle's ({detail})")
    if bool(meta.get("terminal")) != prepared.terminal:
        raise CriuError(f"restore: the images in {images.path} are of another container "
                        f"({meta.get('id', '?')}): process.terminal is {str(bool(meta.get('terminal'))).lower()} "
                        f"there, {str(prepared.terminal).lower()} in this bundle")


def _restore_claimed(store, claim_lock, container_id: str, opts: CreateOptions, flags: RestoreFlags,
                     prepared: Prepared, images: Images, on_console_fd, criu: str, have):
    from ocirun.container.create import (
        _unlink_quiet,
        container_record,
        make_cgroup,
        save_intent,
        write_pid_file,
    )
    from ocirun.criu import host, options, rpc
    from ocirun.criu.swrk import Swrk
    from ocirun.shim import prepare_rootfs

    common = flags.common
    plan, cgroup = prepared.plan, prepared.cgroup
    with ExitStack() as undo:
        undo.callback(store.remove, container_id)
        with claim_lock:
            save_intent(store, container_id, prepared, "restore")  # delete --force undoes a killed restore
            reached("restore:intent")
            cgroup_fd, pids_limit = make_cgroup(prepared, undo, "restore")
            # The same children and mount sequence as create; only the mount points stay.
            prepare_rootfs(plan, cgroup_fd=cgroup_fd,
                           on_child_created=cgroup.place if cgroup_fd is None else (lambda pid: None))
            criu_root = os.path.join(store.dir_path(container_id), CRIU_ROOT)
            _bind_root(plan.rootfs, criu_root, undo)
            reached("restore:criu-root")

            fds: list[int] = []
            undo.callback(_close_all, fds)
            fds.append(_open_dir(common.image_path, "image", create=False))
            criu_opts = options.shared_opts(common)
            criu_opts.update(images_dir_fd=fds[0], log_file=LOG_FILE, root=criu_root, rst_sibling=True,
                             evasive_devices=True)
            log_dir = common.image_path
            if common.work_path is not None:
                fds.append(_open_dir(common.work_path, "work", create=True))
                criu_opts["work_dir_fd"] = fds[-1]
                log_dir = common.work_path
            config = options.config_file(prepared.config.annotations or {})
            if config:
                criu_opts["config_file"] = config
            if flags.lsm_profile:
                criu_opts["lsm_profile"] = flags.lsm_profile
            if flags.lsm_mount_context:
                criu_opts["lsm_mount_context"] = flags.lsm_mount_context
            criu_opts["ext_mnt"] = options.restore_ext_mounts(plan)
            # runc: the pipes that were the container's stdio are ours now (our 0, 1, 2 are CRIU's)
            inherit = [{"key": d, "fd": i} for i, d in enumerate(images.descriptors[:3]) if "pipe:" in d]
            inherit += _namespaces(prepared, criu_opts, fds, have)
            if inherit:
                criu_opts["inherit_fd"] = inherit

            restored: list[int] = []
            undo.callback(_kill_restored, restored)
            limit_pending = [pids_limit] if pids_limit is not None else []

            def apply_pids_limit() -> None:
                # As create at INIT_PID: not while CRIU's own tasks share the cgroup
                # with the tree it is forking (a container at its limit could never
                # be restored); before anything restored runs (runc sets every
                # resource before CRIU restores, the pids limit too).
                while limit_pending:
                    cgroup.apply(limit_pending.pop())

            def on_notify(script: str, pid: int, fd: int | None) -> None:
                if script == "setup-namespaces":
                    _restore_hooks(prepared, pid)
                elif script == "post-restore" and pid > 0:
                    restored[:] = [pid]
                    apply_pids_limit()  # the tree exists, stopped; CRIU resumes it after this
                    reached("restore:restored")
                elif script == "orphan-pts-master" and fd is not None:
                    if on_console_fd is None:
                        raise CriuError("restore: the restored process has a terminal and nothing "
                                        "takes its master (--console-socket)")
                    on_console_fd(restored[0] if restored else 0, fd)

            def on_start(pid: int) -> None:
                # CRIU itself goes into the container's cgroup (runc's criuApplyCgroups): the
                # tree is restored there; cg_root maps the dump's cgroup to this one
                cgroup.place(pid)
                criu_opts["cg_root"] = _cgroup_roots(pid)

            try:
                resp = Swrk(criu).call({"type": rpc.REQ_TYPES["RESTORE"], "opts": criu_opts}, stdio=(0, 1, 2),
                                 pass_fds=fds, on_start=on_start, on_notify=on_notify)
            except CriuError as err:
                raise host.explain_failure(err, criu, "restore", os.path.join(log_dir, LOG_FILE)) from None
            pid = (resp.get("restore") or {}).get("pid") or (restored[0] if restored else 0)
            if pid <= 0:
                raise CriuError("restore: CRIU did not say which process it restored")
            restored[:] = [pid]
            apply_pids_limit()  # no post-restore came (it always does with notify_scripts)
            _unbind_root(criu_root)  # the restored container's mount namespace has its own copy
            record = container_record(container_id, pid, prepared, status_hint="running")
            store.save(record)
            reached("restore:saved")
            if opts.pid_file:
                write_pid_file(opts.pid_file, pid)
                undo.callback(_unlink_quiet, opts.pid_file)
                reached("restore:pid-file")
            store.drop_intent(container_id)  # state.json holds the container now
            undo.pop_all()  # success: keep everything
    _close_all(fds)
    if cgroup_fd is not None:
        os.close(cgroup_fd)
    return record


def _restore_hooks(prepared: Prepared, pid: int) -> None:
    """runc's setup-namespaces: CRIU has made the namespaces, the tree is not
    running yet; prestart and createRuntime run in the runtime's namespaces with
    the restored init's pid (no createContainer, startContainer or poststart:
    runc 1.1 runs none of them for a restore)."""
    from ocirun.hooks import run_hooks

    hooks = prepared.hooks
    state = dict(prepared.state, pid=pid)
    for kind in ("prestart", "createRuntime"):
        if hooks.get(kind):
            run_hooks(kind, hooks[kind], state)


def _namespaces(prepared: Prepared, criu_opts: dict, fds: list[int], have) -> list[dict]:
    """runc's handleRestoringNamespaces: a network or pid namespace joined by path
    is handed to CRIU as the external one the dump left out (inherit_fd
    extRootNetNS, extRootPidNS); the others joined by path are joined (join_ns)."""
    from ocirun.container.checkpoint import external_key

    linux = prepared.config.linux
    inherit = []
    for ns in linux.namespaces if linux else ():
        if not ns.path:
            continue
        if ns.type in ("network", "pid"):
            minimum = (3, 11, 0) if ns.type == "network" else (3, 15, 0)
            if have < minimum:
                raise CriuError(f"restore: CRIU {'.'.join(map(str, have))} cannot restore into the "
                                f"external {ns.type} namespace {ns.path}: it needs CRIU "
                                f"{'.'.join(map(str, minimum))}")
            try:
                fd = os.open(ns.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise CriuError(f"restore: {ns.type} namespace {ns.path}: "
                                f"{os.strerror(e.errno or 0).lower()}") from None
            fds.append(fd)
            inherit.append({"key": external_key(ns.type), "fd": fd})
        else:
            from ocirun.linux.namespaces import PROC_NS_NAMES

            criu_opts.setdefault("join_ns", []).append({"ns": PROC_NS_NAMES[ns.type], "ns_file": ns.path})
    return inherit


def _cgroup_roots(pid: int) -> list[dict]:
    """cg_root for each hierarchy CRIU is in now (runc reads /proc/PID/cgroup as well)."""
    roots = []
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            lines = f.read().splitlines()
    except OSError as e:
        raise CriuError(f"restore: /proc/{pid}/cgroup: {os.strerror(e.errno or 0).lower()}") from None
    for line in lines:
        parts = line.split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for ctrl in controllers.split(",") if controllers else [""]:
            roots.append({"ctrl": ctrl, "path": path})
    return roots


def _bind_root(rootfs: bytes, criu_root: str, undo: ExitStack) -> None:
    """CRIU's root: the rootfs bound recursively at criu_root (runc's criu-root).
    In our mount namespace: CRIU resolves the image and work directories through
    our fds (/proc/<us>/fd/N) and mounts its cgroup yard below the work directory,
    which the kernel allows only in the caller's own namespace. Detached again by
    ``undo`` and after the restore; a restore killed meanwhile leaves it to
    ``delete --force`` (Store.remove_incomplete detaches it)."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    os.mkdir(criu_root, 0o755)
    if libc.mount(rootfs, criu_root.encode(), None, _MS_BIND | _MS_REC, None) != 0:
        err = ctypes.get_errno()
        raise CriuError(f"restore: bind mount {rootfs.decode(errors='replace')} to {criu_root}: "
                        f"{os.strerror(err).lower()}")
    undo.callback(_unbind_root, criu_root)


def _unbind_root(criu_root: str) -> None:
    from ocirun.store import detach_mount

    detach_mount(criu_root)
    try:
        os.rmdir(criu_root)
    except OSError:
        pass


def _open_dir(path: str, what: str, *, create: bool) -> int:
    try:
        if create:
            os.makedirs(path, 0o700, exist_ok=True)
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise CriuError(f"restore: {what} directory {path}: {os.strerror(e.errno or 0).lower()}") from None


def _close_all(fds: list[int]) -> None:
    while fds:
        os.close(fds.pop())


def _kill_restored(pids: list[int]) -> None:
    """Undo: the restored init is our child (rst_sibling); killing it takes its pid namespace."""
    for pid in pids:
        try:
            os.kill(pid, 9)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass

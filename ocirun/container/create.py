"""`ocirun create`: everything but the user process.

Order (each step undone if a later one fails, so a failed create leaves no
process, mount, cgroup or state directory behind):

1. validate the bundle             — before claiming the id: bad input leaves nothing
2. build the launch plan           — all decisions made before anything is touched
3. claim <root>/<id>, lock it      — two creates of one id: exactly one wins
4. record what create will make    — creating.json, before any of it exists: a
                                     create killed from here on is undone by
                                     `delete --force` (ocirun.container.delete)
5. make the exec fifo              — the init blocks on it until `start`
6. create the cgroup               — the init must be in it before it runs anything
7. spawn the init (C shim)         — namespaces, mounts, pivot_root, process setup;
                                     linux.netDevices moved in once the netns exists
8. at READY: state.json, pid file  — only now does the container exist for others;
                                     then COMMIT: until it the children die with us
"""

from __future__ import annotations

import os
import pwd
import time
from contextlib import ExitStack

from ocirun import SPEC_VERSION
from ocirun.cli import GlobalOptions
from ocirun.errors import OutputFileError, UsageError, warn
from ocirun.testhooks import reached
from ocirun.util.record import record

TYPE_CHECKING = False  # argparse is only for annotations (importing it costs a call ~5 ms)
if TYPE_CHECKING:
    import argparse
    from typing import Any

    from ocirun.plan.model import LaunchPlan
    from ocirun.spec.load import LoadedBundle


@record
class CreateOptions:
    bundle: str
    pid_file: str | None = None
    console_socket: str | None = None
    no_pivot: bool = False
    no_new_keyring: bool = False
    preserve_fds: int = 0
    #: create always detaches; run only with -d (decides what terminal needs)
    detach: bool = True
    #: socket activation: LISTEN_FDS fds at 3.., before the preserved ones (ocirun.linux.fds)
    listen_fds: int = 0
    #: numbers in 3..3+listen_fds+preserve_fds-1 the caller left free (placeholders, closed before exec)
    absent_fds: tuple[int, ...] = ()


def cmd_create(g: GlobalOptions, args: argparse.Namespace) -> int:
    create_container(g, args.id, options_from_args(args))
    return 0


def options_from_args(args: argparse.Namespace) -> CreateOptions:
    """The options of create and run. Called first, before anything is opened: it
    fills the free numbers among the fds passed to the container (ocirun.linux.fds)."""
    if args.preserve_fds < 0:
        raise UsageError("--preserve-fds must not be negative")
    from ocirun.linux.fds import fill_holes, listen_fds

    listen = listen_fds()
    return CreateOptions(
        bundle=os.path.abspath(args.bundle),
        pid_file=os.path.abspath(args.pid_file) if args.pid_file else None,
        console_socket=args.console_socket,
        no_pivot=args.no_pivot,
        no_new_keyring=args.no_new_keyring,
        preserve_fds=args.preserve_fds,
        detach=getattr(args, "detach", True),
        listen_fds=listen,
        absent_fds=fill_holes(listen + args.preserve_fds),
    )


@record
class Prepared:
    """What create has decided before it touches anything (``ocirun explain``
    shows exactly this, then what the steps below would do with it; ``restore``
    goes on from it with the same steps, ocirun.container.restore)."""

    loaded: LoadedBundle
    config: Any  # ocirun.spec.model.Config
    cgroup: Any  # a cgroup manager (ocirun.cgroups.manager.Manager); nothing created yet
    plan: LaunchPlan
    hooks: dict[str, Any]
    #: the state document hooks are given (status and pid added per hook)
    state: dict[str, Any]

    @property
    def terminal(self) -> bool:
        """process.terminal: a pty master goes to the console socket or our proxy."""
        return self.config.process is not None and bool(self.config.process.terminal)


def prepare_create(g: GlobalOptions, container_id: str, opts: CreateOptions, *,
                   check_terminal: bool = True, cgroup_host: Any = None) -> Prepared:
    """Steps 1 and 2: validate the bundle and decide everything (the launch plan,
    the cgroup's paths, the hooks); nothing is created. Shared with ``explain``
    (which has no console socket to check: ``check_terminal=False``).
    ``cgroup_host``: the cgroup hierarchies to use (tests); None: this host's."""
    from ocirun.cgroups import new_manager
    from ocirun.plan.build import PlanOptions, build_plan
    from ocirun.plan.support import require_supported
    from ocirun.spec.check import own_ids_if_rootless, validate_bundle
    from ocirun.store import validate_id

    validate_id(container_id)
    check_pid_file(opts.pid_file)
    rootless_ids = own_ids_if_rootless()
    loaded = validate_bundle(opts.bundle, rootless_ids)
    config = loaded.config
    require_supported(config)
    for warning in loaded.warnings:
        # stderr only: podman reads the --log file as exactly one JSON object
        warn(warning)
    if check_terminal:
        from ocirun.console import check_terminal_flags

        terminal = config.process is not None and config.process.terminal
        check_terminal_flags(terminal, detach=opts.detach, console_socket=opts.console_socket)

    linux = config.linux
    from ocirun.rootless import running_in_userns

    rootless = g.is_rootless
    cgroup = new_manager(linux.cgroups_path if linux else None, container_id, g.systemd_cgroup,
                         host=cgroup_host, rootless=rootless)
    plan = build_plan(
        config,
        PlanOptions(
            container_id=container_id,
            bundle=loaded.bundle,
            rootfs=loaded.rootfs,
            no_pivot=opts.no_pivot,
            no_new_keyring=opts.no_new_keyring,
            preserve_fds=opts.preserve_fds,
            listen_fds=opts.listen_fds,
            absent_fds=opts.absent_fds,
            rootless=rootless,
            rootless_ids=rootless_ids,
            in_userns=running_in_userns(),
        ),
        cgroup_view(cgroup),
    )

    if plan.net_devices:
        from ocirun.linux.netdev import check_movable

        # config-linux.md: "MUST check if moving the network interface ... is possible":
        # before the id is claimed, so a missing device or a taken name leaves nothing.
        netns = next((ns for ns in linux.namespaces if ns.type == "network"), None) if linux else None
        check_movable(plan.net_devices, netns.path if netns is not None and netns.path else None)

    hooks: dict = {}
    if config.hooks is not None:
        from ocirun.hooks import hooks_dict

        hooks = hooks_dict(config.hooks)
    if any(k in hooks for k in ("prestart", "createRuntime", "createContainer")):
        from ocirun.util.record import replace

        # the init stops after its mounts, before pivot_root, for these hooks
        plan = replace(plan, sync_before_pivot=True)
    # runtime.md: the state's ociVersion is the spec version the *state* complies
    # with -- the runtime's (runc writes its own, whatever config.json says)
    state: dict[str, object] = {"ociVersion": SPEC_VERSION, "id": container_id,
                                "bundle": loaded.bundle}
    if config.annotations:
        state["annotations"] = dict(config.annotations)  # runtime.md: optional
    return Prepared(loaded, config, cgroup, plan, hooks, state)


def create_container(g: GlobalOptions, container_id: str, opts: CreateOptions, keep_master=None,
                     stdio: tuple[int, int, int] | None = None):
    """Create the container; return its saved record. The init is our child.

    With process.terminal the pty master goes to ``opts.console_socket``, or,
    for a foreground run, to ``keep_master`` (an ocirun.console.KeepMaster).
    ``stdio``: fds to become the init's 0, 1, 2 (-1: ours); None: ours."""
    from ocirun.store import Store

    store = Store(g.root)  # first: a rootless user without a state root learns it before anything else
    if not g.is_rootless:
        from ocirun.cgroups import migration

        # Now, so that the kernel's wait before the first cgroup migration (v1's
        # placing of stage-1, ~10 ms) passes while we validate and plan.
        migration.warm_up()
    prepared = prepare_create(g, container_id, opts)
    hooks, state = prepared.hooks, prepared.state

    with ExitStack() as console_undo:
        on_console_fd = console_receiver(prepared, opts, keep_master, console_undo)
        # claimed and locked in one step: nothing can lock (and remove) the half-made dir
        claim_lock = store.claim_locked(container_id)
        reached("create:claimed")
        try:
            record = _create_claimed(store, claim_lock, container_id, opts, prepared, on_console_fd, stdio)
        except BaseException as err:
            from ocirun.errors import HookError

            if isinstance(err, HookError) and hooks.get("poststop"):
                # runtime.md: a failed create-time hook stops the container and the
                # lifecycle continues at "destroy" (done by the undo above), then poststop
                from ocirun.hooks import run_poststop

                run_poststop(hooks["poststop"], state)
            raise
        finally:
            claim_lock.__exit__(None, None, None)  # idempotent: normally released already
        return record


def console_receiver(prepared: Prepared, opts: CreateOptions, keep_master, undo: ExitStack):
    """Where the pty master goes (process.terminal): the console socket, connected
    now (a bad socket leaves nothing behind; closed by ``undo``), or a foreground
    proxy's KeepMaster; None without a terminal."""
    if not prepared.terminal:
        return None
    if opts.console_socket:
        from ocirun.console import ConsoleSocket

        console = ConsoleSocket(opts.console_socket)
        undo.callback(console.close)
        return console.deliver
    if keep_master is not None:
        keep_master.find_console()  # none: runc's error, before anything exists
        return keep_master.deliver
    return None


def save_intent(store, container_id: str, prepared: Prepared, verb: str = "create") -> None:
    """Step 4, before anything below exists: what delete --force of a create (or
    restore: ``verb``) killed from here on must undo (the cgroup directories about
    to be made), and who is making it (state says "still being created" while it lives)."""
    from ocirun.linux.proc import start_time

    store.save_intent(container_id, {
        "creator": {"pid": os.getpid(), "startTime": start_time(os.getpid())},
        "cgroup": prepared.cgroup.planned_record(),
        "verb": verb,
    })


def make_cgroup(prepared: Prepared, undo: ExitStack, verb: str = "create"):
    """Step 6: refuse a cgroup that already has processes, create it (destroyed
    by ``undo``), write its device rules and every resource but the pids limit.
    Returns (the v2 directory's fd to clone into or None on v1, closed by
    ``undo``; the pids limit to apply once the container's first process
    exists, or None). ``verb``: the test hooks' prefix (create, restore)."""
    cgroup = prepared.cgroup
    # After the claim (a second create of this id says "exists", not this),
    # before anything is made: a cgroup that already holds processes
    # (another container's, or a host cgroup named by cgroupsPath) is not the
    # container's own, and kill --all and delete --force would kill
    # everything in it (runc 1.2's check and words).
    busy = cgroup.all_pids()
    if busy:
        from ocirun.cgroups import CgroupSettingError

        raise CgroupSettingError(f"container's cgroup is not empty: {len(busy)} process(es) found")
    cgroup.create()
    undo.callback(cgroup.destroy)
    reached(f"{verb}:cgroup")
    pids_limit = configure_cgroup(cgroup, prepared.config.linux)
    reached(f"{verb}:cgroup-applied")
    cgroup_fd = cgroup.clone_into_fd()
    if cgroup_fd is not None:
        undo.callback(os.close, cgroup_fd)
    return cgroup_fd, pids_limit


def configure_cgroup(cgroup, linux):
    """Step 6 after the cgroup's mkdir: its device rules and linux.resources
    (inside ``ocirun.util.dryrun.Recording`` only recorded: explain). Returns
    the pids limit, applied once the init exists (see _split_pids), or None."""
    from ocirun.plan.device_rules import device_rules

    rules = device_rules(linux.resources.devices if linux and linux.resources else (),
                         linux.devices if linux else ())
    # Every limit before any process of ours is in the cgroup, but the pids
    # limit: stage-1 and the init are both in it while the init is cloned.
    now, pids_limit = _split_pids(linux.resources if linux else None, cgroup.version)
    cgroup.apply(now, rules)
    return pids_limit


def _create_claimed(store, claim_lock, container_id, opts, prepared: Prepared, on_console_fd, stdio=None):
    loaded, config, cgroup, plan = prepared.loaded, prepared.config, prepared.cgroup, prepared.plan
    with ExitStack() as undo:
        undo.callback(store.remove, container_id)
        with claim_lock:  # held since the claim; released before the undo above runs
            save_intent(store, container_id, prepared)
            reached("create:intent")
            fifo = store.exec_fifo_path(container_id)
            os.mkfifo(fifo, 0o622)
            # chmod, not umask(0): the umask is the whole process's (the library's callers
            # may create containers in several threads at once)
            os.chmod(fifo, 0o622)
            fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
            undo.callback(os.close, fifo_fd)
            reached("create:fifo")

            cgroup_fd, pids_limit = make_cgroup(prepared, undo)

            from ocirun.shim import spawn

            held_fds: list[int] = []  # closed whatever happens (an open netns fd keeps it alive)
            undo.callback(_close_all, held_fds)
            saved: list = []

            def commit(init_pid: int) -> None:
                # At READY, before the init is told to outlive us (COMMIT): from
                # here on the container exists for others.
                rec = container_record(container_id, init_pid, prepared)
                store.save(rec)
                reached("create:saved")
                if opts.pid_file:
                    write_pid_file(opts.pid_file, init_pid)
                    undo.callback(_unlink_quiet, opts.pid_file)
                    reached("create:pid-file")
                saved.append(rec)

            pid = spawn(
                plan,
                exec_fifo_fd=fifo_fd,
                cgroup_fd=cgroup_fd,
                # v1: the parent moves the first child into every hierarchy before it goes on
                on_child_created=cgroup.place if cgroup_fd is None else (lambda pid: None),
                on_namespaces_ready=_net_devices_mover(plan, undo, held_fds),
                on_before_pivot=_create_hooks(prepared.hooks, prepared.state, loaded.rootfs, cgroup,
                                              config.process.env if config.process else ()),
                # SCMP_ACT_NOTIFY: the listener fd + state to listenerPath, before READY
                on_seccomp_fd=_seccomp_listener(config, container_id, loaded.bundle),
                # process.terminal: the pty master, to the console socket or our proxy
                on_console_fd=on_console_fd,
                # stage-1 is gone and the init waits for INIT_ACK: it is the only task,
                # and nothing of the container runs before the limit is in force
                on_init_created=(lambda pid: cgroup.apply(pids_limit)) if pids_limit is not None else None,
                # state.json and the pid file, then the init is committed
                on_ready=commit,
                stdio=stdio,
            )
            undo.callback(_kill_init, pid)
            record = saved[0]
            store.drop_intent(container_id)  # state.json holds the container now
            undo.pop_all()  # success: keep everything
    _close_all(held_fds)
    os.close(fifo_fd)
    if cgroup_fd is not None:
        os.close(cgroup_fd)
    return record


def _split_pids(resources, version: int):
    """(``resources`` without the pids limit, the pids limit alone or None).

    create applies the pids limit once the init exists (spawn's on_init_created):
    while stage-1 clones it both count, so ``pids.limit: 1`` could never start
    (runc sets every resource after its init exists). ``pids.limit: 0`` is no
    limit, as runc (it writes nothing for 0); so is a negative one (``max``).
    On v2 a ``pids.max`` in ``unified`` waits too (v1 refuses ``unified`` at once)."""
    if resources is None:
        return None, None
    from ocirun.spec.model import Resources
    from ocirun.util.record import replace

    pids = resources.pids
    if pids is not None and pids.limit == 0:
        pids = None
    later = ("pids.max",) if version == 2 else ()
    unified = {k: v for k, v in resources.unified.items() if k not in later}
    later_unified = {k: v for k, v in resources.unified.items() if k in later}
    if pids is None and not later_unified:
        return (replace(resources, pids=None) if resources.pids is not None else resources), None
    return replace(resources, pids=None, unified=unified), Resources(pids=pids, unified=later_unified)


def _close_all(fds: list[int]) -> None:
    while fds:
        os.close(fds.pop())


def _net_devices_mover(plan, undo: ExitStack, held_fds: list[int]):
    """linux.netDevices, moved at NS_READY: stage-1 has created (or joined) the
    network namespace, so /proc/<stage-1>/ns/net is the container's; the init
    does not exist yet, so neither prestart/createRuntime hooks (which, like CNI,
    may configure the devices) nor the container's process ever run without them.

    The namespace fd stays open until create ends: if a later step fails, the
    children die but the namespace lives on until the devices are moved back
    (a veth would otherwise be destroyed with it). That undo is for a failed
    create only: delete never moves devices (config-linux.md: MUST NOT)."""
    if not plan.net_devices:
        return lambda pid: None

    def move(stage1_pid: int) -> None:
        from ocirun.linux import netdev

        try:
            ns_fd = os.open(f"/proc/{stage1_pid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            from ocirun.errors import SetupError

            raise SetupError("open the container's network namespace", e.errno or 0) from None
        held_fds.append(ns_fd)
        moved: list = []
        # Registered after held_fds' close, so it runs before it (LIFO).
        undo.callback(netdev.move_back, moved, ns_fd)
        netdev.move_devices(plan.net_devices, ns_fd, moved)

    return move


def _seccomp_listener(config, container_id, bundle):
    if config.linux is None or config.linux.seccomp is None:
        return None
    from ocirun.seccomp.notify import listener_callback

    return listener_callback(config.linux.seccomp, container_id=container_id, bundle=bundle,
                             annotations=config.annotations)


def cgroup_view(cgroup):
    """What the container's cgroup mount shows: its own cgroup in each hierarchy."""
    from ocirun.plan.build import CgroupView

    rec = cgroup.to_record()
    if rec["version"] == 0:
        # No cgroup of its own (rootless, ocirun.cgroups.none): the container is in
        # the caller's cgroups and sees those, as with runc.
        if rec["hostVersion"] == 2:
            return CgroupView(2, ((rec["own"]["unified"], ""),))
        return CgroupView(1, tuple((path, os.path.basename(rec["mountpoints"][key]))
                                   for key, path in rec["own"].items()))
    if rec["version"] == 2:
        return CgroupView(2, ((rec["path"], ""),))
    binds = []
    for key, path in rec["paths"].items():
        name = os.path.basename(rec["mountpoints"][key])
        binds.append((path, name))
    if rec.get("skipped"):
        from ocirun.cgroups import Host

        # rootless, where the user may not create the cgroup: the caller's own one
        own = Host.current().own_cgroups()
        for key in rec["skipped"]:
            mountpoint = rec["mountpoints"][key]
            binds.append((os.path.normpath(mountpoint + "/" + own.get(key, "/")), os.path.basename(mountpoint)))
    return CgroupView(1, tuple(binds))


def _create_hooks(hooks, state, rootfs, cgroup, process_env):
    """prestart, createRuntime (runtime namespace), createContainer (the init's
    namespaces, before pivot_root), at the init's BEFORE_PIVOT stop."""
    if not any(k in hooks for k in ("prestart", "createRuntime", "createContainer")):
        return None

    def run(init_pid: int) -> None:
        from ocirun.hooks import container_ns_runner, container_pid, run_hooks

        host_state = dict(state, pid=init_pid)
        run_hooks("prestart", hooks.get("prestart", ()), host_state)
        run_hooks("createRuntime", hooks.get("createRuntime", ()), host_state)
        run_hooks("createContainer", hooks.get("createContainer", ()),
                  dict(state, pid=container_pid(init_pid)),
                  in_container=container_ns_runner(init_pid, rootfs, cgroup, process_env))

    return run


def container_record(container_id, pid, prepared: Prepared, *, status_hint: str = "created"):
    """The ContainerRecord saved as state.json (restore: status_hint "running")."""
    from ocirun.linux.proc import start_time
    from ocirun.store import ContainerRecord

    config, loaded = prepared.config, prepared.loaded
    try:
        owner = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        owner = ""
    namespaces = {}
    if config.linux is not None:
        namespaces = {ns.type: ns.path or "" for ns in config.linux.namespaces}
    return ContainerRecord(
        oci_version=SPEC_VERSION,  # the state's version, not config.json's (see create_container)
        id=container_id,
        pid=pid,
        init_start_time=start_time(pid) or 0,
        bundle=loaded.bundle,
        rootfs=loaded.rootfs,
        created=_rfc3339_now(),
        owner=owner,
        annotations=dict(config.annotations or {}),
        has_process=config.process is not None,
        status_hint=status_hint,
        runtime=_runtime(config, prepared.cgroup, namespaces, prepared.hooks, prepared.plan, pid),
    )


def _runtime(config, cgroup, namespaces, hooks, plan, pid) -> dict:
    """What later commands need from config.json (they never re-read it: runtime.md,
    "updates to config.json after create MUST NOT affect the container")."""
    from ocirun.criu.facts import checkpoint_facts

    out = {"cgroup": cgroup.to_record(), "namespaces": namespaces,
           "checkpoint": checkpoint_facts(plan, pid)}  # the mounts CRIU must be told of, stdio
    if config.process is not None:
        out["process"] = config.process.to_dict()  # exec's defaults
    if config.linux is not None and config.linux.seccomp is not None:
        out["seccomp"] = config.linux.seccomp.to_dict()  # exec loads the same filter
    later = {k: v for k, v in hooks.items() if k in ("startContainer", "poststart", "poststop")}
    if later:
        out["hooks"] = later  # run by start and delete
    return out


def _rfc3339_now() -> str:
    now = time.time_ns()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now // 10**9)) + f".{now % 10**9:09d}Z"


def check_pid_file(path: str | None) -> None:
    """Before anything exists: the pid file's directory must be there (runc finds out
    only after creating the container, and tears it down)."""
    if path is None:
        return
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        import errno

        code = errno.ENOTDIR if os.path.exists(directory) else errno.ENOENT
        raise OutputFileError(path, OSError(code, os.strerror(code)))


def write_pid_file(path: str, pid: int) -> None:
    """Atomically, as runc does: a reader never sees an empty pid file."""
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(str(pid))
        os.rename(tmp, path)
    except OSError as err:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OutputFileError(path, err) from None


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _kill_init(pid: int) -> None:
    from ocirun.parent import kill_and_reap

    kill_and_reap(pid)


__all__ = ["cmd_create", "create_container", "CreateOptions", "Prepared", "prepare_create",
           "configure_cgroup", "console_receiver", "save_intent", "make_cgroup", "container_record",
           "write_pid_file"]

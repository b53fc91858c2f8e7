"""`ocirun create`: everything but the user process.

Order (each step undone if a later one fails, so a failed create leaves no
process, mount, cgroup or state directory behind):

1. validate the bundle             — before claiming the id: bad input leaves nothing
2. build the launch plan           — all decisions made before anything is touched
3. claim <root>/<id>, lock it      — two creates of one id: exactly one wins
4. make the exec fifo              — the init blocks on it until `start`
5. create the cgroup               — the init must be in it before it runs anything
6. spawn the init (C shim)         — namespaces, mounts, pivot_root, process setup;
                                     linux.netDevices moved in once the netns exists
7. write state.json, the pid file  — only now does the container exist for others
"""

from __future__ import annotations

import os
import pwd
import sys
import time
from contextlib import ExitStack

from ocirun import SPEC_VERSION
from ocirun.cli import GlobalOptions
from ocirun.errors import UsageError
from ocirun.util.record import record

TYPE_CHECKING = False  # argparse is only for annotations (importing it costs a call ~5 ms)
if TYPE_CHECKING:
    import argparse

    from ocirun.cgroups.manager import Manager
    from ocirun.plan.model import LaunchPlan
    from ocirun.spec.load import LoadedBundle
    from ocirun.spec.model import Config


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


def cmd_create(g: GlobalOptions, args: argparse.Namespace) -> int:
    create_container(g, args.id, options_from_args(args))
    return 0


def options_from_args(args: argparse.Namespace) -> CreateOptions:
    if args.preserve_fds < 0:
        raise UsageError("--preserve-fds must not be negative")
    return CreateOptions(
        bundle=os.path.abspath(args.bundle),
        pid_file=os.path.abspath(args.pid_file) if args.pid_file else None,
        console_socket=args.console_socket,
        no_pivot=args.no_pivot,
        no_new_keyring=args.no_new_keyring,
        preserve_fds=args.preserve_fds,
        detach=getattr(args, "detach", True),
    )


@record
class Prepared:
    """What create decided before touching anything (restore shares it: the same
    validation, plan, cgroup and hooks; ocirun.container.restore)."""

    loaded: LoadedBundle
    config: Config
    cgroup: Manager  # nothing made yet
    plan: LaunchPlan
    hooks: dict
    state: dict  # the state document hooks read (no status, no pid)
    terminal: bool


def prepare_container(g: GlobalOptions, container_id: str, opts: CreateOptions) -> Prepared:
    """Steps 1 and 2: validate the id and the bundle, build the plan. Touches nothing."""
    from ocirun.cgroups import new_manager
    from ocirun.plan.build import PlanOptions, build_plan
    from ocirun.plan.support import require_supported
    from ocirun.spec.check import validate_bundle
    from ocirun.store import validate_id

    validate_id(container_id)
    loaded = validate_bundle(opts.bundle)
    config = loaded.config
    require_supported(config)
    for warning in loaded.warnings:
        # stderr only: podman reads the --log file as exactly one JSON object
        sys.stderr.write(f"warning: {warning}\n")
    from ocirun.console import check_terminal_flags

    terminal = config.process is not None and config.process.terminal
    check_terminal_flags(terminal, detach=opts.detach, console_socket=opts.console_socket)

    linux = config.linux
    cgroup = new_manager(linux.cgroups_path if linux else None, container_id, g.systemd_cgroup)
    plan = build_plan(
        config,
        PlanOptions(
            container_id=container_id,
            bundle=loaded.bundle,
            rootfs=loaded.rootfs,
            no_pivot=opts.no_pivot,
            no_new_keyring=opts.no_new_keyring,
            preserve_fds=opts.preserve_fds,
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
    # runtime.md: the state's ociVersion is the spec version the *state* complies
    # with -- the runtime's (runc writes its own, whatever config.json says)
    state: dict[str, object] = {"ociVersion": SPEC_VERSION, "id": container_id,
                                "bundle": loaded.bundle}
    if config.annotations:
        state["annotations"] = dict(config.annotations)  # runtime.md: optional
    return Prepared(loaded, config, cgroup, plan, hooks, state, terminal)


def console_receiver(prepared: Prepared, opts: CreateOptions, keep_master, undo: ExitStack):
    """Where the pty master goes (process.terminal): the console socket, connected
    now (a bad socket leaves nothing behind), or a foreground proxy's KeepMaster;
    None without a terminal."""
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


def create_container(g: GlobalOptions, container_id: str, opts: CreateOptions, keep_master=None):
    """Create the container; return its saved record. The init is our child.

    With process.terminal the pty master goes to ``opts.console_socket``, or,
    for a foreground run, to ``keep_master`` (an ocirun.console.KeepMaster)."""
    from ocirun.store import Store

    prepared = prepare_container(g, container_id, opts)
    hooks = prepared.hooks
    if any(k in hooks for k in ("prestart", "createRuntime", "createContainer")):
        from ocirun.util.record import replace

        # the init stops after its mounts, before pivot_root, for these hooks
        prepared = replace(prepared, plan=replace(prepared.plan, sync_before_pivot=True))

    with ExitStack() as console_undo:
        on_console_fd = console_receiver(prepared, opts, keep_master, console_undo)
        store = Store(g.root)
        # claimed and locked in one step: nothing can lock (and remove) the half-made dir
        claim_lock = store.claim_locked(container_id)
        try:
            record = _create_claimed(store, claim_lock, container_id, opts, prepared, on_console_fd)
        except BaseException as err:
            from ocirun.errors import HookError

            if isinstance(err, HookError) and hooks.get("poststop"):
                # runtime.md: a failed create-time hook stops the container and the
                # lifecycle continues at "destroy" (done by the undo above), then poststop
                from ocirun.hooks import run_poststop

                run_poststop(hooks["poststop"], prepared.state)
            raise
        finally:
            claim_lock.__exit__(None, None, None)  # idempotent: normally released already
        return record


def _create_claimed(store, claim_lock, container_id, opts, prepared, on_console_fd):
    plan, loaded, config = prepared.plan, prepared.loaded, prepared.config
    with ExitStack() as undo:
        undo.callback(store.remove, container_id)
        with claim_lock:  # held since the claim; released before the undo above runs
            fifo = store.exec_fifo_path(container_id)
            old = os.umask(0)
            try:
                os.mkfifo(fifo, 0o622)
            finally:
                os.umask(old)
            fifo_fd = os.open(fifo, os.O_PATH | os.O_CLOEXEC)
            undo.callback(os.close, fifo_fd)

            cgroup_fd = make_cgroup(prepared, undo)

            from ocirun.shim import spawn

            held_fds: list[int] = []  # closed whatever happens (an open netns fd keeps it alive)
            undo.callback(_close_all, held_fds)
            cgroup = prepared.cgroup
            pid = spawn(
                plan,
                exec_fifo_fd=fifo_fd,
                cgroup_fd=cgroup_fd,
                # v1: the parent moves the first child into every hierarchy before it goes on
                on_child_created=cgroup.place if cgroup_fd is None else (lambda pid: None),
                on_namespaces_ready=_net_devices_mover(plan, undo, held_fds),
                on_before_pivot=_create_hooks(prepared.hooks, prepared.state, loaded.rootfs, cgroup),
                # SCMP_ACT_NOTIFY: the listener fd + state to listenerPath, before READY
                on_seccomp_fd=_seccomp_listener(config, container_id, loaded.bundle),
                # process.terminal: the pty master, to the console socket or our proxy
                on_console_fd=on_console_fd,
            )
            undo.callback(_kill_init, pid)

            record = container_record(container_id, pid, prepared)
            store.save(record)
            if opts.pid_file:
                write_pid_file(opts.pid_file, pid)
            undo.pop_all()  # success: keep everything
    _close_all(held_fds)
    os.close(fifo_fd)
    if cgroup_fd is not None:
        os.close(cgroup_fd)
    return record


def make_cgroup(prepared: Prepared, undo: ExitStack) -> int | None:
    """Step 5: create the cgroup (destroyed by ``undo``), its device rules and
    resources; the v2 directory's fd to clone into (None on v1, closed by the caller)."""
    from ocirun.plan.device_rules import device_rules

    linux = prepared.config.linux
    cgroup = prepared.cgroup
    cgroup.create()
    undo.callback(cgroup.destroy)
    rules = device_rules(linux.resources.devices if linux and linux.resources else (),
                         linux.devices if linux else ())
    cgroup.apply(linux.resources if linux else None, rules)
    cgroup_fd = cgroup.clone_into_fd()
    if cgroup_fd is not None:
        undo.callback(os.close, cgroup_fd)
    return cgroup_fd


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
    if rec["version"] == 2:
        return CgroupView(2, ((rec["path"], ""),))
    binds = []
    for key, path in rec["paths"].items():
        name = os.path.basename(rec["mountpoints"][key])
        binds.append((path, name))
    return CgroupView(1, tuple(binds))


def _create_hooks(hooks, state, rootfs, cgroup):
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
                  in_container=container_ns_runner(init_pid, rootfs, cgroup))

    return run


def container_record(container_id, pid, prepared: Prepared, *, status_hint: str = "created"):
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


def write_pid_file(path: str, pid: int) -> None:
    """Atomically, as runc does: a reader never sees an empty pid file."""
    tmp = os.path.join(os.path.dirname(path) or ".", f".{os.path.basename(path)}.{os.getpid()}")
    with open(tmp, "w") as f:
        f.write(str(pid))
    os.rename(tmp, path)


def _kill_init(pid: int) -> None:
    try:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


__all__ = ["cmd_create", "create_container", "CreateOptions", "Prepared", "prepare_container",
           "console_receiver", "make_cgroup", "container_record", "write_pid_file"]

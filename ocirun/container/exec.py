"""`ocirun exec`: run a new process inside a running container.

The process joins every namespace of the container's init (read from
/proc/<init>/ns/, never from config.json) and its cgroup, and gets the
container's process settings (user, env, cwd, capabilities, rlimits,
no_new_privs, seccomp) with the command-line overrides (ocirun.plan.exec_plan).
The C shim (src/exec.c) does the joining: non-dumpable first, every host fd
closed, user namespace first and mount namespace last, a fork into the pid
namespace, the cwd entered only inside the container, then execve.

Foreground: wait and return the process's exit status (128+signal when
killed), forwarding signals to it. --detach: return once it has exec'd.
Every error is reported as runc reports it: "exec failed: ...", exit 255.
"""

from __future__ import annotations

import os

from ocirun.cli import GlobalOptions
from ocirun.errors import InvalidStateError, OcirunError, UsageError

TYPE_CHECKING = False  # argparse and typing are for annotations only (~8 ms to import)
if TYPE_CHECKING:
    import argparse
    from typing import Any

#: runc exits 255 on every exec error (exec.go: fatalWithCode(..., 255)).
EXEC_FAILED_STATUS = 255


class ExecFailed(OcirunError):
    exit_code = EXEC_FAILED_STATUS


def cmd_exec(g: GlobalOptions, args: argparse.Namespace) -> int:
    try:
        return exec_in_container(g, args)
    except (ExecFailed, UsageError):
        raise  # bad flags: exit 1, as runc's checkArgs
    except OcirunError as err:
        from ocirun.errors import SetupError

        text = err.message
        if isinstance(err, SetupError):
            text = f"unable to start container process: {text}"
        raise ExecFailed(f"exec failed: {text}") from None


def options_from_args(args: argparse.Namespace):
    """exec's options. Called first, before anything is opened: it fills the free
    numbers among the fds passed to the process (ocirun.linux.fds)."""
    from ocirun.linux.fds import fill_holes
    from ocirun.plan.exec_plan import ExecOptions

    if args.preserve_fds < 0:
        raise UsageError("--preserve-fds must not be negative")
    absent = fill_holes(args.preserve_fds)  # runc's exec passes no LISTEN_FDS
    process = None
    if args.process:
        from ocirun.spec.load import parse_config, read_config_file, with_depth

        # config.json's reading rules: never waits on a fifo, lone surrogates and
        # nesting deeper than runc's limit refused; errors are "exec failed: ..." (255)
        data = read_config_file(args.process, f"open {args.process}: no such file or directory")
        process = with_depth(parse_config, data, args.process)
    command = list(args.command)
    if command and command[0] == "--":
        command = command[1:]
    return ExecOptions(
        args=tuple(command), cwd=args.cwd, env=tuple(args.env), user=args.user,
        additional_gids=tuple(args.additional_gids), caps=tuple(args.cap),
        no_new_privs=args.no_new_privs, tty=args.tty, apparmor=args.apparmor,
        process_label=args.process_label, preserve_fds=args.preserve_fds, absent_fds=absent, process=process,
    )


def exec_in_container(g: GlobalOptions, args: argparse.Namespace) -> int:
    from ocirun.container.foreground import SignalForwarder, proxy_and_wait, wait_forwarding_signals
    from ocirun.errors import NotImplementedYet

    opts = options_from_args(args)
    if args.cgroup:
        raise NotImplementedYet("exec --cgroup")
    pid_file = os.path.abspath(args.pid_file) if args.pid_file else None
    from ocirun.container.create import check_pid_file

    check_pid_file(pid_file)  # before anything is started
    # Before the process exists: a signal sent to us meanwhile is queued and
    # forwarded once it runs (the shim blocks signals around clone itself).
    forwarder = None if args.detach else SignalForwarder()
    try:
        pid, console = start_exec(g, args.id, opts, ignore_paused=args.ignore_paused,
                                  detach=args.detach, console_socket=args.console_socket)
    except BaseException:
        if forwarder is not None:
            forwarder.restore()
        raise
    if pid_file:
        from ocirun.container.create import write_pid_file

        try:
            write_pid_file(pid_file, pid)
        except OcirunError:
            # as runc: a process whose pid could not be recorded is not left running
            _kill_and_reap(pid)
            if forwarder is not None:
                forwarder.restore()
            if console is not None:
                console.close()
            raise
    if console is not None:
        from ocirun.console import KeepMaster

        if isinstance(console, KeepMaster):  # no console socket: we proxy the pty
            try:
                if console.fd is not None:
                    return proxy_and_wait(pid, console, forwarder or SignalForwarder())
            finally:
                console.close()
    if args.detach:
        return 0
    return wait_forwarding_signals(pid, forwarder)


def start_exec(g: GlobalOptions, container_id: str, opts: Any, *, ignore_paused: bool = False,
               detach: bool = True, console_socket: str | None = None,
               stdio: tuple[int, int, int] = (-1, -1, -1)) -> tuple[int, Any]:
    """Start ``opts`` (an ExecOptions) in the container; return the process's pid
    (our child, exec'd) and where its pty master went: None without a terminal,
    else a ConsoleSocket or, when ``detach`` is false and there is no console
    socket, a KeepMaster holding it (the caller proxies and closes it).
    ``stdio``: fds to become its 0, 1, 2 (-1: ours). Shared by the CLI and the library."""
    from ocirun.container.common import cgroup_of, open_store, status_of
    from ocirun.linux.proc import open_pidfd
    from ocirun.plan.exec_plan import build_exec_plan, exec_process_dict, init_namespaces
    from ocirun.state import require

    store = open_store(g)
    record = store.load(container_id)
    require(status_of(store, record), "exec-ignore-paused" if ignore_paused else "exec")
    if not g.is_rootless:
        from ocirun.cgroups import migration

        # Now: the kernel's wait before placing the process in the container's
        # cgroup (v1) passes while we plan (ocirun.cgroups.migration).
        migration.warm_up()
    from ocirun.spec.load import with_depth

    process = with_depth(exec_process_dict, (record.runtime or {}).get("process"), opts)
    terminal = bool(process.get("terminal"))
    from ocirun.console import check_terminal_flags

    # runc's checkTerminal, inside execProcess: "exec failed: ...", exit 255
    try:
        check_terminal_flags(terminal, detach=detach, console_socket=console_socket)
    except UsageError as e:
        raise ExecFailed(f"exec failed: {e.message}") from None
    if process.get("apparmorProfile") or process.get("selinuxLabel"):
        # Applied by the shim like the init's label (ocirun.linux.lsm); refused
        # here, in runc's words, only when the host does not run that LSM.
        from ocirun.linux.lsm import apparmor_enabled, selinux_enabled

        if process.get("apparmorProfile") and not apparmor_enabled():
            raise UsageError("apparmor: AppArmor is not enabled on this host")
        if process.get("selinuxLabel") and not selinux_enabled():
            raise UsageError("process label: SELinux is not enabled on this host")

    pidfd = open_pidfd(record.pid, record.init_start_time)
    if pidfd is None:
        raise InvalidStateError("cannot exec in a stopped container")
    console: Any = None  # exec --tty: where the pty master goes (ConsoleSocket or KeepMaster)
    try:
        if terminal:
            from ocirun.console import ConsoleSocket, KeepMaster

            if console_socket:
                console = ConsoleSocket(console_socket)
            else:
                keep = KeepMaster()
                console = keep
                keep.find_console()  # the foreground proxy's terminal (runc's error without one)
        plan = build_exec_plan(process, container_id=record.id, bundle=record.bundle,
                               rootfs=record.rootfs, joins=init_namespaces(record.pid),
                               seccomp=(record.runtime or {}).get("seccomp"),
                               preserve_fds=opts.preserve_fds, absent_fds=opts.absent_fds)
        cg = cgroup_of(record)
        cgroup_fd = cg.clone_into_fd() if cg is not None else None

        def placed(stage1: int) -> None:
            # The namespace files are open now: the init they came from must
            # still be the container's (not a recycled pid).
            if _exited(pidfd):
                raise InvalidStateError("cannot exec in a stopped container")
            if cg is not None and cgroup_fd is None:
                cg.place(stage1)

        from ocirun.shim import exec_process

        try:
            pid = exec_process(plan, cgroup_fd=cgroup_fd, on_child_created=placed, stdio=stdio,
                               on_console_fd=console.deliver if console is not None else None,
                               on_seccomp_fd=_seccomp_listener(record) if plan.seccomp_notify else None)
        finally:
            if cgroup_fd is not None:
                os.close(cgroup_fd)
        from ocirun.testhooks import reached

        reached("exec:execed")
    except BaseException:
        if console is not None:
            console.close()
        raise
    finally:
        os.close(pidfd)
    return pid, console


def _kill_and_reap(pid: int) -> None:
    try:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def _exited(pidfd: int) -> bool:
    import select

    return bool(select.select([pidfd], [], [], 0)[0])


def _seccomp_listener(record):
    """SCMP_ACT_NOTIFY: the exec'd process's listener fd goes to the container's
    listenerPath, with the state runc sends for it (status running, the init's pid)."""
    from ocirun.seccomp.notify import listener_callback
    from ocirun.spec.model import Seccomp

    return listener_callback(Seccomp.from_dict(record.runtime["seccomp"]), container_id=record.id,
                             bundle=record.bundle, annotations=record.annotations, init_pid=record.pid)

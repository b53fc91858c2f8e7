"""`ocirun start`: release a created container's init to exec the user process."""

from __future__ import annotations

import errno
import os
import select

from ocirun.cli import GlobalOptions
from ocirun.container.common import open_store, status_of
from ocirun.errors import InvalidStateError, OcirunError
from ocirun.testhooks import reached

TYPE_CHECKING = False  # argparse is only for annotations (importing it costs a call ~5 ms)
if TYPE_CHECKING:
    import argparse


def cmd_start(g: GlobalOptions, args: argparse.Namespace) -> int:
    start_container(g, args.id)
    return 0


def start_container(g: GlobalOptions, container_id: str) -> None:
    from ocirun.linux.proc import open_pidfd
    from ocirun.state import require

    store = open_store(g)
    with store.lock(container_id):
        reached("start:locked")
        record = store.load(container_id)
        require(status_of(store, record), "start")
        if not record.has_process:
            raise InvalidStateError(
                f"cannot start container {container_id}: config.json has no process"
            )
        hooks = (record.runtime or {}).get("hooks") or {}
        pidfd = open_pidfd(record.pid, record.init_start_time)
        if pidfd is None:
            raise InvalidStateError("cannot start a container that has stopped")
        try:
            if hooks.get("startContainer"):
                _hooks_or_teardown(store, record, "startContainer")
            _release(store.exec_fifo_path(container_id), pidfd)
            reached("start:released")
        finally:
            os.close(pidfd)
        store.save(record.replace(status_hint="running"))
        reached("start:saved")
        if hooks.get("poststart"):
            # after the user process exec'd (its fifo byte is read), before start returns
            _hooks_or_teardown(store, record, "poststart")


def hook_state(record) -> dict:
    """The state document hooks read, without status and pid (set per hook)."""
    state = {"ociVersion": record.oci_version, "id": record.id, "bundle": record.bundle}
    if record.annotations:
        state["annotations"] = dict(record.annotations)
    return state


def _process_env(record) -> list[str]:
    """The container process's env as runc's init has it when it runs startContainer
    hooks: config's process.env, with HOME from the container's passwd if absent."""
    process = (record.runtime or {}).get("process") or {}
    env = list(process.get("env") or ())
    if not any(e.startswith("HOME=") for e in env):
        from ocirun.plan.build import home_of

        env.append("HOME=" + home_of(record.rootfs, (process.get("user") or {}).get("uid", 0)))
    return env


def _hooks_or_teardown(store, record, kind: str) -> None:
    """Run the hooks of ``kind``; if one fails, stop the container and continue at
    runtime.md's step 12: destroy it (init, cgroup, state), run poststop, raise."""
    from ocirun.container.common import cgroup_of
    from ocirun.errors import HookError
    from ocirun.hooks import container_ns_runner, container_pid, run_hooks, run_poststop

    hooks = record.runtime["hooks"]
    state = hook_state(record)
    try:
        if kind == "startContainer":
            run_hooks(kind, hooks[kind], dict(state, pid=container_pid(record.pid)),
                      in_container=container_ns_runner(record.pid, record.rootfs, cgroup_of(record),
                                                       _process_env(record)))
        else:
            run_hooks(kind, hooks[kind], dict(state, pid=record.pid))
    except HookError:
        from ocirun.container.delete import kill_and_wait

        kill_and_wait(record)
        cg = cgroup_of(record)
        if cg is not None:
            cg.destroy()
        store.remove(record.id)
        run_poststop(hooks.get("poststop", ()), state)
        raise


def _release(fifo: str, pidfd: int) -> None:
    """Open the exec fifo for reading (the init is blocked opening it for writing),
    read its byte and then to EOF, then remove the fifo: "no fifo" is what makes
    the status running. The init holds the fifo open until its execve (O_CLOEXEC),
    so EOF means the container's process runs (or the init died trying), as with
    runc: an `exec` right after `start` finds the process, not the runtime's copy.
    If the init dies before the byte, its pidfd becomes readable and this fails
    instead of blocking forever."""
    try:
        fd = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise InvalidStateError("cannot start an already running container") from None
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.register(pidfd, select.POLLIN)
        released = False
        while True:
            events = dict(poller.poll())
            if events.get(fd, 0) & (select.POLLIN | select.POLLHUP):
                try:
                    data = os.read(fd, 64)
                except BlockingIOError:
                    data = None
                if data:
                    released = True
                elif data == b"":  # the writer's end is closed
                    if released:
                        break  # execve (or the init's death) closed it
                    poller.unregister(fd)  # closed without the byte: its pidfd will say
            if pidfd in events:
                if released:
                    break  # it got the byte and died (its exec failed): the state says stopped
                raise OcirunError("container init exited before it could start the process")
    finally:
        os.close(fd)
    try:
        os.unlink(fifo)
    except OSError as err:
        if err.errno != errno.ENOENT:
            raise

"""Lifecycle hooks (config.md "POSIX-platform Hooks", runtime.md "Lifecycle").

=================  ==========  ====================================  ===========  =======================
kind               namespace   when (ocirun)                         state status failure
=================  ==========  ====================================  ===========  =======================
prestart           runtime     create, init's mounts done, before    created      create fails, torn down
                               pivot_root (BEFORE_PIVOT sync)
createRuntime      runtime     same point, after prestart            created      create fails, torn down
createContainer    container   same point, after createRuntime:      created      create fails, torn down
                               joins the init's namespaces (its
                               mount ns still has the host's root,
                               so the path resolves as on the host)
startContainer     container   start, before the exec fifo releases  created      start fails, torn down
                               the user process (path resolved in
                               the container: after pivot_root)
poststart          runtime     start, after the user process exec'd  running      start fails, torn down
poststop           runtime     delete, after the container is gone   stopped      warning only
=================  ==========  ====================================  ===========  =======================

"Torn down" is runtime.md's "stop the container, and continue the lifecycle
at step 12": the init is killed, the cgroup and the state are removed, and
the poststop hooks run (their failures are warnings). A failed create or
start therefore leaves nothing behind; a later ``delete`` says "does not
exist" (``delete --force`` succeeds, as clients call it).

Status (runtime.md "State" and "Lifecycle"; docs/hooks.md has the table):
prestart, createRuntime and createContainer are lifecycle steps 3-5, after
step 2 ("created: the runtime has finished the create operation (after step
2)"), so they get ``created``, as crun passes (runc 1.1 passes ``creating``);
startContainer ``created`` (step 7: the user program has not run), poststart
``running`` (step 9, after it started), poststop ``stopped`` (step 13, no pid). Where runc differs:
poststart runs after the user process has exec'd (the exec fifo byte is read),
not before it as in runc; a failing poststart tears the container down (spec
1.3), where runc only reports it.

Each hook gets the state JSON on stdin (a memfd: readable to EOF, no pipe to
fill), ``args`` as argv (``[path]`` when empty), and exactly its ``env``; a
hook without ``env`` gets what runc gives it (Go's exec.Cmd with a nil Env):
in the runtime namespace, ocirun's own environment; in the container
namespace, the container process's ``env`` (runc runs those hooks from its
init, whose environment is already the process's). Its stdout and stderr are captured (memfds, so nothing of the
host's is handed into a container namespace); on failure both are in the
error message (truncated to the last 4 KiB each), on success they are
discarded, as runc does. ``timeout``: the hook is SIGKILLed at the deadline
and that is a failure.
"""

from __future__ import annotations

import json
import os
import select
import signal
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ocirun.errors import HookError, OcirunError

RUNTIME_NS = ("prestart", "createRuntime", "poststart", "poststop")
CONTAINER_NS = ("createContainer", "startContainer")
#: Every kind, in lifecycle order (also the features document's list).
KINDS = ("prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop")
#: The status in the state a hook of each kind is given.
STATUS = {
    "prestart": "created",  # lifecycle steps 3-5 come "after step 2": created
    "createRuntime": "created",
    "createContainer": "created",
    "startContainer": "created",
    "poststart": "running",
    "poststop": "stopped",
}
_OUTPUT_LIMIT = 4096


def hooks_dict(hooks) -> dict[str, list[dict[str, Any]]]:
    """config.hooks (the model) as {kind: [hook objects]}, only non-empty kinds."""
    if hooks is None:
        return {}
    out = {}
    for kind, attr in zip(KINDS, ("prestart", "create_runtime", "create_container",
                                  "start_container", "poststart", "poststop"), strict=True):
        items = getattr(hooks, attr)
        if items:
            out[kind] = [h.to_dict() for h in items]
    return out


def state_document(*, oci_version: str, container_id: str, status: str, pid: int, bundle: str,
                   annotations: Mapping[str, str] | None) -> dict[str, Any]:
    """The state runtime.md defines (what hooks read on stdin)."""
    doc: dict[str, Any] = {"ociVersion": oci_version, "id": container_id, "status": status}
    if pid > 0:
        doc["pid"] = pid
    doc["bundle"] = bundle
    if annotations:
        doc["annotations"] = dict(annotations)
    return doc


def container_pid(host_pid: int) -> int:
    """The pid as the container sees it (runtime.md: for container-namespace hooks)."""
    try:
        with open(f"/proc/{host_pid}/status") as f:
            for line in f:
                if line.startswith("NSpid:"):
                    return int(line.split()[-1])
    except (OSError, ValueError):
        pass
    return host_pid


def run_hooks(kind: str, hooks: Sequence[Mapping[str, Any]], state: Mapping[str, Any], *,
              in_container: Callable[[Mapping[str, Any], int, int, int], int] | None = None) -> None:
    """Run the hooks of one kind in order; HookError at the first that fails.

    ``in_container(hook, stdin, stdout, stderr)`` starts a hook in the container
    namespace and returns its pid (our child); needed for CONTAINER_NS kinds.
    """
    for i, hook in enumerate(hooks):
        doc = dict(state, status=STATUS[kind])
        _run_one(kind, i, hook, json.dumps(doc).encode(), in_container if kind in CONTAINER_NS else None)


def run_poststop(hooks: Sequence[Mapping[str, Any]], state: Mapping[str, Any]) -> None:
    """poststop: a failure is a warning on stderr; the other hooks still run."""
    for i, hook in enumerate(hooks):
        try:
            _run_one("poststop", i, hook, json.dumps(dict(state, status="stopped")).encode(), None)
        except HookError as err:
            from ocirun.errors import warn

            warn(err.message)


def _run_one(kind: str, index: int, hook: Mapping[str, Any], state: bytes,
             in_container: Callable[[Mapping[str, Any], int, int, int], int] | None) -> None:
    timeout = hook.get("timeout")
    where = f"error running {kind} hook #{index} ({hook['path']})"
    stdin = _memfd("hook-state", state)
    out = _memfd("hook-stdout", b"")
    err = _memfd("hook-stderr", b"")
    try:
        if in_container is not None:
            try:
                pid = in_container(hook, stdin, out, err)
            except OcirunError as e:
                raise HookError(f"{where}: {e.message}") from None
        else:
            pid = _spawn_here(hook, stdin, out, err, where)
        status = _wait(pid, timeout)
        if status is None:
            raise HookError(f"{where}: hook ran past specified timeout of {float(timeout or 0):.1f}s"
                            + _output(out, err))
        if status != 0:
            raise HookError(f"{where}: {_describe(status)}" + _output(out, err))
    finally:
        for fd in (stdin, out, err):
            os.close(fd)


def _spawn_here(hook: Mapping[str, Any], stdin: int, out: int, err: int, where: str) -> int:
    """A hook in the runtime namespace: our child, exactly its env, stdio the memfds."""
    args = list(hook.get("args") or [hook["path"]])
    if hook.get("env") is None:
        env: Mapping[str, str] = os.environ  # no env: ours, as runc's (Go's nil Env)
    else:
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in hook["env"])
    actions: list[tuple[int, ...]] = [(os.POSIX_SPAWN_DUP2, stdin, 0), (os.POSIX_SPAWN_DUP2, out, 1),
                                      (os.POSIX_SPAWN_DUP2, err, 2)]
    # fds our caller left us without CLOEXEC (a shim's, --preserve-fds) are not the hook's
    actions += [(os.POSIX_SPAWN_CLOSE, fd) for fd in _inheritable_fds() if fd > 2]
    try:
        return os.posix_spawn(hook["path"], args, env, file_actions=actions,
                              setsigdef=(signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT))
    except OSError as e:
        raise HookError(f"{where}: {os.strerror(e.errno or 0).lower()}") from None


def _inheritable_fds() -> list[int]:
    fds = []
    for name in os.listdir("/proc/self/fd"):
        try:
            if os.get_inheritable(int(name)):
                fds.append(int(name))
        except OSError:  # listdir's own fd, closed by now
            pass
    return fds


def _wait(pid: int, timeout: int | None) -> int | None:
    """The wait status, or None after killing it at the timeout."""
    pidfd = os.pidfd_open(pid)
    try:
        ready, _, _ = select.select([pidfd], [], [], timeout)
        if not ready:
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
            os.waitpid(pid, 0)
            return None
    finally:
        os.close(pidfd)
    return os.waitpid(pid, 0)[1]


def _describe(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"signal: {signal.Signals(os.WTERMSIG(status)).name.lower()[3:]}"
    return f"exit status {os.WEXITSTATUS(status)}"


def _memfd(name: str, data: bytes) -> int:
    fd = os.memfd_create(name, os.MFD_CLOEXEC)
    if data:
        os.write(fd, data)
        os.lseek(fd, 0, os.SEEK_SET)
    return fd


def _output(out: int, err: int) -> str:
    parts = []
    for name, fd in (("stdout", out), ("stderr", err)):
        size = os.lseek(fd, 0, os.SEEK_END)
        start = max(0, size - _OUTPUT_LIMIT)
        data = os.pread(fd, size - start, start).decode(errors="replace").strip()
        parts.append(f"{name}: {data}")
    return ", " + ", ".join(parts)


def container_ns_runner(init_pid: int, rootfs: str, cgroup,
                        process_env: Sequence[str] = ()) -> Callable[[Mapping[str, Any], int, int, int], int]:
    """Start a hook in the init's namespaces and cgroup through the shim's exec
    path (root, cwd "/", none of the container process's restrictions). A hook
    without ``env`` gets ``process_env``, the container process's (as in runc)."""

    def start(hook: Mapping[str, Any], stdin: int, out: int, err: int) -> int:
        from ocirun.plan.exec_plan import dedup_env, hook_plan, init_namespaces
        from ocirun.shim import exec_process

        env = hook.get("env")
        env = dedup_env(list(process_env)) if env is None else env
        plan = hook_plan(hook["path"], tuple(hook.get("args") or ()), tuple(env),
                         rootfs=rootfs, joins=init_namespaces(init_pid))
        cgroup_fd = cgroup.clone_into_fd() if cgroup is not None else None
        try:  # an OcirunError becomes this hook's failure in _run_one
            return exec_process(
                plan, cgroup_fd=cgroup_fd, stdio=(stdin, out, err),
                on_child_created=(cgroup.place if cgroup is not None and cgroup_fd is None
                                  else (lambda pid: None)))
        finally:
            if cgroup_fd is not None:
                os.close(cgroup_fd)

    return start

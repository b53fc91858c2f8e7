"""ocirun as a library: :class:`Runtime` and :class:`Container` (docs/api.md).

The same code as the command line, in the caller's process: ``create`` clones
the container's init from the calling thread (it is the caller's child, as it
is ``ocirun create``'s), ``exec`` starts the process the same way, and every
failure is one of the typed errors of :mod:`ocirun.errors`. What only a
command line does stays out: nothing is printed (warnings go to
:func:`warnings.warn` as :class:`ocirun.errors.OcirunWarning`), no signal
handler is installed and no process attribute changes (no child subreaper;
the umask is left alone), nothing exits. Stdio is given as to
:mod:`subprocess`: ``None`` (the caller's), ``PIPE``, ``DEVNULL``, ``STDOUT``
(stderr only), an fd or a file object.

Threads: a Runtime may be used from several threads at once (each container
by one at a time); the state directory's per-container lock orders what two
threads (or processes) do to one container.

The exit status of a process this process started (the init, an exec'd
process) is known only here, as its parent; a ``returncode`` is
:mod:`subprocess`'s: the exit code, or ``-N`` when killed by signal N (the
command line's ``run`` and ``exec`` say ``128+N``). Do not reap the children
elsewhere (``os.waitpid(-1, ...)``, a SIGCHLD handler that does): ``wait``
would then return ``None``.
"""

from __future__ import annotations

import os
import select
import subprocess
import threading
import time
import warnings
from collections.abc import Mapping, Sequence
from typing import IO, Any

from ocirun import errors
from ocirun.cli import GlobalOptions

__all__ = ["Runtime", "Container", "PIPE", "DEVNULL", "STDOUT", "Stdio"]

PIPE = subprocess.PIPE
DEVNULL = subprocess.DEVNULL
STDOUT = subprocess.STDOUT

#: What a stdin/stdout/stderr argument may be (as for subprocess): None, PIPE,
#: DEVNULL, STDOUT (stderr only), an fd, or an object with fileno().
Stdio = int | IO[Any] | None

_CLD_EXITED = 1


class Runtime:
    """The container runtime, with its state directory ``root`` (the command
    line's ``--root``; by default the command line's default, ``/run/ocirun`` for
    root and ``$XDG_RUNTIME_DIR/ocirun`` for anyone else: containers made here and
    with ``ocirun`` are the same containers)."""

    def __init__(self, root: str | os.PathLike[str] | None = None, *,
                 systemd_cgroup: bool = False) -> None:
        if root is None:
            from ocirun.rootless import default_state_root

            root = default_state_root()
        self.root = os.path.abspath(os.fspath(root))
        self._options = GlobalOptions(root=self.root, log=None, log_format="text", debug=False,
                                      systemd_cgroup=systemd_cgroup, rootless="auto")
        self._lock = threading.Lock()
        #: (container id, init pid) -> exit status, of inits this process reaped
        self._exit_status: dict[tuple[str, int], int] = {}

    def __repr__(self) -> str:
        return f"Runtime(root={self.root!r})"

    # ------------------------------------------------------------------ containers

    def create(self, container_id: str, bundle: str | os.PathLike[str], *,
               stdin: Stdio = None, stdout: Stdio = None, stderr: Stdio = None,
               console_socket: str | None = None, pid_file: str | None = None,
               no_pivot: bool = False, no_new_keyring: bool = False) -> Container:
        """``ocirun create``: the container, created (its init waits for
        :meth:`Container.start`). Use it in a ``with`` block to have it deleted
        (forcibly) at the end. ``stdin``/``stdout``/``stderr`` become the
        container process's (``PIPE``: :attr:`Container.stdin` etc.).
        ``process.terminal`` needs ``console_socket`` (as ``create`` does)."""
        from ocirun.container.create import CreateOptions, create_container

        streams = _Streams(stdin, stdout, stderr)
        try:
            opts = CreateOptions(
                bundle=os.path.abspath(os.fspath(bundle)),
                pid_file=os.path.abspath(pid_file) if pid_file else None,
                console_socket=console_socket, no_pivot=no_pivot, no_new_keyring=no_new_keyring,
                preserve_fds=0, detach=True)
            with _python_warnings():
                create_container(self._options, container_id, opts, stdio=streams.child_fds())
        except BaseException:
            streams.close(parent_ends=True)
            raise
        streams.close(parent_ends=False)
        return Container(self, container_id, streams.parent)

    def get(self, container_id: str) -> Container:
        """The container ``container_id`` (ContainerNotFound if there is none)."""
        self._store().load(container_id)
        return Container(self, container_id)

    def list(self) -> list[dict[str, Any]]:
        """Every container's state (as ``ocirun list --format json``), sorted by id."""
        from ocirun.container.query import list_states

        return list_states(self._store())

    def run(self, container_id: str, bundle: str | os.PathLike[str], *,
            stdin: Stdio = None, input: bytes | None = None, stdout: Stdio = None,
            stderr: Stdio = None, capture_output: bool = False, timeout: float | None = None,
            check: bool = False, no_pivot: bool = False,
            no_new_keyring: bool = False) -> subprocess.CompletedProcess[bytes]:
        """``ocirun run`` as ``subprocess.run``: create, start, wait, delete. The
        container's process arguments are the result's ``args``. ``timeout``: the
        container is killed and deleted, and ``subprocess.TimeoutExpired`` raised;
        ``check``: ``subprocess.CalledProcessError`` for a non-zero status."""
        stdin, stdout, stderr = _run_streams(stdin, input, stdout, stderr, capture_output)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self.create(container_id, bundle, stdin=stdin, stdout=stdout, stderr=stderr,
                         no_pivot=no_pivot, no_new_keyring=no_new_keyring) as c:
            args = list(c._record().runtime.get("process", {}).get("args", []))
            c.start()
            try:
                out, err = _communicate(c.stdin, input, c.stdout, c.stderr, deadline)
                status = c.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired as exc:
                c.kill("KILL", all=True)
                c.wait(10)
                raise subprocess.TimeoutExpired(args, timeout or 0, exc.output, exc.stderr) from None
        result = subprocess.CompletedProcess(args, -1 if status is None else status, out, err)
        if check:
            result.check_returncode()
        return result

    def explain(self, bundle: str | os.PathLike[str], container_id: str | None = None) -> dict[str, Any]:
        """What ``create`` would do with ``bundle`` (``ocirun explain --format json``);
        nothing is created. The warnings create would print are in ``["warnings"]``."""
        from ocirun.explain import explain_bundle

        return explain_bundle(self._options, os.path.abspath(os.fspath(bundle)), container_id)

    # ------------------------------------------------------------------ internals

    def _store(self) -> Any:
        from ocirun.store import Store

        return Store(self.root)

    def _remember(self, container_id: str, pid: int, status: int) -> None:
        with self._lock:
            self._exit_status[(container_id, pid)] = status

    def _remembered(self, container_id: str, pid: int) -> int | None:
        with self._lock:
            return self._exit_status.get((container_id, pid))


class Container:
    """One container of a :class:`Runtime` (a handle: every call reads its state
    anew). ``stdin``, ``stdout``, ``stderr``: the caller's ends of the pipes
    asked for with ``PIPE`` at create, else None."""

    def __init__(self, runtime: Runtime, container_id: str,
                 streams: tuple[IO[bytes] | None, IO[bytes] | None, IO[bytes] | None] = (None, None, None),
                 ) -> None:
        self.runtime = runtime
        self.id = container_id
        self.stdin, self.stdout, self.stderr = streams

    def __repr__(self) -> str:
        return f"Container({self.id!r}, root={self.runtime.root!r})"

    def __enter__(self) -> Container:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        """Delete the container (forcibly: killed first if it runs) and close the pipes."""
        try:
            self.delete(force=True)
        except errors.ContainerNotFound:
            pass
        except errors.OcirunError as err:
            if exc is None:
                raise
            exc.add_note(f"and deleting container {self.id} failed: {err}")
        finally:
            self._close_streams()

    # ------------------------------------------------------------------ state

    def state(self) -> dict[str, Any]:
        """The state of runtime.md (ociVersion, id, status, pid, bundle,
        annotations) and runc's rootfs, created, owner: ``ocirun state``'s object."""
        from ocirun.container.query import state_object

        store = self.runtime._store()
        record = store.load(self.id)
        return state_object(record, self._status(store, record), owner="")

    @property
    def status(self) -> str:
        """creating, created, running, paused or stopped."""
        store = self.runtime._store()
        return self._status(store, store.load(self.id))

    @property
    def pid(self) -> int:
        """The init's pid (in this pid namespace)."""
        return int(self._record().pid)

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """``ocirun start``: the container's process runs (its startContainer and
        poststart hooks too)."""
        from ocirun.container.start import start_container

        with _python_warnings():
            start_container(self.runtime._options, self.id)

    def kill(self, signal: int | str = "SIGTERM", *, all: bool = False) -> None:
        """``ocirun kill``: send ``signal`` (a number, or a name with or without
        SIG) to the init, or with ``all`` to every process of the container."""
        from ocirun.container.kill import kill_container
        from ocirun.linux.proc import parse_signal

        kill_container(self.runtime._options, self.id, parse_signal(str(signal)), all_processes=all)

    def pause(self) -> None:
        """``ocirun pause``: freeze every process of the container."""
        from ocirun.container.pause import set_frozen

        set_frozen(self.runtime._options, self.id, True)

    def resume(self) -> None:
        """``ocirun resume``."""
        from ocirun.container.pause import set_frozen

        set_frozen(self.runtime._options, self.id, False)

    def wait(self, timeout: float | None = None) -> int | None:
        """Wait until the container has stopped; its process's exit status (see
        the module docstring), or None when this process is not the init's parent
        (another program made it and is still running; an init orphaned by
        ``ocirun create`` is reparented to the nearest child subreaper, which may
        be this process). ``subprocess.TimeoutExpired`` after ``timeout`` seconds."""
        from ocirun.linux.proc import open_pidfd

        record = self._record()
        known = self.runtime._remembered(self.id, record.pid)
        if known is not None:
            return known
        pidfd = open_pidfd(record.pid, record.init_start_time)
        if pidfd is None:
            return self.runtime._remembered(self.id, record.pid)
        try:
            if not select.select([pidfd], [], [], timeout)[0]:
                raise subprocess.TimeoutExpired(f"container {self.id}", timeout or 0)
            status = _reap(pidfd)
        finally:
            os.close(pidfd)
        if status is None:
            return self.runtime._remembered(self.id, record.pid)  # another thread reaped it
        self.runtime._remember(self.id, record.pid, status)
        return status

    def delete(self, *, force: bool = False) -> None:
        """``ocirun delete`` (``force``: kill it first); its poststop hooks run.
        The init, if this process's child, is reaped."""
        from ocirun.container.delete import delete_container
        from ocirun.linux.proc import open_pidfd

        pidfd = None
        try:
            record = self.runtime._store().load(self.id)
            pidfd = open_pidfd(record.pid, record.init_start_time)
        except errors.OcirunError:
            record = None
        try:
            with _python_warnings():
                delete_container(self.runtime._options, self.id, force=force)
            if pidfd is not None and record is not None:
                # delete waited for it to exit (or it had): reap it if it is ours
                if select.select([pidfd], [], [], 10)[0]:
                    status = _reap(pidfd)
                    if status is not None:
                        self.runtime._remember(self.id, record.pid, status)
        finally:
            if pidfd is not None:
                os.close(pidfd)

    def exec(self, args: Sequence[str], *, stdin: Stdio = None, input: bytes | None = None,
             stdout: Stdio = None, stderr: Stdio = None, capture_output: bool = False,
             env: Mapping[str, str] | Sequence[str] | None = None, cwd: str | None = None,
             user: int | str | None = None, additional_gids: Sequence[int] = (),
             capabilities: Sequence[str] = (), no_new_privileges: bool = False,
             process: Mapping[str, Any] | None = None, ignore_paused: bool = False,
             timeout: float | None = None, check: bool = False) -> subprocess.CompletedProcess[bytes]:
        """``ocirun exec`` as ``subprocess.run``: run ``args`` in the container and
        wait for it. The process is the container's own (its user, env, cwd,
        capabilities, rlimits, seccomp) with these changes: ``env`` added
        (``{"K": "v"}`` or ``["K=v"]``), ``cwd``, ``user`` (uid or ``"uid:gid"``),
        ``additional_gids``, ``capabilities`` added (runc's ``--cap``),
        ``no_new_privileges``; or ``process``, a whole config.json process object
        (``args`` is then ignored). ``timeout``: the process is killed and
        ``subprocess.TimeoutExpired`` raised."""
        from ocirun.container.exec import start_exec
        from ocirun.plan.exec_plan import ExecOptions

        stdin, stdout, stderr = _run_streams(stdin, input, stdout, stderr, capture_output)
        if isinstance(env, Mapping):
            env_list = tuple(f"{k}={v}" for k, v in env.items())
        else:
            env_list = tuple(env or ())
        opts = ExecOptions(
            args=tuple(args), cwd=cwd, env=env_list, user=None if user is None else str(user),
            additional_gids=tuple(str(g) for g in additional_gids), caps=tuple(capabilities),
            no_new_privs=no_new_privileges, process=dict(process) if process is not None else None)
        command = list(process.get("args", [])) if process is not None else list(args)
        deadline = None if timeout is None else time.monotonic() + timeout
        streams = _Streams(stdin, stdout, stderr)
        try:
            with _python_warnings():
                pid, _console = start_exec(self.runtime._options, self.id, opts,
                                           ignore_paused=ignore_paused, stdio=streams.child_fds())
        except BaseException:
            streams.close(parent_ends=True)
            raise
        streams.close(parent_ends=False)
        pidfd = os.pidfd_open(pid)
        try:
            try:
                p_in, p_out, p_err = streams.parent
                out, err = _communicate(p_in, input, p_out, p_err, deadline)
                wait = None if deadline is None else max(0.0, deadline - time.monotonic())
                if not select.select([pidfd], [], [], wait)[0]:
                    raise subprocess.TimeoutExpired(command, timeout or 0, out, err)
            except subprocess.TimeoutExpired as exc:
                _kill_pidfd(pidfd)
                _reap(pidfd)
                raise subprocess.TimeoutExpired(command, timeout or 0, exc.output, exc.stderr) from None
            except BaseException:
                _kill_pidfd(pidfd)
                _reap(pidfd)
                raise
            status = _reap(pidfd)
        finally:
            os.close(pidfd)
            for f in streams.parent:
                if f is not None:
                    f.close()
        result = subprocess.CompletedProcess(command, -1 if status is None else status, out, err)
        if check:
            result.check_returncode()
        return result

    # ------------------------------------------------------------------ internals

    def _record(self) -> Any:
        return self.runtime._store().load(self.id)

    @staticmethod
    def _status(store: Any, record: Any) -> str:
        from ocirun.container.common import status_of

        return str(status_of(store, record))

    def _close_streams(self) -> None:
        for f in (self.stdin, self.stdout, self.stderr):
            if f is not None:
                try:
                    f.close()
                except OSError:
                    pass


# --------------------------------------------------------------------------- helpers


def _warn(message: str) -> None:
    warnings.warn(message, errors.OcirunWarning, stacklevel=2)


def _python_warnings() -> Any:
    """``with _python_warnings():`` ocirun's warnings become warnings.warn (this thread)."""
    from ocirun.util.scoped import WARNINGS

    return WARNINGS.set(_warn)


def _run_streams(stdin: Stdio, input: bytes | None, stdout: Stdio, stderr: Stdio,
                 capture_output: bool) -> tuple[Stdio, Stdio, Stdio]:
    """subprocess.run's rules for input= and capture_output=."""
    if input is not None:
        if stdin is not None:
            raise ValueError("stdin and input arguments may not both be used")
        stdin = PIPE
    if capture_output:
        if stdout is not None or stderr is not None:
            raise ValueError("stdout and stderr arguments may not be used with capture_output")
        stdout = stderr = PIPE
    return stdin, stdout, stderr


class _Streams:
    """stdin/stdout/stderr arguments as the fds the child gets (each a private
    copy above 2, so that making one of them its 0, 1 or 2 never overwrites
    another) and the caller's ends of the pipes."""

    def __init__(self, stdin: Stdio, stdout: Stdio, stderr: Stdio) -> None:
        import fcntl

        self._child: list[int] = [-1, -1, -1]
        parent: list[IO[bytes] | None] = [None, None, None]
        self._mine: list[int] = []  # fds made here for the child: closed after it has them
        try:
            for i, spec in enumerate((stdin, stdout, stderr)):
                fd = -1
                if spec is None:
                    continue
                if spec == PIPE:
                    r, w = os.pipe()  # CLOEXEC both
                    fd, ours = (r, w) if i == 0 else (w, r)
                    self._mine.append(fd)
                    parent[i] = open(ours, "wb" if i == 0 else "rb")  # kept: the caller's end
                    self._child[i] = fd
                    continue
                if spec == DEVNULL:
                    fd = os.open(os.devnull, os.O_RDWR | os.O_CLOEXEC)
                    self._mine.append(fd)
                elif spec == STDOUT:
                    if i != 2:
                        raise ValueError("STDOUT is only for stderr")
                    fd = self._child[1] if self._child[1] >= 0 else 1
                elif isinstance(spec, int):
                    if spec < 0:
                        raise ValueError(f"bad file descriptor {spec}")
                    fd = spec
                else:
                    fd = spec.fileno()
                self._child[i] = fd
            for i, fd in enumerate(self._child):
                if fd >= 0:
                    high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)
                    self._mine.append(high)
                    self._child[i] = high
        except BaseException:
            for f in parent:
                if f is not None:
                    f.close()
            self._close_mine()
            raise
        self.parent: tuple[IO[bytes] | None, IO[bytes] | None, IO[bytes] | None] = (
            parent[0], parent[1], parent[2])

    def child_fds(self) -> tuple[int, int, int]:
        return (self._child[0], self._child[1], self._child[2])

    def close(self, *, parent_ends: bool) -> None:
        """Close the child's copies (it has its own now); ``parent_ends`` too on failure."""
        self._close_mine()
        if parent_ends:
            for f in self.parent:
                if f is not None:
                    f.close()

    def _close_mine(self) -> None:
        while self._mine:
            try:
                os.close(self._mine.pop())
            except OSError:
                pass


def _communicate(stdin: IO[bytes] | None, input: bytes | None, stdout: IO[bytes] | None,
                 stderr: IO[bytes] | None, deadline: float | None) -> tuple[bytes | None, bytes | None]:
    """Write ``input`` to stdin (then close it), read stdout and stderr to EOF;
    subprocess.TimeoutExpired (with what was read) at ``deadline``."""
    chunks: dict[int, list[bytes]] = {}
    poller = select.poll()
    readers: dict[int, IO[bytes]] = {}
    for f in (stdout, stderr):
        if f is not None:
            readers[f.fileno()] = f
            chunks[f.fileno()] = []
            poller.register(f.fileno(), select.POLLIN)
    pending = memoryview(input or b"")
    writer = None
    if stdin is not None:
        if pending:
            writer = stdin.fileno()
            os.set_blocking(writer, False)
            poller.register(writer, select.POLLOUT)
        else:
            stdin.close()

    out_fd = stdout.fileno() if stdout is not None else -1
    err_fd = stderr.fileno() if stderr is not None else -1
    while readers or writer is not None:
        wait_ms = None
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired("", 0, *_joined(chunks, out_fd, err_fd))
            wait_ms = int(left * 1000) + 1
        for fd, _event in poller.poll(wait_ms):
            if fd == writer:
                try:
                    n = os.write(fd, pending[:65536])
                    pending = pending[n:]
                except BlockingIOError:
                    continue
                except BrokenPipeError:
                    pending = pending[:0]
                if not pending:
                    poller.unregister(fd)
                    assert stdin is not None
                    stdin.close()
                    writer = None
            elif fd in readers:
                data = os.read(fd, 65536)
                if data:
                    chunks[fd].append(data)
                else:
                    poller.unregister(fd)
                    del readers[fd]
    out, err = _joined(chunks, out_fd, err_fd)
    for f in (stdout, stderr):
        if f is not None:
            f.close()
    return out, err


def _joined(chunks: dict[int, list[bytes]], out_fd: int, err_fd: int) -> tuple[bytes | None, bytes | None]:
    return (b"".join(chunks[out_fd]) if out_fd in chunks else None,
            b"".join(chunks[err_fd]) if err_fd in chunks else None)


def _reap(pidfd: int) -> int | None:
    """Reap the process behind ``pidfd`` (it has exited or will): its status as
    subprocess gives it, or None if it is not this process's child (or was reaped)."""
    while True:
        try:
            info = os.waitid(os.P_PIDFD, pidfd, os.WEXITED)
        except InterruptedError:
            continue
        except ChildProcessError:
            return None
        if info is None:
            return None
        return info.si_status if info.si_code == _CLD_EXITED else -info.si_status


def _kill_pidfd(pidfd: int) -> None:
    import _signal

    try:
        _signal.pidfd_send_signal(pidfd, _signal.SIGKILL)
    except ProcessLookupError:
        pass

"""SCMP_ACT_NOTIFY: hand the listener fd and the container process state to ``listenerPath``.

config-linux.md "The Container Process State": connect to listenerPath
(AF_UNIX, SOCK_STREAM), send the state as JSON with the seccomp fd in
SCM_RIGHTS (fds only with the first sendmsg), exactly one state per
connection, then close. Failing to send is an error of create.

The init loads the filter (with SECCOMP_FILTER_FLAG_NEW_LISTENER) and sends
the listener fd to the parent over the sync socket; the parent calls
:func:`send_to_listener` before it lets the init go on, so the agent holds the
fd before the user process runs its first syscall.
"""

from __future__ import annotations

import os

from ocirun.errors import SetupError

# array, json, socket: imported where used (only with a listener, or an fd to receive)
TYPE_CHECKING = False  # typing is for annotations only: not imported by create
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from typing import Any

#: How long the agent may take to accept and read the state.
TIMEOUT = 10.0


def process_state(*, pid: int, container_id: str, bundle: str,
                  annotations: Mapping[str, str] | None, metadata: str | None,
                  init_pid: int | None = None) -> dict[str, Any]:
    """The container process state. ``pid``: the process that loaded the filter.
    For the init (``init_pid`` None) the container is ``creating`` (it has not
    reported ready); for an exec'd process (``init_pid``: the container's) it is
    ``running`` and the state's pid is the init's, as runc sends them."""
    from ocirun import SPEC_VERSION

    state: dict[str, Any] = {
        "ociVersion": SPEC_VERSION,
        "id": container_id,
        "status": "creating" if init_pid is None else "running",
        "pid": pid if init_pid is None else init_pid,
        "bundle": bundle,
    }
    if annotations:
        state["annotations"] = dict(annotations)
    msg: dict[str, Any] = {"ociVersion": SPEC_VERSION, "fds": ["seccompFd"], "pid": pid}
    if metadata:
        msg["metadata"] = metadata
    msg["state"] = state
    return msg


def send_to_listener(listener_path: str, seccomp_fd: int, message: Mapping[str, Any],
                     timeout: float = TIMEOUT) -> None:
    """Connect, send ``message`` as JSON with ``seccomp_fd`` (SCM_RIGHTS) in the first
    sendmsg, the rest with plain sends, and close. Raises SetupError on failure."""
    step = f"send seccomp fd to listener {listener_path}"
    import array
    import socket

    from ocirun.util.jsonio import dumps

    data = dumps(message, separators=(",", ":")).encode()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
    try:
        sock.settimeout(timeout)
        sock.connect(listener_path)
        sent = sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                      array.array("i", [seccomp_fd]).tobytes())])
        if sent < len(data):
            sock.sendall(data[sent:])
    except TimeoutError:
        raise SetupError(step, detail="timed out") from None
    except OSError as e:
        raise SetupError(step, e.errno or 0) from None
    finally:
        sock.close()


def listener_callback(seccomp, *, container_id: str, bundle: str, annotations: Mapping[str, str] | None,
                      init_pid: int | None = None) -> Callable[[int, int], None] | None:
    """What create (exec: with the container's ``init_pid``) passes to the shim:
    ``(pid of the process that loaded the filter, seccomp fd) -> None``, or None when
    the config needs no listener. The fd stays owned by the caller (closed after)."""
    if seccomp is None or not seccomp.listener_path:
        return None
    if not any(r.action == "SCMP_ACT_NOTIFY" for r in seccomp.syscalls):
        return None  # config-linux.md: without SCMP_ACT_NOTIFY listenerPath is ignored
    path, metadata = seccomp.listener_path, seccomp.listener_metadata

    def deliver(pid: int, fd: int) -> None:
        send_to_listener(path, fd, process_state(pid=pid, container_id=container_id, bundle=bundle,
                                                 annotations=annotations, metadata=metadata,
                                                 init_pid=init_pid))

    return deliver


def recv_fd(sock: int, size: int) -> tuple[bytes, int | None]:
    """recvmsg one packet of ``size`` bytes with at most one SCM_RIGHTS fd (made CLOEXEC)."""
    import array
    import socket

    s = socket.socket(fileno=os.dup(sock))
    try:
        data, anc, _flags, _addr = s.recvmsg(size, socket.CMSG_SPACE(4), socket.MSG_CMSG_CLOEXEC)
    finally:
        s.close()
    fd = None
    for level, kind, payload in anc:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds = array.array("i")
            fds.frombytes(payload[: len(payload) - len(payload) % 4])
            for extra in fds[1:]:
                os.close(extra)
            if fds:
                fd = fds[0]
    return data, fd

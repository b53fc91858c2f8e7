"""A client of ``criu swrk``: CRIU's RPC service, one request per process.

As runc (go-criu) and libcriu do: a SOCK_SEQPACKET socketpair, ``criu swrk
<fd>`` started with one end, one ``criu_req`` sent, then ``criu_resp`` packets
read until the answer to the request arrives. With ``notify_scripts`` CRIU
stops at each action script point (``setup-namespaces``, ``post-restore``,
``orphan-pts-master`` ...) and sends a NOTIFY response, which must be
acknowledged with a NOTIFY request; ``orphan-pts-master`` carries the pty
master in SCM_RIGHTS. A notification handler that raises gets a NOTIFY with
``notify_success: false``: CRIU then undoes what it did (kills what it
restored) and answers with a failure, and the handler's exception is raised.

CRIU's own messages go to its log file (``log_file`` in the work directory);
what it prints before it has one (its kernel-feature detection, "criu check")
goes to its stderr, which this client reads from a pipe (while it waits for
answers) unless told otherwise, so that an error can quote CRIU's first complaint.
"""

from __future__ import annotations

# _socket and _signal, not socket and signal: their IntEnums cost every call
# ~5 ms on a host and seconds under emulation; subprocess is not used either
# (os.posix_spawn does the one spawn, with subprocess's fd and signal rules).
import _signal
import _socket
import array
import os
import select

from ocirun.criu import rpc
from ocirun.errors import CriuError

TYPE_CHECKING = False  # typing costs every import ~5 ms (checkpoint and restore start cold too)
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

    #: (script, pid, fd): fd is the SCM_RIGHTS fd that came with it (orphan-pts-master) or
    #: None; the client closes it after the handler returns (dup it to keep it).
    NotifyHandler = Callable[[str, int, int | None], None]

#: A criu_resp never comes near this (runc reads into 40 KiB); MSG_TRUNC tells if it did.
_BUF = 1 << 16
_FD_SPACE = _socket.CMSG_SPACE(array.array("i").itemsize * 4)


class Swrk:
    """One ``criu swrk`` process: ``call`` it once (two calls: two processes)."""

    def __init__(self, binary: str = "criu") -> None:
        self.binary = binary

    def call(self, request: Mapping[str, Any], *,
             stdio: tuple[int | None, int | None, int | None] | None = None,
             pass_fds: Sequence[int] = (),
             on_start: Callable[[int], None] | None = None,
             on_notify: NotifyHandler | None = None) -> dict[str, Any]:
        """Send ``request`` (a criu_req dict); return CRIU's answer (a criu_resp dict).

        ``stdio``: CRIU's fds 0, 1, 2 (None: /dev/null for 0, a pipe read for
        error messages for 1 and 2); default all None. ``pass_fds``: more fds CRIU
        gets under the same numbers (the ``inherit_fd`` a request names); no other
        fd of ours reaches it. ``on_start(pid)`` runs once CRIU exists, before the
        request is encoded and sent (the place to put CRIU into a cgroup, and to
        add what needs its pid). Raises CriuError when CRIU cannot be started,
        answers ``success: false``, dies, or exits non-zero.
        """
        req_type = request["type"]
        kind = rpc.REQ_TYPE_NAMES.get(req_type, str(req_type))
        own_end, criu_end = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
        out_r, out_w = os.pipe2(os.O_CLOEXEC | os.O_NONBLOCK)
        output = _Output(out_r)
        proc: _Process | None = None
        try:
            try:
                proc = _Process(self.binary, [self.binary, "swrk", str(criu_end.fileno())],
                                stdio or (None, None, None), out_w, (criu_end.fileno(), *pass_fds))
            except FileNotFoundError:
                raise CriuError(f"{self.binary} not found: checkpoint and restore need CRIU "
                                "(Debian: apt-get install criu)") from None
            except OSError as e:
                raise CriuError(f"cannot run {self.binary}: {os.strerror(e.errno or 0).lower()}") from None
            finally:
                os.close(out_w)
                criu_end.close()
            if on_start is not None:
                on_start(proc.pid)
            own_end.sendall(rpc.encode("criu_req", request))
            failure: BaseException | None = None
            while True:
                resp, fd = _receive(own_end, kind, proc, output)
                if not resp["success"]:
                    if failure is not None:
                        raise failure
                    raise CriuError.failed(kind, resp.get("cr_errno", 0), resp.get("cr_errmsg"),
                                           output.complaint(proc))
                if resp["type"] != rpc.REQ_TYPES["NOTIFY"]:
                    if failure is not None:
                        raise failure
                    break
                notify = resp.get("notify") or {}
                ok = True
                try:
                    if on_notify is not None and failure is None:
                        on_notify(notify.get("script", ""), notify.get("pid", 0), fd)
                except BaseException as exc:  # told to CRIU, which undoes its work; raised after
                    failure, ok = exc, False
                finally:
                    if fd is not None:
                        os.close(fd)
                own_end.sendall(rpc.encode("criu_req", {"type": rpc.REQ_TYPES["NOTIFY"],
                                                        "notify_success": ok}))
            if resp["type"] != req_type:
                raise CriuError(f"criu {kind}: unexpected answer {rpc.REQ_TYPE_NAMES.get(resp['type'])}")
            # A finished pre-dump waits for more requests: the end of ours tells it to exit.
            own_end.shutdown(_socket.SHUT_WR)
            status = proc.wait()
            proc = None
            if status != 0 and kind != "PRE_DUMP":
                raise CriuError(f"criu {kind.lower()}: criu exited with status {status}"
                                + _quote(output.complaint(None)))
            return resp
        finally:
            own_end.close()
            if proc is not None:
                proc.kill()
            os.close(out_r)


class _Process:
    """CRIU's process, started as subprocess would (close_fds, pass_fds, SIGPIPE
    and SIGXFSZ back to their defaults) by one posix_spawn."""

    def __init__(self, binary: str, argv: list[str], stdio: tuple[int | None, int | None, int | None],
                 output: int, pass_fds: tuple[int, ...]) -> None:
        actions: list[tuple] = []
        for target, fd in enumerate(stdio):
            if fd is None and target == 0:
                actions.append((os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0))
            elif fd is None:
                actions.append((os.POSIX_SPAWN_DUP2, output, target))
            elif fd != target:
                actions.append((os.POSIX_SPAWN_DUP2, fd, target))
        # Only stdio and pass_fds reach CRIU (Python opens everything CLOEXEC, but we
        # may have inherited fds from our caller): close any other inheritable fd.
        for name in os.listdir("/proc/self/fd"):
            fd = int(name)
            if fd > 2 and fd not in pass_fds:
                try:
                    if os.get_inheritable(fd):
                        actions.append((os.POSIX_SPAWN_CLOSE, fd))
                except OSError:
                    pass  # the listing's own fd, closed by now
        changed = [fd for fd in pass_fds if not os.get_inheritable(fd)]
        for fd in changed:
            os.set_inheritable(fd, True)
        try:
            self.pid = os.posix_spawnp(binary, argv, os.environ, file_actions=actions,
                                       setsigdef=(_signal.SIGPIPE, _signal.SIGXFSZ))
        finally:
            for fd in changed:
                os.set_inheritable(fd, False)
        self.status: int | None = None

    def poll(self) -> int | None:
        if self.status is None:
            pid, wstatus = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.status = os.waitstatus_to_exitcode(wstatus)
        return self.status

    def wait(self, timeout: float | None = None) -> int | None:
        """The exit status (negative: killed by that signal); None if still running at the timeout."""
        if self.status is not None:
            return self.status
        if timeout is not None:
            import time

            end = time.monotonic() + timeout
            while self.poll() is None and time.monotonic() < end:
                time.sleep(0.02)
            return self.status
        while True:
            try:
                _, wstatus = os.waitpid(self.pid, 0)
                break
            except InterruptedError:
                continue
        self.status = os.waitstatus_to_exitcode(wstatus)
        return self.status

    def kill(self) -> None:
        if self.poll() is None:
            try:
                os.kill(self.pid, _signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.wait()


class _Output:
    """What CRIU writes to its stdout and stderr (when they are our pipe), kept
    up to a limit; read whenever we wait for CRIU, so it never blocks on a full pipe."""

    LIMIT = 1 << 16

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.data = bytearray()

    def drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.fd, 1 << 16)
            except (BlockingIOError, InterruptedError):
                return
            if not chunk:
                return
            if len(self.data) < self.LIMIT:
                self.data += chunk[: self.LIMIT - len(self.data)]

    def complaint(self, proc: _Process | None) -> str:
        """The first error line CRIU printed; waits (a while) for CRIU to exit first if ``proc``."""
        if proc is not None:
            proc.wait(timeout=10)
        self.drain()
        return first_error_line(self.data.decode(errors="replace"))


def _receive(sock, kind: str, proc: _Process, output: _Output) -> tuple[dict[str, Any], int | None]:
    """One criu_resp, and the fd that came with it; CRIU's output is read meanwhile."""
    poller = select.poll()
    poller.register(sock.fileno(), select.POLLIN)
    poller.register(output.fd, select.POLLIN)
    while True:
        ready = dict(poller.poll())
        if output.fd in ready:
            output.drain()
            if ready[output.fd] & select.POLLHUP and not ready[output.fd] & select.POLLIN:
                poller.unregister(output.fd)
        if sock.fileno() in ready:
            break
    try:
        data, ancdata, flags, _ = sock.recvmsg(_BUF, _FD_SPACE)
    except ConnectionResetError:
        data, ancdata, flags = b"", [], 0
    fds: list[int] = []
    for level, ctype, cdata in ancdata:
        if level == _socket.SOL_SOCKET and ctype == _socket.SCM_RIGHTS:
            got = array.array("i")
            got.frombytes(cdata[:len(cdata) - len(cdata) % got.itemsize])
            fds.extend(got)
    try:
        if not data:
            complaint = output.complaint(proc)
            status = proc.poll()
            raise CriuError(f"criu {kind.lower()}: criu exited before it answered"
                            + (f" (status {status})" if status else "") + _quote(complaint))
        if flags & _socket.MSG_TRUNC:
            raise CriuError(f"criu {kind.lower()}: an answer longer than {_BUF} bytes")
        try:
            resp = rpc.decode("criu_resp", data)
        except rpc.RpcError as e:
            raise CriuError(f"criu {kind.lower()}: unreadable answer: {e}") from None
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    for extra in fds[1:]:
        os.close(extra)
    return resp, (fds[0] if fds else None)


def first_error_line(text: str) -> str:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    for line in lines:
        if "Error" in line or "error" in line:
            return line
    return lines[0] if lines else ""


def _quote(line: str) -> str:
    return f": {line}" if line else ""

"""The parent's side of SCMP_ACT_NOTIFY: the state + fd to listenerPath (no root)."""

from __future__ import annotations

import array
import json
import os
import socket
import threading

import pytest

from ocirun.errors import SetupError
from ocirun.seccomp.notify import listener_callback, process_state, recv_fd, send_to_listener
from ocirun.spec.model import Seccomp


def serve_once(path: str, out: dict) -> threading.Thread:
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)

    def run():
        conn, _ = srv.accept()
        data, anc, _, _ = conn.recvmsg(1 << 20, socket.CMSG_SPACE(16))
        chunks = [data]
        while True:
            more = conn.recv(1 << 20)
            if not more:
                break
            chunks.append(more)
        fds = array.array("i")
        for level, kind, payload in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds.frombytes(payload)
        out["msg"] = json.loads(b"".join(chunks))
        out["fds"] = list(fds)
        conn.close()
        srv.close()

    t = threading.Thread(target=run)
    t.start()
    return t


def test_state_and_fd_reach_the_listener(tmp_path):
    path = str(tmp_path / "agent.sock")
    out: dict = {}
    t = serve_once(path, out)
    r, w = os.pipe()
    try:
        msg = process_state(pid=4242, container_id="c1", bundle="/b", annotations={"k": "v" * 300000},
                            metadata="MKNOD=/dev/null")
        send_to_listener(path, w, msg)
        t.join(5)
        m = out["msg"]
        assert m["fds"] == ["seccompFd"] and m["pid"] == 4242 and m["metadata"] == "MKNOD=/dev/null"
        assert m["ociVersion"] == "1.3.0"
        assert m["state"]["status"] == "creating" and m["state"]["id"] == "c1"
        assert m["state"]["pid"] == 4242 and m["state"]["bundle"] == "/b"
        assert len(m["state"]["annotations"]["k"]) == 300000  # several sends, fd only in the first
        (fd,) = out["fds"]
        os.write(fd, b"x")  # the very pipe we sent
        assert os.read(r, 1) == b"x"
        os.close(fd)
    finally:
        os.close(r)
        os.close(w)


def test_no_metadata_no_key():
    m = process_state(pid=1, container_id="c", bundle="/b", annotations=None, metadata=None)
    assert "metadata" not in m and "annotations" not in m["state"]


def test_missing_listener_is_a_setup_error(tmp_path):
    r, w = os.pipe()
    try:
        with pytest.raises(SetupError) as e:
            send_to_listener(str(tmp_path / "nobody"), w, {"x": 1})
        assert str(tmp_path / "nobody") in str(e.value)
        assert "no such file" in str(e.value)
    finally:
        os.close(r)
        os.close(w)


def test_listener_callback_only_with_notify_and_path():
    notify = {"names": ["mkdir"], "action": "SCMP_ACT_NOTIFY"}
    kw = {"container_id": "c", "bundle": "/b", "annotations": None}
    assert listener_callback(None, **kw) is None
    assert listener_callback(Seccomp.from_dict({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x",
                                                "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}),
                             **kw) is None
    assert callable(listener_callback(Seccomp.from_dict({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/x",
                                                         "syscalls": [notify]}), **kw))


def test_recv_fd_takes_one_fd_cloexec():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    r, w = os.pipe()
    try:
        a.sendmsg([b"hello"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [r]).tobytes())])
        data, fd = recv_fd(b.fileno(), 64)
        assert data == b"hello" and fd is not None and fd not in (r, w)
        assert not os.get_inheritable(fd)
        os.close(fd)
        a.send(b"plain")
        assert recv_fd(b.fileno(), 64) == (b"plain", None)
    finally:
        for x in (r, w):
            os.close(x)
        a.close()
        b.close()


def test_process_state_of_an_exec_process_is_runcs():
    m = process_state(pid=77, container_id="c", bundle="/b", annotations={"k": "v"}, metadata="md", init_pid=5)
    assert m["pid"] == 77 and m["fds"] == ["seccompFd"] and m["metadata"] == "md"
    assert m["state"] == {"ociVersion": m["ociVersion"], "id": "c", "status": "running", "pid": 5,
                          "bundle": "/b", "annotations": {"k": "v"}}
    init = process_state(pid=5, container_id="c", bundle="/b", annotations=None, metadata=None)
    assert init["state"]["status"] == "creating" and init["state"]["pid"] == init["pid"] == 5
    assert "metadata" not in init and "annotations" not in init["state"]

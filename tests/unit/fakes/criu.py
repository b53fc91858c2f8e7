"""A stand-in for ``criu swrk FD`` in unit tests of ocirun.criu.swrk: it speaks
CRIU's RPC (through ocirun.criu.rpc) and plays the scenario named by
$FAKE_CRIU_SCENARIO. It writes the requests it got to $FAKE_CRIU_LOG (JSON lines)."""

from __future__ import annotations

import array
import json
import os
import socket
import sys

from ocirun.criu import rpc

NOTIFY = rpc.REQ_TYPES["NOTIFY"]


def main() -> int:
    if sys.argv[1:2] == ["check"]:
        print(os.environ.get("FAKE_CRIU_CHECK", "Looks good."))
        return 0 if "FAKE_CRIU_CHECK" not in os.environ else 1
    assert sys.argv[1] == "swrk", sys.argv
    sock = socket.socket(fileno=int(sys.argv[2]))
    scenario = os.environ.get("FAKE_CRIU_SCENARIO", "ok")
    log = open(os.environ["FAKE_CRIU_LOG"], "a") if "FAKE_CRIU_LOG" in os.environ else None

    def recv() -> dict:
        data = sock.recv(1 << 16)
        if not data:
            sys.exit(0)
        req = rpc.decode("criu_req", data)
        if log:
            log.write(json.dumps(req) + "\n")
            log.flush()
        return req

    def send(resp: dict, fd: int | None = None) -> None:
        data = rpc.encode("criu_resp", resp)
        if fd is None:
            sock.send(data)
        else:
            sock.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd]).tobytes())])

    req = recv()
    kind = req["type"]
    if scenario == "die":
        sys.stderr.write("(00.001) Warning: nothing\nError (criu/kerndat.c:1): kerndat broke\nmore\n")
        return 3
    if scenario == "garbage":
        sock.send(b"\xff")
        return 0
    if scenario == "fail":
        send({"type": kind, "success": False, "cr_errno": 2})
        return 1
    if scenario == "failmsg":
        send({"type": kind, "success": False, "cr_errmsg": "no images here"})
        return 1
    if scenario == "exit-after-answer":
        send({"type": kind, "success": True})
        return 5
    if kind == rpc.REQ_TYPES["VERSION"]:
        major, minor = os.environ.get("FAKE_CRIU_VERSION", "3.17").split(".")[:2]
        send({"type": kind, "success": True, "version": {"major_number": int(major),
                                                         "minor_number": int(minor), "sublevel": 1}})
        return 0
    if kind == rpc.REQ_TYPES["FEATURE_CHECK"]:
        if scenario == "features-fail":
            send({"type": kind, "success": False})
            return 1
        send({"type": kind, "success": True,
              "features": {"mem_track": True, "lazy_pages": scenario != "no-lazy", "pidfd_store": True}})
        return 0
    if scenario in ("notify", "notify-fail"):
        send({"type": NOTIFY, "success": True, "notify": {"script": "setup-namespaces", "pid": 4321}})
        ack = recv()
        if not ack.get("notify_success"):
            send({"type": kind, "success": False, "cr_errno": 0})
            return 1
        r, w = os.pipe()
        os.write(w, b"the master")
        send({"type": NOTIFY, "success": True, "notify": {"script": "orphan-pts-master"}}, fd=r)
        os.close(r)
        os.close(w)
        ack = recv()
        send({"type": kind, "success": True, "restore": {"pid": 4321}})
        return 0
    if scenario == "pre-dump-waits":
        send({"type": kind, "success": True})
        recv()  # returns only at EOF (exits 0 then)
        return 0
    sys.stdout.write("chatter on stdout\n" * 10000)  # more than a pipe holds
    send({"type": kind, "success": True})
    return 0


if __name__ == "__main__":
    sys.exit(main())

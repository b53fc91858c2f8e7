"""ocirun.criu.rpc: the table against CRIU's rpc.proto, the bytes against Debian's
pycriu (protobuf's own encoder), and the wire format's corners."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from ocirun.criu import rpc

RPC_PROTO = Path("/usr/include/criu/rpc.proto")  # Debian's criu package
SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, where pycriu and python3-protobuf live

_ENUMS = {"criu_cg_mode", "criu_req_type", "criu_pre_dump_mode", "criu_network_lock_method"}
_PROTO_TYPES = {"int32": "int32", "uint32": "uint32", "bool": "bool", "string": "string"}


def _parse_proto(text: str) -> dict[str, dict[str, tuple[int, str, str]]]:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    text = re.sub(r"//[^\n]*", "", text)
    out: dict[str, dict[str, tuple[int, str, str]]] = {}
    for name, body in re.findall(r"message\s+(\w+)\s*\{(.*?)\}", text, flags=re.S):
        fields = {}
        for label, ftype, fname, number in re.findall(
                r"(required|optional|repeated)\s+(\w+)\s+(\w+)\s*=\s*(\d+)", body):
            kind = "enum" if ftype in _ENUMS else _PROTO_TYPES.get(ftype, ftype)
            fields[fname] = (int(number), kind, label)
        out[name] = fields
    return out


@pytest.mark.skipif(not RPC_PROTO.exists(), reason="criu's rpc.proto is not installed (apt-get install criu)")
def test_schema_is_criu_rpc_proto():
    assert _parse_proto(RPC_PROTO.read_text()) == rpc.SCHEMA


@pytest.mark.skipif(not RPC_PROTO.exists(), reason="criu's rpc.proto is not installed (apt-get install criu)")
def test_request_types_are_rpc_proto_enum():
    body = re.search(r"enum\s+criu_req_type\s*\{(.*?)\}", RPC_PROTO.read_text(), flags=re.S).group(1)
    assert {k: int(v) for k, v in re.findall(r"(\w+)\s*=\s*(\d+)", body)} == rpc.REQ_TYPES
    body = re.search(r"enum\s+criu_cg_mode\s*\{(.*?)\}", RPC_PROTO.read_text(), flags=re.S).group(1)
    assert {k: int(v) for k, v in re.findall(r"(\w+)\s*=\s*(\d+)", body)} == rpc.CG_MODES


def _pycriu_available() -> bool:
    try:
        return subprocess.run([SYSTEM_PYTHON, "-c", "import pycriu.rpc_pb2"], capture_output=True,
                              timeout=30).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


needs_pycriu = pytest.mark.skipif(not _pycriu_available(),
                                  reason="Debian's pycriu (criu, python3-protobuf) is not installed")

#: Builds each message with protobuf (json_format.ParseDict), prints its bytes in hex.
_PYCRIU_ENCODE = r"""
import json, sys
from google.protobuf import json_format
import pycriu.rpc_pb2 as r
for name, value in json.loads(sys.stdin.read()):
    msg = getattr(r, name)()
    json_format.ParseDict(value, msg)
    print(msg.SerializeToString().hex())
"""

SAMPLES = [
    ("criu_req", {"type": rpc.REQ_TYPES["VERSION"]}),
    ("criu_req", {"type": rpc.REQ_TYPES["FEATURE_CHECK"],
                  "features": {"mem_track": True, "lazy_pages": True, "pidfd_store": False}}),
    ("criu_req", {"type": rpc.REQ_TYPES["NOTIFY"], "notify_success": True}),
    ("criu_req", {"type": rpc.REQ_TYPES["DUMP"], "opts": {
        "images_dir_fd": 5, "pid": 4242, "leave_running": True, "log_level": 4, "log_file": "dump.log",
        "root": "/var/lib/ctr/rootfs", "notify_scripts": True, "manage_cgroups": True,
        "manage_cgroups_mode": rpc.CG_MODES["SOFT"], "shell_job": False, "orphan_pts_master": True,
        "ext_mnt": [{"key": "/data", "val": "/data"}, {"key": "/proc/kcore", "val": "/dev/null"}],
        "external": ["net[4026532000]:extRootNetNS"], "empty_ns": 0x40000000,
        "freeze_cgroup": "/sys/fs/cgroup/ctr", "parent_img": "../parent", "track_mem": True,
        "work_dir_fd": -1, "ps": {"address": "10.0.0.1", "port": 27}, "config_file": "/etc/criu/x.conf",
        "lazy_pages": False, "auto_dedup": True, "ghost_limit": 0xFFFFFFFF}}),
    ("criu_req", {"type": rpc.REQ_TYPES["RESTORE"], "opts": {
        "images_dir_fd": 7, "rst_sibling": True, "evasive_devices": True,
        "inherit_fd": [{"key": "pipe:[1234]", "fd": 1}, {"key": "extRootNetNS", "fd": 9}],
        "cg_root": [{"path": "/ctr"}, {"ctrl": "memory", "path": "/x"}],
        "join_ns": [{"ns": "ipc", "ns_file": "/proc/1/ns/ipc"}],
        "veths": [{"if_in": "eth0", "if_out": "veth0"}], "lsm_profile": "apparmor:x"}}),
    ("criu_resp", {"type": rpc.REQ_TYPES["NOTIFY"], "success": True,
                   "notify": {"script": "setup-namespaces", "pid": 31337}}),
    ("criu_resp", {"type": rpc.REQ_TYPES["DUMP"], "success": False, "cr_errno": 2,
                   "cr_errmsg": "something broke"}),
    ("criu_resp", {"type": rpc.REQ_TYPES["VERSION"], "success": True,
                   "version": {"major_number": 3, "minor_number": 17, "sublevel": 1, "gitid": "abc"}}),
    ("criu_resp", {"type": rpc.REQ_TYPES["RESTORE"], "success": True, "restore": {"pid": 77},
                   "status": -1}),
]


@needs_pycriu
def test_bytes_are_protobufs():
    p = subprocess.run([SYSTEM_PYTHON, "-c", _PYCRIU_ENCODE], input=json.dumps(SAMPLES), text=True,
                       capture_output=True, timeout=60)
    assert p.returncode == 0, p.stderr
    theirs = p.stdout.split()
    assert len(theirs) == len(SAMPLES)
    for (name, value), hexed in zip(SAMPLES, theirs, strict=True):
        assert rpc.encode(name, value).hex() == hexed, name
        assert rpc.decode(name, bytes.fromhex(hexed)) == value


def test_round_trip_and_field_order():
    for name, value in SAMPLES:
        assert rpc.decode(name, rpc.encode(name, value)) == value
    # fields go out in number order whatever the dict's order
    assert rpc.encode("criu_notify", {"pid": 1, "script": "x"}) == bytes.fromhex("0a01781001")


def test_negative_int32_is_ten_bytes_and_comes_back():
    data = rpc.encode("inherit_fd", {"key": "k", "fd": -1})
    assert data == bytes.fromhex("0a016b10ffffffffffffffffff01")
    assert rpc.decode("inherit_fd", data) == {"key": "k", "fd": -1}


def test_unknown_fields_of_every_wire_type_are_skipped():
    known = rpc.encode("criu_notify", {"script": "post-restore", "pid": 9})
    extra = bytes.fromhex("b8060a")  # field 103, varint 10
    extra += bytes.fromhex("c20603616263")  # field 104, bytes "abc"
    extra += bytes.fromhex("c9060102030405060708")  # field 105, 64-bit
    extra += bytes.fromhex("d50601020304")  # field 106, 32-bit
    assert rpc.decode("criu_notify", extra + known) == {"script": "post-restore", "pid": 9}


def test_repeated_message_field_given_twice_merges():
    one = rpc.encode("criu_resp", {"type": 6, "success": True, "notify": {"script": "a"}})
    two = rpc.encode("criu_notify", {"pid": 5})
    data = one + bytes([5 << 3 | 2, len(two)]) + two
    assert rpc.decode("criu_resp", data)["notify"] == {"script": "a", "pid": 5}


@pytest.mark.parametrize("data", [
    b"\x08",  # a key, no value
    b"\x08\x80",  # an unfinished varint
    b"\x12\x05ab",  # a length past the end
    b"\x0f",  # wire type 7
    b"\x08\x80\x80\x80\x80\x80\x80\x80\x80\x80\x80\x01",  # a varint of 11 bytes
])
def test_broken_bytes_are_rpc_errors(data):
    with pytest.raises(rpc.RpcError):
        rpc.decode("criu_resp", data)


def test_required_fields():
    with pytest.raises(rpc.RpcError, match="success"):
        rpc.decode("criu_resp", rpc.encode("criu_req", {"type": 1}))
    with pytest.raises(ValueError, match="criu_opts.images_dir_fd is required"):
        rpc.encode("criu_req", {"type": 1, "opts": {"pid": 3}})


@pytest.mark.parametrize("message,value,error", [
    ("criu_req", {"type": 1, "nope": 1}, KeyError),
    ("criu_req", {"type": "DUMP"}, TypeError),
    ("criu_req", {"type": 1, "keep_open": 1}, TypeError),
    ("criu_req", {"type": 1, "pid": -1}, ValueError),
    ("criu_req", {"type": 1 << 31}, ValueError),
    ("criu_opts", {"images_dir_fd": 1, "external": "net[1]:x"}, TypeError),
    ("criu_opts", {"images_dir_fd": 1, "ps": "x"}, TypeError),
    ("criu_opts", {"images_dir_fd": 1, "root": 3}, TypeError),
])
def test_values_of_the_wrong_kind_are_refused(message, value, error):
    with pytest.raises(error):
        rpc.encode(message, value)


def test_strings_keep_undecodable_bytes():
    value = {"key": "/data/\udcff", "val": "/x"}
    assert rpc.encode("ext_mount_map", value) == b"\x0a\x07/data/\xff\x12\x02/x"
    assert rpc.decode("ext_mount_map", rpc.encode("ext_mount_map", value)) == value

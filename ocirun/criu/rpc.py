"""CRIU's RPC messages (``rpc.proto``), encoded and decoded without protobuf.

``criu swrk`` speaks protocol buffers (proto2) over a SOCK_SEQPACKET socket:
one ``criu_req`` or ``criu_resp`` per packet. The messages are flat and few,
and proto2's wire format for them is three things: varints (int32, uint32,
bool, enum), length-delimited bytes (strings, nested messages) and field keys
``(number << 3) | wire_type``. So instead of the ``protobuf`` package and
generated code (a dependency, and ~30 ms of imports), the schema is the table
below, transcribed from CRIU 3.17's ``rpc.proto`` (Debian's criu package ships
it as /usr/include/criu/rpc.proto; tests/unit/test_criu_rpc.py checks the table
against that file and the bytes against Debian's ``pycriu``).

Messages are plain dicts keyed by field name; a repeated field is a list.
Fields are written in field-number order, as protobuf's own serializers do.
Unknown fields in what CRIU sends (a newer CRIU) are skipped, as proto2 says.
"""

from __future__ import annotations

from collections.abc import Mapping

TYPE_CHECKING = False  # typing costs every import ~5 ms (checkpoint and restore start cold too)
if TYPE_CHECKING:
    from typing import Any

#: criu_req_type
REQ_TYPES = {
    "EMPTY": 0, "DUMP": 1, "RESTORE": 2, "CHECK": 3, "PRE_DUMP": 4, "PAGE_SERVER": 5,
    "NOTIFY": 6, "CPUINFO_DUMP": 7, "CPUINFO_CHECK": 8, "FEATURE_CHECK": 9, "VERSION": 10,
    "WAIT_PID": 11, "PAGE_SERVER_CHLD": 12, "SINGLE_PRE_DUMP": 13,
}
REQ_TYPE_NAMES = {v: k for k, v in REQ_TYPES.items()}

#: criu_cg_mode (runc's --manage-cgroups-mode values are the lower-case names)
CG_MODES = {"IGNORE": 0, "CG_NONE": 1, "PROPS": 2, "SOFT": 3, "FULL": 4, "STRICT": 5, "DEFAULT": 6}

_SCALARS = frozenset({"int32", "uint32", "bool", "string", "enum"})

#: message -> field name -> (number, type, label). The type is a scalar kind or a message name.
SCHEMA: dict[str, dict[str, tuple[int, str, str]]] = {
    "criu_page_server_info": {
        "address": (1, "string", "optional"),
        "port": (2, "int32", "optional"),
        "pid": (3, "int32", "optional"),
        "fd": (4, "int32", "optional"),
    },
    "criu_veth_pair": {
        "if_in": (1, "string", "required"),
        "if_out": (2, "string", "required"),
    },
    "ext_mount_map": {
        "key": (1, "string", "required"),
        "val": (2, "string", "required"),
    },
    "join_namespace": {
        "ns": (1, "string", "required"),
        "ns_file": (2, "string", "required"),
        "extra_opt": (3, "string", "optional"),
    },
    "inherit_fd": {
        "key": (1, "string", "required"),
        "fd": (2, "int32", "required"),
    },
    "cgroup_root": {
        "ctrl": (1, "string", "optional"),
        "path": (2, "string", "required"),
    },
    "unix_sk": {
        "inode": (1, "uint32", "required"),
    },
    "criu_opts": {
        "images_dir_fd": (1, "int32", "required"),
        "pid": (2, "int32", "optional"),
        "leave_running": (3, "bool", "optional"),
        "ext_unix_sk": (4, "bool", "optional"),
        "tcp_established": (5, "bool", "optional"),
        "evasive_devices": (6, "bool", "optional"),
        "shell_job": (7, "bool", "optional"),
        "file_locks": (8, "bool", "optional"),
        "log_level": (9, "int32", "optional"),
        "log_file": (10, "string", "optional"),
        "ps": (11, "criu_page_server_info", "optional"),
        "notify_scripts": (12, "bool", "optional"),
        "root": (13, "string", "optional"),
        "parent_img": (14, "string", "optional"),
        "track_mem": (15, "bool", "optional"),
        "auto_dedup": (16, "bool", "optional"),
        "work_dir_fd": (17, "int32", "optional"),
        "link_remap": (18, "bool", "optional"),
        "veths": (19, "criu_veth_pair", "repeated"),
        "cpu_cap": (20, "uint32", "optional"),
        "force_irmap": (21, "bool", "optional"),
        "exec_cmd": (22, "string", "repeated"),
        "ext_mnt": (23, "ext_mount_map", "repeated"),
        "manage_cgroups": (24, "bool", "optional"),
        "cg_root": (25, "cgroup_root", "repeated"),
        "rst_sibling": (26, "bool", "optional"),
        "inherit_fd": (27, "inherit_fd", "repeated"),
        "auto_ext_mnt": (28, "bool", "optional"),
        "ext_sharing": (29, "bool", "optional"),
        "ext_masters": (30, "bool", "optional"),
        "skip_mnt": (31, "string", "repeated"),
        "enable_fs": (32, "string", "repeated"),
        "unix_sk_ino": (33, "unix_sk", "repeated"),
        "manage_cgroups_mode": (34, "enum", "optional"),
        "ghost_limit": (35, "uint32", "optional"),
        "irmap_scan_paths": (36, "string", "repeated"),
        "external": (37, "string", "repeated"),
        "empty_ns": (38, "uint32", "optional"),
        "join_ns": (39, "join_namespace", "repeated"),
        "cgroup_props": (41, "string", "optional"),
        "cgroup_props_file": (42, "string", "optional"),
        "cgroup_dump_controller": (43, "string", "repeated"),
        "freeze_cgroup": (44, "string", "optional"),
        "timeout": (45, "uint32", "optional"),
        "tcp_skip_in_flight": (46, "bool", "optional"),
        "weak_sysctls": (47, "bool", "optional"),
        "lazy_pages": (48, "bool", "optional"),
        "status_fd": (49, "int32", "optional"),
        "orphan_pts_master": (50, "bool", "optional"),
        "config_file": (51, "string", "optional"),
        "tcp_close": (52, "bool", "optional"),
        "lsm_profile": (53, "string", "optional"),
        "tls_cacert": (54, "string", "optional"),
        "tls_cacrl": (55, "string", "optional"),
        "tls_cert": (56, "string", "optional"),
        "tls_key": (57, "string", "optional"),
        "tls": (58, "bool", "optional"),
        "tls_no_cn_verify": (59, "bool", "optional"),
        "cgroup_yard": (60, "string", "optional"),
        "pre_dump_mode": (61, "enum", "optional"),
        "pidfd_store_sk": (62, "int32", "optional"),
        "lsm_mount_context": (63, "string", "optional"),
        "network_lock": (64, "enum", "optional"),
        "mntns_compat_mode": (65, "bool", "optional"),
    },
    "criu_dump_resp": {
        "restored": (1, "bool", "optional"),
    },
    "criu_restore_resp": {
        "pid": (1, "int32", "required"),
    },
    "criu_notify": {
        "script": (1, "string", "optional"),
        "pid": (2, "int32", "optional"),
    },
    "criu_features": {
        "mem_track": (1, "bool", "optional"),
        "lazy_pages": (2, "bool", "optional"),
        "pidfd_store": (3, "bool", "optional"),
    },
    "criu_req": {
        "type": (1, "enum", "required"),
        "opts": (2, "criu_opts", "optional"),
        "notify_success": (3, "bool", "optional"),
        "keep_open": (4, "bool", "optional"),
        "features": (5, "criu_features", "optional"),
        "pid": (6, "uint32", "optional"),
    },
    "criu_resp": {
        "type": (1, "enum", "required"),
        "success": (2, "bool", "required"),
        "dump": (3, "criu_dump_resp", "optional"),
        "restore": (4, "criu_restore_resp", "optional"),
        "notify": (5, "criu_notify", "optional"),
        "ps": (6, "criu_page_server_info", "optional"),
        "cr_errno": (7, "int32", "optional"),
        "features": (8, "criu_features", "optional"),
        "cr_errmsg": (9, "string", "optional"),
        "version": (10, "criu_version", "optional"),
        "status": (11, "int32", "optional"),
    },
    "criu_version": {
        "major_number": (1, "int32", "required"),
        "minor_number": (2, "int32", "required"),
        "gitid": (3, "string", "optional"),
        "sublevel": (4, "int32", "optional"),
        "extra": (5, "int32", "optional"),
        "name": (6, "string", "optional"),
    },
}

_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5
_U64 = (1 << 64) - 1


class RpcError(ValueError):
    """A message that is not what rpc.proto describes (from CRIU: a broken peer)."""


# --------------------------------------------------------------------------- encoding


def _varint(n: int, out: bytearray) -> None:
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return


def _scalar(kind: str, value: Any, where: str) -> int | bytes:
    """The varint value or the bytes of one scalar."""
    if kind == "string":
        if isinstance(value, str):
            return value.encode("utf-8", "surrogateescape")
        if isinstance(value, bytes):
            return value
        raise TypeError(f"{where}: expected str, got {type(value).__name__}")
    if kind == "bool":
        if not isinstance(value, bool):
            raise TypeError(f"{where}: expected bool, got {type(value).__name__}")
        return int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"{where}: expected int, got {type(value).__name__}")
    if kind == "uint32":
        if not 0 <= value < 1 << 32:
            raise ValueError(f"{where}: {value} is not a uint32")
        return value
    # int32 and enum: a negative value is sign-extended to 64 bits (ten bytes)
    if not -(1 << 31) <= value < 1 << 31:
        raise ValueError(f"{where}: {value} is not an int32")
    return value & _U64


def encode(message: str, value: Mapping[str, Any]) -> bytes:
    """``value`` (field name -> value) as the bytes of rpc.proto's ``message``."""
    out = bytearray()
    _encode_into(message, value, out)
    return bytes(out)


def _encode_into(message: str, value: Mapping[str, Any], out: bytearray) -> None:
    fields = SCHEMA[message]
    unknown = set(value) - set(fields)
    if unknown:
        raise KeyError(f"{message}: no field {sorted(unknown)[0]!r}")
    for name, (number, kind, label) in sorted(fields.items(), key=lambda kv: kv[1][0]):
        if name not in value or value[name] is None:
            if label == "required":
                raise ValueError(f"{message}.{name} is required")
            continue
        items = value[name]
        if label == "repeated":
            if isinstance(items, str | bytes | Mapping):
                raise TypeError(f"{message}.{name}: a repeated field takes a list")
        else:
            items = (items,)
        for item in items:
            where = f"{message}.{name}"
            if kind in _SCALARS:
                encoded = _scalar(kind, item, where)
                if isinstance(encoded, bytes):
                    _varint(number << 3 | _LEN, out)
                    _varint(len(encoded), out)
                    out += encoded
                else:
                    _varint(number << 3 | _VARINT, out)
                    _varint(encoded, out)
            else:
                if not isinstance(item, Mapping):
                    raise TypeError(f"{where}: expected a {kind} (a mapping)")
                inner = bytearray()
                _encode_into(kind, item, inner)
                _varint(number << 3 | _LEN, out)
                _varint(len(inner), out)
                out += inner


# --------------------------------------------------------------------------- decoding


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise RpcError("truncated varint")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result & _U64, pos
        shift += 7
        if shift >= 70:
            raise RpcError("varint too long")


def decode(message: str, data: bytes) -> dict[str, Any]:
    """The fields of rpc.proto's ``message`` in ``data``; repeated fields are lists.

    Raises RpcError for bytes that are not such a message (or lack a required field).
    """
    fields = {number: (name, kind, label) for name, (number, kind, label) in SCHEMA[message].items()}
    out: dict[str, Any] = {}
    pos, end = 0, len(data)
    while pos < end:
        key, pos = _read_varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == _VARINT:
            raw, pos = _read_varint(data, pos)
            payload: int | bytes = raw
        elif wire == _LEN:
            length, pos = _read_varint(data, pos)
            if pos + length > end:
                raise RpcError(f"{message}: field {number} runs past the end")
            payload, pos = data[pos:pos + length], pos + length
        elif wire == _I64:
            payload, pos = data[pos:pos + 8], pos + 8
        elif wire == _I32:
            payload, pos = data[pos:pos + 4], pos + 4
        else:
            raise RpcError(f"{message}: wire type {wire} of field {number}")
        if pos > end:
            raise RpcError(f"{message}: field {number} runs past the end")
        if number not in fields:
            continue  # a field this table does not know (a newer CRIU): skipped
        name, kind, label = fields[number]
        value = _decode_value(message, name, kind, payload)
        if label == "repeated":
            out.setdefault(name, []).append(value)
        elif kind not in _SCALARS and name in out:
            out[name].update(value)  # proto2: a repeated non-repeated message merges
        else:
            out[name] = value
    for name, (_number, _kind, label) in SCHEMA[message].items():
        if label == "required" and name not in out:
            raise RpcError(f"{message}: required field {name} is missing")
    return out


def _decode_value(message: str, name: str, kind: str, payload: int | bytes) -> Any:
    where = f"{message}.{name}"
    if kind in _SCALARS:
        if kind == "string":
            if not isinstance(payload, bytes):
                raise RpcError(f"{where}: expected bytes")
            return payload.decode("utf-8", "surrogateescape")
        if not isinstance(payload, int):
            raise RpcError(f"{where}: expected a varint")
        if kind == "bool":
            return payload != 0
        if kind == "uint32":
            return payload & 0xFFFFFFFF
        value = payload & 0xFFFFFFFF  # int32, enum: the low 32 bits, signed
        return value - (1 << 32) if value & 0x80000000 else value
    if not isinstance(payload, bytes):
        raise RpcError(f"{where}: expected a message")
    return decode(kind, payload)

"""`ocirun state` and `ocirun list`: read-only, lock-free, and fast.

Output is byte-for-byte runc 1.1's where it can be: the same keys in the
same order, Go's JSON escaping, ``state`` indented by two spaces with no
trailing newline, ``list -f json`` compact with ``null`` for no containers,
the table laid out as Go's text/tabwriter (minwidth 12, padding 3) lays it.
``pid`` is 0 once the container has stopped, as runc prints it.

Speed: this path imports the store, the status rules and /proc parsing only
-- never the validator (jsonschema), pyroute2, cffi or the C shim.
"""

from __future__ import annotations

import os
import sys

from ocirun.cli import GlobalOptions
from ocirun.errors import ContainerNotFound, OcirunError
from ocirun.util import jsonio

TYPE_CHECKING = False  # argparse is only for annotations (importing it costs a call ~5 ms)
if TYPE_CHECKING:
    import argparse

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from ocirun.store import ContainerRecord, Store


def cmd_state(g: GlobalOptions, args: argparse.Namespace) -> int:
    from ocirun.store import Store

    store = Store(g.root)
    record = store.load(args.id)
    # runc's `state` leaves owner empty (only `list` looks it up); so do we
    _write(_go_json(state_object(record, _status(store, record), owner=""), indent=2))
    return 0


def cmd_list(g: GlobalOptions, args: argparse.Namespace) -> int:
    from ocirun.store import Store

    states = list_states(Store(g.root))
    if args.quiet:
        _write("".join(s["id"] + "\n" for s in states))
    elif args.format == "json":
        _write(_go_json(states or None) + "\n")
    else:
        _write(format_table(states))
    return 0


def state_object(record: ContainerRecord, status: str, owner: str | None = None) -> dict[str, Any]:
    """runc's ``containerState``: the OCI state plus rootfs, created and owner.

    Keys in runc's order; ``annotations`` left out when empty (Go's omitempty).
    """
    out: dict[str, Any] = {
        "ociVersion": record.oci_version,
        "id": record.id,
        "pid": 0 if status == "stopped" else record.pid,
        "status": status,
        "bundle": record.bundle,
        "rootfs": record.rootfs,
        "created": go_time(record.created),
    }
    if record.annotations:
        out["annotations"] = dict(record.annotations)
    out["owner"] = record.owner if owner is None else owner
    return out


def list_states(store: Store) -> list[dict[str, Any]]:
    """The state of every complete container under the root, sorted by id.

    A directory without state.json (a create in progress) is left out
    silently; one whose state cannot be read is reported on stderr and left
    out, as runc does.
    """
    states = []
    for container_id in store.list_ids():
        try:
            record = store.load(container_id)
            status = _status(store, record)
        except ContainerNotFound:
            continue
        except OcirunError as exc:
            sys.stderr.write(f"load container {container_id}: {exc}\n")
            continue
        owner = record.owner or _dir_owner(store.dir_path(container_id))
        states.append(state_object(record, status, owner))
    return states


def format_table(states: list[dict[str, Any]]) -> str:
    """runc's table: ``ID PID STATUS BUNDLE CREATED OWNER``, aligned as Go's
    ``tabwriter.NewWriter(w, 12, 1, 3, ' ', 0)`` aligns it: every column but
    the last as wide as its widest cell plus 3, and at least 12."""
    rows = [["ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"]]
    rows += [[s["id"], str(s["pid"]), s["status"], s["bundle"], s["created"], s["owner"]]
             for s in states]
    widths = [max(12, max(len(row[i]) for row in rows) + 3) for i in range(5)]
    return "".join(
        "".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + row[5] + "\n"
        for row in rows
    )


def go_time(created: str) -> str:
    """An RFC 3339 time as Go's ``time.RFC3339Nano`` prints it: trailing zeros
    of the fraction dropped (``.500000000Z`` -> ``.5Z``, ``.000000000Z`` -> ``Z``)."""
    dot = created.find(".")
    if dot < 0:
        return created
    end = dot + 1
    while end < len(created) and created[end].isdigit():
        end += 1
    fraction = created[dot + 1 : end].rstrip("0")
    return created[:dot] + ("." + fraction if fraction else "") + created[end:]


def _status(store: Store, record: ContainerRecord) -> str:
    from ocirun.container.common import is_frozen
    from ocirun.state import current_status

    return current_status(store, record, is_frozen=is_frozen)


def _dir_owner(path: str) -> str:
    """The user owning ``path``, as runc's list shows it (``#UID`` if unnamed)."""
    try:
        uid = os.stat(path).st_uid
    except OSError:
        return ""
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"#{uid}"


# Go's encoding/json escapes these even inside strings (HTML safety); Python does not.
_GO_ESCAPES = str.maketrans({"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                             "\u2028": "\\u2028", "\u2029": "\\u2029"})


def _go_json(value: object, indent: int | None = None) -> str:
    """JSON as Go's encoding/json writes it: UTF-8 (not \\u escapes), HTML characters escaped."""
    if indent is None:
        text = jsonio.dumps(value, ensure_ascii=False, separators=(",", ":"))
    else:
        text = jsonio.dumps(value, ensure_ascii=False, indent=indent)
    # <, >, & and U+2028/9 can only occur inside JSON strings, so this never touches syntax
    return text.translate(_GO_ESCAPES)


def _write(text: str) -> None:
    """Write UTF-8 whatever the locale says (Go writes bytes)."""
    out = sys.stdout
    buffer = getattr(out, "buffer", None)
    if buffer is None:  # a text-only stream (a test's StringIO)
        out.write(text)
        out.flush()
        return
    out.flush()
    buffer.write(text.encode("utf-8"))
    buffer.flush()

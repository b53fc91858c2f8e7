"""`ocirun state` and `ocirun list`: schema-valid, runc's formats, and a light import path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing
import referencing.jsonschema

from ocirun.cli import main
from ocirun.container.query import format_table, go_time
from ocirun.linux import proc
from ocirun.store import ContainerRecord, Store

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


@pytest.fixture(scope="module")
def state_schema() -> jsonschema.Draft4Validator:
    resources = []
    for p in SCHEMAS.glob("*.json"):
        resources.append((p.name, referencing.Resource.from_contents(
            json.loads(p.read_text()), default_specification=referencing.jsonschema.DRAFT4)))
    registry = referencing.Registry().with_resources(resources)
    schema = json.loads((SCHEMAS / "state-schema.json").read_text())
    return jsonschema.Draft4Validator(schema, registry=registry)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


def add(root: Path, cid: str, *, pid: int, start: int, fifo: bool = False, **kw) -> ContainerRecord:
    store = Store(str(root))
    store.claim(cid)
    if fifo:
        os.mkfifo(store.exec_fifo_path(cid))
    fields: dict[str, Any] = dict(id=cid, pid=pid, init_start_time=start, bundle=f"/bundles/{cid}",
                  rootfs=f"/bundles/{cid}/rootfs", created="2024-05-06T07:08:09.123456789Z",
                  owner="root", annotations={})
    fields.update(kw)
    rec = ContainerRecord(**fields)
    store.save(rec)
    return rec


def live(root: Path, cid: str, **kw) -> ContainerRecord:
    """A container whose 'init' is this test process: alive, with the right start time."""
    start = proc.start_time(os.getpid())
    assert start is not None
    return add(root, cid, pid=os.getpid(), start=start, **kw)


@pytest.fixture
def dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def run(capsysbinary, *argv: str) -> tuple[int, bytes, bytes]:
    code = main(list(argv))
    out, err = capsysbinary.readouterr()
    return code, out, err


# -- state -------------------------------------------------------------------------

def test_state_of_a_created_container(root, capsysbinary, state_schema):
    live(root, "c1", fifo=True, annotations={"a": "b"})
    code, out, err = run(capsysbinary, "--root", str(root), "state", "c1")
    assert (code, err) == (0, b"")
    doc = json.loads(out)
    state_schema.validate(doc)
    # runc's shape: keys in its order, two-space indent, no trailing newline
    assert list(doc) == ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created",
                         "annotations", "owner"]
    assert out == (
        '{\n  "ociVersion": "1.3.0",\n  "id": "c1",\n  "pid": PID,\n  "status": "created",\n'
        '  "bundle": "/bundles/c1",\n  "rootfs": "/bundles/c1/rootfs",\n'
        '  "created": "2024-05-06T07:08:09.123456789Z",\n  "annotations": {\n    "a": "b"\n  },\n'
        '  "owner": ""\n}'  # runc's `state` never fills owner in (`list` does)
    ).replace("PID", str(os.getpid())).encode()


def test_state_of_a_running_container_omits_empty_annotations(root, capsysbinary, state_schema):
    live(root, "c1")
    code, out, _ = run(capsysbinary, "--root", str(root), "state", "c1")
    doc = json.loads(out)
    state_schema.validate(doc)
    assert code == 0 and doc["status"] == "running" and doc["pid"] == os.getpid()
    assert "annotations" not in doc


def test_state_of_a_stopped_container_prints_pid_0(root, capsysbinary, state_schema, dead_pid):
    add(root, "c1", pid=dead_pid, start=1, fifo=True)
    code, out, _ = run(capsysbinary, "--root", str(root), "state", "c1")
    doc = json.loads(out)
    state_schema.validate(doc)
    assert code == 0 and (doc["status"], doc["pid"]) == ("stopped", 0)


def test_state_escapes_as_go_does(root, capsysbinary, state_schema):
    live(root, "c1", annotations={"html": "<a&b>", "utf8": "é✓", "sep": "\u2028"})
    _, out, _ = run(capsysbinary, "--root", str(root), "state", "c1")
    assert b'"html": "\\u003ca\\u0026b\\u003e"' in out
    assert '"utf8": "é✓"'.encode() in out  # raw UTF-8, as Go writes it
    assert b'"sep": "\\u2028"' in out
    doc = json.loads(out)
    state_schema.validate(doc)
    assert doc["annotations"] == {"html": "<a&b>", "utf8": "é✓", "sep": "\u2028"}


@pytest.mark.parametrize("setup", ["no root", "no dir", "no state.json", "creator gone", "creator alive",
                                   "restorer gone"])
def test_state_of_a_missing_container(root, capsysbinary, setup):
    """No directory: runc's words. A directory without state.json: a create still
    running (its creating.json names a live creator) or one that was interrupted
    (#11 item 7), said as such."""
    from ocirun.linux.proc import start_time

    if setup != "no root":
        root.mkdir()
    if setup not in ("no root", "no dir"):
        store = Store(str(root))
        store.claim("c1")
        if setup != "no state.json":
            me = os.getpid()
            gone = setup in ("creator gone", "restorer gone")
            intent = {"creator": {"pid": me, "startTime": start_time(me) + gone}}
            if setup == "restorer gone":
                intent["verb"] = "restore"  # written by restore (ocirun.container.restore)
            store.save_intent("c1", intent)
    code, out, err = run(capsysbinary, "--root", str(root), "state", "c1")
    assert (code, out) == (1, b"")
    if setup in ("no root", "no dir"):
        assert err == b"container does not exist: c1\n"
    elif setup == "creator alive":
        assert err == b"container c1 is still being created (no state yet)\n"
    elif setup == "no state.json":  # no creating.json either: a create or a delete interrupted
        assert err == (b"container c1 is incomplete (an interrupted create or delete left it); "
                       b"`delete --force c1` removes what it left\n")
    else:
        verb = b"restore" if setup == "restorer gone" else b"create"
        assert err == (b"container c1 was not fully created (its " + verb + b" was interrupted); "
                       b"`delete --force c1` removes what it left\n")
    assert root.exists() == (setup != "no root")  # a read never creates the root


def test_state_of_an_invalid_id(root, capsysbinary):
    code, _, err = run(capsysbinary, "--root", str(root), "state", "../etc")
    assert code == 1 and err.startswith(b"invalid container id format")


def test_state_of_a_corrupt_record(root, capsysbinary):
    Store(str(root)).claim("c1")
    (root / "c1" / "state.json").write_text("{")
    code, out, err = run(capsysbinary, "--root", str(root), "state", "c1")
    assert (code, out) == (1, b"") and b"corrupt state" in err


# -- list ----------------------------------------------------------------------------

@pytest.fixture
def three(root, dead_pid):
    live(root, "web", fifo=True, annotations={"k": "v"})
    live(root, "db", owner="", created="2024-05-06T07:08:09.100000000Z")
    add(root, "old", pid=dead_pid, start=1)
    Store(str(root)).claim("half")  # create in progress: not listed


def test_list_json(root, capsysbinary, state_schema, three):
    code, out, err = run(capsysbinary, "--root", str(root), "list", "-f", "json")
    assert (code, err) == (0, b"")
    assert out.endswith(b"]\n") and b"\n" not in out[:-1] and b": " not in out  # compact, one line
    docs = json.loads(out)
    for doc in docs:
        state_schema.validate(doc)
        assert list(doc)[:7] == ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created"]
        assert list(doc)[-1] == "owner"
    me = os.getpid()
    assert [(d["id"], d["pid"], d["status"]) for d in docs] == [
        ("db", me, "running"), ("old", 0, "stopped"), ("web", me, "created")]
    by_id = {d["id"]: d for d in docs}
    assert by_id["web"]["annotations"] == {"k": "v"} and "annotations" not in by_id["db"]
    assert by_id["db"]["created"] == "2024-05-06T07:08:09.1Z"  # Go's RFC3339Nano trims zeros
    import pwd

    assert by_id["db"]["owner"] == pwd.getpwuid(os.getuid()).pw_name  # the state dir's owner
    assert by_id["web"]["owner"] == "root"


def test_list_table(root, capsysbinary, three):
    code, out, _ = run(capsysbinary, "--root", str(root), "list")
    assert code == 0
    lines = out.decode().splitlines()
    me = str(os.getpid())
    import pwd

    db_owner = pwd.getpwuid(os.getuid()).pw_name
    # tabwriter(minwidth 12, padding 3): each column as wide as its widest cell + 3, at least 12
    w_id, w_pid, w_status, w_bundle, w_created = 12, max(12, len(me) + 3), 12, 15, 33
    expected = [
        ("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER"),
        ("db", me, "running", "/bundles/db", "2024-05-06T07:08:09.1Z", db_owner),
        ("old", "0", "stopped", "/bundles/old", "2024-05-06T07:08:09.123456789Z", "root"),
        ("web", me, "created", "/bundles/web", "2024-05-06T07:08:09.123456789Z", "root"),
    ]
    assert lines == [
        r[0].ljust(w_id) + r[1].ljust(w_pid) + r[2].ljust(w_status) + r[3].ljust(w_bundle)
        + r[4].ljust(w_created) + r[5]
        for r in expected
    ]
    assert lines[0].startswith("ID          PID")
    assert lines[0].endswith("BUNDLE" + " " * 9 + "CREATED" + " " * 26 + "OWNER")


def test_format_table_matches_runc_byte_for_byte():
    # captured from runc 1.1.5: `runc list` with one created container
    state = {"id": "tst", "pid": 20447, "status": "created", "bundle": "/tmp/rb",
             "created": "2026-11-29T04:54:07.971559187Z", "owner": "root"}
    assert format_table([state]) == (
        "ID          PID         STATUS      BUNDLE      CREATED                          OWNER\n"
        "tst         20447       created     /tmp/rb     2026-11-29T04:54:07.971559187Z   root\n"
    )


def test_list_quiet(root, capsysbinary, three):
    code, out, _ = run(capsysbinary, "--root", str(root), "list", "-q")
    assert (code, out) == (0, b"db\nold\nweb\n")


@pytest.mark.parametrize("make_root", [False, True])
def test_list_with_no_containers(root, capsysbinary, make_root):
    if make_root:
        root.mkdir()
    assert run(capsysbinary, "--root", str(root), "list", "-f", "json") == (0, b"null\n", b"")
    assert run(capsysbinary, "--root", str(root), "list", "-q") == (0, b"", b"")
    code, out, _ = run(capsysbinary, "--root", str(root), "list")
    assert (code, out) == (0, b"ID          PID         STATUS      BUNDLE      CREATED     OWNER\n")
    assert root.exists() == make_root


def test_list_reports_and_skips_a_corrupt_record(root, capsysbinary):
    live(root, "good")
    Store(str(root)).claim("bad")
    (root / "bad" / "state.json").write_text("not json")
    code, out, err = run(capsysbinary, "--root", str(root), "list", "-q")
    assert (code, out) == (0, b"good\n")
    assert err.startswith(b"load container bad: corrupt state")


@pytest.mark.parametrize("created, expected", [
    ("2024-05-06T07:08:09.123456789Z", "2024-05-06T07:08:09.123456789Z"),
    ("2024-05-06T07:08:09.120000000Z", "2024-05-06T07:08:09.12Z"),
    ("2024-05-06T07:08:09.000000000Z", "2024-05-06T07:08:09Z"),
    ("2024-05-06T07:08:09Z", "2024-05-06T07:08:09Z"),
    ("2024-05-06T07:08:09.500+02:00", "2024-05-06T07:08:09.5+02:00"),
])
def test_go_time(created, expected):
    assert go_time(created) == expected


# -- speed: what these commands import -----------------------------------------------

HEAVY = ("jsonschema", "pyroute2", "cffi", "_cffi_backend", "ocirun.shim", "ocirun.spec",
         "ocirun.plan", "fastjsonschema")


@pytest.mark.parametrize("argv", [["state", "c1"], ["list"], ["list", "-f", "json"]])
def test_query_commands_stay_light(root, argv):
    live(root, "c1", fifo=True)
    script = (
        "import sys\n"
        "from ocirun.cli import main\n"
        f"code = main({['--root', str(root), *argv]!r})\n"
        "sys.stdout.flush()\n"
        "sys.stderr.write('\\n'.join(sorted(sys.modules)))\n"
        "sys.exit(code)\n"
    )
    res = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    modules = set(res.stderr.split("\n"))
    assert "ocirun.store" in modules and "ocirun.state" in modules  # it did the work
    loaded_heavy = sorted(m for m in modules if m.startswith(HEAVY))
    assert loaded_heavy == []
    assert "c1" in res.stdout

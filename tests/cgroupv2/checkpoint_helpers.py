"""Helpers for tests/cgroupv2/test_checkpoint.py: both runtimes side by side
(ocirun and runc 1.1.5, the oracle), busybox bundles, a counter container,
a console-socket peer, a subreaper "caller" and the leak check."""

from __future__ import annotations

import json
import os
import select
import shutil
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: bin/ocirun (Python without site: every call counts under TCG), else python -m ocirun
OCIRUN = ([str(REPO / ".venv" / "bin" / "ocirun")] if (REPO / ".venv" / "bin" / "ocirun").exists()
          else [sys.executable, "-m", "ocirun"])
TIMEOUT = 600  # CRIU under TCG: a dump takes 10-20 s, the first one more

#: The counter: the number goes to /count in the rootfs (renamed into place: a
#: process dumped and killed between a truncation and a write would leave it
#: empty) and to stdout, ten times a second.
COUNTER = ["sh", "-c", "i=0; while true; do i=$((i+1)); echo $i > /count.new; mv -f /count.new /count; "
           "echo $i; sleep 0.1; done"]


def criu_problem() -> str | None:
    """Why CRIU cannot checkpoint here (None: it can), as `ocirun features` says:
    CRIU's version and a FEATURE_CHECK, which fails when CRIU cannot inspect the
    kernel (then `criu check`'s first complaint). Cheaper than `criu check`."""
    from ocirun.criu.host import describe

    if shutil.which("criu") is None:
        return "criu is not installed"
    about = describe("criu")
    if about["org.ocirun.checkpoint.enabled"] != "true":
        return about.get("org.ocirun.checkpoint.problem", "CRIU does not work here")
    return None


#: CRIU's image magics (criu/include/magic.h) and pagemap_entry.flags' PE_PARENT (pagemap.h)
_IMG_COMMON_MAGIC, _PAGEMAP_MAGIC = 0x54564319, 0x56084025
_PE_PARENT = 1


def parent_pages(pagemap: Path) -> int:
    """How many pages of a pagemap image are left in the parent images: the
    ``nr_pages`` of its entries flagged PE_PARENT (or, as older CRIUs wrote it,
    ``in_parent``). Read here rather than with ``crit decode``, which costs 5-10 s
    a call under the guest's emulation; tests/unit/test_checkpoint_pagemap.py
    checks it against crit on images crit encodes.

    The image: two magics (u32 each), then per entry a u32 size and a protobuf
    message: pagemap_head first, then pagemap_entry {1: vaddr, 2: nr_pages,
    3: in_parent, 4: flags}."""
    data = pagemap.read_bytes()
    assert struct.unpack_from("<II", data) == (_IMG_COMMON_MAGIC, _PAGEMAP_MAGIC), f"{pagemap}: not a pagemap image"
    pos, total, head = 8, 0, True
    while pos < len(data):
        (size,) = struct.unpack_from("<I", data, pos)
        entry = _varint_fields(data[pos + 4:pos + 4 + size])
        pos += 4 + size
        if head:  # pagemap_head {1: pages_id}
            head = False
            continue
        if entry.get(4, 0) & _PE_PARENT or entry.get(3, 0):
            total += entry.get(2, 0)
    return total


def _varint_fields(msg: bytes) -> dict[int, int]:
    """A protobuf message's varint fields (number -> value); the others skipped."""
    fields: dict[int, int] = {}
    pos = 0

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            byte = msg[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while pos < len(msg):
        key = varint()
        wire = key & 7
        if wire == 0:
            fields[key >> 3] = varint()
        elif wire == 2:
            pos += varint()
        elif wire in (1, 5):
            pos += 8 if wire == 1 else 4
        else:
            raise ValueError(f"protobuf wire type {wire}")
    return fields


class Runtime:
    """One runtime's CLI with its own state root; remembers its containers."""

    def __init__(self, name: str, root: Path):
        self.name = name
        self.root = root
        self.ids: list[str] = []
        self.cmd = [*OCIRUN, "--root", str(root)] if name == "ocirun" else ["runc", "--root", str(root)]

    def new_id(self) -> str:
        cid = f"ocitest-cr-{self.name}-{uuid.uuid4().hex[:8]}"
        self.ids.append(cid)
        return cid

    def __call__(self, *args: str, check: bool = True, stdin=subprocess.DEVNULL, stdout=None,
                 stderr=None, timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
        """Run one command; stdout and stderr captured unless given (a created
        container inherits them: pass files or pipes the test owns)."""
        capture = stdout is None
        p = subprocess.run([*self.cmd, *args], stdin=stdin,
                           stdout=subprocess.PIPE if capture else stdout,
                           stderr=subprocess.PIPE if stderr is None else stderr, timeout=timeout)
        if check and p.returncode != 0:
            err = p.stderr.decode(errors="replace") if isinstance(p.stderr, bytes) else ""
            raise AssertionError(f"{self.name} {' '.join(args)} exited {p.returncode}: {err}")
        return p

    def state(self, cid: str) -> dict:
        return json.loads(self("state", cid).stdout)

    def timed(self, *args: str, **kw) -> tuple[subprocess.CompletedProcess, float]:
        start = time.monotonic()
        p = self(*args, **kw)
        return p, time.monotonic() - start


def make_bundle(image: Path, dest: Path, args: list[str], *, terminal: bool = False) -> Path:
    shutil.copytree(image, dest, symlinks=True)
    config = json.loads((dest / "config.json").read_text())
    config["process"]["args"] = args
    config["process"]["terminal"] = terminal
    (dest / "config.json").write_text(json.dumps(config, indent=2))
    return dest


def edit_config(bundle: Path, fn) -> None:
    config = json.loads((bundle / "config.json").read_text())
    fn(config)
    (bundle / "config.json").write_text(json.dumps(config, indent=2))


def read_count(bundle: Path) -> int:
    text = (bundle / "rootfs" / "count").read_text().strip()
    return int(text) if text else 0


def wait_count(bundle: Path, above: int, timeout: float = 60) -> int:
    end = time.monotonic() + timeout
    while True:
        try:
            n = read_count(bundle)
        except (FileNotFoundError, ValueError):
            n = 0
        if n > above:
            return n
        assert time.monotonic() < end, f"the counter stays at {n} (waited for more than {above})"
        time.sleep(0.1)


def read_lines(fd: int, timeout: float = 0.5) -> list[str]:
    """What a pipe holds now (waiting up to ``timeout`` for the first bytes)."""
    out = b""
    wait = timeout
    while True:
        r, _, _ = select.select([fd], [], [], wait)
        if not r:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        out += chunk
        wait = 0.05
    return out.decode().split()


#: The caller of a restore, as conmon is: a subreaper that runs the runtime
#: (with its own stdio, which the restored container's pipes become), writes
#: {exit status, stderr, the pid in --pid-file, that pid's parent, its own pid}
#: as JSON to the fd in argv[1], then reaps its children (the restored init,
#: once the test deletes the container) and exits.
SUBREAPER_CALLER = r"""
import ctypes, json, os, subprocess, sys
ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
report, pid_file, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
rc = subprocess.run(argv, stderr=subprocess.PIPE)
pid = int(open(pid_file).read()) if rc.returncode == 0 else 0
ppid = int(open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[1]) if pid else 0
os.write(report, (json.dumps({"rc": rc.returncode, "stderr": rc.stderr.decode(), "pid": pid,
                              "ppid": ppid, "me": os.getpid()}) + "\n").encode())
os.close(report)
for fd in (0, 1, 2):
    os.close(fd)
while True:
    try:
        os.wait()
    except ChildProcessError:
        break
"""


def restore_as_subreaper(rt: Runtime, pid_file: Path, *args: str, stdout: int):
    """``rt restore --pid-file PID_FILE ARGS`` from a subreaper caller whose stdout
    is ``stdout``; returns (the caller's Popen, its report)."""
    r, w = os.pipe()
    caller = subprocess.Popen([sys.executable, "-c", SUBREAPER_CALLER, str(w), str(pid_file), *rt.cmd,
                               "restore", "--pid-file", str(pid_file), *args],
                              stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.DEVNULL,
                              pass_fds=(w,))
    os.close(w)
    try:
        ready, _, _ = select.select([r], [], [], TIMEOUT)
        assert ready, f"{rt.name} restore did not finish"
        report = json.loads(os.read(r, 65536))
    finally:
        os.close(r)
    return caller, report


def mounts() -> set[str]:
    with open("/proc/self/mountinfo") as f:
        return {line.split()[4] for line in f}


def leftovers(rt: Runtime) -> list[str]:
    """What the runtime's containers left: processes in or cgroups named after
    them, state directories, mounts below the state root."""
    found = []
    for cid in rt.ids:
        for dirpath, dirs, _ in os.walk("/sys/fs/cgroup"):
            if cid in os.path.basename(dirpath):
                found.append(f"cgroup {dirpath}")
            if dirpath.count("/") > 6:
                dirs[:] = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    if cid in Path(f"/proc/{entry}/cgroup").read_text():
                        found.append(f"process {entry}")
                except OSError:
                    pass
    if rt.root.exists():
        found += [f"state {name}" for name in os.listdir(rt.root) if not name.startswith(".")]
    found += [f"mount {m}" for m in mounts() if m.startswith(str(rt.root))]
    return found

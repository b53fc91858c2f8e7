#!/usr/bin/env python3
"""Soak: many container lifecycles in a row, then count what was left behind.

Each lifecycle is one of (in turn): create/start/wait/delete of a process that
exits; create/start/exec/kill/delete of one that runs; `run -d` then `delete
--force`; create then `delete --force` of a never-started container; create,
start, `kill --all` and delete. At the end: processes still alive (we are the
subreaper of every init), cgroup directories named after the soak's
containers, state directories, mounts under the work directory, fds of this
process, and whether the calls got slower (first vs last tenth).

Runs outside CI (about 6 minutes for 1,000 on a 2-CPU machine). As root after
./scripts/setup:  .venv/bin/python benchmarks/soak.py [-n 1000] [--keep]
Results for this machine: docs/robustness.md.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PREFIX = "ocisoak"


def reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def live_children() -> list[str]:
    me, found = os.getpid(), []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        rest = stat[stat.rfind(")") + 2:].split()
        if int(rest[1]) == me and rest[0] != "Z":
            found.append(stat[:80])
    return found


def cgroup_dirs() -> list[str]:
    found = []
    for dirpath, dirs, _ in os.walk("/sys/fs/cgroup"):
        found += [os.path.join(dirpath, d) for d in dirs if d.startswith(PREFIX)]
        if dirpath.count("/") > 7:
            dirs[:] = []
    return found


class Runtime:
    def __init__(self, argv: list[str], root: Path):
        self.argv, self.root = argv, root
        self.times: dict[str, list[float]] = {}
        self.failures: list[str] = []

    def __call__(self, *args: str, ok: tuple[int, ...] = (0,)) -> subprocess.CompletedProcess:
        start = time.perf_counter()
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            p = subprocess.run([*self.argv, "--root", str(self.root), *args], stdin=subprocess.DEVNULL,
                               stdout=out, stderr=err, timeout=120)
            out.seek(0)
            err.seek(0)
            p.stdout, p.stderr = out.read(), err.read()
        self.times.setdefault(args[0], []).append(time.perf_counter() - start)
        reap()
        if p.returncode not in ok:
            self.failures.append(f"{' '.join(args)}: exit {p.returncode}: {p.stderr.decode().strip()}")
        return p

    def status(self, cid: str) -> str:
        p = self("state", cid, ok=(0, 1))
        return json.loads(p.stdout)["status"] if p.returncode == 0 else "absent"

    def wait(self, cid: str, status: str, timeout: float = 30) -> None:
        end = time.monotonic() + timeout
        while self.status(cid) != status:
            if time.monotonic() > end:
                self.failures.append(f"{cid}: not {status} after {timeout}s")
                return
            time.sleep(0.02)


def lifecycle(rt: Runtime, bundle: Path, i: int) -> None:
    cid = f"{PREFIX}-{os.getpid()}-{i}"
    kind = i % 5
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["args"] = ["true"] if kind == 0 else ["sleep", "60"]
    (bundle / "config.json").write_text(json.dumps(config))
    b = ["--bundle", str(bundle)]
    if kind == 0:
        rt("create", *b, cid)
        rt("start", cid)
        rt.wait(cid, "stopped")
        rt("delete", cid)
    elif kind == 1:
        rt("create", *b, cid)
        rt("start", cid)
        rt("exec", cid, "true")
        rt("kill", cid, "KILL")
        rt.wait(cid, "stopped")
        rt("delete", cid)
    elif kind == 2:
        rt("run", "-d", *b, cid)
        rt("delete", "--force", cid)
    elif kind == 3:
        rt("create", *b, cid)
        rt("delete", "--force", cid)
    else:
        rt("create", *b, cid)
        rt("start", cid)
        rt("kill", "--all", cid, "KILL")
        rt.wait(cid, "stopped")
        rt("delete", cid)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=1000, help="lifecycles (default 1000)")
    ap.add_argument("--ocirun", default=str(REPO / ".venv" / "bin" / "ocirun"))
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("soak: needs root", file=sys.stderr)
        return 2
    ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER: orphaned inits come to us
    work = Path(tempfile.mkdtemp(prefix="ocirun-soak-"))
    bundle = work / "bundle"
    subprocess.run([str(REPO / "bundles" / "make-busybox-bundle"), "--no-image", str(bundle)], check=True,
                   stdout=subprocess.DEVNULL)
    config = json.loads((bundle / "config.json").read_text())
    config["process"]["terminal"] = False
    (bundle / "config.json").write_text(json.dumps(config))
    fds_before = set(os.listdir("/proc/self/fd"))
    rt = Runtime([args.ocirun], work / "state")
    per_lifecycle = []
    started = time.monotonic()
    for i in range(args.n):
        t = time.perf_counter()
        lifecycle(rt, bundle, i)
        per_lifecycle.append(time.perf_counter() - t)
        if (i + 1) % 100 == 0:
            print(f"  {i + 1} lifecycles, {time.monotonic() - started:.0f}s, {len(rt.failures)} failures",
                  flush=True)
    time.sleep(0.5)
    reap()
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f if str(work) in line.split()[4]]
    state_left = sorted(os.listdir(work / "state")) if (work / "state").exists() else []
    leaks = {
        "processes": live_children(),
        "cgroups": cgroup_dirs(),
        "state dirs": state_left,
        "mounts": mounts,
        "fds": sorted(set(os.listdir("/proc/self/fd")) - fds_before),
    }
    tenth = max(1, args.n // 10)
    first, last = statistics.median(per_lifecycle[:tenth]), statistics.median(per_lifecycle[-tenth:])
    print(f"\nsoak: {args.n} lifecycles in {time.monotonic() - started:.0f}s "
          f"({sum(len(v) for v in rt.times.values())} calls), {len(rt.failures)} failed calls")
    print(f"per lifecycle: median {statistics.median(per_lifecycle) * 1000:.0f} ms; "
          f"first tenth {first * 1000:.0f} ms, last tenth {last * 1000:.0f} ms ({last / first:.2f}x)")
    for verb, ts in sorted(rt.times.items()):
        ts = sorted(ts)
        print(f"  {verb:7} n={len(ts):5}  median {statistics.median(ts) * 1000:6.1f} ms  "
              f"p95 {ts[int(len(ts) * 0.95) - 1] * 1000:6.1f} ms")
    print("leaks: " + ", ".join(f"{k} {len(v)}" for k, v in leaks.items()))
    for k, v in leaks.items():
        for item in v[:10]:
            print(f"  {k}: {item}")
    for failure in rt.failures[:20]:
        print(f"  failed: {failure}")
    for cid in state_left:  # counted above; now cleaned up
        rt("delete", "--force", cid, ok=(0, 1))
    if not args.keep and not mounts:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if rt.failures or any(leaks.values()) else 0


if __name__ == "__main__":
    sys.exit(main())

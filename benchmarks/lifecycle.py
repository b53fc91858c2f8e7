#!/usr/bin/env python3
"""ocirun against runc in the same run: the lifecycle commands, one by one and together.

For each scenario the runtimes alternate (runc, ocirun with a warm helper, ocirun on
the direct path), N timed samples each after two warm-up rounds; the median and the
ratio to runc are printed. Single verbs (`state`, `start`, `kill`, `delete`, `exec`)
time only that call; the container it needs is made (untimed) before it. The cold
first call (no helper running: the call takes the direct path and starts one) is
timed separately. The helper is a private one (its own OCIRUN_HELPER_DIR), stopped
at the end.

Run as root after ./scripts/setup:  .venv/bin/python benchmarks/lifecycle.py [-n 20] [-k state]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BIN = REPO / ".venv" / "bin"


class Runtime:
    def __init__(self, name: str, argv: list[str], env: dict[str, str]) -> None:
        self.name, self.argv, self.env = name, argv, env

    def __call__(self, *args: str, check: bool = True) -> None:
        subprocess.run([*self.argv, *args], check=check, env=self.env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def timed(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def make_bundle(path: Path, args: list[str]) -> Path:
    subprocess.run([str(REPO / "bundles" / "make-busybox-bundle"), "--no-image", str(path)], check=True,
                   stdout=subprocess.DEVNULL)
    cfg = json.loads((path / "config.json").read_text())
    cfg["process"]["args"] = args
    cfg["process"]["terminal"] = False
    (path / "config.json").write_text(json.dumps(cfg))
    return path


def wait_stopped(rt: Runtime, root: Path, cid: str) -> None:
    for _ in range(500):
        p = subprocess.run([*rt.argv, "--root", str(root), "state", cid], env=rt.env, capture_output=True)
        if b'"stopped"' in p.stdout:
            return
        time.sleep(0.01)


def scenarios(true_bundle: Path, sleep_bundle: Path):
    """name -> (prepare(rt, root, i), timed call(rt, root, i), clean up(rt, root, i))."""
    def cid(i: int) -> str:
        return f"b{i}"

    def nothing(rt, root, i):
        pass

    def delete(rt, root, i):
        rt("--root", str(root), "delete", "--force", cid(i), check=False)

    def created(rt, root, i):
        rt("--root", str(root), "create", "--bundle", str(sleep_bundle), cid(i))

    def running(rt, root, i):
        created(rt, root, i)
        rt("--root", str(root), "start", cid(i))

    def stopped(rt, root, i):
        running(rt, root, i)
        rt("--root", str(root), "kill", cid(i), "KILL")
        wait_stopped(rt, root, cid(i))

    return {
        "run /bin/true": (nothing, lambda rt, root, i: rt("--root", str(root), "run", "--bundle",
                                                           str(true_bundle), cid(i)), delete),
        "create+start+delete": (nothing, lambda rt, root, i: (
            rt("--root", str(root), "create", "--bundle", str(true_bundle), cid(i)),
            rt("--root", str(root), "start", cid(i)),
            rt("--root", str(root), "delete", "--force", cid(i))), delete),
        "create": (nothing, lambda rt, root, i: created(rt, root, i), delete),
        "start": (created, lambda rt, root, i: rt("--root", str(root), "start", cid(i)), delete),
        "state": (running, lambda rt, root, i: rt("--root", str(root), "state", cid(i)), delete),
        "kill": (running, lambda rt, root, i: rt("--root", str(root), "kill", cid(i), "KILL"), delete),
        "delete": (stopped, lambda rt, root, i: rt("--root", str(root), "delete", cid(i)), delete),
        "exec true": (running, lambda rt, root, i: rt("--root", str(root), "exec", cid(i), "true"), delete),
    }


def helper_pid(env: dict[str, str]) -> int | None:
    d = env["OCIRUN_HELPER_DIR"]
    for name in os.listdir(d):
        if name.endswith(".json"):
            try:
                pid = json.loads((Path(d) / name).read_text())["pid"]
            except (OSError, ValueError, KeyError):
                return None
            return pid if Path(f"/proc/{pid}").exists() else None
    return None


def wait_helper(env: dict[str, str], rt: Runtime) -> None:
    rt("--version")
    for _ in range(3000):
        pid = helper_pid(env)
        if pid is not None:
            sock = [n for n in os.listdir(env["OCIRUN_HELPER_DIR"]) if n.endswith(".sock")]
            if sock:
                return
        time.sleep(0.01)
    raise SystemExit("the helper did not start")


def stop_helper(env: dict[str, str]) -> None:
    subprocess.run([str(BIN / "ocirun-direct"), "helper", "stop"], env=env, stdout=subprocess.DEVNULL)


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20)
    ap.add_argument("-k", action="append", default=[], help="only scenarios containing this text")
    ap.add_argument("--no-cold", action="store_true", help="skip the cold first call")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ocirun-bench-"))
    hdir = work / "helper"
    hdir.mkdir(mode=0o700)
    base = {k: v for k, v in os.environ.items() if not k.startswith("OCIRUN_HELPER") or k == "OCIRUN_HELPER_TRACE"}
    helper_env = dict(base, OCIRUN_HELPER_DIR=str(hdir), OCIRUN_HELPER_IDLE="600")
    direct_env = dict(base, OCIRUN_HELPER="off")
    front = str(BIN / "ocirun")
    runtimes = [Runtime("runc", ["runc"], base), Runtime("ocirun", [front], helper_env),
                Runtime("direct", [front], direct_env)]
    try:
        true_bundle = make_bundle(work / "true", ["/bin/true"])
        sleep_bundle = make_bundle(work / "sleep", ["sleep", "1000"])
        wait_helper(helper_env, runtimes[1])
        print(f"{'scenario':<22} {'runc':>8} {'ocirun':>8} {'ratio':>6} {'direct':>8} {'ratio':>6}"
              f"   (ms, median of {args.n}; ocirun: warm helper; direct: OCIRUN_HELPER=off)")
        for name, (prepare, call, clean) in scenarios(true_bundle, sleep_bundle).items():
            if args.k and not any(k in name for k in args.k):
                continue
            samples: dict[str, list[float]] = {rt.name: [] for rt in runtimes}
            for i in range(args.n + 2):
                for rt in runtimes:
                    root = work / f"root-{rt.name}"
                    prepare(rt, root, i)
                    t = timed(lambda rt=rt, root=root, call=call, i=i: call(rt, root, i))
                    clean(rt, root, i)
                    if i >= 2:  # two warm-up rounds
                        samples[rt.name].append(t)
            med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
            print(f"{name:<22} {med['runc']:>8.1f} {med['ocirun']:>8.1f} {med['ocirun'] / med['runc']:>6.2f}"
                  f" {med['direct']:>8.1f} {med['direct'] / med['runc']:>6.2f}", flush=True)
        pid = helper_pid(helper_env)
        if pid is not None:
            print(f"helper: idle RSS {rss_kb(pid) / 1024:.1f} MiB (pid {pid})")
        if not args.no_cold:
            # the cold first call: no helper; it takes the direct path and starts one
            cold: dict[str, list[float]] = {"state (cold)": [], "run /bin/true (cold)": []}
            runc_cold: dict[str, list[float]] = {k: [] for k in cold}
            root = work / "root-cold"
            for i in range(max(5, args.n // 2)):
                # other ids than ocirun's: the default cgroup path is the id, for both
                runtimes[0]("--root", str(work / "root-runc"), "run", "--bundle", str(sleep_bundle), "-d",
                            f"rc{i}", check=False)
                runtimes[1]("--root", str(root), "create", "--bundle", str(sleep_bundle), f"c{i}")
                stop_helper(helper_env)
                cold["state (cold)"].append(timed(lambda i=i: runtimes[1]("--root", str(root), "state", f"c{i}")))
                runc_cold["state (cold)"].append(timed(lambda i=i: runtimes[0]("--root", str(work / "root-runc"),
                                                                             "state", f"rc{i}")))
                runtimes[1]("--root", str(root), "delete", "--force", f"c{i}")
                runtimes[0]("--root", str(work / "root-runc"), "delete", "--force", f"rc{i}", check=False)
                wait_helper(helper_env, runtimes[1])
                stop_helper(helper_env)
                cold["run /bin/true (cold)"].append(timed(lambda i=i: runtimes[1](
                    "--root", str(root), "run", "--bundle", str(true_bundle), f"r{i}")))
                runc_cold["run /bin/true (cold)"].append(timed(lambda i=i: runtimes[0](
                    "--root", str(work / "root-runc"), "run", "--bundle", str(true_bundle), f"rr{i}")))
                runtimes[1]("--root", str(root), "delete", "--force", f"r{i}", check=False)
                runtimes[0]("--root", str(work / "root-runc"), "delete", "--force", f"rr{i}", check=False)
                wait_helper(helper_env, runtimes[1])
            for name, v in cold.items():
                r = statistics.median(runc_cold[name]) * 1000
                o = statistics.median(v) * 1000
                print(f"{name:<22} {r:>8.1f} {o:>8.1f} {o / r:>6.2f}   (helper not running; median of {len(v)})")
    finally:
        for rt in runtimes:  # whatever an error left running
            for root in work.glob("root-*"):
                p = subprocess.run([*rt.argv, "--root", str(root), "list", "-q"], env=rt.env,
                                   capture_output=True, text=True)
                for cid in p.stdout.split() if p.returncode == 0 else []:
                    rt("--root", str(root), "delete", "--force", cid, check=False)
        stop_helper(helper_env)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())

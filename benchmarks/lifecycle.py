#!/usr/bin/env python3
"""ocirun against runc in the same run: `run /bin/true` and create+start+delete.

Alternates the two runtimes, takes the median of N runs each, prints the ratio.
Run as root after ./scripts/setup:  .venv/bin/python benchmarks/lifecycle.py [-n 30]
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def ocirun_cmd() -> list[str]:
    exe = REPO / ".venv" / "bin" / "ocirun"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "ocirun"]


def timed(cmds: list[list[str]], cwd: Path) -> float:
    start = time.perf_counter()
    for cmd in cmds:
        subprocess.run(cmd, check=True, cwd=cwd, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=30)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ocirun-bench-"))
    try:
        bundle = work / "bundle"
        subprocess.run([str(REPO / "bundles" / "make-busybox-bundle"), str(bundle)], check=True,
                       stdout=subprocess.DEVNULL)
        cfg = json.loads((bundle / "config.json").read_text())
        cfg["process"]["args"] = ["/bin/true"]
        cfg["process"]["terminal"] = False
        (bundle / "config.json").write_text(json.dumps(cfg))
        runtimes = {
            "runc": ["runc", "--root", str(work / "runc-root")],
            "ocirun": [*ocirun_cmd(), "--root", str(work / "ocirun-root")],
        }
        scenarios = {
            "run /bin/true": lambda rt, i: [[*rt, "run", "--bundle", str(bundle), f"b{i}"]],
            "create+start+delete": lambda rt, i: [
                [*rt, "create", "--bundle", str(bundle), f"c{i}"],
                [*rt, "start", f"c{i}"],
                [*rt, "delete", "--force", f"c{i}"],
            ],
        }
        print(f"{'scenario':<22} {'runc ms':>9} {'ocirun ms':>10} {'ratio':>6}   (median of {args.n})")
        for name, make in scenarios.items():
            samples: dict[str, list[float]] = {k: [] for k in runtimes}
            for i in range(args.n + 2):
                for rt_name, rt in runtimes.items():
                    t = timed(make(rt, i), bundle)
                    if i >= 2:  # two warm-up rounds
                        samples[rt_name].append(t)
            med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
            print(f"{name:<22} {med['runc']:>9.1f} {med['ocirun']:>10.1f} {med['ocirun'] / med['runc']:>6.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())

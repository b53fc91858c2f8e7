#!/usr/bin/env python3
"""A real workload: redis-benchmark from the host against examples/redis's container,
under ocirun and under runc, alternating, in the same run.

Each round runs `examples/redis/run --benchmark` once per runtime (the whole example:
the same image, config, seccomp profile, limits and veth; only OCIRUN differs), which
runs redis-benchmark from the host over the veth to the container's address. Prints,
per redis-benchmark configuration and test, the median requests per second of N rounds
per runtime and the ratio ocirun/runc.

The runtime sets the container up and is then out of the way: the requests go through
the kernel (veth, TCP, the seccomp filter, the cgroup) to Redis. The figures should be
the same within the noise.

Run as root after ./scripts/setup:  .venv/bin/python benchmarks/redis.py [-n 5]
(EXAMPLE_BENCH="ARGS;ARGS" chooses the redis-benchmark configurations; see the script.)
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "redis" / "run"
BENCH = re.compile(r"^\s+BENCH (\S+) (\S+) ([0-9.]+) p50_ms=([0-9.]+)$")


def one_run(runtime: str) -> dict[tuple[str, str], tuple[float, float]]:
    """{(configuration, test): (requests/s, p50 ms)} from one run of the example."""
    env = {**os.environ, "OCIRUN": runtime}
    with tempfile.TemporaryFile() as out:
        p = subprocess.run([str(SCRIPT), "--benchmark"], env=env, stdout=out, stderr=subprocess.STDOUT,
                           stdin=subprocess.DEVNULL, timeout=1800)
        out.seek(0)
        text = out.read().decode(errors="replace")
    if p.returncode != 0 or not text.rstrip().splitlines()[-1].startswith("OK"):
        sys.exit(f"examples/redis/run --benchmark with OCIRUN={runtime} failed:\n{text[-4000:]}")
    found = {}
    for line in text.splitlines():
        m = BENCH.match(line)
        if m:
            found[(m.group(1).replace("_", " "), m.group(2))] = (float(m.group(3)), float(m.group(4)))
    if not found:
        sys.exit(f"no BENCH lines in the output of OCIRUN={runtime}:\n{text[-4000:]}")
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=5, help="rounds (one run per runtime each; default 5)")
    ap.add_argument("--ocirun", default=str(REPO / ".venv" / "bin" / "ocirun"))
    ap.add_argument("--runc", default=shutil.which("runc") or "/usr/sbin/runc")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run me as root")
    runtimes = {"runc": args.runc, "ocirun": args.ocirun}
    results: dict[str, dict[tuple[str, str], list[float]]] = {rt: defaultdict(list) for rt in runtimes}
    p50s: dict[str, dict[tuple[str, str], list[float]]] = {rt: defaultdict(list) for rt in runtimes}
    loads = []
    for i in range(args.n):
        order = list(runtimes) if i % 2 == 0 else list(reversed(runtimes))   # alternate who goes first
        for rt in order:
            loads.append(os.getloadavg()[0])
            for key, (rps, p50) in one_run(runtimes[rt]).items():
                results[rt][key].append(rps)
                p50s[rt][key].append(p50)
            print(f"round {i + 1}/{args.n}: {rt} done", file=sys.stderr)
    print(f"redis-benchmark from the host, median of {args.n} runs per runtime "
          f"(load average {min(loads):.1f}-{max(loads):.1f}, {os.cpu_count()} CPUs)")
    print()
    print("| redis-benchmark | test | runc req/s | ocirun req/s | ocirun/runc | p50 runc / ocirun (ms) |")
    print("|---|---|---|---|---|---|")
    for key in sorted(results["runc"]):
        conf, test = key
        r = statistics.median(results["runc"][key])
        o = statistics.median(results["ocirun"][key])
        pr = statistics.median(p50s["runc"][key])
        po = statistics.median(p50s["ocirun"][key])
        print(f"| `{conf}` | {test} | {r:,.0f} | {o:,.0f} | {o / r:.3f} | {pr:.3f} / {po:.3f} |")
    print()
    print("spread (min-max req/s): " + "; ".join(
        f"{rt} {test} {conf.split()[-1]}={min(v):,.0f}-{max(v):,.0f}"
        for rt in runtimes for (conf, test), v in sorted(results[rt].items())))
    return 0


if __name__ == "__main__":
    sys.exit(main())

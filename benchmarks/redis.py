#!/usr/bin/env python3
"""A real workload: redis-benchmark from the host against examples/redis's container,
under ocirun and under runc, side by side in the same run.

Starts `examples/redis/run --hold` twice at once, with OCIRUN=runc and with ocirun (the
whole example: the same image, config, seccomp profile, limits, veth; only the runtime
differs), and while both containers run, alternates short redis-benchmark runs from the
host against the two container addresses, N rounds per configuration, switching which
goes first every round (paired: both see the same load from the rest of the machine).
Then ends the holds: both scripts stop their container with SIGTERM, delete it and
check that nothing is left, as usual. Prints the median requests per second, the ratio
ocirun/runc and the median p50 latency per configuration and test.

The runtime sets the container up and is then out of the way: requests go through the
kernel (veth, TCP, the seccomp filter, the cgroup) to Redis, so the figures should be
the same within the noise.

Run as root after ./scripts/setup:  .venv/bin/python benchmarks/redis.py [-n 10]
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "examples" / "redis" / "run"
HOLD = re.compile(r"^HOLD address=(\S+) port=(\d+) password=(\S+) id=(\S+)$")
CONFIGS = [
    "-t set,get,incr,lpush -n 50000 -c 50 -P 1",     # one request per round trip
    "-t set,get -n 200000 -c 50 -P 16",               # pipelined: Redis's CPU is the limit
]


class Held:
    """One `examples/redis/run --hold`: its container stays up until close()."""

    def __init__(self, name: str, runtime: str):
        self.name = name
        self.proc = subprocess.Popen([str(SCRIPT), "--hold"], env={**os.environ, "OCIRUN": runtime},
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line)
            m = HOLD.match(line.strip())
            if m:
                self.address, self.port, self.password, self.id = m.groups()
                return
        self.proc.wait()
        sys.exit(f"{name}: examples/redis/run --hold ended before holding:\n{''.join(self.lines)[-4000:]}")

    def close(self) -> str:
        out, _ = self.proc.communicate(input="", timeout=300)
        text = "".join(self.lines) + out
        if self.proc.returncode != 0 or not text.rstrip().splitlines()[-1].startswith("OK"):
            return f"{self.name}: examples/redis/run failed:\n{text[-4000:]}"
        return ""

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()     # the script's trap stops and deletes its container
            self.proc.wait(timeout=120)


def bench(target: Held, config: str) -> dict[str, tuple[float, float]]:
    """{test: (requests/s, p50 ms)} from one redis-benchmark run (CSV)."""
    out = subprocess.run(["redis-benchmark", "-h", target.address, "-p", target.port, "-a", target.password,
                          "--csv", *config.split()], check=True, capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines()[1:]:   # "test","rps","avg_latency_ms","min_latency_ms","p50_latency_ms",...
        fields = [f.strip('"') for f in line.split(",")]
        if len(fields) >= 5:
            found[fields[0]] = (float(fields[1]), float(fields[4]))
    if not found:
        raise RuntimeError(f"no results from redis-benchmark {config}: {out!r}")
    return found


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=10, help="rounds per configuration (default 10)")
    ap.add_argument("--ocirun", default=str(REPO / ".venv" / "bin" / "ocirun"))
    ap.add_argument("--runc", default=shutil.which("runc") or "/usr/sbin/runc")
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("run me as root")
    held: dict[str, Held] = {}
    rps: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    p50: dict[tuple[str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    loads = []
    try:
        held["runc"] = Held("runc", args.runc)
        held["ocirun"] = Held("ocirun", args.ocirun)
        for config in CONFIGS:
            for i in range(args.n):
                order = ["runc", "ocirun"] if i % 2 == 0 else ["ocirun", "runc"]
                for rt in order:
                    loads.append(os.getloadavg()[0])
                    for test, (r, p) in bench(held[rt], config).items():
                        rps[(config, test)][rt].append(r)
                        p50[(config, test)][rt].append(p)
            print(f"done: {config}", file=sys.stderr)
    except BaseException:
        for h in held.values():
            h.kill()
        raise
    failures = [msg for msg in (h.close() for h in held.values()) if msg]
    if failures:
        sys.exit("\n".join(failures))

    print(f"redis-benchmark from the host, both containers up at once, {args.n} alternating runs each, "
          f"median (load average {min(loads):.1f}-{max(loads):.1f}, {os.cpu_count()} CPUs)")
    print()
    print("| redis-benchmark | test | runc req/s | ocirun req/s | ocirun/runc | p50 ms runc / ocirun |")
    print("|---|---|---|---|---|---|")
    for (config, test), by_rt in rps.items():
        r, o = statistics.median(by_rt["runc"]), statistics.median(by_rt["ocirun"])
        pr, po = statistics.median(p50[(config, test)]["runc"]), statistics.median(p50[(config, test)]["ocirun"])
        print(f"| `{config}` | {test} | {r:,.0f} | {o:,.0f} | {o / r:.2f} | {pr:.3f} / {po:.3f} |")
    print()
    print("paired ratios ocirun/runc per round (min / median / max): " + "; ".join(
        f"{test} -P{config.split()[-1]}: " + " / ".join(
            f"{x:.2f}" for x in _spread([o / r for r, o in zip(by_rt["runc"], by_rt["ocirun"], strict=True)]))
        for (config, test), by_rt in rps.items()))
    return 0


def _spread(values: list[float]) -> tuple[float, float, float]:
    return min(values), statistics.median(values), max(values)


if __name__ == "__main__":
    sys.exit(main())

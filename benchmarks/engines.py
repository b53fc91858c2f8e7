#!/usr/bin/env python3
"""The engines end to end: `podman run --rm IMAGE true` and `ctr run --rm IMAGE id true`
with ocirun and with runc as the runtime, alternating, in the same run.

ocirun twice: the `ocirun` command (the front end, with its warm helper, started
here with `ocirun helper start` before anything else, so that it is init's child
and no shim's: docs/helper.md) and `ocirun-direct` (the direct path). Uses the e2e tests'
private podman and containerd (tests/e2e/engines.py: nothing global is changed);
the helper is this checkout's, in its default directory, stopped at the end.
Prints the median of N runs per runtime and the ratios to runc.
Run as root after ./scripts/setup:  .venv/bin/python benchmarks/engines.py [-n 20]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from engines import IMAGE, Containerd, Podman, become_subreaper, image_layout, reap_orphans  # noqa: E402


def timed(argv: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(argv, check=True, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    elapsed = time.perf_counter() - start
    reap_orphans()
    return elapsed


def helper_pid(direct: Path) -> int | None:
    p = subprocess.run([str(direct), "helper", "status"], capture_output=True, text=True)
    for line in p.stdout.splitlines():
        if line.startswith("helper: running (pid "):
            return int(line.split("pid ")[1].rstrip(")"))
    return None


def parent_of(pid: int) -> str:
    try:
        ppid = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
        return f"{ppid} ({Path(f'/proc/{ppid}/comm').read_text().strip()})"
    except (OSError, ValueError, IndexError):
        return "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=20, help="runs per runtime and client (default 20)")
    ap.add_argument("--ocirun", default=str(REPO / ".venv" / "bin" / "ocirun"))
    ap.add_argument("--runc", default=shutil.which("runc") or "/usr/sbin/runc")
    args = ap.parse_args()
    direct = Path(args.ocirun).with_name("ocirun-direct")
    # The helper, started from here before we become a subreaper (as at boot: docs/helper.md,
    # "Under containerd"): init's child, never a shim's; every call of the run may use it.
    subprocess.run([str(direct), "helper", "start", "--idle", "600"], check=True, stdout=subprocess.DEVNULL)
    helper_before = helper_pid(direct)
    become_subreaper()
    runtimes = {"runc": Path(args.runc), "ocirun": Path(args.ocirun), "ocirun-direct": direct}
    work = Path(tempfile.mkdtemp(prefix="ocirun-bench-engines-"))
    layout = image_layout()
    pm = Podman(work / "podman", runtimes["ocirun"],
                extra_runtimes={"runc": runtimes["runc"], "ocirun-direct": direct})
    cd = Containerd(work / "containerd", runtimes["ocirun"])
    leaks: list[str] = []
    try:
        pm.load_image(layout)
        cd.start()
        cd.load_image(layout)

        def podman_cmd(rt: str, i: int) -> list[str]:
            return ["podman", "run", "--rm", "--runtime", rt, *pm.create_opts, IMAGE, "true"]

        def ctr_cmd(rt: str, i: int) -> list[str]:
            return [*cd.ctr_argv, "run", "--rm", "--runc-binary", str(runtimes[rt]),
                    "--runc-root", str(cd.runtime_root / rt), "--fifo-dir", str(cd.fifo_dir),
                    IMAGE, f"bench-{rt}-{i}", "true"]

        clients = {
            "podman run --rm IMAGE true": (podman_cmd, pm.env),
            "ctr run --rm IMAGE id true": (ctr_cmd, cd.env),
        }
        print(f"{'scenario':<30} {'runc':>10} {'ocirun':>10} {'ratio':>7} {'direct':>10} {'ratio':>7}"
              f"   (median of {args.n}; ocirun: warm helper; direct: ocirun-direct)")
        for label, (cmd, env) in clients.items():
            times: dict[str, list[float]] = {rt: [] for rt in runtimes}
            for i in range(args.n + 2):           # two warm-up rounds
                for rt in runtimes:               # alternating
                    t = timed(cmd(rt, i), env)
                    if i >= 2:
                        times[rt].append(t)
            med = {rt: statistics.median(v) * 1000 for rt, v in times.items()}
            print(f"{label:<30} {med['runc']:>8.1f}ms {med['ocirun']:>8.1f}ms "
                  f"{med['ocirun'] / med['runc']:>7.2f} {med['ocirun-direct']:>8.1f}ms "
                  f"{med['ocirun-direct'] / med['runc']:>7.2f}", flush=True)
        helper_after = helper_pid(direct)
        print(f"helper: pid {helper_before} at the start, {helper_after} at the end; its parent: "
              f"{parent_of(helper_after) if helper_after else '-'}")
    finally:
        leaks += pm.close()
        leaks += cd.close()
        shutil.rmtree(work, ignore_errors=True)
        subprocess.run([str(direct), "helper", "stop"], stdout=subprocess.DEVNULL)
    if leaks:
        print("left behind:", "; ".join(leaks), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

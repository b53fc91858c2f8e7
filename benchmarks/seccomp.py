#!/usr/bin/env python3
"""Seccomp cost, for the large default profile (tests/unit/fixtures/seccomp-default-profile.json).

1. compile: libseccomp compile in-process (cold) vs a content-cache hit, and the
   same in a fresh interpreter (what one `ocirun create` pays), median of N.
2. load: seccomp(SET_MODE_FILTER) of the compiled program in a child.
3. run (root, once the shim loads filters): `run /bin/true` with the profile,
   ocirun vs runc in the same run, median of N, ratio printed.

Run:  .venv/bin/python benchmarks/seccomp.py [-n 20] [--no-run]
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
PROFILE = REPO / "tests" / "unit" / "fixtures" / "seccomp-default-profile.json"
sys.path.insert(0, str(REPO))


def median_ms(n: int, fn) -> float:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    return statistics.median(samples) * 1000


FRESH = r"""
import json, sys, time
t0 = time.perf_counter()
from ocirun.spec.model import Seccomp
from ocirun.seccomp import FilterCache, compile_filter
sc = Seccomp.from_dict(json.load(open(sys.argv[1])))
cache = FilterCache(sys.argv[2]) if sys.argv[2] != "-" else None
f = compile_filter(sc, cache)
print((time.perf_counter() - t0) * 1000)
"""

LOAD = r"""
import ctypes, sys, time
bpf = open(sys.argv[1], "rb").read()
libc = ctypes.CDLL(None, use_errno=True)
class Prog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
buf = ctypes.create_string_buffer(bpf, len(bpf))
prog = Prog(len(bpf) // 8, ctypes.cast(buf, ctypes.c_void_p))
libc.prctl(38, 1, 0, 0, 0)
t = time.perf_counter()
rc = libc.syscall(ctypes.c_long(int(sys.argv[2])), ctypes.c_long(1), ctypes.c_long(0), ctypes.byref(prog))
print((time.perf_counter() - t) * 1e6 if rc == 0 else -1)
"""


def bench_compile(n: int, work: Path) -> None:
    from ocirun.seccomp import FilterCache, compile_filter
    from ocirun.seccomp import libseccomp as ls
    from ocirun.seccomp.compile import compile_bpf
    from ocirun.spec.model import Seccomp

    sc = Seccomp.from_dict(json.loads(PROFILE.read_text()))
    cache = FilterCache(str(work / "cache"))
    f = compile_filter(sc, cache)
    print(f"profile: {len(sc.syscalls)} rules, {sum(len(r.names) for r in sc.syscalls)} names, "
          f"{f.instructions} BPF instructions; libseccomp {ls.version_string()}")
    cold = median_ms(n, lambda: compile_bpf(sc))
    warm = median_ms(n, lambda: compile_filter(sc, cache))
    print(f"{'in-process compile (cold)':<34} {cold:>8.2f} ms")
    print(f"{'in-process cache hit':<34} {warm:>8.2f} ms   saving {cold - warm:.2f} ms ({cold / warm:.0f}x)")

    def fresh(cache_arg: str) -> float:
        out = subprocess.run([sys.executable, "-c", FRESH, str(PROFILE), cache_arg], check=True,
                             capture_output=True, text=True, cwd=REPO)
        return float(out.stdout)

    fcold = statistics.median(fresh("-") for _ in range(n))
    fwarm = statistics.median(fresh(str(work / "cache")) for _ in range(n))
    print(f"{'fresh process: import+compile':<34} {fcold:>8.2f} ms")
    print(f"{'fresh process: import+cache hit':<34} {fwarm:>8.2f} ms   saving {fcold - fwarm:.2f} ms")

    bpf = work / "profile.bpf"
    bpf.write_bytes(f.bpf)
    loads = [float(subprocess.run([sys.executable, "-c", LOAD, str(bpf), str(ls._nr_seccomp())], check=True,
                                  capture_output=True, text=True).stdout) for _ in range(n)]
    print(f"{'seccomp() load in the child':<34} {statistics.median(loads):>8.1f} us")


def ocirun_cmd() -> list[str]:
    exe = REPO / ".venv" / "bin" / "ocirun"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "ocirun"]


def bench_run(n: int, work: Path) -> None:
    """`run /bin/true` without and with the profile, both runtimes alternating in one
    loop; the seccomp cost of each runtime is its own (profile - plain) difference."""
    bundle = work / "bundle"
    subprocess.run([str(REPO / "bundles" / "make-busybox-bundle"), str(bundle)], check=True,
                   stdout=subprocess.DEVNULL)
    cfg = json.loads((bundle / "config.json").read_text())
    cfg["process"]["args"] = ["/bin/true"]
    cfg["process"]["terminal"] = False
    plain = json.dumps(cfg)
    cfg["linux"]["seccomp"] = json.loads(PROFILE.read_text())
    with_profile = json.dumps(cfg)
    runtimes = {
        "runc": ["runc", "--root", str(work / "runc-root")],
        "ocirun": [*ocirun_cmd(), "--root", str(work / "ocirun-root")],
    }
    samples: dict[tuple[str, str], list[float]] = {}
    for i in range(n + 2):
        for label, text in (("plain", plain), ("profile", with_profile)):
            (bundle / "config.json").write_text(text)
            for name, rt in runtimes.items():
                t = time.perf_counter()
                subprocess.run([*rt, "run", "--bundle", str(bundle), f"s{label}{i}"], check=True,
                               cwd=bundle, stdout=subprocess.DEVNULL)
                if i >= 2:  # two warm-up rounds (the first fills ocirun's filter cache)
                    samples.setdefault((label, name), []).append(time.perf_counter() - t)
    med = {k: statistics.median(v) * 1000 for k, v in samples.items()}
    for label in ("plain", "profile"):
        r, o = med[(label, "runc")], med[(label, "ocirun")]
        print(f"{'run /bin/true, ' + label:<34} runc {r:7.1f} ms  ocirun {o:7.1f} ms  ratio {o / r:.2f}"
              f"   (median of {n})")
    dr = med[("profile", "runc")] - med[("plain", "runc")]
    do = med[("profile", "ocirun")] - med[("plain", "ocirun")]
    print(f"{'seccomp cost in run (profile-plain)':<34} runc {dr:7.1f} ms  ocirun {do:7.1f} ms")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=20)
    ap.add_argument("--no-run", action="store_true", help="skip the container runs (no root needed)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="ocirun-seccomp-bench-"))
    try:
        bench_compile(args.n, work)
        if not args.no_run:
            if os.geteuid() != 0:
                print("run: skipped (needs root)")
            else:
                bench_run(args.n, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    os.umask(0o022)
    sys.exit(main())

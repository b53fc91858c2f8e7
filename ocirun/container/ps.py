"""`ocirun ps`: the container's processes (from its cgroup; without one, rootless,
from its pid namespace: ocirun.container.common.container_pids).

``--format json``: the JSON array of pids (what containerd's shim reads).
``--format table`` (default): runs ``ps`` (``-ef`` or the given arguments) and
prints its header and the lines whose PID column is one of the container's,
as runc does.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from ocirun.cli import GlobalOptions
from ocirun.container.common import container_pids, open_store
from ocirun.errors import OcirunError


def cmd_ps(g: GlobalOptions, args: argparse.Namespace) -> int:
    store = open_store(g)
    record = store.load(args.id)
    pids = sorted(container_pids(record))
    ps_args = list(args.ps_args or [])
    if ps_args[:1] == ["--"]:
        ps_args = ps_args[1:]
    if args.format == "json":
        sys.stdout.write(json.dumps(pids) + "\n")
        return 0
    sys.stdout.write(filter_ps(run_ps(ps_args or ["-ef"]), set(pids)))
    return 0


def run_ps(ps_args: list[str]) -> str:
    try:
        p = subprocess.run(["ps", *ps_args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    except FileNotFoundError:
        raise OcirunError("ps: executable file not found in $PATH") from None
    out = p.stdout.decode(errors="replace")
    if p.returncode != 0:
        raise OcirunError(f"ps: exit status {p.returncode}: {out.strip()}")
    return out


def filter_ps(output: str, pids: set[int]) -> str:
    """The header line and the lines of ``pids``; error if there is no PID column."""
    lines = output.split("\n")
    header = lines[0]
    try:
        col = header.split().index("PID")
    except ValueError:
        raise OcirunError("couldn't find PID field in ps output") from None
    out = [header]
    for line in lines[1:]:
        fields = line.split()
        if len(fields) <= col:
            continue
        try:
            pid = int(fields[col])
        except ValueError:
            continue
        if pid in pids:
            out.append(line)
    return "\n".join(out) + "\n"

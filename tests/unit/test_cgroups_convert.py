"""Conversions (v1 -> v2 values, sizes, durations), update's flag parsing, ps filtering."""

from __future__ import annotations

import argparse
import io
import json

import pytest

from ocirun.cgroups.convert import (
    blkio_weight_to_io_weight,
    hugepage_size_bytes,
    parse_cpu_list,
    parse_go_duration,
    parse_ram_size,
    shares_to_weight,
    swap_v2,
    weight_to_shares,
)
from ocirun.errors import OcirunError, UsageError


@pytest.mark.parametrize("shares,weight", [(0, 0), (2, 1), (1024, 39), (262144, 10000), (512, 20),
                                           (1, 1), (10**9, 10000)])
def test_shares_to_weight_is_runcs(shares, weight):
    assert shares_to_weight(shares) == weight


def test_weight_to_shares_round_trips_within_a_step():
    for w in (1, 39, 100, 5000, 10000):
        assert shares_to_weight(weight_to_shares(w)) == w


@pytest.mark.parametrize("blkio,io", [(0, 0), (10, 1), (1000, 10000), (500, 4950), (100, 910)])
def test_blkio_weight_to_io_weight(blkio, io):
    assert blkio_weight_to_io_weight(blkio) == io


def test_swap_v2():
    assert swap_v2(0, -1) == -1
    assert swap_v2(-1, 100) == -1
    assert swap_v2(0, 100) == 0
    assert swap_v2(300, 100) == 200
    assert swap_v2(100, 100) == 0
    with pytest.raises(ValueError, match="without memory limit"):
        swap_v2(300, 0)
    with pytest.raises(ValueError, match=">= memory limit"):
        swap_v2(50, 100)


@pytest.mark.parametrize("text,value", [
    ("512", 512), ("1k", 1024), ("1K", 1024), ("100m", 100 << 20), ("100M", 100 << 20), ("1g", 1 << 30),
    ("1.5G", 3 << 29), ("64KiB", 64 << 10), ("2 GB", 2 << 30), ("10mb", 10 << 20), ("1t", 1 << 40),
    ("0", 0),
])
def test_parse_ram_size_as_go_units(text, value):
    assert parse_ram_size(text) == value


@pytest.mark.parametrize("text", ["", "abc", "-1", "1x", "1.2.3m", "m", "1 m b"])
def test_parse_ram_size_rejects(text):
    with pytest.raises(ValueError, match="invalid size"):
        parse_ram_size(text)


def test_hugepage_sizes_and_cpu_lists():
    assert hugepage_size_bytes("2MB") == 2 << 20
    assert hugepage_size_bytes("64KB") == 64 << 10
    assert hugepage_size_bytes("1GB") == 1 << 30
    with pytest.raises(ValueError):
        hugepage_size_bytes("2M")
    assert parse_cpu_list("0-3,7") == [0, 1, 2, 3, 7]
    assert parse_cpu_list("") == []


@pytest.mark.parametrize("text,seconds", [("5s", 5), ("100ms", 0.1), ("1m30s", 90), ("1h", 3600),
                                          ("1.5s", 1.5), ("250us", 0.00025), ("0", 0), ("-1s", -1)])
def test_go_durations(text, seconds):
    assert parse_go_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["5", "s", "1d", "", "5 s", "1000000000h", "2562048h"])  # past int64 ns: Go refuses too
def test_go_duration_rejects(text):
    with pytest.raises(ValueError, match="invalid duration"):
        parse_go_duration(text)


# --------------------------------------------------------------------------- update


def update_args(argv: list[str]) -> argparse.Namespace:
    from ocirun.cli import _build_parser

    return _build_parser().parse_args(["update", *argv, "cid"])


def from_argv(argv, stdin=None):
    from ocirun.container.update import resources_from_args

    return resources_from_args(update_args(argv), stdin)


def test_update_flags():
    r = from_argv(["--memory", "512m", "--memory-swap", "-1", "--memory-reservation", "1g",
                   "--kernel-memory", "100M", "--kernel-memory-tcp", "10m", "--cpu-share", "512",
                   "--cpu-quota", "-1", "--cpu-period", "50000", "--cpu-rt-period", "1000000",
                   "--cpu-rt-runtime", "950", "--cpuset-cpus", "0-1", "--cpuset-mems", "0",
                   "--pids-limit", "20", "--blkio-weight", "300"])
    m, c = r.memory, r.cpu
    assert (m.limit, m.swap, m.reservation, m.kernel, m.kernel_tcp) == (512 << 20, -1, 1 << 30, 100 << 20, 10 << 20)
    assert (c.shares, c.quota, c.period, c.realtime_period, c.realtime_runtime, c.cpus, c.mems) == \
        (512, -1, 50000, 1000000, 950, "0-1", "0")
    assert r.pids.limit == 20 and r.block_io.weight == 300


def test_update_flags_only_what_is_given():
    r = from_argv(["--memory", "100m"])
    assert r.memory.limit == 100 << 20 and r.memory.swap is None
    assert r.cpu is None and r.pids is None and r.block_io is None
    assert from_argv([]) is None
    assert from_argv(["--pids-limit", "0"]) is None  # runc: 0 leaves the limit alone


@pytest.mark.parametrize("argv,msg", [
    (["--memory", "lots"], "invalid value for memory: invalid size: 'lots'"),
    (["--cpu-period", "-5"], "invalid value for cpu-period"),
    (["--cpu-quota", "1.5"], "invalid value for cpu-quota"),
    (["--pids-limit", "x"], 'invalid value "x" for flag -pids-limit'),
    (["--l3-cache-schema", "L3:0=f"], "Intel RDT"),
])
def test_update_flag_errors(argv, msg):
    with pytest.raises(UsageError, match=msg.replace("(", r"\(")):
        from_argv(argv)


def test_update_resources_json_from_stdin_with_zeros_unchanged():
    doc = {"memory": {"limit": 1048576, "reservation": 0, "swap": 0}, "cpu": {"shares": 0, "quota": 20000},
           "pids": {"limit": 0}, "blockIO": {"weight": 0}, "unified": {"memory.high": "1000"}}
    r = from_argv(["--resources", "-", "--memory", "1g"], io.StringIO(json.dumps(doc)))
    assert r.memory.limit == 1048576 and r.memory.reservation is None and r.memory.swap is None
    assert r.cpu.shares is None and r.cpu.quota == 20000
    assert r.pids is None
    assert r.block_io.weight is None
    assert dict(r.unified) == {"memory.high": "1000"}


def test_update_resources_file_errors(tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text("[1]")
    with pytest.raises(UsageError, match="not an object"):
        from_argv(["--resources", str(bad)])
    bad.write_text('{"memory": {"limit": "1g"}}')
    with pytest.raises(UsageError, match="memory.limit must be an integer"):
        from_argv(["--resources", str(bad)])
    with pytest.raises(UsageError, match="open"):
        from_argv(["--resources", str(tmp_path / "missing")])


# --------------------------------------------------------------------------- ps


PS = """UID          PID    PPID  C STIME TTY          TIME CMD
root           1       0  0 10:00 ?        00:00:01 /sbin/init
root         100       1  0 10:01 ?        00:00:00 sleep 100
root         101     100  0 10:01 ?        00:00:00 sh -c x
"""


def test_ps_filter_keeps_header_and_container_pids():
    from ocirun.container.ps import filter_ps

    out = filter_ps(PS, {100, 101})
    assert out.splitlines() == [PS.splitlines()[0], PS.splitlines()[2], PS.splitlines()[3]]
    with pytest.raises(OcirunError, match="couldn't find PID field"):
        filter_ps("USER CMD\nroot x\n", {1})

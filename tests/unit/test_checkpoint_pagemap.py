"""The guest's checkpoint tests read CRIU's pagemap images by hand
(tests/cgroupv2/checkpoint_helpers.py: parent_pages, instead of `crit decode`,
which costs seconds a call under emulation): checked here against CRIU's own
crit on images crit encodes (no kernel support needed)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cgroupv2"))
from checkpoint_helpers import parent_pages  # noqa: E402

CRIT = shutil.which("crit") or "crit"
HAVE_CRIT = shutil.which("crit") is not None


def _encode(tmp_path: Path, entries: list[dict]) -> Path:
    src, img = tmp_path / "pagemap.json", tmp_path / "pagemap-1.img"
    src.write_text(json.dumps({"magic": "PAGEMAP", "entries": [{"pages_id": 7}, *entries]}))
    subprocess.run([CRIT, "encode", "-i", str(src), "-o", str(img)], check=True, timeout=120)
    return img


def _crit_parent_pages(img: Path) -> int:
    p = subprocess.run([CRIT, "decode", "--pretty", "-i", str(img)], capture_output=True, text=True, check=True, timeout=120)
    return sum(e.get("nr_pages", 0) for e in json.loads(p.stdout)["entries"][1:]
               if "PE_PARENT" in e.get("flags", "") or e.get("in_parent"))


@pytest.mark.skipif(not HAVE_CRIT, reason="crit (Debian's criu) is not installed")
@pytest.mark.parametrize("entries, expected", [
    ([], 0),
    ([{"vaddr": "0x400000", "nr_pages": 3, "flags": "PE_PRESENT"}], 0),
    ([{"vaddr": "0x400000", "nr_pages": 3, "flags": "PE_PARENT"},
      {"vaddr": "0x7ffd12340000", "nr_pages": 300, "flags": "PE_PRESENT"},
      {"vaddr": "0x600000", "nr_pages": 2, "flags": "PE_PARENT | PE_LAZY"},
      {"vaddr": "0xffffffffff600000", "nr_pages": 1, "flags": "PE_LAZY"}], 5),
    ([{"vaddr": "0x400000", "nr_pages": 130, "in_parent": True}], 130),  # older CRIUs' form
])
def test_parent_pages_as_crit_reads_them(tmp_path, entries, expected):
    img = _encode(tmp_path, entries)
    assert parent_pages(img) == _crit_parent_pages(img) == expected


def test_not_a_pagemap_is_refused(tmp_path):
    img = tmp_path / "x.img"
    img.write_bytes(b"\0" * 16)
    with pytest.raises(AssertionError, match="not a pagemap image"):
        parent_pages(img)

"""What create refuses before anything exists: Intel RDT's wording."""

from __future__ import annotations

from ocirun.plan import support

MOUNTINFO = (
    "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
    "40 22 0:35 / /sys/fs/resctrl rw,relatime shared:20 - resctrl resctrl rw\n"
)


def test_resctrl_mounted_reads_the_filesystem_type(tmp_path):
    with_resctrl = tmp_path / "with"
    with_resctrl.write_text(MOUNTINFO)
    without = tmp_path / "without"
    without.write_text(MOUNTINFO.splitlines(keepends=True)[0])
    assert support.resctrl_mounted(str(with_resctrl))
    assert not support.resctrl_mounted(str(without))


def test_intel_rdt_without_resctrl_says_what_is_missing(monkeypatch):
    monkeypatch.setattr(support, "resctrl_mounted", lambda: False)
    assert "no resctrl filesystem is mounted" in support._intel_rdt_problem()
    monkeypatch.setattr(support, "resctrl_mounted", lambda: True)
    assert support._intel_rdt_problem().startswith("not implemented")

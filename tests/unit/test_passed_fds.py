"""The fds passed beyond stdio (ocirun.linux.fds) and what the plan makes of them."""

from __future__ import annotations

import copy
import os

import pytest

from ocirun.linux.fds import fill_holes, listen_fds
from ocirun.plan.build import PlanOptions, build_plan
from ocirun.spec.generate import default_spec
from ocirun.spec.model import Config


@pytest.mark.parametrize("env, count", [
    ({"LISTEN_FDS": "2", "LISTEN_PID": "42"}, 2),
    ({"LISTEN_FDS": "2", "LISTEN_PID": "43"}, 0),  # another process's fds
    ({"LISTEN_FDS": "2"}, 0),
    ({"LISTEN_FDS": "x", "LISTEN_PID": "42"}, 0),
    ({"LISTEN_FDS": "-1", "LISTEN_PID": "42"}, 0),
    ({}, 0),
])
def test_listen_fds_as_go_systemd(env, count):
    assert listen_fds(env, pid=42) == count


def test_fill_holes_puts_placeholders_on_free_numbers_only():
    # find three free numbers in a row well above what the test process uses
    base = 900
    keep = os.open("/dev/null", os.O_RDONLY)
    try:
        os.dup2(keep, base + 1)  # an fd "passed" by the caller, in the middle
        holes = fill_holes(3, first=base)
        try:
            assert holes == (base, base + 2)
            for fd in holes:
                assert os.get_inheritable(fd) is False  # never reaches anything we exec
            assert os.get_inheritable(base + 1) is True  # the caller's, untouched
            assert fill_holes(3, first=base) == ()
        finally:
            for fd in (*holes, base + 1):
                os.close(fd)
    finally:
        os.close(keep)


def _plan(tmp_path, env, **opts):
    rootfs = tmp_path / "rootfs"
    rootfs.mkdir(exist_ok=True)
    doc = copy.deepcopy(default_spec())
    doc["process"]["env"] = env
    return build_plan(Config.from_dict(doc), PlanOptions(container_id="c", bundle=str(tmp_path),
                                                         rootfs=str(rootfs), **opts), None).process


def test_fill_holes_beyond_the_open_files_limit_is_a_usage_error():
    """--preserve-fds 100000 with a limit of 1024: one message, not dup2's EBADF (#11 item 8)."""
    import resource

    from ocirun.errors import UsageError

    soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if soft == resource.RLIM_INFINITY or soft > 1 << 20:
        pytest.skip("no finite open-files limit here")
    with pytest.raises(UsageError, match=rf"--preserve-fds: fd {soft + 2} is beyond this process's limit "
                                         rf"of {soft} open files \(RLIMIT_NOFILE\)"):
        fill_holes(soft)


def test_socket_activation_in_the_plan(tmp_path):
    """runc's rules: the listen fds come first, then the preserved ones; LISTEN_FDS and
    LISTEN_PID=1 win over the config's, at the place of the config's entry."""
    proc = _plan(tmp_path, ["A=1", "LISTEN_PID=7", "B=2", "LISTEN_PID=8"],
                 listen_fds=2, preserve_fds=1, absent_fds=(4,))
    assert proc.preserve_fds == 3 and proc.absent_fds == (4,)
    assert proc.env[:4] == (b"A=1", b"LISTEN_PID=1", b"B=2", b"LISTEN_FDS=2")
    proc = _plan(tmp_path, ["A=1"], preserve_fds=2)
    assert proc.preserve_fds == 2 and not any(e.startswith(b"LISTEN_") for e in proc.env)

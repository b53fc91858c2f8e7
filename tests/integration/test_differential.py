"""ocirun against runc (Debian's, the oracle) on fresh copies of the same bundle:
what the container sees must be the same, or the difference written down here."""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid

import pytest
from conftest import OCIRUN, written

pytestmark = pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed")

PROBES = {
    "id": "id",
    "hostname": "hostname",
    "status": "grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp):' /proc/self/status",
    "dev": "ls -1 /dev | sort",
    "dev_modes": "ls -ln /dev/null /dev/zero /dev/full /dev/random /dev/urandom /dev/tty | awk '{print $1, $3, $4, $5, $6, $NF}'",
    # mount points only: sources and ids differ by design between two containers
    "mounts": "awk '{print $5}' /proc/self/mountinfo | sort",
    "mount_opts": "grep -E ' /(proc|dev|dev/pts|dev/shm|dev/mqueue|sys) ' /proc/mounts | awk '{print $2, $3}' | sort",
    "ulimit": "ulimit -n",
    "env": "env | sort",
    "cwd": "pwd",
    "pid1": "echo $$",
    # every init leads its own session, terminal or not (runc's nsexec calls setsid)
    "session": "cut -d' ' -f6 /proc/self/stat /proc/1/stat",
    "masked": "cat /proc/kcore 2>&1 | head -c 0; ls /sys/firmware | wc -l",
    "readonly": "touch /proc/sys/x 2>/dev/null && echo writable || echo readonly",
    # runc brings lo up in a network namespace it creates (#11 item 13)
    "loopback": "cat /sys/class/net/lo/operstate /sys/class/net/lo/flags",
}

#: Deliberate differences: (probe, why).
DIFFERENT = {
    # runc 1.1 does not mount the hybrid host's cgroup2 hierarchy ("unified")
    # inside the container; ocirun shows every hierarchy the host has.
    "mounts": "ocirun also binds the hybrid host's unified cgroup2 hierarchy",
}


def _run(cmd: list[str], bundle) -> str:
    p = subprocess.run(cmd, capture_output=True, timeout=60, cwd=bundle.path)
    assert p.returncode == 0, (cmd, p.stderr)
    return p.stdout.decode()


@pytest.mark.parametrize("probe", sorted(PROBES))
def test_container_sees_what_runc_shows(probe, ocirun, bundle, tmp_path):
    bundle.set_args("sh", "-c", PROBES[probe])
    theirs = bundle.copy(tmp_path / "runc-bundle")
    cid = ocirun.new_id()
    ours = _run([*ocirun_cmd(ocirun), "run", "--bundle", str(bundle.path), cid], bundle)
    runc_root = tmp_path / "runc-root"
    reference = _run(["runc", "--root", str(runc_root), "run", "--bundle", str(theirs.path),
                      f"runc-{uuid.uuid4().hex[:8]}"], theirs)
    if probe in DIFFERENT:
        extra = set(ours.split()) - set(reference.split())
        missing = set(reference.split()) - set(ours.split())
        assert not missing, f"ocirun lacks {missing}"
        assert all("cgroup/unified" in e for e in extra), extra
    else:
        assert ours == reference


def ocirun_cmd(ocirun) -> list[str]:

    return [*OCIRUN, "--root", str(ocirun.root)]


def _runc(runc_root, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    # stdio to DEVNULL, not pipes: a created init inherits them and would hold a pipe open
    p = subprocess.run(["runc", "--root", str(runc_root), *args], stdin=subprocess.DEVNULL,
                       stdout=subprocess.PIPE if args[0] in ("state", "list") else subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=60)
    assert not check or p.returncode == 0, args
    return p


def test_state_and_list_match_runc(ocirun, bundle, tmp_path):
    """`state`, `list -f json`, `list` and `list -q` of one created container, ocirun
    against runc on a copy of the same bundle: the same keys in the same order, the
    same values but for what must differ, and the table laid out as runc lays it."""
    from ocirun import SPEC_VERSION
    from ocirun.container.query import format_table

    bundle.set_args("sleep", "30")
    bundle.edit(lambda c: c.__setitem__("annotations", {"org.example.k": "v"}))
    theirs = bundle.copy(tmp_path / "runc-bundle")
    cid = ocirun.new_id()  # the same id in both roots
    runc_root = tmp_path / "runc-root"
    ocirun("create", "--bundle", str(bundle.path), cid)
    _runc(runc_root, "create", "--bundle", str(theirs.path), cid)
    try:
        ours_state = json.loads(ocirun("state", cid).stdout)
        runc_state = json.loads(_runc(runc_root, "state", cid).stdout)
        ours_list = json.loads(ocirun("list", "-f", "json").stdout)
        runc_list = json.loads(_runc(runc_root, "list", "-f", "json").stdout)
        ours_table = ocirun("list").stdout.decode()
        runc_table = _runc(runc_root, "list").stdout.decode()
        ours_quiet = ocirun("list", "-q").stdout
        runc_quiet = _runc(runc_root, "list", "-q").stdout
    finally:
        _runc(runc_root, "delete", "--force", cid, check=False)

    # runc writes the version of its own vendored spec (1.0.2-dev), as ocirun writes its own
    assert ours_state["ociVersion"] == SPEC_VERSION and runc_state["ociVersion"] == "1.0.2-dev"
    for ours, theirs_ in ((ours_state, runc_state), (ours_list[0], runc_list[0])):
        assert list(ours) == list(theirs_)
        assert ours["bundle"] == str(bundle.path) and theirs_["bundle"] == str(theirs.path)
        assert ours["rootfs"] == ours["bundle"] + "/rootfs" and theirs_["rootfs"] == theirs_["bundle"] + "/rootfs"
        assert ours["pid"] > 0 and theirs_["pid"] > 0
        differ = ("ociVersion", "pid", "bundle", "rootfs", "created")
        assert {k: v for k, v in ours.items() if k not in differ} == \
               {k: v for k, v in theirs_.items() if k not in differ}
    assert ours_state["status"] == "created" and ours_state["owner"] == ""  # runc's `state`: no owner
    assert ours_list[0]["owner"] == "root"  # `list` looks it up
    assert len(ours_list) == len(runc_list) == 1
    # the table: runc's output is what our formatter makes of runc's own JSON, and ours
    # is that of ours (column widths follow the cells, which differ in length)
    assert runc_table == format_table(runc_list)
    assert ours_table == format_table(ours_list)
    assert ours_quiet == runc_quiet == f"{cid}\n".encode()


def test_stdio_on_the_hosts_dev_null_moves_to_the_containers(ocirun, bundle, tmp_path):
    """A detached container's stdio on the host's /dev/null is reopened on the
    container's own (runc's reOpenDevNull): the host's lives on a mount the
    container cannot see, and CRIU cannot dump such a file."""

    probe = ('a=$(grep mnt_id /proc/self/fdinfo/0); exec 3</dev/null; b=$(grep mnt_id /proc/self/fdinfo/3); '
             '{ [ "$a" = "$b" ] && echo same mount || echo "$a vs $b"; } > /probe.out')
    bundle.set_args("sh", "-c", probe)
    theirs = bundle.copy(tmp_path / "runc-bundle")
    runc_root = str(tmp_path / "runc-root")
    results = []
    for run, b in ((["run", "-d", "--bundle", str(bundle.path), ocirun.new_id()], bundle),
                   (["run", "-d", "--bundle", str(theirs.path), f"runc-{uuid.uuid4().hex[:8]}"], theirs)):
        cmd = [*ocirun_cmd(ocirun), *run] if b is bundle else ["runc", "--root", runc_root, *run]
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.PIPE, timeout=60, cwd=b.path)
        assert p.returncode == 0, (cmd, p.stderr)
        results.append(written(b.rootfs / "probe.out", timeout=20).strip())
        subprocess.run([*cmd[:cmd.index("run")], "delete", "--force", run[-1]], check=True, timeout=60,
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    assert results == ["same mount", "same mount"]

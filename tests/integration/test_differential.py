"""ocirun against runc (Debian's, the oracle) on fresh copies of the same bundle:
what the container sees must be the same, or the difference written down here."""

from __future__ import annotations

import shutil
import subprocess
import uuid

import pytest

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
    import sys

    return [sys.executable, "-m", "ocirun", "--root", str(ocirun.root)]

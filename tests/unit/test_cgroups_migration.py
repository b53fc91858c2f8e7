"""ocirun.cgroups.migration: which cgroup the warm-up moves us into (the
cgroup we are in, so that the kernel moves nothing), on fake mount tables."""

from __future__ import annotations

from ocirun.cgroups.hierarchy import Host
from ocirun.cgroups.migration import own_directory


def _line(i: int, root: str, mountpoint: str, fstype: str, opts: str) -> str:
    return f"{30 + i} 23 0:{40 + i} {root} {mountpoint} rw,relatime shared:{i} - {fstype} {fstype} {opts}\n"


def test_the_cgroup_we_are_in_on_the_first_v1_hierarchy():
    mountinfo = (_line(0, "/", "/sys/fs/cgroup", "tmpfs", "rw,mode=755")
                 + _line(1, "/", "/sys/fs/cgroup/cpu,cpuacct", "cgroup", "rw,cpu,cpuacct")
                 + _line(2, "/", "/sys/fs/cgroup/pids", "cgroup", "rw,pids")
                 + _line(3, "/", "/sys/fs/cgroup/unified", "cgroup2", "rw,nsdelegate"))
    own = "2:pids:/user.slice\n1:cpu,cpuacct:/user.slice/session-1.scope\n0::/user.slice/session-1.scope\n"
    assert own_directory(Host.from_text(mountinfo, own)) == \
        "/sys/fs/cgroup/cpu,cpuacct/user.slice/session-1.scope"


def test_a_mount_rooted_below_the_hierarchys_root():
    # inside a container with its own cgroup namespace: the mount shows its cgroup as /
    mountinfo = (_line(0, "/", "/sys/fs/cgroup", "tmpfs", "rw,mode=755")
                 + _line(1, "/docker/abc", "/sys/fs/cgroup/pids", "cgroup", "rw,pids"))
    assert own_directory(Host.from_text(mountinfo, "1:pids:/docker/abc/job\n0::/\n")) == \
        "/sys/fs/cgroup/pids/job"


def test_no_v1_hierarchy_of_ours_means_no_warm_up():
    mountinfo = _line(0, "/", "/sys/fs/cgroup", "cgroup2", "rw,nsdelegate")
    host = Host.from_text(mountinfo, "0::/user.slice\n")
    assert host.mode() == "unified"  # warm_up() stops here: the container is cloned into its cgroup
    assert own_directory(host) is None
    # v1 mounted, but /proc/self/cgroup shows none of its hierarchies (a cgroup-less view)
    mountinfo = _line(0, "/", "/sys/fs/cgroup/pids", "cgroup", "rw,pids")
    assert own_directory(Host.from_text(mountinfo, "0::/\n")) is None

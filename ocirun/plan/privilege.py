"""What a rootless runtime or a user namespace cannot do, found early and said clearly.

Two halves (docs/rootless.md):

- :func:`rootless_problems`: what the planner refuses before anything exists,
  as runc's rootless validation does (libcontainer/configs/validate/rootless.go)
  and more: a rootless runtime (effective uid not 0) needs a user namespace with
  mappings; ``uid=``/``gid=`` mount options must name ids the namespace maps;
  (runc checks those for a rootless runtime only, and so do we: the kernel says
  EINVAL to root, and the reason is added then); ``additionalGids`` cannot be
  set where setgroups(2) is denied; id-mapped
  mounts need privilege over the source's filesystem.
- :func:`unprivileged_detail`: the words for a step the kernel refused in a
  user namespace (a mount of a filesystem that needs a namespace of its own, a
  locked mount flag, a hard limit or an OOM score that only privilege can
  raise or lower, a uid or gid the namespace does not map), so the user gets
  the reason and not only "operation not permitted" or "invalid argument".
"""

from __future__ import annotations

import os

from ocirun.errors import Problem
from ocirun.linux import namespaces

_USERNS_HELP = ('add {"type": "user"} to linux.namespaces with uidMappings and gidMappings '
                "(`ocirun spec --rootless` writes a bundle that has them)")


def rootless_problems(config, kinds: dict, rootless_ids: tuple[int, int] | None,
                      setgroups_deny: bool) -> list[Problem]:
    """Problems of ``config`` that make it fail without privilege. ``kinds``: the
    config's namespaces by type; ``rootless_ids``: the runtime's (euid, egid) when
    its effective uid is not 0, else None; ``setgroups_deny``: the new user
    namespace will have setgroups denied."""
    linux = config.linux
    problems: list[Problem] = []
    user_ns = kinds.get("user")
    if rootless_ids is not None:
        uid = rootless_ids[0]
        if user_ns is None:
            problems.append(Problem("$.linux.namespaces", (
                f"ocirun runs rootless (uid {uid}): a container needs a user namespace, since "
                f"without one none of its namespaces can be created; {_USERNS_HELP}")))
        elif not user_ns.path:
            for key, name in (("uidMappings", "uid_mappings"), ("gidMappings", "gid_mappings")):
                if not getattr(linux, name):
                    problems.append(Problem(f"$.linux.{key}", (
                        f"ocirun runs rootless (uid {uid}): a new user namespace needs at least one "
                        f"mapping (container id 0 to your own id, or ranges from /etc/sub{key[:3]})")))
        for index, m in enumerate(config.mounts or ()):
            if m.uid_mappings or m.gid_mappings or any(o in ("idmap", "ridmap") for o in m.options):
                problems.append(Problem(f"$.mounts[{index}].options", (
                    f"ocirun runs rootless (uid {uid}): an id-mapped mount needs CAP_SYS_ADMIN over "
                    f"the filesystem of {m.source or '?'} (the host's user namespace)")))
        if user_ns is not None and not user_ns.path and linux is not None:
            # as runc (rootlessEUIDMount); as root the kernel's EINVAL gets its reason
            # afterwards (unprivileged_detail)
            problems.extend(_unmapped_mount_ids(config.mounts or (), linux))
    if setgroups_deny and config.process is not None and config.process.user.additional_gids:
        problems.append(Problem("$.process.user.additionalGids", (
            "cannot be set: the container's user namespace has setgroups(2) denied, as the kernel "
            "requires when an unprivileged runtime writes its gid map itself (a single mapping of "
            "your own gid); map a range of gids from /etc/subgid (written by newgidmap) to use "
            "additional groups")))
    return problems


def _unmapped_mount_ids(mounts, linux) -> list[Problem]:
    """``uid=N``/``gid=N`` options naming ids the new user namespace does not map
    (runc's rootlessEUIDMount; the kernel's answer would be a bare EINVAL)."""
    out = []
    for index, m in enumerate(mounts):
        for opt in m.options:
            key, eq, value = opt.partition("=")
            if not eq or key not in ("uid", "gid") or not value.isdigit():
                continue
            maps = linux.uid_mappings if key == "uid" else linux.gid_mappings
            n = int(value)
            if not any(mp.container_id <= n < mp.container_id + mp.size for mp in maps):
                out.append(Problem(f"$.mounts[{index}].options", (
                    f"{opt}: {key} {n} is not mapped in the container's user namespace "
                    f"(linux.{key}Mappings); a {'uid' if key == 'uid' else 'gid'} the namespace "
                    f"does not map cannot own the mount")))
    return out


def setgroups_denied(rootless_ids: tuple[int, int] | None, new_user_ns: bool, gid_mappings) -> bool:
    """Whether create writes "deny" to setgroups: a rootless runtime writing the gid
    map itself, which it can only for a single mapping of its own gid (anything
    else goes through newgidmap, which leaves setgroups allowed for subgid ranges)."""
    if rootless_ids is None or not new_user_ns:
        return False
    maps = tuple(gid_mappings or ())
    return len(maps) == 1 and maps[0].host_id == rootless_ids[1] and maps[0].size == 1


# --------------------------------------------------------------------------- after the fact

_NEEDS_OWN_NS = {
    b"proc": ("a PID namespace", "pid"),
    b"sysfs": ("a network namespace", "network"),
    b"mqueue": ("an IPC namespace", "ipc"),
    b"cgroup2": ("a cgroup namespace", "cgroup"),
}


def _in_user_namespace(plan) -> bool:
    if plan.new_namespaces & namespaces.CLONE_NEWUSER:
        return True
    if any(j.clone_flag == namespaces.CLONE_NEWUSER for j in plan.join_namespaces):
        return True
    from ocirun.rootless import running_in_userns

    return running_in_userns()


def unprivileged_detail(step: str, err: int, plan, mount=None, rlimit=None, process=None) -> str | None:
    """Why the kernel refused ``step`` (a STEPS name) with ``err`` (EPERM, EACCES,
    EINVAL or ENOENT) when it did for want of privilege or of a mapping; None when that is not
    the reason. ``process``: the plan's process (its uid and gid)."""
    import errno

    strerror = os.strerror(err).lower()
    if step == "RLIMIT" and err == errno.EPERM and rlimit is not None:
        import resource

        hard = resource.getrlimit(rlimit.resource)[1]
        shown = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
        return (f"{strerror} (the runtime's hard limit is {shown}; raising it needs "
                f"CAP_SYS_RESOURCE in the host's user namespace, which the runtime does not have "
                f"(a rootless one never has))")
    if step == "OOM_SCORE_ADJ" and err == errno.EACCES:
        own = _own_oom_score_adj()
        return (f"{strerror} (lowering it below the runtime's own ({own}) needs CAP_SYS_RESOURCE; "
                f"without it process.oomScoreAdj can only be {own} or higher)")
    if step in ("SETGROUPS", "USERNS_SETGROUPS") and err == errno.EPERM:
        return (f"{strerror} (setgroups(2) is denied in the container's user namespace, so "
                f"process.user.additionalGids cannot be set; map gids through newgidmap from "
                f"/etc/subgid instead of a single mapping of your own gid)")
    if not _in_user_namespace(plan):
        return None
    if step == "UNSHARE" and err == errno.EPERM:
        return f"{strerror} (creating namespaces without privilege needs a new user namespace: {_USERNS_HELP})"
    if step in ("DEVICE_BIND",) and err in (errno.EPERM, errno.EACCES):
        return (f"{strerror} (in a user namespace devices cannot be made with mknod; the host's "
                f"device of the same path is bind-mounted instead, and must be readable)")
    if step == "DEVICE_BIND" and err == errno.ENOENT:
        return (f"{strerror} (in a user namespace devices cannot be made with mknod; they are "
                f"bind-mounted from the host's device of the same path, and the host has none there)")
    if step == "DEVICE_MKNOD" and err == errno.EPERM:
        return f"{strerror} (mknod(2) is refused in a user namespace)"
    if step == "SCHEDULER" and err == errno.EPERM and process is not None and process.scheduler is not None \
            and process.scheduler.policy in (1, 2):  # SCHED_FIFO, SCHED_RR
        import resource

        hard = resource.getrlimit(resource.RLIMIT_RTPRIO)[1]
        shown = "unlimited" if hard == resource.RLIM_INFINITY else str(hard)
        return (f"{strerror} (a real-time policy needs CAP_SYS_NICE in the host's user namespace, "
                f"which a process in a user namespace never has, or an RLIMIT_RTPRIO of at least "
                f"its priority in process.rlimits; the runtime's hard limit for it is {shown})")
    if step == "IOPRIO" and err == errno.EPERM:
        return (f"{strerror} (the real-time I/O class needs CAP_SYS_NICE or CAP_SYS_ADMIN in the "
                f"host's user namespace, which a process in a user namespace never has; "
                f"IOPRIO_CLASS_BE and IOPRIO_CLASS_IDLE need neither)")
    if step in ("SETRESUID", "SETRESGID") and err == errno.EINVAL and process is not None:
        # the kernel's EINVAL for an id the namespace does not map (exec --user, process.user)
        kind = "uid" if step == "SETRESUID" else "gid"
        return (f"{strerror} ({kind} {process.uid if kind == 'uid' else process.gid} is not mapped "
                f"in the container's user namespace (linux.{kind}Mappings); a single mapping of "
                f"your own id maps {kind} 0 only: map a range from /etc/sub{kind} to use others)")
    if mount is None:
        return None
    if step in ("MOUNT_REMOUNT", "READONLY_PATH") and err == errno.EPERM:
        return (f"{strerror} (in a user namespace a mount's nosuid, nodev, noexec, atime and "
                f"read-only flags from the host are locked: a remount can add flags, never clear them)")
    if step != "MOUNT":
        return None
    fstype = mount.fstype or b""
    if mount.flags & 0x1000:  # MS_BIND
        if err in (errno.EPERM, errno.EACCES):
            return (f"{strerror} (a container in a user namespace reaches the host's files as the "
                    f"user running ocirun does: {mount.source.decode(errors='replace')} must be "
                    f"reachable by it)")
        return None
    if err == errno.EINVAL and mount.data and (b"uid=" in mount.data or b"gid=" in mount.data):
        return (f"{strerror} (uid= and gid= options must name ids mapped in the container's "
                f"user namespace)")
    if err != errno.EPERM:
        return None
    if fstype in _NEEDS_OWN_NS:
        what, kind = _NEEDS_OWN_NS[fstype]
        extra = ""
        if fstype == b"sysfs":
            extra = "; or bind the host's /sys instead (type bind, source /sys, options rbind,ro)"
        elif fstype == b"proc":
            extra = ", and a procfs fully visible in the runtime's mount namespace"
        return (f"{strerror} (in a user namespace {fstype.decode()} can only be mounted with "
                f"{what} of the container's own: add {{\"type\": \"{kind}\"}} to linux.namespaces"
                f"{extra})")
    if fstype == b"cgroup":
        return (f"{strerror} (cgroup v1 hierarchies cannot be mounted in a user namespace)")
    return (f"{strerror} (in a user namespace only some filesystems can be mounted (tmpfs, "
            f"devpts, proc, sysfs, mqueue, cgroup2, overlay, fuse); {fstype.decode(errors='replace')} "
            f"needs privilege: bind-mount a directory instead)")


def _own_oom_score_adj() -> str:
    try:
        with open("/proc/self/oom_score_adj") as f:
            return f.read().strip()
    except OSError:
        return "?"


__all__ = ["rootless_problems", "setgroups_denied", "unprivileged_detail"]

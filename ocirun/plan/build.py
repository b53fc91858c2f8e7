"""Model + host facts → LaunchPlan.

Everything the C child will do is decided here: which namespaces to create or
join, every mount as kernel flags and data, the devices, the process in
kernel terms (bitmasks, numbers, encoded bytes). Nothing here touches the
container; it only reads host facts (stat of bind sources, the kernel's last
capability, the container's /etc/passwd through a rootfs-confined open).
"""

from __future__ import annotations

import os
import resource
import stat
from collections.abc import Iterable

from ocirun.errors import ConfigError, Problem
from ocirun.linux import capabilities, namespaces
from ocirun.linux.safepath import read_in_root
from ocirun.plan import mount_options as mo
from ocirun.plan.devices import dev_symlinks, device_nodes
from ocirun.plan.model import (
    Capabilities,
    LaunchPlan,
    MountIdmap,
    MountStep,
    NamespaceJoin,
    NetDeviceMove,
    ProcessPlan,
    Rlimit,
)
from ocirun.util.record import record, replace

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_DEV_TMPFS = MountStep(
    target=b"/dev",
    source=b"tmpfs",
    fstype=b"tmpfs",
    flags=mo.MS_NOSUID | mo.MS_STRICTATIME,
    data=b"mode=755,size=65536k",
    describe=b"mount tmpfs to /dev",
)


@record
class PlanOptions:
    container_id: str
    bundle: str
    rootfs: str
    no_pivot: bool = False
    no_new_keyring: bool = False
    preserve_fds: int = 0
    #: socket activation (ocirun.linux.fds): fds 3..3+listen_fds-1, before the
    #: preserved ones; the process gets LISTEN_FDS and LISTEN_PID=1
    listen_fds: int = 0
    #: numbers among those the caller did not pass: closed before exec
    absent_fds: tuple[int, ...] = ()
    #: ocirun runs rootless (ocirun.rootless.is_rootless): it has no privilege over
    #: the host, so the init opens bind sources itself (never the parent's helper)
    rootless: bool = False
    #: (euid, egid) when the runtime's effective uid is not 0 (runc's RootlessEUID):
    #: id maps are written without privilege (ocirun.linux.idmaps); None for root
    rootless_ids: tuple[int, int] | None = None
    #: ocirun itself runs in a user namespace (rootless podman's runtime): as in a
    #: new one, mknod is refused and sysfs needs a network namespace of our own
    in_userns: bool = False


@record
class CgroupView:
    """What the container's cgroup mount must show (from the cgroup manager).

    ``binds``: (host directory, name under the cgroup mount point) per hierarchy;
    for v2 a single entry with name "".
    """

    version: int
    binds: tuple[tuple[str, str], ...]


def build_plan(config, opts: PlanOptions, cgroup_view: CgroupView | None) -> LaunchPlan:
    linux = config.linux
    ns_list = tuple(linux.namespaces) if linux is not None else ()
    new_flags = 0
    joins: list[NamespaceJoin] = []
    kinds = {ns.type: ns for ns in ns_list}
    for kind in namespaces.JOIN_ORDER:
        ns = kinds.get(kind)
        if ns is None:
            continue
        if ns.path:
            joins.append(NamespaceJoin(namespaces.CLONE_FLAGS[kind], ns.path.encode()))
        else:
            new_flags |= namespaces.CLONE_FLAGS[kind]
    if "mount" not in kinds:
        raise ConfigError(
            "config.json",
            [Problem("$.linux.namespaces", "a mount namespace is required (ocirun never mounts in the host's)")],
        )
    in_user_ns = "user" in kinds
    new_user_ns = bool(new_flags & namespaces.CLONE_NEWUSER)
    new_cgroup_ns = bool(new_flags & namespaces.CLONE_NEWCGROUP)
    new_net_ns = "network" in kinds and not kinds["network"].path
    # What a user namespace forbids applies as much when ocirun itself runs in one.
    under_user_ns = in_user_ns or opts.in_userns
    from ocirun.plan.privilege import rootless_problems, setgroups_denied

    setgroups_deny = setgroups_denied(opts.rootless_ids, new_user_ns, linux.gid_mappings if linux else ())
    problems = rootless_problems(config, kinds, opts.rootless_ids, setgroups_deny)
    if problems:
        raise ConfigError("config.json", problems)

    mounts = _plan_mounts(config.mounts, opts, cgroup_view, new_cgroup_ns, under_user_ns, new_net_ns,
                          _container_idmap(linux, kinds.get("user")),
                          parent_opens_binds=in_user_ns and not opts.rootless)
    if linux is not None and linux.mount_label:
        mounts = _with_mount_label(mounts, linux.mount_label)
    has_devpts = any(m.target == b"/dev/pts" and m.fstype == b"devpts" for m in mounts)
    dev_is_bound = any(m.target == b"/dev" and m.flags & mo.MS_BIND for m in mounts)

    root_prop, rootfs_prop = _propagation(linux.rootfs_propagation if linux else None)
    proc = config.process
    seccomp = None
    if linux is not None and linux.seccomp is not None:
        from ocirun.seccomp.compile import compile_config_filter  # libseccomp only when needed

        seccomp = compile_config_filter(linux.seccomp, os.path.join(opts.bundle, "config.json"))
    return LaunchPlan(
        rootfs=opts.rootfs.encode(),
        new_namespaces=new_flags,
        join_namespaces=tuple(joins),
        root_propagation=root_prop,
        rootfs_propagation=rootfs_prop,
        root_readonly=bool(config.root and config.root.readonly),
        no_pivot=opts.no_pivot,
        mounts=mounts,
        devices=() if dev_is_bound else device_nodes(linux.devices if linux else (), in_user_ns=under_user_ns),
        symlinks=() if dev_is_bound else dev_symlinks(has_devpts),
        masked_paths=tuple(p.encode() for p in (linux.masked_paths if linux else ()) or ()),
        readonly_paths=tuple(p.encode() for p in (linux.readonly_paths if linux else ()) or ()),
        hostname=config.hostname.encode() if config.hostname else None,
        domainname=config.domainname.encode() if config.domainname else None,
        process=_plan_process(proc, opts, linux=linux, in_user_ns=in_user_ns) if proc is not None else None,
        uid_map=_id_map(linux.uid_mappings) if new_user_ns and linux else None,
        gid_map=_id_map(linux.gid_mappings) if new_user_ns and linux else None,
        timens_offsets=_time_offsets(linux) if new_flags & namespaces.CLONE_NEWTIME else None,
        oom_score_adj=proc.oom_score_adj if proc is not None else None,
        session_keyring=None if opts.no_new_keyring else f"_ses.{opts.container_id}".encode(),
        seccomp_bpf=seccomp.bpf if seccomp is not None else None,
        seccomp_flags=seccomp.flags if seccomp is not None else 0,
        seccomp_notify=seccomp.uses_notify if seccomp is not None else False,
        sysctl=_plan_sysctl(linux, kinds),
        net_devices=_plan_net_devices(linux, kinds),
        rootless_euid=opts.rootless_ids is not None,
        setgroups_deny=setgroups_deny,
    )


def _plan_net_devices(linux, kinds) -> tuple[NetDeviceMove, ...]:
    """linux.netDevices in config order. The validator has checked the names and
    that there is a network namespace; here, that a joined one is not our own."""
    if linux is None or not linux.net_devices:
        return ()
    netns = kinds.get("network")
    if netns is not None and netns.path:
        from ocirun.plan.sysctl import is_current_netns

        if is_current_netns(netns.path):
            raise ConfigError("config.json", [Problem(
                "$.linux.netDevices",
                f"the network namespace {netns.path} is the runtime's own: devices would not leave the host")])
    return tuple(NetDeviceMove(host, dev.name or host) for host, dev in linux.net_devices.items())


def _plan_sysctl(linux, kinds) -> tuple[tuple[bytes, bytes], ...]:
    if linux is None or not linux.sysctl:
        return ()
    from ocirun.plan.sysctl import plan_sysctls

    return plan_sysctls(linux.sysctl, {kind: ns.path for kind, ns in kinds.items()})


def _with_mount_label(mounts: tuple[MountStep, ...], mount_label: str | None) -> tuple[MountStep, ...]:
    """linux.mountLabel as context= on the filesystems the container owns (not proc,
    sysfs, cgroup, binds), as runc does; nothing when SELinux is off (ocirun.linux.lsm)."""
    from ocirun.linux.lsm import mount_label_option

    option = mount_label_option(mount_label)
    if option is None:
        return mounts
    out = []
    for m in mounts:
        if m.flags & mo.MS_BIND or m.flags & mo.MS_REMOUNT or m.fstype in (None, b"proc", b"sysfs", b"cgroup",
                                                                          b"cgroup2", b"mqueue"):
            out.append(m)
            continue
        data = f"{m.data.decode()},{option}" if m.data else option
        out.append(replace(m, data=data.encode()))
    return tuple(out)


def _propagation(value: str | None) -> tuple[int, int]:
    """(flags for "/" before mounting, flags for "/" after pivot_root).

    Before anything is mounted "/" becomes rslave (or the private/slave kind asked
    for) so no container mount reaches the host; a shared rootfsPropagation can
    only be applied after pivot_root, since pivot_root refuses a shared parent.
    """
    if not value:
        return mo.MS_SLAVE | mo.MS_REC, 0
    flag = mo.PROPAGATION_OPTIONS[value]
    if flag & (mo.MS_SLAVE | mo.MS_PRIVATE):
        return flag, flag
    return mo.MS_SLAVE | mo.MS_REC, flag


def _container_idmap(linux, user_ns) -> MountIdmap | None:
    """What an idmap/ridmap mount without mappings of its own borrows (config.md:
    "the runtime MAY use the container's user namespace mapping"), as runc does:
    a joined user namespace itself, else the container's mappings in a user
    namespace of their own (the same mapping; the container's does not exist yet
    when the parent makes the mount). None without a user namespace."""
    if user_ns is None:
        return None
    if user_ns.path:
        return MountIdmap(None, None, user_ns.path.encode(), False, "")
    return MountIdmap(_id_map(linux.uid_mappings), _id_map(linux.gid_mappings), None, False, "")


def _plan_mounts(
    config_mounts: Iterable,
    opts: PlanOptions,
    cgroup_view: CgroupView | None,
    new_cgroup_ns: bool,
    in_user_ns: bool,
    new_net_ns: bool,
    container_idmap: MountIdmap | None = None,
    parent_opens_binds: bool = False,
) -> tuple[MountStep, ...]:
    steps: list[MountStep] = []
    config_mounts = tuple(config_mounts)
    has_dev = any(os.path.normpath(m.destination) == "/dev" for m in config_mounts)
    for index, m in enumerate(config_mounts):
        dest = os.path.normpath(m.destination)
        if not has_dev and (dest.startswith("/dev/")):
            # A fresh tmpfs /dev before the first mount below it (issue: /dev is
            # ours to populate, never the image's directory).
            steps.append(_DEV_TMPFS)
            has_dev = True
        steps.extend(replace(step, json_path=f"$.mounts[{index}]") for step in
                     _plan_one_mount(m, dest, opts, cgroup_view, new_cgroup_ns, in_user_ns, new_net_ns,
                                     _mount_idmap(m, index, container_idmap), parent_opens_binds))
    if not has_dev:
        steps.append(_DEV_TMPFS)
    return tuple(steps)


def _mount_idmap(m, index: int, container_idmap: MountIdmap | None) -> MountIdmap | None:
    """The id mapping of config mount ``index``, or None when it has none.

    The spec rules (ocirun.spec.rules.mount_id_mappings) have checked that
    mappings come with an idmap/ridmap option and that an option without
    mappings has a user namespace to borrow from; ocirun.plan.support that
    only binds ask for one."""
    parsed = mo.parse_mount_options(tuple(m.options or ()))
    if not (parsed.idmap or m.uid_mappings or m.gid_mappings):
        return None
    json_path = f"$.mounts[{index}]"
    recursive = parsed.idmap == "ridmap"
    if m.uid_mappings or m.gid_mappings:
        # config.md: "If uidMappings or gidMappings are specified for the mount,
        # the runtime MUST use those values for the mount's mapping."
        return MountIdmap(_id_map(m.uid_mappings), _id_map(m.gid_mappings), None, recursive, json_path)
    if container_idmap is None:
        raise ConfigError("config.json", [Problem(f"{json_path}.options",
                                                  "idmap/ridmap without uidMappings/gidMappings needs a user namespace")])
    return replace(container_idmap, recursive=recursive, json_path=json_path)


def _plan_one_mount(m, dest, opts, cgroup_view, new_cgroup_ns, in_user_ns, new_net_ns,
                    idmap: MountIdmap | None = None, parent_opens_binds: bool = False) -> list[MountStep]:
    parsed = mo.parse_mount_options(tuple(m.options or ()))
    fstype = m.type or ""
    if fstype == "bind":
        parsed = mo.ParsedOptions(parsed.flags | mo.MS_BIND, parsed.propagation, parsed.attr_set,
                                  parsed.attr_clr, parsed.data, parsed.idmap)
    if idmap is not None:
        if not parsed.is_bind or fstype in ("cgroup", "cgroup2"):
            # refused earlier with every other problem (ocirun.plan.support)
            raise ConfigError("config.json", [Problem(f"{idmap.json_path}.options", mo.IDMAP_BIND_ONLY)])
        source = m.source or ""
        if not source.startswith("/"):
            source = os.path.join(opts.bundle, source)
        return [replace(_bind_step(dest, source, parsed, opts), idmap=idmap)]
    if fstype == "cgroup" or fstype == "cgroup2":
        return _plan_cgroup_mount(dest, parsed, cgroup_view, new_cgroup_ns)
    if fstype == "sysfs" and in_user_ns and not new_net_ns:
        # sysfs cannot be mounted in a user namespace without its own network
        # namespace; bind the host's /sys instead, as runc does.
        parsed = mo.ParsedOptions(parsed.flags | mo.MS_BIND | mo.MS_REC, parsed.propagation,
                                  parsed.attr_set, parsed.attr_clr, (), None)
        return [_bind_step(dest, "/sys", parsed, opts)]
    if parsed.is_bind:
        source = m.source or ""
        if not source.startswith("/"):
            source = os.path.join(opts.bundle, source)
        # In a user namespace the init's root may not reach the source (a path
        # below a directory only the host's root may enter): the parent opens it,
        # when it has more privilege than the init (not when rootless: the init
        # reaches what the user does, and the parent could not open the tree).
        return [replace(_bind_step(dest, source, parsed, opts), open_by_parent=parent_opens_binds)]
    data = ",".join(parsed.data)
    flags = parsed.flags & ~mo.MS_REMOUNT
    copy_up = parsed.tmpcopyup and fstype == "tmpfs"
    remount_flags = 0
    if copy_up and flags & mo.MS_RDONLY:
        # the copy needs a writable tmpfs: mounted rw, made read-only by a
        # remount once the init has filled it
        remount_flags = flags & mo.PER_MOUNT_FLAGS
        flags &= ~mo.MS_RDONLY
    return [
        MountStep(
            target=dest.encode(),
            source=(m.source or fstype or "none").encode(),
            fstype=fstype.encode() if fstype else None,
            flags=flags,
            data=data.encode() if data else None,
            propagation=parsed.propagation,
            remount_flags=remount_flags,
            attr_set=parsed.attr_set,
            attr_clr=parsed.attr_clr,
            describe=f"mount {m.source or fstype} to {dest}".encode(),
            copy_up=copy_up,
            # as runc, the tmpfs root looks like the directory it covers, but an
            # explicit mode= is kept (runc 1.1 overrides it with the directory's)
            copy_up_mode=copy_up and not any(d.startswith("mode=") for d in parsed.data),
        )
    ]


def _raw(text: str) -> bytes:
    """UTF-8, with argv's undecodable bytes (surrogateescape) given back as they were."""
    return text.encode("utf-8", "surrogateescape")


def _bind_step(dest: str, source: str, parsed: mo.ParsedOptions, opts: PlanOptions) -> MountStep:
    try:
        is_dir = stat.S_ISDIR(os.stat(source).st_mode)
    except OSError as err:
        raise ConfigError(
            "config.json", [Problem(f"mount {dest}", f"bind source {source}: {os.strerror(err.errno or 0).lower()}")]
        ) from None
    extra = parsed.flags & ~(mo.MS_BIND | mo.MS_REC | mo.MS_REMOUNT)
    return MountStep(
        target=dest.encode(),
        source=source.encode(),
        fstype=None,
        flags=parsed.flags & (mo.MS_BIND | mo.MS_REC),
        data=None,
        propagation=parsed.propagation,
        # A bind mount ignores the other flags; they take effect on a remount.
        remount_flags=extra,
        attr_set=parsed.attr_set,
        attr_clr=parsed.attr_clr,
        target_is_file=not is_dir,
        describe=f"bind mount {source} to {dest}".encode(),
    )


def _plan_cgroup_mount(dest, parsed, cgroup_view: CgroupView | None, new_cgroup_ns: bool) -> list[MountStep]:
    flags = parsed.flags & ~(mo.MS_BIND | mo.MS_REC | mo.MS_REMOUNT)
    if cgroup_view is None:
        return []
    if cgroup_view.version == 2:
        if new_cgroup_ns:
            # Inside its own cgroup namespace a fresh cgroup2 mount shows the container's cgroup as root.
            return [MountStep(dest.encode(), b"cgroup2", b"cgroup2", flags, None,
                              describe=f"mount cgroup2 to {dest}".encode())]
        host_dir = cgroup_view.binds[0][0]
        return [MountStep(dest.encode(), host_dir.encode(), None, mo.MS_BIND | mo.MS_REC, None,
                          remount_flags=flags, describe=f"bind mount {host_dir} to {dest}".encode())]
    steps = [MountStep(dest.encode(), b"tmpfs", b"tmpfs", mo.MS_NOSUID | mo.MS_NODEV | mo.MS_NOEXEC,
                       b"mode=755", describe=f"mount tmpfs to {dest}".encode())]
    for host_dir, name in cgroup_view.binds:
        target = f"{dest}/{name}"
        steps.append(MountStep(target.encode(), host_dir.encode(), None, mo.MS_BIND | mo.MS_REC, None,
                               remount_flags=flags, describe=f"bind mount {host_dir} to {target}".encode()))
    if flags & mo.MS_RDONLY:
        # the tmpfs holding the mount points becomes read-only last, as runc does
        steps.append(MountStep(dest.encode(), None, None, mo.MS_REMOUNT | mo.MS_RDONLY | mo.MS_NOSUID | mo.MS_NODEV | mo.MS_NOEXEC, b"mode=755",
                               describe=f"remount {dest} read-only".encode()))
    return steps


def _id_map(mappings) -> bytes:
    return "".join(f"{m.container_id} {m.host_id} {m.size}\n" for m in mappings or ()).encode()


def _time_offsets(linux) -> bytes | None:
    offsets = getattr(linux, "time_offsets", None)
    if not offsets:
        return None
    lines = []
    for clock, off in (offsets.items() if hasattr(offsets, "items") else offsets):
        name = {"monotonic": "monotonic", "boottime": "boottime"}.get(clock, clock)
        lines.append(f"{name} {off.secs or 0} {off.nanosecs or 0}\n")
    return "".join(lines).encode()


_RLIMITS = {name: getattr(resource, name) for name in dir(resource) if name.startswith("RLIMIT_")}


def _plan_process(proc, opts: PlanOptions, *, linux=None, in_user_ns: bool = False) -> ProcessPlan:
    env = list(proc.env or ())
    if opts.listen_fds > 0:
        # runc appends them; its init's setenv loop makes them win, at the place
        # of a name the config already has
        env = _setenv(_setenv(env, "LISTEN_FDS", str(opts.listen_fds)), "LISTEN_PID", "1")
    env_keys = {e.split("=", 1)[0] for e in env}
    if "HOME" not in env_keys:
        env.append("HOME=" + home_of(opts.rootfs, proc.user.uid))
    path_value = next((e.split("=", 1)[1] for e in env if e.startswith("PATH=")), DEFAULT_PATH)
    last = capabilities.last_cap()
    # As runc: a set the config leaves out is empty, and no capabilities object at
    # all means no capabilities (never the runtime's full set).
    caps = Capabilities(0, 0, 0, 0, 0)
    unknown_to_kernel: set[str] = set()
    if proc.capabilities is not None:
        c = proc.capabilities

        def mask(names):
            if names is None:
                return 0
            value, unknown = capabilities.to_mask(names, last)
            unknown_to_kernel.update(unknown)
            return value

        caps = Capabilities(
            bounding=mask(c.bounding),
            effective=mask(c.effective),
            permitted=mask(c.permitted),
            inheritable=mask(c.inheritable),
            ambient=mask(c.ambient),
        )
    caps = _without_unavailable(caps, sorted(unknown_to_kernel), check_own=not in_user_ns)
    caps = _raisable_ambient(caps)
    from ocirun.plan import process_attrs as pa

    label = None
    if proc.apparmor_profile or proc.selinux_label:
        from ocirun.linux.lsm import exec_label

        label = exec_label(proc.apparmor_profile, proc.selinux_label)
    persona = None
    if linux is not None and linux.personality is not None:
        from ocirun.linux.personality import persona as _persona

        persona = _persona(linux.personality.domain, linux.personality.flags)
    # surrogateescape: exec's command line reaches us as argv bytes decoded that way
    # (config.json's strings never hold lone surrogates: ocirun.spec.load refuses
    # them); the process gets back the very bytes it was given, as with runc.
    return ProcessPlan(
        args=tuple(_raw(a) for a in proc.args),
        env=tuple(_raw(e) for e in env),
        cwd=_raw(proc.cwd or "/"),
        search_path=tuple(_raw(p) for p in path_value.split(":") if p),
        uid=proc.user.uid,
        gid=proc.user.gid,
        additional_gids=tuple(proc.user.additional_gids or ()),
        umask=proc.user.umask,
        capabilities=caps,
        rlimits=tuple(Rlimit(_RLIMITS[r.type], r.soft, r.hard) for r in proc.rlimits or ()),
        no_new_privileges=bool(proc.no_new_privileges),
        preserve_fds=opts.listen_fds + opts.preserve_fds,
        absent_fds=opts.absent_fds,
        personality=persona,
        memory_policy=pa.memory_policy(linux.memory_policy)
        if linux is not None and linux.memory_policy is not None else None,
        scheduler=pa.scheduler_plan(proc.scheduler) if proc.scheduler is not None else None,
        io_priority=pa.io_priority(proc.io_priority) if proc.io_priority is not None else None,
        # execCPUAffinity: config.md says it does not apply to the init (exec uses it)
        lsm_attr=label[0] if label else None,
        lsm_label=label[1] if label else None,
        terminal=bool(proc.terminal),
        console_size=(_console_dim(proc.console_size.height), _console_dim(proc.console_size.width))
        if proc.terminal and proc.console_size is not None else None,
    )


def _setenv(env: list[str], name: str, value: str) -> list[str]:
    """``name=value`` in place of the first entry of that name (later ones dropped), else appended."""
    out: list[str] = []
    done = False
    for entry in env:
        if entry.split("=", 1)[0] == name:
            if done:
                continue
            entry, done = f"{name}={value}", True
        out.append(entry)
    return out if done else [*out, f"{name}={value}"]


def _without_unavailable(caps: Capabilities, unknown_to_kernel: list[str], *, check_own: bool) -> Capabilities:
    """Drop, with a warning, the capabilities that cannot be granted: those the
    kernel does not know (already left out of the masks) and, with ``check_own``,
    those the runtime itself does not have.

    config.md: a capability that cannot be granted MUST be logged as a warning
    and SHOULD NOT fail the container (runc 1.1 fails in capset with EPERM).
    ``check_own`` is off in a user namespace: a new or joined one starts with
    every capability, whatever the host's bounding set.
    """
    have = capabilities.own_available() if check_own else ~0
    requested = 0
    for value in (caps.bounding, caps.effective, caps.permitted, caps.inheritable, caps.ambient):
        requested |= value or 0
    missing = requested & ~have
    if not missing and not unknown_to_kernel:
        return caps
    names = [n for n, num in sorted(capabilities.CAPABILITIES.items(), key=lambda kv: kv[1]) if missing >> num & 1]
    _warn(f"ignoring unknown or unavailable capabilities: [{' '.join(unknown_to_kernel + names)}]")

    def keep(v):
        return None if v is None else v & have

    return Capabilities(keep(caps.bounding), keep(caps.effective), keep(caps.permitted),
                        keep(caps.inheritable), keep(caps.ambient))


def _raisable_ambient(caps: Capabilities) -> Capabilities:
    """Leave out of the ambient set what the kernel would refuse to raise: a
    capability that is not also permitted and inheritable (PR_CAP_AMBIENT_RAISE:
    EPERM). runc and crun ignore that EPERM and run the process without it;
    `runc spec` writes ambient without inheritable. The warning is the config
    rules' (``ocirun.spec.rules.warnings``: validate and create print it)."""
    if not caps.ambient:
        return caps
    return replace(caps, ambient=caps.ambient & (caps.permitted or 0) & (caps.inheritable or 0))


def _warn(message: str) -> None:
    """A warning on stderr, like the loader's (podman reads --log as one JSON object:
    the log file gets errors only)."""
    from ocirun.errors import warn

    warn(message)


def _console_dim(value: int) -> int:
    """struct winsize holds unsigned shorts: a larger consoleSize is capped, as
    runc's uint16 conversion would wrap it."""
    return min(value, 0xFFFF)


def home_of(rootfs: str, uid: int) -> str:
    """HOME from the container's /etc/passwd (read without leaving the rootfs), else "/"."""
    try:
        passwd = read_in_root(rootfs, "/etc/passwd").decode(errors="replace")
    except OSError:
        return "/"
    for line in passwd.splitlines():
        fields = line.split(":")
        if len(fields) >= 6 and fields[2] == str(uid):
            return fields[5] or "/"
    return "/"

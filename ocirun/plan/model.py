"""The launch plan: everything the C child needs, resolved and pre-encoded.

Python decides, C does. The planner (``ocirun.plan.build``) turns the validated
config model plus host facts into a ``LaunchPlan``; the shim
(``ocirun.shim``) copies it into C structs before clone and the child only
executes it. Every field is already in the kernel's terms: bytes for paths,
ints for flags, nothing left to look up or parse after clone.

Paths named ``target``/``path`` are container paths (absolute, as in
config.json); the child resolves them inside the rootfs without following
symlinks out of it. ``source`` of a bind mount is a host path, absolute.
"""

from __future__ import annotations

from ocirun.util.record import record


@record
class MountStep:
    """One mount of the container's mount sequence, in config order."""

    target: bytes
    source: bytes | None
    fstype: bytes | None
    #: MS_* flags for the first mount(2) call (MS_BIND|MS_REC for binds).
    flags: int
    #: fs-specific data, e.g. b"mode=755,size=65536k"; None for none.
    data: bytes | None
    #: MS_SHARED/MS_SLAVE/MS_PRIVATE/MS_UNBINDABLE (| MS_REC), applied after; 0 for none.
    propagation: int = 0
    #: For binds: flags for a second call MS_BIND|MS_REMOUNT|remount_flags (ro, nosuid, ...);
    #: 0 means no remount is needed.
    remount_flags: int = 0
    #: MOUNT_ATTR_* set/cleared recursively with mount_setattr(AT_RECURSIVE) (rro, ratime...).
    attr_set: int = 0
    attr_clr: int = 0
    #: The mount point must be a file (bind of a non-directory), not a directory.
    target_is_file: bool = False
    #: Human text for errors, e.g. "mount proc to /proc".
    describe: bytes = b""
    #: An id-mapped bind (idmap/ridmap): made by the parent as a detached mount
    #: and attached by the init instead of the mount(2) above; None: a plain mount.
    idmap: MountIdmap | None = None
    #: A plain bind in a container with a user namespace, whose root may not reach
    #: the source: the parent opens it with its privileges (open_tree, as for idmap)
    #: and the init attaches it instead of the mount(2) above (ocirun/shim/idmap.py).
    open_by_parent: bool = False
    #: tmpcopyup on a tmpfs: the init copies what the directory held into it.
    copy_up: bool = False
    #: With copy_up: the tmpfs root also takes the directory's mode (no mode= given).
    copy_up_mode: bool = False
    #: Where it comes from in config.json (``$.mounts[3]``); "" for the runtime's own.
    json_path: str = ""


@record
class MountIdmap:
    """The id mapping of one bind mount (config.md: idmap, ridmap, uidMappings).

    The mapping is carried by a user namespace: either a new one the parent
    makes with ``uid_map``/``gid_map`` (the mount's own mappings, or the
    container's when the mount has none and the container's user namespace is
    new), or an existing one at ``userns_path`` (the joined container user
    namespace). Exactly one of the two is set.
    """

    #: Contents of /proc/PID/uid_map and gid_map: b"containerID hostID size\n"
    #: lines; an id stored as containerID on the source filesystem is seen as
    #: hostID through the mount.
    uid_map: bytes | None
    gid_map: bytes | None
    userns_path: bytes | None
    #: ridmap: every mount of an rbind's tree is id-mapped, not only its top.
    recursive: bool
    #: The mount in config.json, for errors: "$.mounts[3]".
    json_path: str


@record
class DeviceNode:
    """A device to create under the rootfs (mknod), or to bind from the host."""

    path: bytes  # container path, e.g. b"/dev/null"
    mode: int  # S_IFCHR|0o666 etc: file type bits and permission bits
    major: int
    minor: int
    uid: int
    gid: int
    #: Bind-mount the host's node instead of mknod (inside a user namespace mknod is refused).
    bind_from_host: bool = False
    #: A linux.devices entry: a file already at ``path`` must be this very device
    #: (config-linux.md: otherwise an error); a default device replaces what is there.
    must_match: bool = False


@record
class Symlink:
    path: bytes  # container path of the link, e.g. b"/dev/fd"
    target: bytes  # what it points to, e.g. b"/proc/self/fd"


@record
class NamespaceJoin:
    clone_flag: int  # CLONE_NEWNET etc: what kind the path must be
    path: bytes  # e.g. b"/proc/1234/ns/net" or a bind-mounted nsfs file


@record
class Rlimit:
    resource: int  # RLIMIT_* number
    soft: int
    hard: int


@record
class Capabilities:
    """Bitmasks (bit n = capability n). None for a set means "leave it as it is"."""

    bounding: int | None
    effective: int | None
    permitted: int | None
    inheritable: int | None
    ambient: int | None


@record
class ProcessPlan:
    args: tuple[bytes, ...]
    env: tuple[bytes, ...]  # b"KEY=value"
    cwd: bytes  # container path
    #: PATH entries from the container's env, in order, for the lookup of args[0]
    #: when it has no slash (done in the child after pivot_root, before it reports ready).
    search_path: tuple[bytes, ...]
    uid: int
    gid: int
    additional_gids: tuple[int, ...]
    umask: int | None  # None: runc's default 0o022
    capabilities: Capabilities | None
    rlimits: tuple[Rlimit, ...]
    no_new_privileges: bool
    #: fds 3..3+preserve_fds-1 stay open across exec (LISTEN_FDS and runc --preserve-fds).
    preserve_fds: int = 0
    #: numbers in that range the caller did not pass: the runtime's placeholders
    #: (ocirun.linux.fds), closed before exec. Any other number not open is skipped.
    absent_fds: tuple[int, ...] = ()
    #: personality(2) persona (linux.personality: domain | flags); None: leave it alone.
    personality: int | None = None
    #: process.scheduler for sched_setattr(2); None: leave it alone.
    scheduler: SchedulerPlan | None = None
    #: process.ioPriority as IOPRIO_PRIO_VALUE(class, level); None: leave it alone.
    io_priority: int | None = None
    #: execCPUAffinity as cpu_set_t masks (little-endian bytes, a multiple of 8 long).
    #: The container's init never gets them (config.md: "not applicable to the
    #: container's init process"); exec'd processes do.
    cpu_affinity_initial: bytes | None = None
    cpu_affinity_final: bytes | None = None
    #: LSM exec label: the attr file below /proc/<tid> (b"attr/apparmor/exec" or
    #: b"attr/exec") and what to write there; None: no label.
    lsm_attr: bytes | None = None
    lsm_label: bytes | None = None
    #: process.terminal: the child makes a pty in the container's devpts (stdio,
    #: controlling terminal, /dev/console) and sends its master to the parent.
    terminal: bool = False
    #: process.consoleSize as (height, width) rows x columns; None: the kernel's 0 x 0.
    console_size: tuple[int, int] | None = None
    #: exec only: the file to execute (a hook's path); None: look args[0] up in search_path.
    exe: bytes | None = None
    #: linux.memoryPolicy for set_mempolicy(2), set by the init on itself before execve
    #: (children and execve keep it); None: leave it alone. Never set for exec'd processes.
    memory_policy: MemoryPolicyPlan | None = None


@record
class SchedulerPlan:
    """process.scheduler in sched_setattr(2) terms."""

    policy: int  # SCHED_*
    flags: int = 0  # SCHED_FLAG_*
    nice: int = 0
    priority: int = 0
    runtime: int = 0  # ns
    deadline: int = 0
    period: int = 0


@record
class NetDeviceMove:
    """One linux.netDevices entry: a host interface and its name in the container."""

    host_name: str
    name: str  # the host name when the config gives none; may end in %d (a template)

    @property
    def renamed(self) -> bool:
        return self.name != self.host_name


@record
class MemoryPolicyPlan:
    """linux.memoryPolicy in set_mempolicy(2) terms."""

    mode: int  # MPOL_* | MPOL_F_* mode flags
    #: the nodemask as unsigned longs (64-bit little-endian words); b"" for none
    nodemask: bytes = b""


@record
class LaunchPlan:
    rootfs: bytes  # absolute host path of the root filesystem
    #: CLONE_NEW* flags of the namespaces to create.
    new_namespaces: int
    #: Namespaces to join, in the order to join them (user first).
    join_namespaces: tuple[NamespaceJoin, ...]
    #: MS_* propagation applied to "/" before anything is mounted (default MS_SLAVE|MS_REC)
    #: so nothing the container mounts reaches the host.
    root_propagation: int
    #: rootfsPropagation of the config, applied to "/" after pivot_root; 0 for none.
    rootfs_propagation: int
    root_readonly: bool
    no_pivot: bool
    mounts: tuple[MountStep, ...]
    devices: tuple[DeviceNode, ...]
    symlinks: tuple[Symlink, ...]
    masked_paths: tuple[bytes, ...] = ()
    readonly_paths: tuple[bytes, ...] = ()
    hostname: bytes | None = None
    domainname: bytes | None = None
    #: None when config.json has no process: the init then waits forever and
    #: `start` reports the error (runtime.md: process is required at start, not create).
    process: ProcessPlan | None = None
    #: Ask the parent to run hooks at the "namespaces created, before pivot_root" point.
    sync_before_pivot: bool = False
    #: Parent-side steps, done from Python on the child's pid (not used by C):
    uid_map: bytes | None = None  # contents for /proc/PID/uid_map
    gid_map: bytes | None = None
    timens_offsets: bytes | None = None  # contents for /proc/PID/timens_offsets
    #: process.oomScoreAdj: stage-1 writes it to its own /proc/self/oom_score_adj
    #: before it becomes non-dumpable (a rootless parent could not open the init's);
    #: the init inherits it
    oom_score_adj: int | None = None
    #: Name of a new session keyring to join (runc: "_ses.<id>"); None with --no-new-keyring.
    session_keyring: bytes | None = None
    #: linux.seccomp compiled to a BPF program (struct sock_filter[] bytes) by the
    #: parent (ocirun.seccomp); the init loads it with seccomp(SET_MODE_FILTER, flags).
    seccomp_bpf: bytes | None = None
    #: SECCOMP_FILTER_FLAG_* for that call (NEW_LISTENER included when seccomp_notify).
    seccomp_flags: int = 0
    #: A rule uses SCMP_ACT_NOTIFY: the init sends the listener fd to the parent.
    seccomp_notify: bool = False
    #: linux.netDevices, moved by the parent (ocirun.linux.netdev) once the
    #: container's network namespace exists (NS_READY), before the init exists.
    net_devices: tuple[NetDeviceMove, ...] = ()
    #: linux.sysctl as (path below /proc/sys, value), validated against the
    #: container's namespaces (ocirun.plan.sysctl); written by the init through
    #: a procfs instance of its own.
    sysctl: tuple[tuple[bytes, bytes], ...] = ()
    #: restore: the init prepares the rootfs (mounts, devices, links, cwd: its mount
    #: points) exactly as for create, reports READY and exits; CRIU brings the rest.
    prepare_only: bool = False
    #: Rootless (docs/rootless.md): the runtime's effective uid is not 0, so the
    #: id maps of a new user namespace are written without privilege (directly for
    #: a single mapping of its own ids, else by newuidmap/newgidmap; ocirun.linux.idmaps),
    #: and stage-1 stays dumpable until they are.
    rootless_euid: bool = False
    #: Write "deny" to /proc/PID/setgroups before gid_map: what the kernel requires
    #: of a gid map written without privilege. The container cannot setgroups(2).
    setgroups_deny: bool = False

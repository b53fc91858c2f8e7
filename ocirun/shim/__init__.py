"""Clone the container init and run a LaunchPlan in it (the C shim's Python side).

Python decides, C does: ``spawn`` copies the ``LaunchPlan`` into C structs
(``shim_cdef.h``) and calls ``ocirun_spawn`` (``shim.c``), which clones
"stage-1". From then on the children run only C; they talk to this module
over one SOCK_SEQPACKET socketpair, one ``struct ocirun_msg`` per packet
(five int32: type, step, errno, index, pid)::

    parent (Python) --clone3--> stage-1 --clone(CLONE_PARENT)--> init

=================  ================  ==============  ==============================================
message            direction         payload         meaning
=================  ================  ==============  ==============================================
CGROUP_PLACED      parent → stage-1  –               on_child_created(stage-1 pid) returned: it is
                                                     in its cgroups; join/create the namespaces
NS_READY           stage-1 → parent  –               namespaces joined/created; the parent writes
                                                     uid_map, gid_map (rootless: through newuidmap/
                                                     newgidmap when needed, ocirun.linux.idmaps),
                                                     timens_offsets, then calls
                                                     on_namespaces_ready(stage-1 pid)
NS_ACK             parent → stage-1  –               done; become root in the user ns, clone init
INIT_PID           stage-1 → parent  pid             the init's pid (host pid ns); stage-1 exits and
                                                     is reaped (it wrote oom_score_adj, which the init
                                                     inherits); the parent calls
                                                     on_init_created(init pid): the pids limit,
                                                     now that the init is the cgroup's only task
INIT_ACK           parent → init     –               the parent knows the init: it may start (and
                                                     fail) now
BEFORE_PIVOT       init → parent     –               (sync_before_pivot only) mounts done, before
                                                     pivot_root: on_before_pivot(init pid)
BEFORE_PIVOT_ACK   parent → init     –               hooks done; pivot_root
READY              init → parent     –               setup done; the parent calls on_ready(init pid):
                                                     state.json is saved there. With prepare_only
                                                     (restore) it comes right after the mounts,
                                                     devices, links and cwd (no BEFORE_PIVOT, no
                                                     pivot_root), the init exits and spawn returns
                                                     without COMMIT; prepare_rootfs reaps it
COMMIT             parent → init     –               the container exists for others now: the init
                                                     stops dying with the parent (PR_SET_PDEATHSIG,
                                                     armed in stage-1 and the init until now), closes
                                                     its end (the EOF tells the parent) and blocks on
                                                     the exec fifo; spawn returns the init's pid
ERROR              child → parent    step,errno,idx  a step failed (the child exits); spawn kills
                                                     and reaps every child and raises SetupError
SECCOMP_FD         init → parent     fd (SCM_RIGHTS) seccomp filter loaded with NEW_LISTENER:
                                     or idx          on_seccomp_fd(init pid, fd) hands it to the
                                                     agent at listenerPath. When the filter refuses
                                                     sendmsg(2), no fd comes: idx is its number in
                                                     the init, taken with pidfd_getfd(2)
SECCOMP_ACK        parent → init     –               the agent has it; go on
CONSOLE_FD         init → parent     fd (SCM_RIGHTS) process.terminal: the pty master, made in the
                                                     container's devpts; on_console_fd(init pid, fd)
                                                     sends it to --console-socket or keeps it
=================  ================  ==============  ==============================================

EOF before READY means a child died without a word (killed): SetupError naming
the last message received. A killed parent (`ocirun create`): stage-1 and the
init die with it (the parent-death signal, and the EOF at their next wait) until
COMMIT, so nothing of the container outlives a create that did not finish;
``delete --force`` removes what it left (ocirun.container.delete).

After READY the init reopens the exec fifo (``/proc/self/fd/N``, O_WRONLY: it
blocks until ``ocirun start`` opens it for reading), writes ``0`` and execs.
"""

from __future__ import annotations

import errno as _errno
import os
import struct
from collections.abc import Callable

from ocirun.errors import SetupError
from ocirun.plan.model import LaunchPlan
from ocirun.testhooks import reached

_MSG = struct.Struct("=5i")

_ffi = None
_lib = None


def load():
    """The compiled shim (its cffi ``ffi`` and ``lib``), imported on first use."""
    global _ffi, _lib
    if _lib is None:
        from ocirun.shim._shim import ffi, lib

        _ffi, _lib = ffi, lib
    return _ffi, _lib


#: enum ocirun_step (shim_cdef.h) -> how the message names the step. ``{i}`` is
#: the item the index points at (a mount, device, path...), formatted by _step_name.
STEPS: dict[str, str] = {
    "NONE": "container setup",
    "SOCKETPAIR": "create sync socketpair",
    "DUP_FDS": "move sync fds above the preserved fds",
    "CLONE": "clone",
    "SYNC": "sync with parent",
    "DUMPABLE": "prctl PR_SET_DUMPABLE",
    "SETNS": "setns to {ns_path}",
    "UNSHARE": "unshare namespaces",
    "USERNS_SETRESGID": "setresgid to root in the user namespace",
    "USERNS_SETRESUID": "setresuid to root in the user namespace",
    "USERNS_SETGROUPS": "setgroups in the user namespace",
    "KEYRING": "join session keyring {keyring}",
    "CLONE_INIT": "clone init",
    "SETHOSTNAME": "sethostname",
    "SETDOMAINNAME": "setdomainname",
    "ROOT_PROPAGATION": "set propagation of /",
    "ROOTFS_BIND": "bind mount rootfs {rootfs}",
    "ROOTFS_OPEN": "open rootfs {rootfs}",
    "MOUNT_MKDIR": "{mount}: create mount point {target}",
    "MOUNT": "{mount}",
    "MOUNT_REOPEN": "{mount}: reopen {target}",
    "MOUNT_REMOUNT": "{mount}: remount",
    "MOUNT_PROPAGATION": "{mount}: set propagation",
    "MOUNT_SETATTR": "{mount}: mount_setattr",
    "DEVICE_MKDIR": "create parent directory of device {device}",
    "DEVICE_MKNOD": "mknod {device}",
    "DEVICE_CHOWN": "chown {device}",
    "DEVICE_BIND": "bind mount device {device}",
    "MOUNT_COPYUP": "copy the contents of {mount_target} into its tmpfs (tmpcopyup)",
    "DEVICE_EXISTS": "a file that is not the requested device already exists at {device}",
    "SYMLINK": "symlink {symlink}",
    "CWD_MKDIR": "mkdir cwd {cwd}",
    "PIVOT_ROOT": "pivot_root {rootfs}",
    "OLD_ROOT_SLAVE": "make old root rslave",
    "OLD_ROOT_UMOUNT": "unmount old root",
    "MOVE_ROOT": "move rootfs {rootfs} to /",
    "CHROOT": "chroot {rootfs}",
    "CHDIR_ROOT": "chdir to /",
    "ROOTFS_PROPAGATION": "set rootfs propagation",
    "READONLY_PATH": "make {readonly} read-only",
    "MASKED_PATH": "mask {masked}",
    "MASK_DEVNULL": "mask {masked}",
    "ROOT_READONLY": "remount / read-only",
    "CHDIR": 'chdir to cwd ("{cwd}") set in config.json failed',
    "CWD_OUTSIDE_ROOT": "current working directory is outside of container mount namespace root"
    " -- possible container breakout detected",
    "RLIMIT": "error setting rlimit type {rlimit}",
    "CAPBSET_DROP": "drop capability {index} from the bounding set",
    "KEEPCAPS": "prctl PR_SET_KEEPCAPS",
    "SETGROUPS": "setgroups",
    "SETRESGID": "setresgid",
    "SETRESUID": "setresuid",
    "CAPSET": "capset",
    "AMBIENT": "raise ambient capability {index}",
    "NO_NEW_PRIVS": "prctl PR_SET_NO_NEW_PRIVS",
    "EXEC_LOOKUP": 'exec: "{arg0}"',
    "CLOSE_RANGE": "close_range",
    "PRESERVE_FD": "preserve fd {index}",
    "SECCOMP": "load seccomp filter",
    "SECCOMP_SEND": "send seccomp listener fd to the runtime",
    "REOPEN_DEVNULL": "reopen stdio on the container's /dev/null",
    "PERSONALITY": "set personality",
    "SCHEDULER": "set scheduler (sched_setattr)",
    "IOPRIO": "set I/O priority (ioprio_set)",
    "AFFINITY_INITIAL": "set initial CPU affinity (execCPUAffinity.initial)",
    "SYSCTL_PROCFS": "mount a procfs for linux.sysctl",
    "SYSCTL_OPEN": "open sysctl {sysctl}",
    "SYSCTL_WRITE": "write sysctl {sysctl}",
    "LSM_PROCFS": "mount a procfs for the exec label",
    "LSM_EXEC_LABEL": "set exec label {lsm}",
    "AFFINITY_FINAL": "set final CPU affinity (execCPUAffinity.final)",
    "MEMORY_POLICY": "set memory policy (set_mempolicy) of linux.memoryPolicy",
    "CONSOLE_OPEN_PTMX": "open /dev/pts/ptmx",
    "CONSOLE_PTMX_CHECK": "open /dev/pts/ptmx",
    "CONSOLE_UNLOCKPT": "unlockpt",
    "CONSOLE_OPEN_PEER": "open the pty slave",
    "CONSOLE_PEER_CHECK": "open the pty slave",
    "CONSOLE_WINSIZE": "set the console size (TIOCSWINSZ)",
    "CONSOLE_CREATE": "create /dev/console",
    "CONSOLE_MOUNT": "bind mount the pty over /dev/console",
    "CONSOLE_SETSID": "setsid",
    "CONSOLE_SETCTTY": "ioctl(setctty)",
    "CONSOLE_STDIO": "dup the pty to fd {index}",
    "CONSOLE_CHOWN": "chown the pty to the container user",
    "CONSOLE_SEND": "send the pty master to the runtime",
    "EXEC_STDIO": "set up stdio fd {index}",
    "EXEC_CLOSE_FDS": "close the runtime's fds",
    "EXEC_CLONE": "clone into the container's pid namespace",
    "EXECVE": "exec {arg0}",
    # id-mapped mounts (ocirun/shim/idmap.py names the mount of the parent's steps)
    "IDMAP_USERNS_CLONE": "create a user namespace for its id mapping",
    "IDMAP_UID_MAP": "write uid_map of its id-mapping user namespace",
    "IDMAP_GID_MAP": "write gid_map of its id-mapping user namespace",
    "IDMAP_USERNS_OPEN": "open its id-mapping user namespace",
    "IDMAP_OPEN_TREE": "open_tree(OPEN_TREE_CLONE) of the source",
    "IDMAP_PROPAGATION": "make the detached mount a slave (mount_setattr)",
    "IDMAP_SETATTR": "mount_setattr(MOUNT_ATTR_IDMAP)",
    "IDMAP_MOVE_MOUNT": "{idmap_path}: {mount}: move_mount of the id-mapped mount",
    "IDMAP_DUP_FD": "move the id-mapped mount's fd above the preserved fds",
    "BIND_TREE_HELPER": "start the helper that opens bind mount sources with the runtime's privileges",
    "BIND_TREE_OPEN": "open_tree(OPEN_TREE_CLONE) of the source",
    "PDEATHSIG": "prctl PR_SET_PDEATHSIG",
    "LOOPBACK": "bring up the loopback interface lo in the new network namespace",
    "OOM_SCORE_ADJ": "write process.oomScoreAdj to /proc/self/oom_score_adj",
    "USERNS_DUMPABLE": "prctl PR_SET_DUMPABLE (for the parent to write the id maps)",
}



def _msg_name(mtype: int) -> str:
    """enum ocirun_msg_type value -> its name without the OCIRUN_MSG_ prefix."""
    _, lib = load()
    for n in dir(lib):
        if n.startswith("OCIRUN_MSG_") and getattr(lib, n) == mtype:
            return n[len("OCIRUN_MSG_"):]
    return str(mtype)


def _c_step_names() -> dict[int, str]:
    """enum ocirun_step value -> its name without the OCIRUN_STEP_ prefix."""
    _, lib = load()
    return {
        getattr(lib, n): n[len("OCIRUN_STEP_"):]
        for n in dir(lib)
        if n.startswith("OCIRUN_STEP_")
    }


def _strerror(err: int) -> str:
    return os.strerror(err).lower() if err else ""


def _dec(b: bytes | None) -> str:
    return b.decode(errors="surrogateescape") if b is not None else ""


def _step_error(step: int, err: int, index: int, plan: LaunchPlan) -> SetupError:
    """The SetupError for a (step, errno, index) report, in runc's words where podman reads them."""
    name = _c_step_names().get(step, "NONE")
    proc = plan.process

    def item(seq, i):
        return seq[i] if 0 <= i < len(seq) else None

    fields: dict[str, object] = {"index": index, "rootfs": _dec(plan.rootfs)}
    j = item(plan.join_namespaces, index)
    fields["ns_path"] = _dec(j.path) if j else "?"
    fields["keyring"] = _dec(plan.session_keyring)
    m = item(plan.mounts, index)
    if m is not None:
        fields["target"] = _dec(m.target)
        fields["mount"] = _dec(m.describe) or f"mount {_dec(m.source or m.fstype)} to {_dec(m.target)}"
        if m.idmap is not None:
            fields["idmap_path"] = m.idmap.json_path
    d = item(plan.devices, index)
    fields["device"] = _dec(d.path) if d else "?"
    s = item(plan.symlinks, index)
    fields["symlink"] = f"{_dec(s.path)} -> {_dec(s.target)}" if s else "?"
    fields["readonly"] = _dec(item(plan.readonly_paths, index)) or "?"
    fields["masked"] = _dec(item(plan.masked_paths, index)) or "?"
    fields["cwd"] = _dec(proc.cwd) if proc else "?"
    rl = item(proc.rlimits, index) if proc else None
    fields["rlimit"] = rl.resource if rl else "?"
    sc = item(plan.sysctl, index)
    fields["sysctl"] = f'"{_dec(sc[0]).replace("/", ".")}" = {_dec(sc[1])!r}' if sc else "?"
    fields["lsm"] = _dec(proc.lsm_label) if proc and proc.lsm_label else "?"
    arg0 = _dec(proc.exe or proc.args[0]) if proc and (proc.exe or proc.args) else ""
    fields["arg0"] = arg0
    text = STEPS.get(name, name).format_map(_Missing(fields))
    if name == "IDMAP_MOVE_MOUNT" and m is not None and m.idmap is None:
        text = f"{fields['mount']}: move_mount of the bind opened by the runtime"

    detail = None
    if name == "EXEC_LOOKUP":
        # runc (Go's exec.LookPath): podman maps these texts to exit 127/126.
        if "/" not in arg0:
            detail = "executable file not found in $PATH"
        elif err == _errno.ENOENT:
            detail = f"stat {arg0}: no such file or directory"
    elif name == "MOUNT_MKDIR" and err == _errno.EBUSY and m is not None:
        # rootfs.c refuses it: a mount there would cover the rootfs itself
        where = f"{m.json_path}.destination " if m.json_path else ""
        detail = (f"{where}{_dec(m.target)!r} resolves to the container's root directory (through "
                  "a symlink in the rootfs): a mount there would hide the rootfs")
    elif name == "MASK_DEVNULL" and err == _errno.ENODEV:
        detail = "refusing to bind /dev/null over it: /dev/null in the container is not the null device (char 1:3)"
    elif name == "SCHEDULER" and err == _errno.EPERM and proc and proc.scheduler and proc.scheduler.policy in (1, 2):
        from ocirun.plan.privilege import unprivileged_detail

        # in a user namespace the capability is missing before any cgroup limit counts
        detail = unprivileged_detail(name, err, plan, process=proc) or (
            "operation not permitted: a real-time policy in a cgroup v1 cpu hierarchy needs "
            "linux.resources.cpu.realtimeRuntime (cpu.rt_runtime_us is 0 in a new cgroup)")
    elif name == "CWD_OUTSIDE_ROOT":
        return SetupError(text)
    elif name == "CONSOLE_PTMX_CHECK" and err == _errno.ENODEV:
        detail = "not the ptmx of a devpts filesystem (mount devpts with newinstance at /dev/pts)"
    elif name == "CONSOLE_PEER_CHECK" and err == _errno.ENODEV:
        detail = "not a pty slave of the container's devpts"
    elif name == "CONSOLE_CREATE" and err == _errno.ELOOP:
        detail = "/dev/console is a symlink; refusing to follow it"
    elif err in (_errno.EPERM, _errno.EACCES, _errno.EINVAL, _errno.ENOENT):
        from ocirun.plan.privilege import unprivileged_detail

        detail = unprivileged_detail(name, err, plan, m, item(proc.rlimits, index) if proc else None,
                                     process=proc)
    return SetupError(text, err, detail)


class _Missing(dict):
    def __missing__(self, key):
        return "?"


class _CPlan:
    """The LaunchPlan as C structs, all in one :class:`~ocirun.shim.arena.Arena`
    (which a helper's worker can hand to the front end that clones); owns the
    buffer until spawn returns."""

    def __init__(self, plan: LaunchPlan, ns_fds: list[int], tree_fds: list[int] | None = None,
                 size: int = 0):
        self._args = (plan, ns_fds, tree_fds)
        self._build_in(size or 16384 + len(plan.seccomp_bpf or b""))

    def _build_in(self, size: int) -> None:
        from ocirun.shim.arena import Arena, ArenaFull

        ffi, _ = load()
        while True:
            self.arena = Arena(ffi, size)
            try:
                self._build(*self._args)
                return
            except ArenaFull:
                size *= 4

    def _build(self, plan: LaunchPlan, ns_fds: list[int], tree_fds: list[int] | None) -> None:
        ffi, _ = load()
        p = self.plan = self.new("struct ocirun_plan *")
        p.rootfs = self.s(plan.rootfs)
        p.new_namespaces = plan.new_namespaces
        joins = self.new("struct ocirun_nsjoin[]", max(1, len(plan.join_namespaces)))
        for i, (j, fd) in enumerate(zip(plan.join_namespaces, ns_fds, strict=True)):
            joins[i].clone_flag = j.clone_flag
            joins[i].fd = fd
        p.joins = joins
        p.n_joins = len(plan.join_namespaces)
        p.joins_user_ns = int(any(j.clone_flag == _CLONE_NEWUSER for j in plan.join_namespaces))
        p.root_propagation = plan.root_propagation
        p.rootfs_propagation = plan.rootfs_propagation
        p.root_readonly = int(plan.root_readonly)
        p.no_pivot = int(plan.no_pivot)

        mounts = self.new("struct ocirun_mount[]", max(1, len(plan.mounts)))
        for i, m in enumerate(plan.mounts):
            c = mounts[i]
            c.target = self.s(m.target)
            c.source = self.s(m.source)
            c.fstype = self.s(m.fstype)
            c.flags = m.flags
            c.data = self.s(m.data)
            c.propagation = m.propagation
            c.remount_flags = m.remount_flags
            c.attr_set = m.attr_set
            c.attr_clr = m.attr_clr
            c.target_is_file = int(m.target_is_file)
            c.tree_fd = tree_fds[i] if tree_fds else -1
            c.copy_up = (2 if m.copy_up_mode else 1) if m.copy_up else 0
        p.mounts, p.n_mounts = mounts, len(plan.mounts)

        devices = self.new("struct ocirun_device[]", max(1, len(plan.devices)))
        for i, d in enumerate(plan.devices):
            c = devices[i]
            c.path = self.s(d.path)
            c.mode, c.major, c.minor, c.uid, c.gid = d.mode, d.major, d.minor, d.uid, d.gid
            c.bind_from_host = int(d.bind_from_host)
            c.must_match = int(d.must_match)
        p.devices, p.n_devices = devices, len(plan.devices)

        links = self.new("struct ocirun_symlink[]", max(1, len(plan.symlinks)))
        for i, s in enumerate(plan.symlinks):
            links[i].path = self.s(s.path)
            links[i].target = self.s(s.target)
        p.symlinks, p.n_symlinks = links, len(plan.symlinks)

        p.masked_paths, p.n_masked_paths = self.strv(plan.masked_paths, "const char *[]")
        p.readonly_paths, p.n_readonly_paths = self.strv(plan.readonly_paths, "const char *[]")
        p.hostname = self.s(plan.hostname)
        p.domainname = self.s(plan.domainname)
        p.sync_before_pivot = int(plan.sync_before_pivot)
        p.session_keyring = self.s(plan.session_keyring)
        from ocirun.linux.capabilities import last_cap

        p.cap_last_cap = last_cap()
        if plan.seccomp_bpf is not None:
            p.seccomp_bpf = self.new("uint8_t[]", plan.seccomp_bpf)
            p.seccomp_len = len(plan.seccomp_bpf) // 8
            p.seccomp_flags = plan.seccomp_flags
            p.seccomp_notify = int(plan.seccomp_notify)
        keys = tuple(k for k, _ in plan.sysctl)
        p.sysctl_keys, p.n_sysctl = self.strv(keys, "const char *[]")
        p.sysctl_values, _ = self.strv(tuple(v for _, v in plan.sysctl), "const char *[]")
        p.prepare_only = int(plan.prepare_only)
        p.process = self._process(plan) if plan.process is not None else ffi.NULL
        p.rootless_euid = int(plan.rootless_euid)
        p.oom_score_adj_set = int(plan.oom_score_adj is not None)
        p.oom_score_adj = plan.oom_score_adj or 0

    def _process(self, plan: LaunchPlan):
        pr = plan.process
        assert pr is not None
        c = self.new("struct ocirun_process *")
        c.argv, _ = self.strv(pr.args, "char *[]")
        c.envp, _ = self.strv(pr.env, "char *[]")
        c.cwd = self.s(pr.cwd)
        c.search_path, c.n_search_path = self.strv(pr.search_path, "const char *[]")
        c.uid, c.gid = pr.uid, pr.gid
        c.additional_gids = self.new("uint32_t[]", list(pr.additional_gids) or [0])
        c.n_additional_gids = len(pr.additional_gids)
        c.umask = 0o022 if pr.umask is None else pr.umask
        caps = pr.capabilities
        sets = 0
        if caps is not None:
            for bit, value, field in (
                (1, caps.bounding, "bounding"), (2, caps.effective, "effective"),
                (4, caps.permitted, "permitted"), (8, caps.inheritable, "inheritable"),
                (16, caps.ambient, "ambient"),
            ):
                if value is not None:
                    sets |= bit
                    setattr(c, field, value)
        c.cap_sets = sets
        rls = self.new("struct ocirun_rlimit[]", max(1, len(pr.rlimits)))
        for i, r in enumerate(pr.rlimits):
            rls[i].resource, rls[i].soft, rls[i].hard = r.resource, r.soft, r.hard
        c.rlimits, c.n_rlimits = rls, len(pr.rlimits)
        c.no_new_privileges = int(pr.no_new_privileges)
        c.preserve_fds = pr.preserve_fds
        c.absent_fds = self.new("int[]", list(pr.absent_fds) or [-1])
        c.n_absent_fds = len(pr.absent_fds)
        self._process_attrs(c, pr)
        c.terminal = int(pr.terminal)
        if pr.console_size is not None:
            c.console_height, c.console_width = pr.console_size
        c.exe = self.s(pr.exe)
        return c

    def _process_attrs(self, c, pr) -> None:
        """personality, scheduler, ioprio, CPU affinity, LSM label, memory policy (process_attrs.c)."""
        ffi, _ = load()
        c.personality = -1 if pr.personality is None else pr.personality
        s = pr.scheduler
        c.sched_set = int(s is not None)
        if s is not None:
            c.sched_policy, c.sched_flags, c.sched_nice = s.policy, s.flags, s.nice
            c.sched_priority, c.sched_runtime = s.priority, s.runtime
            c.sched_deadline, c.sched_period = s.deadline, s.period
        c.ioprio = -1 if pr.io_priority is None else pr.io_priority
        for field, mask in (("cpu_initial", pr.cpu_affinity_initial), ("cpu_final", pr.cpu_affinity_final)):
            if mask:
                setattr(c, field, self.new("uint8_t[]", mask))
                setattr(c, field + "_len", len(mask))
            else:
                setattr(c, field, ffi.NULL)
                setattr(c, field + "_len", 0)
        c.lsm_attr = self.s(pr.lsm_attr)
        c.lsm_label = self.s(pr.lsm_label)
        mp = pr.memory_policy
        c.mpol_set = int(mp is not None)
        c.mpol_mode = mp.mode if mp is not None else 0
        if mp is not None and mp.nodemask:
            words = [int.from_bytes(mp.nodemask[i:i + 8], "little") for i in range(0, len(mp.nodemask), 8)]
            c.mpol_nodes = self.new("uint64_t[]", words)
            c.mpol_nodes_len = len(words)
        else:
            c.mpol_nodes = ffi.NULL
            c.mpol_nodes_len = 0

    def new(self, ctype, init=None, fds: bool = False):
        return self.arena.new(ctype, init, fds)

    def set_stdio(self, stdio: tuple[int, int, int]) -> None:
        """plan.stdio: the fds that become the init's 0-2 (-1: the parent's)."""
        from ocirun.shim.arena import ArenaFull

        try:
            self.plan.stdio = self.new("int[3]", list(stdio), fds=True)
        except ArenaFull:  # no room left: the same plan in a larger arena
            self._build_in(self.arena.size * 2)
            self.plan.stdio = self.new("int[3]", list(stdio), fds=True)

    def s(self, b: bytes | None):
        ffi, _ = load()
        if b is None:
            return ffi.NULL
        if b"\0" in b:
            raise SetupError(f"plan string {b!r}", detail="contains a NUL byte")
        return self.new("char[]", b)

    def strv(self, items, ctype):
        """A NULL-terminated array of C strings, and its length."""
        ffi, _ = load()
        arr = self.new(ctype, len(items) + 1)
        for i, b in enumerate(items):
            arr[i] = self.s(b)
        arr[len(items)] = ffi.NULL
        return arr, len(items)


_CLONE_NEWNS = 0x00020000
_CLONE_NEWUTS = 0x04000000
_CLONE_NEWUSER = 0x10000000


def _kill_and_reap(pid: int | None) -> None:
    from ocirun.parent import kill_and_reap

    kill_and_reap(pid)


def spawn(plan: LaunchPlan, *, exec_fifo_fd: int, cgroup_fd: int | None,
          on_child_created: Callable[[int], None],
          on_namespaces_ready: Callable[[int], None],
          on_before_pivot: Callable[[int], None] | None = None,
          on_seccomp_fd: Callable[[int, int], None] | None = None,
          on_console_fd: Callable[[int, int], None] | None = None,
          on_init_created: Callable[[int], None] | None = None,
          on_ready: Callable[[int], None] | None = None,
          stdio: tuple[int, int, int] | None = None) -> int:
    """Clone the container init per the plan; return its host pid once it is READY
    (setup done, blocked on the exec fifo).

    ``exec_fifo_fd``: O_PATH fd of the exec fifo; the init reopens it O_WRONLY
    after setup and writes "0" before execve. ``cgroup_fd``: a cgroup v2
    directory to clone into (CLONE_INTO_CGROUP), or None. ``on_child_created``
    gets stage-1's pid before it does anything (place it in v1 cgroups);
    ``on_namespaces_ready`` gets it after its namespaces exist and the id maps
    and time offsets are written; ``on_before_pivot`` (only with
    ``plan.sync_before_pivot``) gets the init's pid after its mounts, before
    pivot_root. ``on_seccomp_fd`` (needed when ``plan.seccomp_notify``) gets the
    init's pid and the seccomp listener fd before READY; the fd is closed after.
    ``on_console_fd`` (needed when the process has ``terminal``) gets the init's
    pid and the pty master before READY; the fd is closed after (dup it to keep it).
    ``on_init_created`` gets the init's pid once stage-1 is reaped, before the init
    does anything (it waits for INIT_ACK). ``on_ready`` gets it at READY: what
    makes the container exist for others (state.json) is written there; only
    then is the init told to outlive us (COMMIT), and spawn returns once it has
    (until then stage-1 and the init die with this process). ``stdio``: fds to
    become the init's 0, 1, 2 (-1: ours); None: ours. The init is this process's child.

    Raises SetupError(step, errno, detail) on failure, after killing and
    reaping every process it made. An exception from a callback propagates
    after the same cleanup.
    """
    _check_namespaces(plan)
    _, lib = load()
    sock = -1
    stage1: int | None = None
    init: int | None = None
    verb = "restore" if plan.prepare_only else "create"  # the test hooks' points
    try:
        stage1, sock = _launch(plan, "spawn", cgroup_fd, on_child_created, verb,
                               exec_fifo_fd=exec_fifo_fd, plan_stdio=stdio)
        last = "clone"
        while True:
            listener: int | None = None
            # SECCOMP_FD and CONSOLE_FD carry an fd
            if plan.seccomp_notify or (plan.process is not None and plan.process.terminal):
                (mtype, step, err, index, pid), listener = _recv_with_fd(sock)
            else:
                mtype, step, err, index, pid = _recv(sock)
            if listener is not None and (
                    mtype not in (lib.OCIRUN_MSG_SECCOMP_FD, lib.OCIRUN_MSG_CONSOLE_FD) or init is None):
                os.close(listener)
                listener = None
            if mtype == lib.OCIRUN_MSG_SECCOMP_FD and listener is None and init is not None:
                listener = _take_fd(init, index)
            if mtype == 0:
                raise SetupError(f"container init exited before it was ready (last: {last})")
            last = _msg_name(mtype)
            reached(f"{verb}:{last}")
            if mtype == lib.OCIRUN_MSG_ERROR:
                raise _step_error(step, err, index, plan)
            if mtype == lib.OCIRUN_MSG_NS_READY and stage1 is not None:
                from ocirun.linux.idmaps import write_id_maps, write_proc

                # uid_map before gid_map is the conventional order; either works for root.
                if plan.uid_map is not None or plan.gid_map is not None:
                    write_id_maps(stage1, plan.uid_map, plan.gid_map, rootless_euid=plan.rootless_euid,
                                  setgroups_deny=plan.setgroups_deny)
                if plan.timens_offsets is not None:
                    write_proc(stage1, "timens_offsets", plan.timens_offsets)
                on_namespaces_ready(stage1)
                _send(sock, lib.OCIRUN_MSG_NS_ACK)
            elif mtype == lib.OCIRUN_MSG_INIT_PID and stage1 is not None and pid > 0:
                init = pid
                _reap(stage1)  # it exits right after sending the pid
                stage1 = None
                if on_init_created is not None:
                    on_init_created(init)
                _send(sock, lib.OCIRUN_MSG_INIT_ACK)
            elif mtype == lib.OCIRUN_MSG_BEFORE_PIVOT and init is not None:
                if on_before_pivot is not None:
                    on_before_pivot(init)
                _send(sock, lib.OCIRUN_MSG_BEFORE_PIVOT_ACK)
            elif mtype == lib.OCIRUN_MSG_SECCOMP_FD and init is not None and listener is not None:
                _hand_over(listener, on_seccomp_fd, init, "seccomp notify", "no listener for the seccomp fd")
                _send(sock, lib.OCIRUN_MSG_SECCOMP_ACK)
            elif mtype == lib.OCIRUN_MSG_CONSOLE_FD and init is not None and listener is not None:
                _hand_over(listener, on_console_fd, init, "process.terminal", "no receiver for the pty master")
            elif mtype == lib.OCIRUN_MSG_READY and init is not None:
                if on_ready is not None:
                    on_ready(init)
                if not plan.prepare_only:  # that init exits after READY: nothing to commit
                    _commit(sock, plan)
                return init
            else:
                raise SetupError("sync with container init", detail=f"unexpected message {last}")
    except BaseException:
        _kill_and_reap(init)
        _kill_and_reap(stage1)
        raise
    finally:
        if sock >= 0:
            os.close(sock)


def _commit(sock: int, plan: LaunchPlan) -> None:
    """COMMIT, then wait for the init to say it has stopped dying with us (it
    closes its end: EOF); an ERROR instead raises."""
    _, lib = load()
    _send(sock, lib.OCIRUN_MSG_COMMIT)
    reached("create:COMMIT")
    mtype, step, err, index, _ = _recv(sock)
    if mtype == lib.OCIRUN_MSG_ERROR:
        raise _step_error(step, err, index, plan)
    if mtype != 0:
        raise SetupError("sync with container init", detail=f"unexpected message {_msg_name(mtype)} after COMMIT")


def prepare_rootfs(plan: LaunchPlan, *, cgroup_fd: int | None,
                   on_child_created: Callable[[int], None]) -> None:
    """Restore's half of create: the rootfs prepared exactly as ``spawn`` prepares
    it (the same children, namespaces and mount sequence: every mount point,
    device, link and the cwd), without the process; CRIU mounts the filesystems
    and brings the processes. The init reports READY after its mounts and exits:
    its mount namespace, and every mount in it, goes with it; what the mounts
    created on the rootfs and on bind-mounted host directories stays, as after
    create. Raises SetupError as ``spawn`` does, after the same cleanup. Until
    it exits, stage-1 and the init die with this process (the parent-death
    signal), as in a create; there is no COMMIT. The test hooks' points are
    ``restore:<step>`` (``restore:clone``, ``restore:placed``, one per sync message)."""
    from ocirun.util.record import replace

    prepared = replace(plan, prepare_only=True, sync_before_pivot=False)
    init = spawn(prepared, exec_fifo_fd=-1, cgroup_fd=cgroup_fd, on_child_created=on_child_created,
                 on_namespaces_ready=lambda pid: None)
    _reap(init)


def _launch(plan: LaunchPlan, kind: str, cgroup_fd: int | None,
            on_child_created: Callable[[int], None], verb: str, *, exec_fifo_fd: int = -1,
            stdio: tuple[int, int, int] = (-1, -1, -1),
            plan_stdio: tuple[int, int, int] | None = None) -> tuple[int, int]:
    """What spawn and exec_process share: open the namespaces to join (above the
    preserved fds, which the container keeps), start the first child (``kind``
    "spawn": ocirun_spawn, "exec": ocirun_exec, with ``stdio``) in the process
    that parents the container (ocirun.parent: this one, or a helper's caller),
    place it in its cgroups and let it go on. ``plan_stdio``: the init's 0-2
    (plan.stdio; None: the parent's). Returns its pid and the parent's end of the
    sync socket; on failure nothing is left open or running."""
    from ocirun import parent

    _, lib = load()
    floor = 3 + (plan.process.preserve_fds if plan.process is not None else 0)
    ns_fds: list[int] = []
    tree_fds: list[int] = []
    try:
        if any(m.idmap is not None or m.open_by_parent for m in plan.mounts):
            from ocirun.shim.idmap import make_trees

            # Before the clone, so that a mapping or filesystem the kernel refuses
            # fails before any process exists; the children inherit the trees.
            tree_fds = make_trees(plan, floor)
        for j in plan.join_namespaces:
            try:
                fd = os.open(j.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as e:
                raise SetupError(f"open {_dec(j.path)}", e.errno or 0) from None
            if fd < floor:  # never inside the preserved range
                import fcntl

                high = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, floor)
                os.close(fd)
                fd = high
            ns_fds.append(fd)
        cplan = _CPlan(plan, ns_fds, tree_fds)
        if plan_stdio is not None:
            cplan.set_stdio(plan_stdio)
        res = parent.current.clone(kind, cplan, exec_fifo_fd=exec_fifo_fd,
                                   cgroup_fd=-1 if cgroup_fd is None else cgroup_fd, stdio=stdio)
        if res.rc < 0:
            raise _step_error(res.step, res.err, -1, plan)
    finally:
        for fd in ns_fds + tree_fds:  # the child has its copies
            if fd >= 0:
                os.close(fd)
    child, sock = res.pid, res.sock
    try:
        reached(verb + ":clone")
        if cgroup_fd is not None and not res.used_clone3:
            _write_cgroup_procs(cgroup_fd, child)
        on_child_created(child)
        _send(sock, lib.OCIRUN_MSG_CGROUP_PLACED)
        reached(verb + ":placed")
    except BaseException:
        os.close(sock)
        _kill_and_reap(child)
        raise
    return child, sock


def _take_fd(pid: int, fd: int) -> int | None:
    """A child's fd by number (pidfd_getfd(2)): the seccomp listener when the
    filter it just loaded refuses sendmsg(2). The child waits for our ACK, and
    is ours to reap, so the pid is its."""
    if fd < 0:
        return None
    _, lib = load()
    got = lib.ocirun_pidfd_getfd(pid, fd)
    if got < 0:
        raise SetupError("take the seccomp listener fd from the container (pidfd_getfd)", -got)
    return got


def _hand_over(fd: int, receiver: Callable[[int, int], None] | None, pid: int,
               what: str, missing: str) -> None:
    """Give an fd the child sent (SCM_RIGHTS) to its receiver; closed after."""
    try:
        if receiver is None:
            raise SetupError(what, detail=missing)
        receiver(pid, fd)
    finally:
        os.close(fd)


def _check_namespaces(plan: LaunchPlan) -> None:
    """Refuse what would change the host: the planner should never ask for it,
    but the child would do it to the host's mount table or hostname."""
    joined = 0
    for j in plan.join_namespaces:
        joined |= j.clone_flag
    have = plan.new_namespaces | joined
    if not have & _CLONE_NEWNS:
        raise SetupError("container setup", detail="a new or joined mount namespace is required")
    if (plan.hostname is not None or plan.domainname is not None) and not have & _CLONE_NEWUTS:
        raise SetupError("sethostname",
                         detail="unable to set hostname without a private UTS namespace")


def _send(sock: int, mtype: int) -> None:
    try:
        os.write(sock, _MSG.pack(mtype, 0, 0, -1, 0))
    except OSError as e:
        # EPIPE: the child died; its ERROR message (if any) is still to be read.
        if e.errno != _errno.EPIPE:
            raise SetupError("sync with container init", e.errno or 0) from None


def _recv_with_fd(sock: int) -> tuple[tuple[int, int, int, int, int], int | None]:
    """A message and the fd that came with it (SCM_RIGHTS), if any."""
    from ocirun.seccomp.notify import recv_fd

    try:
        data, fd = recv_fd(sock, _MSG.size)
    except ConnectionResetError:  # the child died with our last message unread
        return _unpack(b""), None
    try:
        return _unpack(data), fd
    except BaseException:
        if fd is not None:
            os.close(fd)
        raise


def _recv(sock: int) -> tuple[int, int, int, int, int]:
    try:
        data = os.read(sock, _MSG.size)
    except ConnectionResetError:
        # A seqpacket peer that dies with our last message unread resets the
        # connection instead of giving EOF: it exited all the same.
        data = b""
    return _unpack(data)


def _unpack(data: bytes) -> tuple[int, int, int, int, int]:
    if not data:
        return (0, 0, 0, -1, 0)
    if len(data) != _MSG.size:
        raise SetupError("sync with container init", detail=f"short message ({len(data)} bytes)")
    return _MSG.unpack(data)


def _reap(pid: int) -> None:
    from ocirun.parent import waitpid

    try:
        waitpid(pid, 0)
    except ChildProcessError:
        pass


def _write_cgroup_procs(cgroup_fd: int, pid: int) -> None:
    """clone3 missing (ENOSYS): put stage-1 into the v2 cgroup by pid instead."""
    try:
        fd = os.open("cgroup.procs", os.O_WRONLY | os.O_CLOEXEC, dir_fd=cgroup_fd)
        try:
            os.write(fd, str(pid).encode())
        finally:
            os.close(fd)
    except OSError as e:
        raise SetupError("write cgroup.procs", e.errno or 0) from None


def exec_process(plan: LaunchPlan, *, cgroup_fd: int | None,
                 on_child_created: Callable[[int], None],
                 stdio: tuple[int, int, int] = (-1, -1, -1),
                 on_console_fd: Callable[[int, int], None] | None = None,
                 on_seccomp_fd: Callable[[int, int], None] | None = None) -> int:
    """Run ``plan.process`` inside running namespaces (``plan.join_namespaces``,
    user first, mount last) and a cgroup; return its host pid once its execve
    succeeded. It is this process's child: the caller waits for it.

    Only ``join_namespaces``, ``process``, ``seccomp_bpf``/``seccomp_flags``/``seccomp_notify``
    of the plan are used. ``cgroup_fd``: a v2 cgroup to clone into, or None;
    ``on_child_created`` gets the first child's pid before it joins anything
    (place it in the v1 cgroups). ``stdio``: fds to become its 0, 1, 2 (-1:
    inherit ours). ``on_console_fd`` (needed with ``plan.process.terminal``) gets
    the process's pid and the pty master (closed after); ``on_seccomp_fd``
    (needed with ``plan.seccomp_notify``) its pid and the seccomp listener fd, before
    the process goes on (closed after). Raises SetupError (after killing and reaping every child)
    when a step or the execve fails.
    """
    if plan.process is None:
        raise SetupError("exec", detail="no process to run")
    _, lib = load()
    sock = -1
    stage1: int | None = None
    proc: int | None = None
    try:
        stage1, sock = _launch(plan, "exec", cgroup_fd, on_child_created, "exec", stdio=stdio)
        while True:
            master: int | None = None
            if plan.process.terminal or plan.seccomp_notify:  # CONSOLE_FD, SECCOMP_FD carry an fd
                (mtype, step, err, index, pid), master = _recv_with_fd(sock)
                if master is not None and (
                        mtype not in (lib.OCIRUN_MSG_CONSOLE_FD, lib.OCIRUN_MSG_SECCOMP_FD) or proc is None):
                    os.close(master)
                    master = None
            else:
                mtype, step, err, index, pid = _recv(sock)
            if mtype == lib.OCIRUN_MSG_SECCOMP_FD and master is None and proc is not None:
                master = _take_fd(proc, index)
            if mtype == lib.OCIRUN_MSG_CONSOLE_FD and master is not None:
                _hand_over(master, on_console_fd, proc or 0, "exec --tty", "no receiver for the pty master")
                continue
            if mtype == lib.OCIRUN_MSG_SECCOMP_FD and master is not None:
                # the process waits for the ACK: it runs nothing of its own before the agent has the fd
                _hand_over(master, on_seccomp_fd, proc or 0, "seccomp notify", "no listener for the seccomp fd")
                _send(sock, lib.OCIRUN_MSG_SECCOMP_ACK)
                continue
            if mtype == 0:
                if proc is None:
                    raise SetupError("exec: the joining process exited before it forked")
                return proc  # EOF: the CLOEXEC socket closed in a successful execve
            if mtype == lib.OCIRUN_MSG_ERROR:
                raise _step_error(step, err, index, plan)
            if mtype == lib.OCIRUN_MSG_EXEC_PID and stage1 is not None and pid > 0:
                proc = pid
                _reap(stage1)
                stage1 = None
                reached("exec:EXEC_PID")
                _send(sock, lib.OCIRUN_MSG_EXEC_ACK)
            else:
                raise SetupError("sync with exec process", detail=f"unexpected message {_msg_name(mtype)}")
    except BaseException:
        _kill_and_reap(proc)
        _kill_and_reap(stage1)
        raise
    finally:
        if sock >= 0:
            os.close(sock)


__all__ = ["spawn", "prepare_rootfs", "exec_process", "SetupError", "STEPS"]

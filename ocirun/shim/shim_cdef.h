/* The C <-> Python contract of the shim. Given verbatim to cffi's cdef() and
 * included by shim.h, so there is one definition of every struct and enum.
 * Plain C only (pycparser): no #include, no macros, fixed-width types.
 *
 * These structs are the C image of ocirun.plan.model.LaunchPlan; the Python
 * wrapper (ocirun/shim/__init__.py) fills them before clone and keeps every
 * buffer alive until spawn returns. Strings are NUL-terminated bytes; NULL
 * means "not set". */

/* Sync messages (SOCK_SEQPACKET, one struct ocirun_msg per packet). The table
 * with directions and meaning is at the top of shim.c. */
enum ocirun_msg_type {
    OCIRUN_MSG_CGROUP_PLACED = 1,
    OCIRUN_MSG_NS_READY = 2,
    OCIRUN_MSG_NS_ACK = 3,
    OCIRUN_MSG_INIT_PID = 4,
    OCIRUN_MSG_INIT_ACK = 5,
    OCIRUN_MSG_BEFORE_PIVOT = 6,
    OCIRUN_MSG_BEFORE_PIVOT_ACK = 7,
    OCIRUN_MSG_READY = 8,
    OCIRUN_MSG_ERROR = 9,
    OCIRUN_MSG_SECCOMP_FD = 10,     /* init -> parent, the listener fd in SCM_RIGHTS */
    OCIRUN_MSG_SECCOMP_ACK = 11,
    OCIRUN_MSG_COMMIT = 12,         /* parent -> init: state.json saved; outlive us */
    /* 30-49: exec and hooks */
    OCIRUN_MSG_EXEC_PID = 30,       /* exec stage-1 -> parent: the joining process's pid */
    OCIRUN_MSG_EXEC_ACK = 31,       /* parent -> exec process: pid known; set up and exec */
    /* Blocks by job: 20-29 process settings, 30-49 exec and hooks, 50-59 terminals. */
    OCIRUN_MSG_CONSOLE_FD = 50      /* child -> parent, the pty master in SCM_RIGHTS */
};

struct ocirun_msg {
    int32_t type;   /* enum ocirun_msg_type */
    int32_t step;   /* ERROR: enum ocirun_step */
    int32_t err;    /* ERROR: errno */
    int32_t index;  /* ERROR: which mount/device/rlimit/namespace/...; -1 for none */
    int32_t pid;    /* INIT_PID: the init's pid in the parent's pid namespace */
};

/* Setup steps: what failed. Python (STEPS in ocirun/shim/__init__.py) names
 * each one; keep the two in the same order. */
enum ocirun_step {
    OCIRUN_STEP_NONE = 0,
    /* parent */
    OCIRUN_STEP_SOCKETPAIR = 1,
    OCIRUN_STEP_DUP_FDS = 2,
    OCIRUN_STEP_CLONE = 3,
    /* stage-1 */
    OCIRUN_STEP_SYNC = 4,
    OCIRUN_STEP_DUMPABLE = 5,
    OCIRUN_STEP_SETNS = 6,              /* index: join_namespaces[] */
    OCIRUN_STEP_UNSHARE = 7,
    OCIRUN_STEP_USERNS_SETRESGID = 8,
    OCIRUN_STEP_USERNS_SETRESUID = 9,
    OCIRUN_STEP_USERNS_SETGROUPS = 10,
    OCIRUN_STEP_KEYRING = 11,
    OCIRUN_STEP_CLONE_INIT = 12,
    /* init: rootfs */
    OCIRUN_STEP_SETHOSTNAME = 13,
    OCIRUN_STEP_SETDOMAINNAME = 14,
    OCIRUN_STEP_ROOT_PROPAGATION = 15,
    OCIRUN_STEP_ROOTFS_BIND = 16,
    OCIRUN_STEP_ROOTFS_OPEN = 17,
    OCIRUN_STEP_MOUNT_MKDIR = 18,       /* index: mounts[] */
    OCIRUN_STEP_MOUNT = 19,
    OCIRUN_STEP_MOUNT_REOPEN = 20,
    OCIRUN_STEP_MOUNT_REMOUNT = 21,
    OCIRUN_STEP_MOUNT_PROPAGATION = 22,
    OCIRUN_STEP_MOUNT_SETATTR = 23,
    OCIRUN_STEP_DEVICE_MKDIR = 24,      /* index: devices[] */
    OCIRUN_STEP_DEVICE_MKNOD = 25,
    OCIRUN_STEP_DEVICE_CHOWN = 26,
    OCIRUN_STEP_DEVICE_BIND = 27,
    OCIRUN_STEP_SYMLINK = 28,           /* index: symlinks[] */
    OCIRUN_STEP_CWD_MKDIR = 29,
    OCIRUN_STEP_PIVOT_ROOT = 30,
    OCIRUN_STEP_OLD_ROOT_SLAVE = 31,
    OCIRUN_STEP_OLD_ROOT_UMOUNT = 32,
    OCIRUN_STEP_MOVE_ROOT = 33,
    OCIRUN_STEP_CHROOT = 34,
    OCIRUN_STEP_CHDIR_ROOT = 35,
    OCIRUN_STEP_ROOTFS_PROPAGATION = 36,
    OCIRUN_STEP_READONLY_PATH = 37,     /* index: readonly_paths[] */
    OCIRUN_STEP_MASKED_PATH = 38,       /* index: masked_paths[] */
    OCIRUN_STEP_MASK_DEVNULL = 39,      /* index: masked_paths[] */
    OCIRUN_STEP_ROOT_READONLY = 40,
    /* init: process */
    OCIRUN_STEP_CHDIR = 41,
    OCIRUN_STEP_CWD_OUTSIDE_ROOT = 42,
    OCIRUN_STEP_RLIMIT = 43,            /* index: process.rlimits[] */
    OCIRUN_STEP_CAPBSET_DROP = 44,      /* index: capability number */
    OCIRUN_STEP_KEEPCAPS = 45,
    OCIRUN_STEP_SETGROUPS = 46,
    OCIRUN_STEP_SETRESGID = 47,
    OCIRUN_STEP_SETRESUID = 48,
    OCIRUN_STEP_CAPSET = 49,
    OCIRUN_STEP_AMBIENT = 50,           /* index: capability number */
    OCIRUN_STEP_NO_NEW_PRIVS = 51,
    OCIRUN_STEP_EXEC_LOOKUP = 52,
    OCIRUN_STEP_CLOSE_RANGE = 53,
    OCIRUN_STEP_PRESERVE_FD = 54,       /* index: the fd number */
    OCIRUN_STEP_SECCOMP = 55,
    OCIRUN_STEP_SECCOMP_SEND = 56,
    OCIRUN_STEP_REOPEN_DEVNULL = 57,    /* index: which of 0-2 */
    /* init: process settings (process_attrs.c) */
    OCIRUN_STEP_PERSONALITY = 60,
    OCIRUN_STEP_SCHEDULER = 61,
    OCIRUN_STEP_IOPRIO = 62,
    OCIRUN_STEP_AFFINITY_INITIAL = 63,
    OCIRUN_STEP_SYSCTL_PROCFS = 64,
    OCIRUN_STEP_SYSCTL_OPEN = 65,       /* index: sysctl_keys[] */
    OCIRUN_STEP_SYSCTL_WRITE = 66,      /* index: sysctl_keys[] */
    OCIRUN_STEP_LSM_PROCFS = 67,
    OCIRUN_STEP_LSM_EXEC_LABEL = 68,
    OCIRUN_STEP_AFFINITY_FINAL = 69,
    /* 120-129: linux.memoryPolicy (process_attrs.c) */
    OCIRUN_STEP_MEMORY_POLICY = 120,
    /* 80-99: exec and hooks (ocirun_exec) */
    OCIRUN_STEP_EXEC_STDIO = 80,        /* index: which of 0-2 */
    OCIRUN_STEP_EXEC_CLOSE_FDS = 81,
    OCIRUN_STEP_EXEC_CLONE = 82,
    OCIRUN_STEP_EXECVE = 83,
    /* Blocks by job, so work on one never renumbers another: 60-79 process
     * settings (personality, scheduler, ioprio, affinity, LSM, sysctl),
     * 80-99 exec and hooks, 100-119 terminals, 120-129 memory policy,
     * 130-139 id-mapped mounts, 140-149 later rootfs steps, 150-159 network. */
    /* terminals (src/console.c) */
    OCIRUN_STEP_CONSOLE_OPEN_PTMX = 100,
    OCIRUN_STEP_CONSOLE_PTMX_CHECK = 101,  /* not the ptmx of a devpts */
    OCIRUN_STEP_CONSOLE_UNLOCKPT = 102,
    OCIRUN_STEP_CONSOLE_OPEN_PEER = 103,
    OCIRUN_STEP_CONSOLE_PEER_CHECK = 104,  /* not a pty slave of that devpts */
    OCIRUN_STEP_CONSOLE_WINSIZE = 105,
    OCIRUN_STEP_CONSOLE_CREATE = 106,      /* /dev/console mount point */
    OCIRUN_STEP_CONSOLE_MOUNT = 107,
    OCIRUN_STEP_CONSOLE_SETSID = 108,
    OCIRUN_STEP_CONSOLE_SETCTTY = 109,
    OCIRUN_STEP_CONSOLE_STDIO = 110,
    OCIRUN_STEP_CONSOLE_CHOWN = 111,
    OCIRUN_STEP_CONSOLE_SEND = 112,
    /* 130-139: id-mapped mounts (src/idmap.c). 130-136 and 138 run in the parent
     * (ocirun_idmap_userns, ocirun_idmap_tree; no index: Python knows the
     * mount), 137 in the init (index: mounts[]). */
    OCIRUN_STEP_IDMAP_USERNS_CLONE = 130,  /* a process in a new user namespace */
    OCIRUN_STEP_IDMAP_UID_MAP = 131,       /* write its uid_map */
    OCIRUN_STEP_IDMAP_GID_MAP = 132,       /* write its gid_map */
    OCIRUN_STEP_IDMAP_USERNS_OPEN = 133,   /* open its /proc/PID/ns/user */
    OCIRUN_STEP_IDMAP_OPEN_TREE = 134,     /* open_tree(OPEN_TREE_CLONE) of the source */
    OCIRUN_STEP_IDMAP_PROPAGATION = 135,   /* mount_setattr(propagation MS_SLAVE) */
    OCIRUN_STEP_IDMAP_SETATTR = 136,       /* mount_setattr(MOUNT_ATTR_IDMAP) */
    OCIRUN_STEP_IDMAP_MOVE_MOUNT = 137,    /* init: move_mount onto the mount point */
    OCIRUN_STEP_IDMAP_DUP_FD = 138,        /* parent: the tree fd above the preserved fds */
    OCIRUN_STEP_BIND_TREE_HELPER = 139,    /* parent: the helper that opens bind sources (ocirun_bind_trees) */
    /* later rootfs steps (src/rootfs.c) */
    OCIRUN_STEP_DEVICE_EXISTS = 140,    /* index: devices[]; a file at the path that is not the device */
    OCIRUN_STEP_MOUNT_COPYUP = 141,     /* index: mounts[]; tmpcopyup's copy into the tmpfs */
    OCIRUN_STEP_BIND_TREE_OPEN = 142,   /* parent: open_tree of a bind source (ocirun_bind_trees) */
    OCIRUN_STEP_PDEATHSIG = 143,        /* init: disarm the parent-death signal at COMMIT */
    OCIRUN_STEP_OOM_SCORE_ADJ = 144,    /* stage-1: write /proc/self/oom_score_adj */
    OCIRUN_STEP_USERNS_DUMPABLE = 145,  /* stage-1: dumpable while the parent writes the id maps */
    /* 150-159: network (src/namespaces.c) */
    OCIRUN_STEP_LOOPBACK = 150          /* stage-1: bring lo up in a new network namespace */
};

struct ocirun_mount {
    const char *target;        /* container path */
    const char *source;        /* NULL for none */
    const char *fstype;        /* NULL for none */
    unsigned long flags;       /* MS_* of the first mount(2) */
    const char *data;          /* NULL for none */
    unsigned long propagation; /* 0: none */
    unsigned long remount_flags; /* binds: 0 = no remount */
    uint64_t attr_set;         /* MOUNT_ATTR_* for mount_setattr(AT_RECURSIVE) */
    uint64_t attr_clr;
    int target_is_file;
    /* >= 0: a detached id-mapped mount made by the parent (ocirun_idmap_tree),
     * attached with move_mount instead of mount(2); closed once attached.
     * -1: none (set it explicitly: 0 is an fd). */
    int tree_fd;
    /* tmpcopyup: 1 copy what the directory held into the new tmpfs;
     * 2 also give the tmpfs root the directory's mode (no mode= option) */
    int copy_up;
};

struct ocirun_device {
    const char *path;
    uint32_t mode;
    uint32_t major;
    uint32_t minor;
    uint32_t uid;
    uint32_t gid;
    int bind_from_host;
    int must_match;            /* linux.devices: an existing file must be this device */
};

struct ocirun_symlink {
    const char *path;
    const char *target;
};

struct ocirun_nsjoin {
    int clone_flag;
    int fd;                    /* opened by the parent (O_RDONLY|O_CLOEXEC) */
};

struct ocirun_rlimit {
    int resource;
    uint64_t soft;
    uint64_t hard;
};

/* bits of ocirun_process.cap_sets: which capability sets to apply */
enum ocirun_capset_bits {
    OCIRUN_CAPS_BOUNDING = 1,
    OCIRUN_CAPS_EFFECTIVE = 2,
    OCIRUN_CAPS_PERMITTED = 4,
    OCIRUN_CAPS_INHERITABLE = 8,
    OCIRUN_CAPS_AMBIENT = 16
};

struct ocirun_process {
    char **argv;               /* NULL-terminated */
    char **envp;               /* NULL-terminated */
    const char *cwd;
    const char **search_path;
    int n_search_path;
    uint32_t uid;
    uint32_t gid;
    const uint32_t *additional_gids;
    int n_additional_gids;
    unsigned int umask;
    int cap_sets;              /* OCIRUN_CAPS_* bits; 0: leave capabilities alone */
    uint64_t bounding;
    uint64_t effective;
    uint64_t permitted;
    uint64_t inheritable;
    uint64_t ambient;
    const struct ocirun_rlimit *rlimits;
    int n_rlimits;
    int no_new_privileges;
    int preserve_fds;
    /* process settings (process_attrs.c); appended, so other jobs' fields stay put */
    long personality;          /* personality(2) persona; -1: leave alone */
    int sched_set;             /* 0: leave the scheduler alone */
    uint32_t sched_policy;     /* SCHED_* */
    uint64_t sched_flags;      /* SCHED_FLAG_* */
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime;    /* ns, SCHED_DEADLINE */
    uint64_t sched_deadline;
    uint64_t sched_period;
    int ioprio;                /* IOPRIO_PRIO_VALUE(class, level); -1: leave alone */
    const uint8_t *cpu_initial; /* execCPUAffinity.initial as a cpu_set_t mask; NULL: none */
    int cpu_initial_len;       /* bytes, a multiple of 8 */
    const uint8_t *cpu_final;  /* execCPUAffinity.final; NULL: none */
    int cpu_final_len;
    const char *lsm_attr;      /* "attr/apparmor/exec" or "attr/exec" below /proc/<tid>; NULL: none */
    const char *lsm_label;     /* what to write there ("exec <profile>" or the SELinux label) */
    /* terminal: a pty made in the container's devpts becomes stdio and the
     * controlling terminal; the master goes to the parent (CONSOLE_FD). */
    int terminal;
    uint16_t console_height;   /* consoleSize; 0 x 0: leave the kernel's default */
    uint16_t console_width;
    const char *exe;           /* exec only: run this path (a hook's "path"); NULL: look up argv[0] */
    /* linux.memoryPolicy (process_attrs.c): set_mempolicy(2) on ourselves before execve */
    int mpol_set;              /* 0: leave the memory policy alone */
    int mpol_mode;             /* MPOL_* | MPOL_F_* mode flags */
    const uint64_t *mpol_nodes; /* nodemask as unsigned longs; NULL: no nodes */
    int mpol_nodes_len;        /* words */
    /* numbers in 3..3+preserve_fds-1 the caller did not pass (the runtime's
     * placeholders): closed, not passed */
    const int *absent_fds;
    int n_absent_fds;
};

struct ocirun_plan {
    const char *rootfs;
    int new_namespaces;
    const struct ocirun_nsjoin *joins;
    int n_joins;
    int joins_user_ns;         /* one of joins is CLONE_NEWUSER */
    unsigned long root_propagation;
    unsigned long rootfs_propagation;
    int root_readonly;
    int no_pivot;
    const struct ocirun_mount *mounts;
    int n_mounts;
    const struct ocirun_device *devices;
    int n_devices;
    const struct ocirun_symlink *symlinks;
    int n_symlinks;
    const char **masked_paths;
    int n_masked_paths;
    const char **readonly_paths;
    int n_readonly_paths;
    const char *hostname;
    const char *domainname;
    const struct ocirun_process *process;  /* NULL: no process, the init waits */
    int sync_before_pivot;
    const char *session_keyring;
    int cap_last_cap;          /* /proc/sys/kernel/cap_last_cap, read by the parent */
    /* seccomp: a classic-BPF program (struct sock_filter[], 8 bytes each) compiled
     * by the parent; NULL for none. Loaded with seccomp(SET_MODE_FILTER, flags). */
    const uint8_t *seccomp_bpf;
    int seccomp_len;           /* instructions */
    unsigned int seccomp_flags;
    int seccomp_notify;        /* flags has NEW_LISTENER: send the fd to the parent */
    /* linux.sysctl (process_attrs.c): paths below /proc/sys and their values */
    const char **sysctl_keys;
    const char **sysctl_values;
    int n_sysctl;
    /* create: NULL (the init keeps the caller's 0-2), or the fds that become the
     * init's 0, 1, 2 (-1: keep that one); the library's stdout=PIPE and the like */
    const int *stdio;
    /* restore (CRIU brings the processes): the init makes the mounts, devices,
     * links and cwd exactly as for create, then reports READY and exits; its
     * mount namespace goes with it, the mount points it made stay. */
    int prepare_only;
    /* rootless (docs/rootless.md): the runtime's effective uid is not 0, so it
     * writes a new user namespace's id maps without privilege: stage-1 is
     * dumpable while it does (it, or newuidmap, must own stage-1's /proc files),
     * and setgroups(2) may be denied in that namespace */
    int rootless_euid;
    /* process.oomScoreAdj: stage-1 writes /proc/self/oom_score_adj before it
     * becomes non-dumpable (the init inherits it) */
    int oom_score_adj_set;
    int oom_score_adj;
};

struct ocirun_spawn_result {
    int pid;                   /* stage-1's pid */
    int sock;                  /* parent's end of the sync socket */
    int used_clone3;           /* 0: fell back to clone (no CLONE_INTO_CGROUP) */
    int step;                  /* on failure: enum ocirun_step */
    int err;                   /* on failure: errno */
};

int ocirun_shim_version(void);
/* fd number `fd` of process `pid`, duplicated into the caller (pidfd_open +
 * pidfd_getfd, O_CLOEXEC); -errno on failure. */
int ocirun_pidfd_getfd(int pid, int fd);
/* prctl(PR_SET_CHILD_SUBREAPER, 1) on the caller (foreground `run`); -1 on failure. */
int ocirun_set_child_subreaper(void);

/* Parent side: socketpair, clone3 stage-1 (which runs the plan and never
 * returns). exec_fifo_fd may be -1 with plan->prepare_only. 0 on success (res->pid, res->sock set), -1 on failure (res->step,
 * res->err set; nothing left open or running). Releases the GIL (cffi). */
int ocirun_spawn(const struct ocirun_plan *plan, int exec_fifo_fd, int cgroup_fd,
                 struct ocirun_spawn_result *res);

/* Parent side of `exec` (and of hooks run in the container namespace): clone3
 * a stage-1 that joins plan->joins (a running container's namespaces; nothing
 * is created or mounted: the other plan fields but process, seccomp_* and
 * cap_last_cap are ignored), forks the process into the joined pid namespace
 * and execs plan->process there. stdio[0..2]: fds to make its 0-2, -1 to
 * inherit. res->pid is stage-1; read EXEC_PID then EOF (exec'd) or ERROR from
 * res->sock. Releases the GIL (cffi). */
int ocirun_exec(const struct ocirun_plan *plan, const int *stdio, int cgroup_fd,
                struct ocirun_spawn_result *res);

/* Parent side of id-mapped mounts (src/idmap.c): the parent runs them before
 * ocirun_spawn and passes the detached mounts in ocirun_mount.tree_fd.
 *
 * ocirun_idmap_userns: a user namespace with these uid_map/gid_map contents,
 * as an O_RDONLY|O_CLOEXEC fd (its only process is reaped before returning).
 * fd, or -1 with res->step, res->err set; nothing left running or open. */
int ocirun_idmap_userns(const char *uid_map, const char *gid_map, struct ocirun_spawn_result *res);
/* ocirun_idmap_tree: a detached clone of source (open_tree(OPEN_TREE_CLONE),
 * the whole tree below it with recursive_clone), made a slave and id-mapped
 * with userns_fd (every mount of the clone with recursive_idmap), as an
 * O_CLOEXEC fd at or above floor. fd, or -1 with res set; nothing left open. */
int ocirun_idmap_tree(const char *source, int recursive_clone, int recursive_idmap, int userns_fd,
                      int floor, struct ocirun_spawn_result *res);
/* ocirun_bind_trees: detached clones of n plain bind sources (the whole tree
 * below each with recursive[i]), opened with the runtime's privileges by a
 * helper in a user namespace mapping every id to itself, in a mount namespace
 * of its own (so the host's mount locks come with them), made slaves; fds at
 * or above floor in fds_out. 0, or -1 with res->step, res->err and res->pid =
 * the index of the failing source (-1: none); nothing left open or running. */
int ocirun_bind_trees(const char **sources, const int *recursive, int n, int floor, int *fds_out,
                      struct ocirun_spawn_result *res);

/* init: the process's kernel attributes that are not credentials —
 * personality, scheduler, I/O priority, CPU affinity, memory policy, the LSM exec label —
 * and the container's sysctls. Part of shim.c (unity build); called from
 * init.c, which says where and why there. */

#ifndef SYS_sched_setattr
#define SYS_sched_setattr 314
#endif
#ifndef SYS_set_mempolicy
#define SYS_set_mempolicy 238
#endif
#ifndef SYS_ioprio_set
#define SYS_ioprio_set 251
#endif
#define OCI_RESOLVE_NO_SYMLINKS 0x04
#define OCI_RESOLVE_BENEATH 0x08
#define OCI_IOPRIO_WHO_PROCESS 1

/* struct sched_attr, SCHED_ATTR_SIZE_VER1 (with the utilization clamps). */
struct oci_sched_attr {
    uint32_t size;
    uint32_t sched_policy;
    uint64_t sched_flags;
    int32_t sched_nice;
    uint32_t sched_priority;
    uint64_t sched_runtime;
    uint64_t sched_deadline;
    uint64_t sched_period;
    uint32_t sched_util_min;
    uint32_t sched_util_max;
};

/* linux.personality: personality(2) of domain | flags. */
static void set_personality(struct ctx *c)
{
    const struct ocirun_process *pr = c->plan->process;
    if (pr->personality < 0)
        return;
    if (syscall(SYS_personality, (unsigned long)pr->personality) < 0)
        fail(c, OCIRUN_STEP_PERSONALITY, errno, -1);
}

/* process.scheduler: sched_setattr(2) on ourselves; execve keeps it. */
static void set_scheduler(struct ctx *c)
{
    const struct ocirun_process *pr = c->plan->process;
    if (!pr->sched_set)
        return;
    struct oci_sched_attr a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.sched_policy = pr->sched_policy;
    a.sched_flags = pr->sched_flags;
    a.sched_nice = pr->sched_nice;
    a.sched_priority = pr->sched_priority;
    a.sched_runtime = pr->sched_runtime;
    a.sched_deadline = pr->sched_deadline;
    a.sched_period = pr->sched_period;
    if (syscall(SYS_sched_setattr, 0, &a, 0) < 0)
        fail(c, OCIRUN_STEP_SCHEDULER, errno, -1);
}

/* process.ioPriority: ioprio_set(IOPRIO_WHO_PROCESS, self); children inherit it. */
static void set_io_priority(struct ctx *c)
{
    const struct ocirun_process *pr = c->plan->process;
    if (pr->ioprio < 0)
        return;
    if (syscall(SYS_ioprio_set, OCI_IOPRIO_WHO_PROCESS, 0, pr->ioprio) < 0)
        fail(c, OCIRUN_STEP_IOPRIO, errno, -1);
}

/* linux.memoryPolicy: set_mempolicy(2) on ourselves; fork and execve keep it.
 * The kernel reads maxnode - 1 bits (a decades-old off-by-one every caller
 * follows, libnuma included), hence the + 1. */
static void set_memory_policy(struct ctx *c)
{
    const struct ocirun_process *pr = c->plan->process;
    if (!pr->mpol_set)
        return;
    unsigned long maxnode = pr->mpol_nodes ? (unsigned long)pr->mpol_nodes_len * 64 + 1 : 0;
    if (syscall(SYS_set_mempolicy, pr->mpol_mode, pr->mpol_nodes, maxnode) < 0)
        fail(c, OCIRUN_STEP_MEMORY_POLICY, errno, -1);
}

/* execCPUAffinity.initial: where the process runs before it is in the
 * container's cgroup. 0 or -errno. */
static int set_cpu_affinity_initial(const struct ocirun_process *pr)
{
    if (!pr || !pr->cpu_initial)
        return 0;
    if (syscall(SYS_sched_setaffinity, 0, (size_t)pr->cpu_initial_len, pr->cpu_initial) < 0)
        return -errno;
    return 0;
}

/* execCPUAffinity.final: where the process runs from execve on. 0 or -errno. */
static int set_cpu_affinity_final(const struct ocirun_process *pr)
{
    if (!pr->cpu_final)
        return 0;
    if (syscall(SYS_sched_setaffinity, 0, (size_t)pr->cpu_final_len, pr->cpu_final) < 0)
        return -errno;
    return 0;
}

/* A procfs instance of our own (fsopen/fsmount, never attached anywhere):
 * nothing the container's rootfs holds — a fake /proc, a symlink, a bind
 * over /proc/sys — is on the path to what we write. The files that matter
 * (/proc/sys/net, ipc and uts keys, attr/exec) resolve against the opener's
 * namespaces, which are the container's. Returns the mount fd. */
static int open_own_procfs(struct ctx *c, int step)
{
    int mnt = new_procfs_mount();
    if (mnt < 0)
        fail(c, step, errno, -1);
    return mnt;
}

/* Write a whole value to a file beneath `dirfd` (no symlinks, no "..").
 * 0 or -errno; *opened tells whether the open succeeded. */
static int write_beneath(int dirfd, const char *path, const char *value, int *opened)
{
    struct oci_open_how how = {O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0,
                               OCI_RESOLVE_BENEATH | OCI_RESOLVE_NO_SYMLINKS | OCI_RESOLVE_NO_MAGICLINKS};
    *opened = 0;
    int fd = (int)syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    if (fd < 0)
        return -errno;
    *opened = 1;
    size_t len = strlen(value);
    ssize_t w;
    do
        w = write(fd, value, len);
    while (w < 0 && errno == EINTR);
    int e = w < 0 ? errno : ((size_t)w != len ? EIO : 0);
    close(fd);
    return -e;
}

/* linux.sysctl, through our own procfs (see open_own_procfs). Keys arrive as
 * paths below /proc/sys ("net/ipv4/ip_forward"), validated by the parent. */
static void write_sysctls(struct ctx *c)
{
    const struct ocirun_plan *p = c->plan;
    if (p->n_sysctl == 0)
        return;
    int proc = open_own_procfs(c, OCIRUN_STEP_SYSCTL_PROCFS);
    int sys = openat(proc, "sys", O_PATH | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
    int e = errno;
    close(proc);
    if (sys < 0)
        fail(c, OCIRUN_STEP_SYSCTL_PROCFS, e, -1);
    for (int i = 0; i < p->n_sysctl; i++) {
        int opened;
        int r = write_beneath(sys, p->sysctl_keys[i], p->sysctl_values[i], &opened);
        if (r < 0) {
            close(sys);
            fail(c, opened ? OCIRUN_STEP_SYSCTL_WRITE : OCIRUN_STEP_SYSCTL_OPEN, -r, i);
        }
    }
    close(sys);
}

/* process.apparmorProfile / selinuxLabel: the label the next execve takes,
 * written to our own thread's attr file through our own procfs. */
static void set_exec_label(struct ctx *c)
{
    const struct ocirun_process *pr = c->plan->process;
    if (!pr->lsm_attr || !pr->lsm_label)
        return;
    /* "<tid>/attr/...": thread-self and self are symlinks, which the
     * resolution below refuses; our procfs is of our own pid namespace. */
    char path[64];
    size_t alen = strlen(pr->lsm_attr);
    if (20 + 1 + alen >= sizeof path)
        fail(c, OCIRUN_STEP_LSM_EXEC_LABEL, ENAMETOOLONG, -1);
    char *p = put_decimal(path, (unsigned long)syscall(SYS_gettid));
    *p++ = '/';
    memcpy(p, pr->lsm_attr, alen + 1);
    int proc = open_own_procfs(c, OCIRUN_STEP_LSM_PROCFS);
    int opened;
    int r = write_beneath(proc, path, pr->lsm_label, &opened);
    close(proc);
    if (r < 0)
        fail(c, OCIRUN_STEP_LSM_EXEC_LABEL, -r, -1);
}

/* Parent side: the sync socket and clone3 of stage-1. Part of shim.c
 * (unity build). */

/* ---- parent ---- */

int ocirun_set_child_subreaper(void)
{
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
}

int ocirun_pidfd_getfd(int pid, int fd)
{
    int pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pidfd < 0)
        return -errno;
    int got = (int)syscall(SYS_pidfd_getfd, pidfd, fd, 0);
    int err = errno;
    close(pidfd);
    return got < 0 ? -err : got;
}

int ocirun_shim_version(void)
{
    return 2;
}

/* The parent's and the child's ends of a new sync socket; the child's is moved
 * above `floor` (the preserved fds are the container's). 0, or -1 with res set. */
static int open_sync_socket(int floor, int *parent_end, int *child_end,
                            struct ocirun_spawn_result *res)
{
    int sv[2];
    res->pid = -1;
    res->sock = -1;
    res->used_clone3 = 0;
    res->step = 0;
    res->err = 0;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0) {
        res->step = OCIRUN_STEP_SOCKETPAIR;
        res->err = errno;
        return -1;
    }
    *child_end = fcntl(sv[1], F_DUPFD_CLOEXEC, floor);
    int err = errno;
    close(sv[1]);
    if (*child_end < 0) {
        close(sv[0]);
        res->step = OCIRUN_STEP_DUP_FDS;
        res->err = err;
        return -1;
    }
    *parent_end = sv[0];
    return 0;
}

/* clone3 (born in cgroup_fd when >= 0), or clone on a pre-5.3 kernel (ENOSYS:
 * Python then places the child by pid). Every signal is blocked around it so no
 * Python handler runs in the child before it resets them; the child returns 0
 * with them still blocked, the parent its pid (or -1, errno) with its mask back. */
static long clone_child(int cgroup_fd, int *used_clone3)
{
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    struct oci_clone_args args;
    memset(&args, 0, sizeof args);
    args.exit_signal = SIGCHLD;
    if (cgroup_fd >= 0) {
        args.flags |= OCI_CLONE_INTO_CGROUP;
        args.cgroup = (uint64_t)cgroup_fd;
    }
    *used_clone3 = 1;
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid < 0 && errno == ENOSYS) {
        *used_clone3 = 0;
        pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    }
    if (pid == 0)
        return 0;
    int err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    errno = err;
    return pid;
}

/* The parent's side after clone_child: its copy of the child's end is closed. */
static int finish_clone(long pid, int used_clone3, int parent_end,
                        struct ocirun_spawn_result *res)
{
    if (pid < 0) {
        res->err = errno;
        close(parent_end);
        res->step = OCIRUN_STEP_CLONE;
        return -1;
    }
    res->pid = (int)pid;
    res->sock = parent_end;
    res->used_clone3 = used_clone3;
    return 0;
}

int ocirun_spawn(const struct ocirun_plan *plan, int exec_fifo_fd, int cgroup_fd,
                 struct ocirun_spawn_result *res)
{
    int parent_end, child_sock, used_clone3;
    int floor = 3 + (plan->process ? plan->process->preserve_fds : 0);
    if (open_sync_socket(floor, &parent_end, &child_sock, res) < 0)
        return -1;
    /* The exec fifo too goes above the preserved range (none for prepare_only). */
    int fifo = exec_fifo_fd < 0 && plan->prepare_only ? -1 : fcntl(exec_fifo_fd, F_DUPFD_CLOEXEC, floor);
    if (fifo < 0 && !plan->prepare_only) {
        res->step = OCIRUN_STEP_DUP_FDS;
        res->err = errno;
        close(child_sock);
        close(parent_end);
        return -1;
    }
    long self = getpid(); /* stage-1 checks it is still its parent */
    long pid = clone_child(cgroup_fd, &used_clone3);
    if (pid == 0) {
        close(parent_end);
        stage1_main(plan, child_sock, fifo, self);
    }
    int err = errno;
    close(child_sock);
    if (fifo >= 0)
        close(fifo);
    errno = err;
    return finish_clone(pid, used_clone3, parent_end, res);
}

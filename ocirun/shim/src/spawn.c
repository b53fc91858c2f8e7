/* Parent side: the sync socket and clone3 of stage-1. Part of shim.c
 * (unity build). */

/* ---- parent ---- */

int ocirun_set_child_subreaper(void)
{
    return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
}

int ocirun_shim_version(void)
{
    return 2;
}

int ocirun_spawn(const struct ocirun_plan *plan, int exec_fifo_fd, int cgroup_fd,
                 struct ocirun_spawn_result *res)
{
    int sv[2], child_sock, fifo, err;
    int floor = 3 + (plan->process ? plan->process->preserve_fds : 0);
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
    /* The children's own fds go above the preserved range, which is the container's. */
    child_sock = fcntl(sv[1], F_DUPFD_CLOEXEC, floor);
    err = errno;
    fifo = fcntl(exec_fifo_fd, F_DUPFD_CLOEXEC, floor);
    if (fifo < 0)
        err = errno;
    close(sv[1]);
    if (child_sock < 0 || fifo < 0) {
        if (child_sock >= 0)
            close(child_sock);
        if (fifo >= 0)
            close(fifo);
        close(sv[0]);
        res->step = OCIRUN_STEP_DUP_FDS;
        res->err = err;
        return -1;
    }

    /* No signal handler (Python's) may run in the child before it resets them. */
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
    int used_clone3 = 1;
    long pid = syscall(SYS_clone3, &args, sizeof args);
    if (pid < 0 && errno == ENOSYS) {
        /* Pre-5.3 kernel: Python places the child in the cgroup by pid instead. */
        used_clone3 = 0;
        pid = syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    }
    if (pid == 0) {
        close(sv[0]);
        stage1_main(plan, child_sock, fifo);
    }
    err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(child_sock);
    close(fifo);
    if (pid < 0) {
        close(sv[0]);
        res->step = OCIRUN_STEP_CLONE;
        res->err = err;
        return -1;
    }
    res->pid = (int)pid;
    res->sock = sv[0];
    res->used_clone3 = used_clone3;
    return 0;
}

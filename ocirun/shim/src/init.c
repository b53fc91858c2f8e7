/* The children's main functions: stage-1 and the init, and the process setup
 * the init shares with exec (src/exec.c). Part of shim.c
 * (unity build). */

/* The cwd, entered as root first: a cwd only root can reach still works.
 * Returns 1 when it must be entered again as the user (EACCES). Shared by the
 * init and exec (src/exec.c). */
static int enter_cwd_as_root(struct ctx *c)
{
    int chdir_again = enter_cwd(c, 1);
    /* Before any seccomp filter: a profile may refuse getcwd(2) (runtime-tools'
     * linux_seccomp test does), and the cwd does not change with the uid. */
    if (!chdir_again)
        verify_cwd(c);
    return chdir_again;
}

/* From root to the container user, shared by the init and exec (src/exec.c):
 * what needs privileges first, then the filter that needs CAP_SYS_ADMIN, the
 * uid change and the capability sets. */
static void become_user(struct ctx *c, int chdir_again)
{
    const struct ocirun_process *pr = c->plan->process;
    /* fsopen(proc) needs CAP_SYS_ADMIN and must precede any seccomp filter. */
    set_exec_label(c);
    /* Needs CAP_SETPCAP, which the uid change below may take away. */
    drop_bounding_set(c);
    /* Before any seccomp filter: a profile need not allow close_range(2), and one
     * that predates it answers ENOSYS (runc's stub, ocirun/seccomp/enosys.py).
     * Everything opened after this is O_CLOEXEC (the exec fifo, the listener). */
    prepare_fds(c, pr->preserve_fds);
    /* Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: before the uid
     * change and capset take it away (runc's order). With SCMP_ACT_NOTIFY the
     * listener fd goes to the parent (and the agent) before anything else runs. */
    if (c->plan->seccomp_bpf != NULL && !pr->no_new_privileges)
        seccomp_before_ready(c);
    change_user(c);
    if (chdir_again) {
        enter_cwd(c, 0);
        /* Only now: the cwd is entered as the user (a filter may be loaded already). */
        verify_cwd(c);
    }
    set_capabilities(c);
}

/* After READY: wait for COMMIT (the parent saved state.json; EOF, its death,
 * ends us), stop dying with the parent, and say so by closing the socket: the
 * parent waits for that EOF before `create` returns, so its normal exit cannot
 * take us with it. */
static void await_commit(struct ctx *c)
{
    wait_for(c, OCIRUN_MSG_COMMIT);
    if (prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0) < 0)
        fail(c, OCIRUN_STEP_PDEATHSIG, errno, -1);
    close(c->sock);
}

__attribute__((noreturn)) static void run_process(struct ctx *c)
{
    const struct ocirun_process *pr = c->plan->process;
    /* First, while every privilege is still there (EACCES is retried as the user). */
    int chdir_again = enter_cwd_as_root(c);
    /* Before dropping privileges: raising a hard limit needs CAP_SYS_RESOURCE. */
    set_rlimits(c);
    /* Before any seccomp filter below: a profile may forbid personality(2). */
    set_personality(c);
    /* As root, before capabilities go: a real-time policy or a lower nice needs CAP_SYS_NICE. */
    set_scheduler(c);
    /* As root, before capabilities go: IOPRIO_CLASS_RT needs CAP_SYS_ADMIN. */
    set_io_priority(c);
    /* Before any seccomp filter (a profile may forbid set_mempolicy(2)); as late as
     * that allows, so little of our own setup is allocated under the policy.
     * Needs no privilege: a node outside the cpuset's mems is the kernel's EINVAL. */
    set_memory_policy(c);
    /* The process's umask: nothing below creates a file, and a filter loaded by
     * become_user may refuse umask(2), which would leave the setup's 0 in place. */
    umask(pr->umask);
    /* Before the filter too (it may refuse rt_sigaction(2)): from here on the
     * terminating signals end the init, which as pid 1 would ignore them; so
     * `kill <id> TERM` stops a created container, as runc's init. */
    die_on_signals();
    /* After every step above that needs root or must precede a filter. */
    become_user(c, chdir_again);
    int has_seccomp = c->plan->seccomp_bpf != NULL;
    /* As the container user, like runc's LookPath: what it cannot exec is not
     * found. Under a filter already without no_new_privs: see can_exec. */
    resolve_exe(c);
    /* Again: the uid change cleared it (a change of the effective ids does). */
    arm_parent_death(0);
    /* Last, so nothing above (capset, setuid) is limited by it. */
    if (pr->no_new_privileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        fail(c, OCIRUN_STEP_NO_NEW_PRIVS, errno, -1);
    /* no_new_privs with NOTIFY: the listener fd can only reach the parent (and the
     * agent) while the parent waits for READY, so this is as late as it can be. */
    if (has_seccomp && pr->no_new_privileges && c->plan->seccomp_notify)
        seccomp_before_ready(c);
    send_msg(c->sock, OCIRUN_MSG_READY, 0, 0, -1, 0);
    /* Only once the parent has saved state.json may we outlive it (see there). */
    await_commit(c);
    wait_for_start(c);
    /* "final": the last thing before execve, so none of our setup runs on those CPUs;
     * before a filter loaded here could refuse sched_setaffinity(2). After READY
     * the parent is gone: say it on stderr. */
    int aff = set_cpu_affinity_final(pr);
    if (aff < 0)
        die_late("sched_setaffinity", "execCPUAffinity.final", -aff, 1);
    /* no_new_privs: right before execve, so none of our own setup syscalls need
     * to be in the container's profile. */
    if (has_seccomp && pr->no_new_privileges && !c->plan->seccomp_notify) {
        int r = load_seccomp(c->plan);
        if (r < 0)
            die_late("load", "seccomp filter", -r, 1);
    }
    execve(c->exe, pr->argv, pr->envp);
    die_late("exec", c->exe, errno, errno == EACCES ? 126 : 127);
}

__attribute__((noreturn)) static void init_main(struct ctx *c)
{
    const struct ocirun_plan *p = c->plan;
    /* First: a new child does not inherit it. A parent already gone shows as
     * EOF at the wait below. */
    arm_parent_death(0);
    /* Until the parent has our pid it could not kill us on an error: wait. */
    wait_for(c, OCIRUN_MSG_INIT_ACK);
    /* A session of its own, as runc's init: the caller's terminal (its ^C, its
     * hangup) reaches the container only through what `run` forwards. */
    if (setsid() < 0)
        fail(c, OCIRUN_STEP_CONSOLE_SETSID, errno, -1);
    close_inherited_fds(c);
    /* Before any mount and after the fds we inherited are gone: our fds are
     * named through a procfs of our own from now on, never the container's
     * /proc (src/selffd.c). Above the preserved fds, which the container gets. */
    open_selffd(c, 3 + (p->process ? (unsigned int)p->process->preserve_fds : 0));
    /* umask 0 during setup: device modes and mount points exactly as planned;
     * the process's own umask is set just before exec. */
    umask(0);
    /* Needs our own uts namespace, which the init is in now. Not for a restore:
     * CRIU restores the names and sysctls of the namespaces it makes. */
    if (!p->prepare_only)
        set_names(c);
    /* Through a procfs of our own, so nothing in the rootfs is involved: with the
     * names, before any mount; our namespaces are the container's now. */
    if (!p->prepare_only)
        write_sysctls(c);
    /* Before any mount: nothing we mount may propagate to the host. */
    make_root_private(c);
    /* pivot_root needs the new root to be a mount point. */
    bind_rootfs(c);
    /* In config order: later mounts may go inside earlier ones (/dev then /dev/pts). */
    for (int i = 0; i < p->n_mounts; i++)
        do_mount(c, i);
    /* After the mounts: devices and links go on the /dev tmpfs, not under it. */
    for (int i = 0; i < p->n_devices; i++)
        do_device(c, i);
    for (int i = 0; i < p->n_symlinks; i++)
        do_symlink(c, i);
    make_cwd(c);
    /* Restore: the mount points exist now, as create makes them; CRIU mounts the
     * container's filesystems itself and brings the processes. */
    if (p->prepare_only) {
        send_msg(c->sock, OCIRUN_MSG_READY, 0, 0, -1, 0);
        _exit(0);
    }
    /* Hooks (createRuntime/createContainer) see the mounts but the old root. */
    if (p->sync_before_pivot) {
        send_msg(c->sock, OCIRUN_MSG_BEFORE_PIVOT, 0, 0, -1, 0);
        wait_for(c, OCIRUN_MSG_BEFORE_PIVOT_ACK);
    }
    pivot_to_rootfs(c);
    /* After pivot_root, so "/dev/null" is the container's own: stdio on the
     * host's /dev/null lives on a mount the container cannot see (CRIU cannot
     * dump it), as runc's reOpenDevNull. */
    reopen_dev_null(c);
    /* The pty comes from the container's devpts, so after pivot_root (and after
     * every config mount, /dev/pts among them); before the read-only root and
     * masks, which could hide /dev/console's mount point (runc's order). */
    if (p->process && p->process->terminal)
        setup_console(c, p->process, 1);
    /* After pivot_root: these are container paths, resolved in the new "/". */
    make_readonly_paths(c);
    make_masked_paths(c);
    /* rootfsPropagation after the binds above (console, read-only and masked paths):
     * "runbindable" makes every mount unbindable, and a bind from one fails (EINVAL). */
    set_rootfs_propagation(c);
    /* Last of the mounts: a read-only root must not stop anything above. */
    make_root_readonly(c);
    if (p->process)
        run_process(c);
    /* No process (config.json without one): wait; `start` reports the error. */
    prepare_fds(c, 0);
    send_msg(c->sock, OCIRUN_MSG_READY, 0, 0, -1, 0);
    await_commit(c);
    die_on_signals();
    for (;;)
        pause();
}

/* The first steps of every first child (stage-1 of create, of exec). */
static void begin_child(struct ctx *c, const struct ocirun_plan *plan, int sock, int fifo)
{
    c->plan = plan;
    c->sock = sock;
    c->fifo = fifo;
    c->rootfd = -1;
    c->selffd = -1;
    c->rootfs_via_cwd = 0;
    c->exe[0] = '\0';
    /* First: no Python handler or ignored signal may reach the container. */
    reset_signals();
    /* CVE-2019-5736: not dumpable before joining anything, so no process in the
     * container can reach our memory, fds or /proc/PID/exe. Children inherit it. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        fail(c, OCIRUN_STEP_DUMPABLE, errno, -1);
}

/* process.oomScoreAdj, on ourselves: the init inherits it (fork copies it).
 * 0 or an errno, reported once the parent listens (see stage1_main). */
static int set_oom_score_adj(const struct ocirun_plan *plan)
{
    if (!plan->oom_score_adj_set)
        return 0;
    char buf[24], *p = buf;
    long v = plan->oom_score_adj;
    if (v < 0)
        *p++ = '-';
    p = put_decimal(p, (unsigned long)(v < 0 ? -v : v));
    size_t len = (size_t)(p - buf);
    int fd = open("/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return errno;
    ssize_t n = write(fd, buf, len);
    int err = n < 0 ? errno : ((size_t)n == len ? 0 : EIO);
    close(fd);
    return err;
}

__attribute__((noreturn)) static void stage1_main(const struct ocirun_plan *plan, int sock, int fifo,
                                                  long parent)
{
    struct ctx c;
    /* Before begin_child makes us non-dumpable: a non-dumpable process's /proc
     * files belong to root, and a rootless runtime could no longer open its own
     * oom_score_adj (runc's nsexec writes it first for the same reason). */
    int oom_err = set_oom_score_adj(plan);
    begin_child(&c, plan, sock, fifo);
    /* Right after the signals are reset (SIGKILL needs no handler): a killed
     * `ocirun create` takes us along, until the init is committed. */
    arm_parent_death(parent);
    /* execCPUAffinity.initial (the planner sets it for exec'd processes only):
     * before the parent moves us into the container's cgroups (v1; clone3 into
     * a v2 cgroup is born there). */
    int aff = set_cpu_affinity_initial(plan->process);
    /* Nothing runs outside the container's cgroups, and a new cgroup namespace
     * is rooted at them: wait until the parent has placed us. */
    wait_for(&c, OCIRUN_MSG_CGROUP_PLACED);
    /* Reported only now: an ERROR sent before the parent's CGROUP_PLACED is lost
     * when we exit with that message unread (the socket is reset). */
    if (aff < 0)
        fail(&c, OCIRUN_STEP_AFFINITY_INITIAL, -aff, -1);
    if (oom_err)
        fail(&c, OCIRUN_STEP_OOM_SCORE_ADJ, oom_err, -1);
    /* The stdio the caller asked for (ocirun.Runtime), while the fds given are
     * still the caller's; the init inherits them, closes every other one. */
    for (int i = 0; plan->stdio != NULL && i < 3; i++) {
        if (plan->stdio[i] >= 0 && plan->stdio[i] != i && dup2(plan->stdio[i], i) < 0)
            fail(&c, OCIRUN_STEP_EXEC_STDIO, errno, i);
    }
    /* Before joining or creating any namespace (see there). */
    enter_rootfs(&c);
    join_namespaces(&c);
    create_namespaces(&c);
    /* A rootless parent (or the newuidmap it runs) must own our /proc files to
     * write the id maps; nothing but us is in the new namespaces yet, and we are
     * non-dumpable again before anything else happens (runc's nsexec does the same). */
    int dumpable = plan->rootless_euid && (plan->new_namespaces & CLONE_NEWUSER);
    if (dumpable && prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)
        fail(&c, OCIRUN_STEP_USERNS_DUMPABLE, errno, -1);
    /* The parent writes uid_map/gid_map/timens_offsets now: only it can. */
    send_msg(sock, OCIRUN_MSG_NS_READY, 0, 0, -1, 0);
    wait_for(&c, OCIRUN_MSG_NS_ACK);
    if (dumpable && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        fail(&c, OCIRUN_STEP_DUMPABLE, errno, -1);
    if ((plan->new_namespaces & CLONE_NEWUSER) || plan->joins_user_ns) {
        become_userns_root(&c);
        /* setresuid/setresgid changed our ids (the kernel cleared it). */
        arm_parent_death(parent);
    }
    /* After becoming root in the user namespace: the keyring is owned by it. */
    join_session_keyring(&c);
    /* As root of the namespace's owner (CAP_NET_ADMIN), after the parent moved
     * linux.netDevices in (NS_READY), before the init exists: no hook (prestart,
     * like CNI) and no process ever sees lo down. Not for a restore: this
     * namespace dies with the init; CRIU restores the one it makes, lo's state
     * with it (as the names and sysctls, see init_main). */
    if (!plan->prepare_only)
        bring_up_loopback(&c);
    /* CLONE_PARENT: the init is the parent's child (the caller's subreaper
     * inherits it when `ocirun create` exits) and pid 1 of the new pid ns. */
    long pid = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
    if (pid < 0)
        fail(&c, OCIRUN_STEP_CLONE_INIT, errno, -1);
    if (pid == 0)
        init_main(&c);
    send_msg(sock, OCIRUN_MSG_INIT_PID, 0, 0, -1, (int)pid);
    _exit(0);
}

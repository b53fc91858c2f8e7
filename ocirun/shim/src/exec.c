/* exec: run a process inside a running container (runc exec), and hooks that
 * run in the container namespace. Part of shim.c (unity build).
 *
 *   parent (Python) --clone3--> exec stage-1 --clone(CLONE_PARENT)--> process
 *
 * Stage-1 is born in the container's cgroup (CLONE_INTO_CGROUP, or placed by
 * the parent before CGROUP_PLACED), becomes non-dumpable, drops every fd it
 * does not need, joins the init's namespaces (user first, mount last) and
 * forks, so that the process is really inside the joined pid namespace. The
 * process waits for EXEC_ACK (the parent knows its pid and will reap it), does
 * the container's process setup (process.c) and execs. The sync socket is
 * CLOEXEC: EOF after EXEC_PID means the execve succeeded.
 *
 *  | message   | direction           | payload        | meaning                            |
 *  |-----------|---------------------|----------------|------------------------------------|
 *  | CGROUP_PLACED | parent -> stage1 | -             | in the container's cgroups; join   |
 *  | EXEC_PID  | stage1 -> parent    | pid            | forked; stage-1 exits              |
 *  | EXEC_ACK  | parent -> process   | -              | the parent has the pid; go on      |
 *  | ERROR     | child -> parent     | step,err,index | a step failed, the child exits     |
 *  | (EOF)     |                     |                | the process exec'd                 |
 */

static int sort_fds(int *a, int n)
{
    /* insertion sort of a tiny array (at most the number of namespaces + 1) */
    for (int i = 1; i < n; i++) {
        int v = a[i], j = i - 1;
        while (j >= 0 && a[j] > v) {
            a[j + 1] = a[j];
            j--;
        }
        a[j + 1] = v;
    }
    return n;
}

/* Close every fd but 0-2, the preserved ones, the sync socket and the namespace
 * fds still to be joined: nothing of the host (a leaked directory fd is how
 * CVE-2024-21626 escaped) may be open once we are in the container. */
static void exec_close_host_fds(struct ctx *c)
{
    const struct ocirun_plan *p = c->plan;
    int keep[16];
    int n = 0;
    unsigned int first = 3 + (unsigned int)p->process->preserve_fds;
    keep[n++] = c->sock;
    for (int i = 0; i < p->n_joins && n < 16; i++)
        keep[n++] = p->joins[i].fd;
    sort_fds(keep, n);
    unsigned int lo = first;
    for (int i = 0; i < n; i++) {
        if (keep[i] < 0 || (unsigned int)keep[i] < lo)
            continue;
        if ((unsigned int)keep[i] > lo && close_between(lo, (unsigned int)keep[i] - 1) < 0)
            fail(c, OCIRUN_STEP_EXEC_CLOSE_FDS, errno, -1);
        lo = (unsigned int)keep[i] + 1;
    }
    if (close_between(lo, ~0U) < 0)
        fail(c, OCIRUN_STEP_EXEC_CLOSE_FDS, errno, -1);
}

__attribute__((noreturn)) static void exec_process_main(struct ctx *c)
{
    const struct ocirun_process *pr = c->plan->process;
    int has_seccomp = c->plan->seccomp_bpf != NULL;
    /* Until the parent has our pid it would not reap us on an error: wait. */
    wait_for(c, OCIRUN_MSG_EXEC_ACK);
    /* exec --tty: a pty from the container's devpts, as root and before the cwd
     * and user change (src/console.c); setns(mnt) made "/" the container's root.
     * No /dev/console for a joining process (runc binds it for the init only). */
    if (pr->terminal) {
        c->rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
        if (c->rootfd < 0)
            fail(c, OCIRUN_STEP_CONSOLE_OPEN_PTMX, errno, -1);
        setup_console(c, pr, 0);
        close(c->rootfd);
        c->rootfd = -1;
    }
    /* setns(mnt) put our root and cwd at the container's "/"; the cwd is
     * entered only now, inside it (never through a host fd). As root first. */
    int chdir_again = enter_cwd_as_root(c);
    /* Before dropping privileges: raising a hard limit needs CAP_SYS_RESOURCE. */
    set_rlimits(c);
    /* As root, before capabilities go: a real-time policy or a lower nice needs CAP_SYS_NICE. */
    set_scheduler(c);
    /* As root, before capabilities go: IOPRIO_CLASS_RT needs CAP_SYS_ADMIN. */
    set_io_priority(c);
    /* Nothing below creates a file, and a filter loaded by become_user may
     * refuse umask(2). */
    umask(pr->umask);
    /* execCPUAffinity.final: after the cgroup transition (stage-1 joined it),
     * before any filter could refuse sched_setaffinity(2); the little setup
     * left runs on those CPUs. A failure still reaches the parent. */
    int aff = set_cpu_affinity_final(pr);
    if (aff < 0)
        fail(c, OCIRUN_STEP_AFFINITY_FINAL, -aff, -1);
    /* After every step above that needs root or must precede a filter. */
    become_user(c, chdir_again);
    if (pr->exe) {
        /* a hook: its path is given, argv[0] is only a name */
        size_t n = strlen(pr->exe);
        if (n >= sizeof c->exe)
            fail(c, OCIRUN_STEP_EXECVE, ENAMETOOLONG, -1);
        memcpy(c->exe, pr->exe, n + 1);
    } else {
        /* As the user, like runc's LookPath: what it cannot exec is not found. */
        resolve_exe(c);
    }
    /* After capset and setuid, which it would limit. */
    if (pr->no_new_privileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        fail(c, OCIRUN_STEP_NO_NEW_PRIVS, errno, -1);
    /* With no_new_privs: last, so none of our own setup syscalls need to be in
     * the container's profile. A failure is still reported: the socket is open
     * (until execve: CLOEXEC), and so is the way to hand a listener fd over. */
    if (has_seccomp && pr->no_new_privileges)
        seccomp_before_ready(c);
    execve(c->exe, pr->argv, pr->envp);
    fail(c, OCIRUN_STEP_EXECVE, errno, -1);
}

__attribute__((noreturn)) static void exec_stage1_main(const struct ocirun_plan *plan, int sock,
                                                       const int *stdio)
{
    struct ctx c;
    begin_child(&c, plan, sock, -1);
    /* execCPUAffinity.initial: before the parent moves us into the container's
     * cgroups (v1; clone3 into a v2 cgroup is born there). */
    int aff = set_cpu_affinity_initial(plan->process);
    /* Before closing fds: the stdio fds given may be among those closed. */
    for (int i = 0; i < 3; i++) {
        if (stdio[i] >= 0 && stdio[i] != i && dup2(stdio[i], i) < 0)
            fail(&c, OCIRUN_STEP_EXEC_STDIO, errno, i);
    }
    /* Before joining anything: no host fd may enter the container. */
    exec_close_host_fds(&c);
    /* Nothing of ours runs outside the container's cgroups. */
    wait_for(&c, OCIRUN_MSG_CGROUP_PLACED);
    /* Reported only now: an ERROR sent before CGROUP_PLACED is lost when we
     * exit with that message unread. */
    if (aff < 0)
        fail(&c, OCIRUN_STEP_AFFINITY_INITIAL, -aff, -1);
    /* User first (its privileges let us join the rest), mount last (it changes
     * our root and cwd to the container's "/"). */
    join_namespaces(&c);
    /* setns(CLONE_NEWPID) applies to our children only: fork into it. CLONE_PARENT:
     * the process is the parent's child, which waits for it. */
    long pid = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
    if (pid < 0)
        fail(&c, OCIRUN_STEP_EXEC_CLONE, errno, -1);
    if (pid == 0)
        exec_process_main(&c);
    send_msg(sock, OCIRUN_MSG_EXEC_PID, 0, 0, -1, (int)pid);
    _exit(0);
}

int ocirun_exec(const struct ocirun_plan *plan, const int *stdio, int cgroup_fd,
                struct ocirun_spawn_result *res)
{
    int parent_end, child_sock, used_clone3;
    if (open_sync_socket(3 + plan->process->preserve_fds, &parent_end, &child_sock, res) < 0)
        return -1;
    long pid = clone_child(cgroup_fd, &used_clone3);
    if (pid == 0) {
        close(parent_end);
        exec_stage1_main(plan, child_sock, stdio);
    }
    int err = errno;
    close(child_sock);
    errno = err;
    return finish_clone(pid, used_clone3, parent_end, res);
}

/* init: the process (cwd, rlimits, user, capabilities, fds, seccomp,
 * exec fifo). Part of shim.c (unity build). */

/* ---- init: process ---- */

/* chdir(cwd); 1 if it must be retried as the container user (EACCES as root). */
static int enter_cwd(struct ctx *c, int retry_allowed)
{
    const char *cwd = c->plan->process->cwd;
    if (chdir(cwd) == 0)
        return 0;
    if (retry_allowed && (errno == EACCES || errno == EPERM))
        return 1;
    fail(c, OCIRUN_STEP_CHDIR, errno, -1);
}

static void verify_cwd(struct ctx *c)
{
    /* CVE-2024-21626: a cwd reached through a leaked host fd would be outside
     * our root; the raw getcwd syscall says "(unreachable)" then. */
    char buf[PATH_MAX];
    long r = syscall(SYS_getcwd, buf, sizeof buf);
    if (r < 0)
        fail(c, OCIRUN_STEP_CWD_OUTSIDE_ROOT, errno, -1);
    if (buf[0] != '/')
        fail(c, OCIRUN_STEP_CWD_OUTSIDE_ROOT, ENOENT, -1);
}

static void set_rlimits(struct ctx *c)
{
    const struct ocirun_process *pr = c->plan->process;
    for (int i = 0; i < pr->n_rlimits; i++) {
        struct rlimit rl = {pr->rlimits[i].soft, pr->rlimits[i].hard};
        if (setrlimit(pr->rlimits[i].resource, &rl) < 0)
            fail(c, OCIRUN_STEP_RLIMIT, errno, i);
    }
}

static void drop_bounding_set(struct ctx *c)
{
    /* Needs CAP_SETPCAP: done while still root. */
    const struct ocirun_process *pr = c->plan->process;
    if (!(pr->cap_sets & OCIRUN_CAPS_BOUNDING))
        return;
    for (int cap = 0; cap <= c->plan->cap_last_cap && cap < 64; cap++) {
        if (pr->bounding & (1ULL << cap))
            continue;
        if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
            if (errno == EINVAL) /* beyond what this kernel knows */
                break;
            fail(c, OCIRUN_STEP_CAPBSET_DROP, errno, cap);
        }
    }
}

static void change_user(struct ctx *c)
{
    const struct ocirun_process *pr = c->plan->process;
    /* KEEPCAPS: keep the permitted set across the uid change, so capset below
     * can still grant the container user its capabilities. */
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
        fail(c, OCIRUN_STEP_KEEPCAPS, errno, -1);
    /* Groups before gid before uid: each needs the privilege the next drops. */
    if (syscall(SYS_setgroups, (long)pr->n_additional_gids, pr->additional_gids) < 0 &&
        !(errno == EPERM && pr->n_additional_gids == 0))  /* setgroups "deny" in a joined userns */
        fail(c, OCIRUN_STEP_SETGROUPS, errno, -1);
    if (syscall(SYS_setresgid, pr->gid, pr->gid, pr->gid) < 0)
        fail(c, OCIRUN_STEP_SETRESGID, errno, -1);
    if (syscall(SYS_setresuid, pr->uid, pr->uid, pr->uid) < 0)
        fail(c, OCIRUN_STEP_SETRESUID, errno, -1);
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
        fail(c, OCIRUN_STEP_KEEPCAPS, errno, -1);
}

static void set_capabilities(struct ctx *c)
{
    const struct ocirun_process *pr = c->plan->process;
    int sets = pr->cap_sets;
    if (sets & (OCIRUN_CAPS_EFFECTIVE | OCIRUN_CAPS_PERMITTED | OCIRUN_CAPS_INHERITABLE)) {
        struct oci_cap_header h = {OCI_CAP_V3, 0};
        struct oci_cap_data d[2];
        memset(d, 0, sizeof d);
        /* A set that is None in the plan keeps its current value. Only then
         * capget: one syscall less under a filter loaded before us. */
        int all = OCIRUN_CAPS_EFFECTIVE | OCIRUN_CAPS_PERMITTED | OCIRUN_CAPS_INHERITABLE;
        if ((sets & all) != all && syscall(SYS_capget, &h, d) < 0)
            fail(c, OCIRUN_STEP_CAPSET, errno, -1);
        for (int k = 0; k < 2; k++) {
            int shift = 32 * k;
            if (sets & OCIRUN_CAPS_EFFECTIVE)
                d[k].effective = (uint32_t)(pr->effective >> shift);
            if (sets & OCIRUN_CAPS_PERMITTED)
                d[k].permitted = (uint32_t)(pr->permitted >> shift);
            if (sets & OCIRUN_CAPS_INHERITABLE)
                d[k].inheritable = (uint32_t)(pr->inheritable >> shift);
        }
        h.version = OCI_CAP_V3;
        h.pid = 0;
        if (syscall(SYS_capset, &h, d) < 0)
            fail(c, OCIRUN_STEP_CAPSET, errno, -1);
    }
    /* Ambient after capset: a raised ambient cap must be permitted and inheritable. */
    if (sets & OCIRUN_CAPS_AMBIENT) {
        if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0 && errno != EINVAL)
            fail(c, OCIRUN_STEP_AMBIENT, errno, -1);
        for (int cap = 0; cap <= c->plan->cap_last_cap && cap < 64; cap++) {
            /* EPERM (not permitted and inheritable, or SECBIT_NO_CAP_AMBIENT_RAISE):
             * runc and crun go on without it; the planner already left out what
             * the sets predict (with the config's warning). */
            if ((pr->ambient & (1ULL << cap)) &&
                prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0 && errno != EPERM)
                fail(c, OCIRUN_STEP_AMBIENT, errno, cap);
        }
    }
}

/* The mode of path (stat(2), following links); statx(2) when a filter refuses
 * the call glibc's stat makes (newfstatat on x86_64). 0 or -errno. */
static int stat_mode(const char *path, mode_t *mode)
{
    struct stat st;
    if (stat(path, &st) == 0) {
        *mode = st.st_mode;
        return 0;
    }
    if (!refused_by_filter(errno))
        return -errno;
    struct statx sx;
    if (syscall(SYS_statx, AT_FDCWD, path, 0, STATX_TYPE | STATX_MODE, &sx) < 0)
        return -errno;
    *mode = sx.stx_mode;
    return 0;
}

/* X_OK for the effective ids (faccessat2 AT_EACCESS), as Go's exec.LookPath
 * since Go 1.20 (runc 1.1.5, built with Go 1.19, checks only for an x bit).
 * Without no_new_privs a seccomp filter is loaded before this: faccessat2(2)
 * may be refused (EPERM) by a profile that lists faccessat and syscalls newer
 * than faccessat2 (so runc's ENOSYS stub does not cover it), and glibc's
 * faccessat falls back only on ENOSYS. Like Go's findExecutable, fall back on
 * ENOSYS and EPERM to "any x bit" (what runc 1.1.5 always does). */
static int can_exec(const char *path)
{
    mode_t mode;
    int r = stat_mode(path, &mode);
    if (r < 0)
        return r;
    if (S_ISDIR(mode))
        return -EISDIR;
    if (syscall(SYS_faccessat2, AT_FDCWD, path, X_OK, AT_EACCESS) == 0)
        return 0;
    if (!refused_by_filter(errno))
        return -errno;
    return (mode & 0111) ? 0 : -EACCES;
}

static void resolve_exe(struct ctx *c)
{
    /* Before READY, so that "not found" is a create error, as in runc. */
    const struct ocirun_process *pr = c->plan->process;
    const char *arg0 = pr->argv[0];
    size_t alen = strlen(arg0);
    if (alen == 0)
        fail(c, OCIRUN_STEP_EXEC_LOOKUP, ENOENT, -1);
    if (strchr(arg0, '/')) {
        int r = can_exec(arg0);
        if (r < 0)
            fail(c, OCIRUN_STEP_EXEC_LOOKUP, -r, -1);
        if (alen >= sizeof c->exe)
            fail(c, OCIRUN_STEP_EXEC_LOOKUP, ENAMETOOLONG, -1);
        memcpy(c->exe, arg0, alen + 1);
        return;
    }
    for (int i = 0; i < pr->n_search_path; i++) {
        const char *dir = pr->search_path[i];
        size_t dlen = strlen(dir);
        if (dlen == 0 || dlen + 1 + alen >= sizeof c->exe)
            continue;
        memcpy(c->exe, dir, dlen);
        c->exe[dlen] = '/';
        memcpy(c->exe + dlen + 1, arg0, alen + 1);
        if (can_exec(c->exe) == 0)
            return;
    }
    /* Any failure of the search is "not found", as Go's LookPath says. */
    fail(c, OCIRUN_STEP_EXEC_LOOKUP, ENOENT, -1);
}

/* close_range(lo, hi) when the range is not empty. */
static int close_between(unsigned int lo, unsigned int hi)
{
    if (lo > hi)
        return 0;
    return (int)syscall(SYS_close_range, lo, hi, 0);
}

/* The smallest fd >= lo the init keeps through close_inherited_fds: the sync
 * socket, the exec fifo, the id-mapped trees still to attach; -1 for none. */
static long next_kept_fd(const struct ctx *c, unsigned int lo)
{
    long best = -1;
    int fds[2] = {c->sock, c->fifo};
    for (int i = 0; i < 2 + c->plan->n_mounts; i++) {
        int fd = i < 2 ? fds[i] : c->plan->mounts[i - 2].tree_fd;
        if (fd >= 0 && (unsigned int)fd >= lo && (best < 0 || fd < best))
            best = fd;
    }
    return best;
}

static void close_inherited_fds(struct ctx *c)
{
    /* The init is a copy of the runtime: it holds every fd the runtime had,
     * including the state lock (an flock lives as long as any fd to it) —
     * `start` would block on it while we block on the fifo. Keep 0-2, the
     * preserved fds, the sync socket, the exec fifo and the id-mapped trees
     * (each closed once attached); close the rest. The parent put them all at
     * or above `first`. */
    unsigned int lo = 3 + (c->plan->process ? (unsigned int)c->plan->process->preserve_fds : 0);
    for (;;) {
        long keep = next_kept_fd(c, lo);
        if (keep < 0) {
            if (close_between(lo, ~0U) < 0)
                fail(c, OCIRUN_STEP_CLOSE_RANGE, errno, -1);
            return;
        }
        if ((unsigned int)keep > lo && close_between(lo, (unsigned int)keep - 1) < 0)
            fail(c, OCIRUN_STEP_CLOSE_RANGE, errno, -1);
        lo = (unsigned int)keep + 1;
    }
}

static int is_absent_fd(const struct ocirun_process *pr, int fd)
{
    for (int i = 0; pr && i < pr->n_absent_fds; i++) {
        if (pr->absent_fds[i] == fd)
            return 1;
    }
    return 0;
}

static void prepare_fds(struct ctx *c, int preserve_fds)
{
    /* Only 0-2 and the preserved fds may reach the container (containerd's
     * shim, for one, has its listening socket at fd 3). CLOEXEC rather than
     * close: the sync socket and the exec fifo are still needed until exec. */
    const struct ocirun_process *pr = c->plan->process;
    unsigned int first = 3 + (unsigned int)preserve_fds;
    if (syscall(SYS_close_range, first, ~0U, OCI_CLOSE_RANGE_CLOEXEC) < 0)
        fail(c, OCIRUN_STEP_CLOSE_RANGE, errno, -1);
    for (int fd = 3; fd < (int)first; fd++) {
        /* A number the caller left free: the runtime's placeholder goes (crun
         * passes what exists). Closed only now, so that nothing the init
         * opened before could take the number. */
        if (is_absent_fd(pr, fd)) {
            close(fd);
            continue;
        }
        int fl = fcntl(fd, F_GETFD);
        if (fl < 0 && errno == EBADF)
            continue; /* not open: nothing to pass */
        if (fl < 0 || fcntl(fd, F_SETFD, fl & ~FD_CLOEXEC) < 0)
            fail(c, OCIRUN_STEP_PRESERVE_FD, errno, fd);
    }
}

/* After READY the parent is gone: say what failed on the container's stderr. */
__attribute__((noreturn)) static void die_late(const char *what, const char *path, int err, int code)
{
    const char *s = strerrordesc_np(err);
    char first[2] = {0, 0};
    if (!s)
        s = "unknown error";
    first[0] = (s[0] >= 'A' && s[0] <= 'Z') ? (char)(s[0] - 'A' + 'a') : s[0];
    const char *parts[] = {"ocirun: ", what, " ", path, ": ", first, s[0] ? s + 1 : "", "\n"};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (write(2, parts[i], strlen(parts[i])) < 0)
            break;
    }
    _exit(code);
}

static void exit_on_signal(int sig)
{
    _exit(128 + sig);
}

/* As pid 1 of its pid namespace the init ignores every signal it has no handler
 * for, even from the host (only SIGKILL/SIGSTOP are forced). While it waits for
 * `start`, `kill <id> TERM` must still stop it, as it stops runc's init: give the
 * terminating signals a handler. execve resets handled signals to SIG_DFL. */
static void die_on_signals(void)
{
    static const int sigs[] = {SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGALRM};
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = exit_on_signal;
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        sigaction(sigs[i], &sa, NULL);
}

static void wait_for_start(struct ctx *c)
{
    /* runc's exec fifo: opening it for writing blocks until `start` opens it
     * for reading; the byte tells `start` we got through. Reopened through
     * our own procfs (src/selffd.c): it works from inside the container's root,
     * and no mount in the container's /proc can send the write elsewhere.
     * Kept open (O_CLOEXEC) until execve: `start` reads to EOF, so it returns
     * once the container's process runs, as runc's; until then we are a
     * non-dumpable copy of the runtime that an unprivileged `exec` cannot enter. */
    int fd;
    do
        fd = reopen_fd(c, c->fifo, O_WRONLY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        die_late("open", "exec fifo", errno, 1);
    if (write(fd, "0", 1) != 1)
        die_late("write", "exec fifo", errno, 1);
    close(c->fifo);
}

/* seccomp(SECCOMP_SET_MODE_FILTER) of the parent's BPF: the listener fd with
 * NEW_LISTENER, else 0; -errno on failure. */
static int load_seccomp(const struct ocirun_plan *p)
{
    struct oci_sock_fprog prog = {(unsigned short)p->seccomp_len, p->seccomp_bpf};
    long r = syscall(SYS_seccomp, OCI_SECCOMP_SET_MODE_FILTER, p->seccomp_flags, &prog);
    return r < 0 ? -errno : (int)r;
}

/* Load the filter while the parent still listens (the init: before READY; an
 * exec'd process: before execve); with NOTIFY, hand the listener fd to the parent
 * (SECCOMP_FD with SCM_RIGHTS) and wait until it has reached the agent. */
static void seccomp_before_ready(struct ctx *c)
{
    const struct ocirun_plan *p = c->plan;
    int fd = load_seccomp(p);
    if (fd < 0)
        fail(c, OCIRUN_STEP_SECCOMP, -fd, -1);
    if (!p->seccomp_notify)
        return;
    int r = send_fd_msg(c->sock, OCIRUN_MSG_SECCOMP_FD, fd);
    /* The filter we just loaded refuses sendmsg(2): say the fd's number instead
     * (index); the parent takes it with pidfd_getfd(2), as runc does. Kept open
     * until the parent's ACK says it has it. */
    if (r < 0 && refused_by_filter(-r)) {
        send_msg(c->sock, OCIRUN_MSG_SECCOMP_FD, 0, 0, fd, 0);
        r = 0;
    }
    if (r < 0)
        fail(c, OCIRUN_STEP_SECCOMP_SEND, -r, -1);
    wait_for(c, OCIRUN_MSG_SECCOMP_ACK);
    close(fd);
}

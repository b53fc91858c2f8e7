/* stage-1: join and create namespaces. Part of shim.c (unity build). */

/* ---- stage-1: namespaces ---- */

static void reset_signals(void)
{
    /* Python ignores SIGPIPE and SIGXFSZ and has handlers for others: none of
     * that may reach the container. The parent blocked every signal around
     * clone so no Python handler can run here; unblock once all are default. */
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int sig = 1; sig < _NSIG; sig++) {
        if (sig == SIGKILL || sig == SIGSTOP)
            continue;
        sigaction(sig, &dfl, NULL); /* EINVAL for glibc's internal signals: fine */
    }
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

static void join_namespaces(struct ctx *c)
{
    /* In the plan's order (user first, so the others are joined with the
     * privileges it grants). The clone flag as nstype makes the kernel check
     * the fd is that kind of namespace (EINVAL otherwise). */
    for (int i = 0; i < c->plan->n_joins; i++) {
        const struct ocirun_nsjoin *j = &c->plan->joins[i];
        if (setns(j->fd, j->clone_flag) < 0)
            fail(c, OCIRUN_STEP_SETNS, errno, i);
        close(j->fd);
    }
}

static void create_namespaces(struct ctx *c)
{
    /* One call: with CLONE_NEWUSER the kernel creates the user namespace first
     * and the others are owned by it. CLONE_NEWPID and CLONE_NEWTIME apply to
     * our children only: the init, cloned below. */
    if (c->plan->new_namespaces && unshare(c->plan->new_namespaces) < 0)
        fail(c, OCIRUN_STEP_UNSHARE, errno, -1);
}

static void become_userns_root(struct ctx *c)
{
    /* The parent has written the id maps (NS_ACK): 0 now means something.
     * Raw syscalls: glibc's set*id would try to signal the parent's threads. */
    if (syscall(SYS_setresgid, 0, 0, 0) < 0)
        fail(c, OCIRUN_STEP_USERNS_SETRESGID, errno, -1);
    if (syscall(SYS_setresuid, 0, 0, 0) < 0)
        fail(c, OCIRUN_STEP_USERNS_SETRESUID, errno, -1);
    /* Joined user namespaces may have setgroups "deny": then there is nothing to drop. */
    if (syscall(SYS_setgroups, 0, NULL) < 0 && !(errno == EPERM && !(c->plan->new_namespaces & CLONE_NEWUSER)))
        fail(c, OCIRUN_STEP_USERNS_SETGROUPS, errno, -1);
}

/* A network namespace we created has only "lo", and it is down: bring it up,
 * as runc (its loopback network) and crun do. Never a joined one: it is
 * someone else's to configure. */
static void bring_up_loopback(struct ctx *c)
{
    if (!(c->plan->new_namespaces & CLONE_NEWNET))
        return;
    struct ifreq ifr;
    memset(&ifr, 0, sizeof ifr);
    memcpy(ifr.ifr_name, "lo", 3);
    /* Any socket of the namespace reaches the device ioctls. */
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        fail(c, OCIRUN_STEP_LOOPBACK, errno, -1);
    if (ioctl(s, SIOCGIFFLAGS, &ifr) < 0)
        fail(c, OCIRUN_STEP_LOOPBACK, errno, -1);
    if (!(ifr.ifr_flags & IFF_UP)) {
        ifr.ifr_flags |= IFF_UP;
        if (ioctl(s, SIOCSIFFLAGS, &ifr) < 0)
            fail(c, OCIRUN_STEP_LOOPBACK, errno, -1);
    }
    close(s);
}

static void join_session_keyring(struct ctx *c)
{
    /* A new session keyring, so containers don't share the host's keys. Like
     * runc, only ENOSYS (keyctl filtered or not built in) is tolerated; any
     * other failure is an error (use --no-new-keyring to skip this). */
    if (!c->plan->session_keyring)
        return;
    if (syscall(SYS_keyctl, OCI_KEYCTL_JOIN_SESSION_KEYRING, c->plan->session_keyring) < 0 &&
        errno != ENOSYS)
        fail(c, OCIRUN_STEP_KEYRING, errno, -1);
}

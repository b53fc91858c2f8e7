/* Our own fds by name, without the container's /proc (CVE-2025-52881).
 * Part of shim.c (unity build).
 *
 * Mounting on an fd, binding from one or reopening one (the exec fifo, the
 * pty master) names it by its magic link /proc/self/fd/N. After pivot_root
 * that /proc is the one the config mounted, and a mount over /proc/1/fd
 * there (a config's, or a racing container's shared one) turns every such
 * name into a path of the attacker's choosing: masked and read-only paths
 * land elsewhere, the exec fifo's "0" is written to another file. So the
 * init opens /proc/self/fd of a procfs instance of its own (fsopen/fsmount,
 * attached nowhere, so nothing can be mounted over it) and names its fds
 * relative to that directory: openat() for reopening, and for mount(2),
 * which has no *at form, relative paths from that directory as the cwd.
 *
 * Where no procfs of our own can be made (fsopen missing, or refused in a
 * user namespace that does not own its pid namespace, or whose /proc is
 * partly masked) c->selffd is /proc/self/fd of the runtime's /proc, opened
 * before any mount of the container's: after pivot_root it is still ours and
 * still reachable, where a container without a /proc of its own (a rootless
 * one without a pid namespace cannot mount one) would have no
 * /proc/self/fd at all. Only if even that cannot be opened does c->selffd stay
 * -1, and the names go through /proc/self/fd. */


/* An fd of /proc/self/fd: of a procfs of our own (its "self" is us, in the pid
 * namespace we are in), else of the runtime's /proc; -1 if neither opens. */
static int open_selffd_dir(void)
{
    int mnt = new_procfs_mount();
    int dir = -1;
    if (mnt >= 0) {
        dir = openat(mnt, "self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOFOLLOW);
        close(mnt);
        if (dir >= 0)
            return dir;
    }
    struct statfs sf;
    /* No procfs of our own: the runtime's, before the container mounts anything. */
    dir = open("/proc/self/fd", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0 && (fstatfs(dir, &sf) < 0 || sf.f_type != OCI_PROC_SUPER_MAGIC)) {
        close(dir);
        dir = -1;
    }
    return dir;
}

/* c->selffd: /proc/self/fd of a procfs of our own (its "self" is us, in the pid
 * namespace we are in), at or above `floor` so that it never takes the place
 * of a preserved fd; -1 if none can be opened. */
static void open_selffd(struct ctx *c, unsigned int floor)
{
    c->selffd = -1;
    int dir = open_selffd_dir();
    if (dir < 0)
        return;
    if ((unsigned int)dir < floor) {
        int high = fcntl(dir, F_DUPFD_CLOEXEC, (int)floor);
        close(dir);
        dir = high;
    }
    c->selffd = dir;
}

/* "<fd>" into buf (>= 24 bytes): the fd's name in c->selffd. */
static char *fdname(char *buf, int fd)
{
    *put_decimal(buf, (unsigned int)fd) = '\0';
    return buf;
}

/* open(2) of our own fd again, with other flags. */
static int reopen_fd(struct ctx *c, int fd, int flags)
{
    char p[32];
    if (c->selffd < 0)
        return open(fdpath(p, fd), flags);
    return openat(c->selffd, fdname(p, fd), flags);
}

/* mount(2) on our own fd `target`, from `source` or, if src_fd >= 0, from our
 * own fd src_fd (a bind). The cwd is c->selffd for the call only. */
static int mount_fd(struct ctx *c, const char *source, int src_fd, int target, const char *fstype,
                    unsigned long flags, const void *data)
{
    char s[32], t[32];
    if (c->selffd < 0)
        return mount(src_fd >= 0 ? fdpath(s, src_fd) : source, fdpath(t, target), fstype, flags, data);
    int cwd = open(".", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (cwd < 0)
        return -1;
    int r = -1, e = 0;
    if (fchdir(c->selffd) == 0) {
        r = mount(src_fd >= 0 ? fdname(s, src_fd) : source, fdname(t, target), fstype, flags, data);
        e = errno;
        if (fchdir(cwd) < 0) {  /* cannot happen: cwd is an open directory */
            r = -1;
            e = errno;
        }
    } else {
        e = errno;
    }
    close(cwd);
    errno = e;
    return r;
}

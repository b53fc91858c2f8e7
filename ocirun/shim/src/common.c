/* Kernel interfaces glibc may not wrap, the child context, and small
 * async-signal-safe helpers shared by every step. Part of shim.c (unity build). */

/* ---- kernel interfaces glibc may not wrap (x86_64/arm64 share these numbers) ---- */

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_openat2
#define SYS_openat2 437
#endif
#ifndef SYS_faccessat2
#define SYS_faccessat2 439
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef STATX_MNT_ID
#define STATX_MNT_ID 0x00001000U
#endif
#define OCI_OPEN_TREE_CLONE 1
#define OCI_MOVE_MOUNT_F_EMPTY_PATH 0x00000004
#define OCI_CLONE_INTO_CGROUP 0x200000000ULL
#define OCI_CLOSE_RANGE_CLOEXEC (1U << 2)
#define OCI_RESOLVE_NO_MAGICLINKS 0x02
#define OCI_RESOLVE_IN_ROOT 0x10
#define OCI_AT_RECURSIVE 0x8000
#define OCI_KEYCTL_JOIN_SESSION_KEYRING 1
#define OCI_CAP_V3 0x20080522
#ifndef PR_CAP_AMBIENT
#define PR_CAP_AMBIENT 47
#define PR_CAP_AMBIENT_RAISE 2
#define PR_CAP_AMBIENT_CLEAR_ALL 4
#endif
/* statfs f_flags (ST_*) */
#define OCI_ST_NOSUID 0x0002
#define OCI_ST_NODEV 0x0004
#define OCI_ST_NOEXEC 0x0008
#define OCI_ST_NOATIME 0x0400
#define OCI_ST_NODIRATIME 0x0800
#define OCI_ST_RELATIME 0x1000

#define OCI_SECCOMP_SET_MODE_FILTER 1
struct oci_sock_fprog {
    unsigned short len;
    const void *filter;
};

struct oci_clone_args {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls,
        set_tid, set_tid_size, cgroup;
};
struct oci_open_how {
    uint64_t flags, mode, resolve;
};
struct oci_mount_attr {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};
struct oci_cap_header {
    uint32_t version;
    int pid;
};
struct oci_cap_data {
    uint32_t effective, permitted, inheritable;
};

/* What a child carries through its steps: all on its stack. */
struct ctx {
    const struct ocirun_plan *plan;
    int sock;    /* child's end of the sync socket */
    int fifo;    /* O_PATH fd of the exec fifo */
    int rootfd;  /* O_PATH fd of the rootfs (before pivot), then of "/" */
    int rootfs_via_cwd; /* cwd is the rootfs (in our mount namespace) */
    int selffd;  /* /proc/self/fd of a procfs of our own or the runtime's, or -1 (src/selffd.c) */
    char exe[PATH_MAX]; /* args[0] resolved */
};

/* ---- small async-signal-safe helpers ---- */

/* v in decimal at p (at most 20 characters, no NUL), without snprintf;
 * returns the end of the digits. */
static char *put_decimal(char *p, unsigned long v)
{
    char digits[20];
    int n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    while (n)
        *p++ = digits[--n];
    return p;
}

/* "/proc/self/fd/<fd>" into buf (>= 32 bytes). */
static char *fdpath(char *buf, int fd)
{
    static const char prefix[] = "/proc/self/fd/";
    memcpy(buf, prefix, sizeof prefix - 1);
    *put_decimal(buf + sizeof prefix - 1, (unsigned int)fd) = '\0';
    return buf;
}

/* What a seccomp filter loaded before our last steps (no no_new_privs: it must
 * precede the uid change) answers for a syscall it refuses: EPERM by default, or
 * ENOSYS (runc's stub, for syscalls newer than the profile). The steps that run
 * under the filter fall back to another way on these, as Go (runc) does. */
static int refused_by_filter(int err)
{
    return err == EPERM || err == ENOSYS;
}

/* One sync message of `type` carrying fd (SCM_RIGHTS). 0 or -errno. */
static int send_fd_msg(int sock, int type, int fd)
{
    struct ocirun_msg m = {type, 0, 0, -1, 0};
    struct iovec iov = {&m, sizeof m};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    memset(&u, 0, sizeof u);
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = u.buf;
    mh.msg_controllen = sizeof u.buf;
    struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cm), &fd, sizeof fd);
    ssize_t r;
    do
        r = sendmsg(sock, &mh, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -errno;
    return r == (ssize_t)sizeof m ? 0 : -EPROTO;
}

static void send_msg(int sock, int type, int step, int err, int index, int pid)
{
    struct ocirun_msg m = {type, step, err, index, pid};
    ssize_t r;
    do
        r = send(sock, &m, sizeof m, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    /* Under a filter that refuses sendto(2): write(2) sends one packet too
     * (without MSG_NOSIGNAL: a parent gone means we are done anyway). */
    if (r < 0 && refused_by_filter(errno)) {
        do
            r = write(sock, &m, sizeof m);
        while (r < 0 && errno == EINTR);
    }
}

/* Report a failed step to the parent and exit: the parent kills and reaps the rest. */
__attribute__((noreturn)) static void fail(struct ctx *c, int step, int err, int index)
{
    send_msg(c->sock, OCIRUN_MSG_ERROR, step, err, index, 0);
    _exit(1);
}

/* Until the container is committed (COMMIT: its state.json is saved), stage-1
 * and the init die with the `ocirun create` that made them (#11 item 7): an
 * init left behind by a killed create would hold cgroups nobody records, or
 * block forever on an exec fifo nobody opens. SIGKILL, as nothing of ours
 * needs to run then. The kernel clears the setting in every new child and at
 * every change of the effective or filesystem ids, so each process arms it
 * itself, again after such changes; `parent` is the create's pid, to catch
 * its death before the first arming (not for the init: as pid 1 of a new pid
 * namespace getppid() says 0; its next wait_for sees the EOF instead).
 * Best effort under a seccomp filter that refuses prctl: the EOF of the sync
 * socket ends us at the next wait as well. */
static void arm_parent_death(long parent)
{
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) == 0 && parent > 0 && getppid() != parent)
        _exit(1);
}

/* Wait for the parent's message of the given type; EOF (the parent died) ends us quietly. */
static void wait_for(struct ctx *c, int type)
{
    struct ocirun_msg m;
    ssize_t r;
    do
        r = recv(c->sock, &m, sizeof m, 0);
    while (r < 0 && errno == EINTR);
    if (r < 0 && refused_by_filter(errno)) { /* recvfrom(2) refused: read(2) takes one packet */
        do
            r = read(c->sock, &m, sizeof m);
        while (r < 0 && errno == EINTR);
    }
    if (r == 0)
        _exit(1);
    if (r != (ssize_t)sizeof m)
        fail(c, OCIRUN_STEP_SYNC, r < 0 ? errno : EPROTO, type);
    if (m.type != type)
        fail(c, OCIRUN_STEP_SYNC, EPROTO, type);
}

/* openat2(rootfd, path, RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS): symlinks and ".."
 * are resolved as if rootfd were "/", so nothing leads out of it. fd or -errno. */
static int open_in_root(int rootfd, const char *path, int flags)
{
    struct oci_open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .mode = 0,
        .resolve = OCI_RESOLVE_IN_ROOT | OCI_RESOLVE_NO_MAGICLINKS,
    };
    for (int tries = 0; tries < 16; tries++) {
        long r = syscall(SYS_openat2, rootfd, path, &how, sizeof how);
        if (r >= 0)
            return (int)r;
        if (errno != EAGAIN && errno != EINTR)
            return -errno;
    }
    return -EAGAIN;
}

/* Open path inside rootfd (O_PATH), creating what is missing: directories, and
 * for the last component an empty file when last_is_file. Each prefix is
 * resolved with openat2(RESOLVE_IN_ROOT); a missing component is created
 * with mkdirat/openat(O_EXCL|O_NOFOLLOW) on the fd of its resolved parent,
 * so no symlink can make us create or open anything outside the root. A
 * dangling symlink is followed inside the root (runc's MkdirAllInRoot does
 * the same): the walk restarts on the path with the link substituted.
 * Returns the fd or -errno. */
static int mkdirall_in_root(int rootfd, const char *path, int last_is_file)
{
    char cur[PATH_MAX], buf[PATH_MAX], link[PATH_MAX];
    int hops = 0;
    int fd = open_in_root(rootfd, path, O_PATH);
    if (fd != -ENOENT)
        return fd;
    size_t len = strlen(path);
    if (len >= sizeof cur)
        return -ENAMETOOLONG;
    memcpy(cur, path, len + 1);
restart:
    len = strlen(cur);
    memcpy(buf, cur, len + 1);
    size_t i = 0;
    int parent = fcntl(rootfd, F_DUPFD_CLOEXEC, 0);
    if (parent < 0)
        return -errno;
    for (;;) {
        while (buf[i] == '/')
            i++;
        if (buf[i] == '\0')
            break;
        size_t start = i;
        while (buf[i] != '\0' && buf[i] != '/')
            i++;
        char saved = buf[i];
        buf[i] = '\0';
        size_t k = i;
        while (cur[k] == '/')
            k++;
        int last = cur[k] == '\0'; /* only slashes after this component */
        int next = open_in_root(rootfd, buf, O_PATH);
        if (next == -ENOENT) {
            const char *name = buf + start;
            int r;
            if (last && last_is_file) {
                r = openat(parent, name, O_CREAT | O_EXCL | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
                if (r >= 0)
                    close(r);
            } else {
                r = mkdirat(parent, name, 0755);
            }
            if (r < 0 && errno == EEXIST) {
                /* Exists yet does not resolve: a dangling symlink. */
                ssize_t n = readlinkat(parent, name, link, sizeof link - 1);
                if (n > 0) {
                    size_t plen = link[0] == '/' ? 0 : start; /* buf[0..start) is the parent */
                    size_t rlen = len - i;                      /* cur + i: the rest, "" or "/..." */
                    close(parent);
                    if (++hops > 40)
                        return -ELOOP;
                    if (plen + (size_t)n + rlen >= sizeof buf)
                        return -ENAMETOOLONG;
                    memcpy(buf + plen, link, (size_t)n);
                    memcpy(buf + plen + n, cur + i, rlen + 1);
                    memcpy(cur, buf, plen + (size_t)n + rlen + 1);
                    goto restart;
                }
                errno = EEXIST;
            }
            if (r < 0 && errno != EEXIST) {
                int e = errno;
                close(parent);
                return -e;
            }
            next = open_in_root(rootfd, buf, O_PATH);
        }
        close(parent);
        if (next < 0)
            return next;
        parent = next;
        buf[i] = saved;
    }
    return parent;
}

/* Split path into its parent (created inside the root, returned as an O_PATH
 * fd) and its last component (copied to name, NAME_MAX+1 bytes). fd or -errno. */
static int open_parent_in_root(int rootfd, const char *path, char *name)
{
    char buf[PATH_MAX];
    size_t len = strlen(path);
    if (len >= sizeof buf)
        return -ENAMETOOLONG;
    memcpy(buf, path, len + 1);
    while (len > 1 && buf[len - 1] == '/')
        buf[--len] = '\0';
    char *slash = strrchr(buf, '/');
    const char *base = slash ? slash + 1 : buf;
    size_t blen = strlen(base);
    if (blen == 0 || blen > NAME_MAX || strcmp(base, ".") == 0 || strcmp(base, "..") == 0)
        return -EINVAL;
    memcpy(name, base, blen + 1);
    if (slash)
        *slash = '\0';
    return mkdirall_in_root(rootfd, slash && buf[0] ? buf : "/", 0);
}

/* mount(2) flags the kernel locks on a mount (inside a user namespace they must
 * be kept on a remount, else EPERM), from statfs f_flags. */
static unsigned long locked_flags(int fd)
{
    struct statfs st;
    unsigned long f = 0;
    if (fstatfs(fd, &st) < 0)
        return 0;
    if (st.f_flags & OCI_ST_NOSUID)
        f |= MS_NOSUID;
    if (st.f_flags & OCI_ST_NODEV)
        f |= MS_NODEV;
    if (st.f_flags & OCI_ST_NOEXEC)
        f |= MS_NOEXEC;
    if (st.f_flags & OCI_ST_NOATIME)
        f |= MS_NOATIME;
    if (st.f_flags & OCI_ST_NODIRATIME)
        f |= MS_NODIRATIME;
    if (st.f_flags & OCI_ST_RELATIME)
        f |= MS_RELATIME;
    return f;
}

/* ------------------------------------------------ a procfs instance of our own */
#ifndef SYS_fsopen
#define SYS_fsopen 430
#endif
#ifndef SYS_fsconfig
#define SYS_fsconfig 431
#endif
#ifndef SYS_fsmount
#define SYS_fsmount 432
#endif
#define OCI_FSOPEN_CLOEXEC 0x00000001
#define OCI_FSCONFIG_CMD_CREATE 6
#define OCI_FSMOUNT_CLOEXEC 0x00000001
#define OCI_MOUNT_ATTR_NOSUID 0x00000002
#define OCI_MOUNT_ATTR_NODEV 0x00000004
#define OCI_MOUNT_ATTR_NOEXEC 0x00000008
#define OCI_PROC_SUPER_MAGIC 0x9fa0

/* A new procfs instance (fsopen/fsmount, nosuid, nodev, noexec, attached
 * nowhere): nothing a rootfs holds (a fake /proc, a symlink, a bind over
 * /proc/sys) is on the path to it, and its "self" and namespace-scoped files
 * resolve against the caller's namespaces. The mount fd, or -1 with errno
 * set (ENODEV: what was mounted is no procfs). */
static int new_procfs_mount(void)
{
    int fs = (int)syscall(SYS_fsopen, "proc", OCI_FSOPEN_CLOEXEC);
    if (fs < 0)
        return -1;
    int mnt = -1;
    if (syscall(SYS_fsconfig, fs, OCI_FSCONFIG_CMD_CREATE, NULL, NULL, 0) == 0)
        mnt = (int)syscall(SYS_fsmount, fs, OCI_FSMOUNT_CLOEXEC,
                           OCI_MOUNT_ATTR_NOSUID | OCI_MOUNT_ATTR_NODEV | OCI_MOUNT_ATTR_NOEXEC);
    int e = errno;
    close(fs);
    if (mnt < 0) {
        errno = e;
        return -1;
    }
    struct statfs sf;
    if (fstatfs(mnt, &sf) < 0 || sf.f_type != OCI_PROC_SUPER_MAGIC) {
        close(mnt);
        errno = ENODEV;
        return -1;
    }
    return mnt;
}

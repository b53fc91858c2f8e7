/* ocirun's C shim: clone the container init and run a resolved LaunchPlan.
 *
 * Python decides, C does. ocirun.shim.spawn() turns the LaunchPlan into the
 * structs of shim_cdef.h, then calls ocirun_spawn(), which clones "stage-1".
 * From there on the children run only this file: async-signal-safe calls,
 * raw syscalls where glibc would take locks or talk to other threads (the
 * set*id family), no malloc, stack buffers only, and they never return into
 * Python: every path ends in execve() or _exit(). Failures travel back to the
 * parent as (step, errno, index); Python names the step.
 *
 * Process shape (runc's nsexec, simplified):
 *
 *   parent (Python) --clone3--> stage-1 --clone(CLONE_PARENT)--> init
 *
 * stage-1 joins/creates the namespaces, then creates the init as a sibling
 * (the parent's child, pid 1 of a new pid namespace) and exits. The init sets
 * up the rootfs and the process, reports READY and blocks on the exec fifo.
 *
 * Sync protocol: one SOCK_SEQPACKET socketpair, one struct ocirun_msg per
 * packet. Only one child reads at a time (stage-1 until it sends INIT_PID,
 * then the init), so one socket serves both.
 *
 *  | message           | direction        | payload        | meaning                                       |
 *  |-------------------|------------------|----------------|-----------------------------------------------|
 *  | CGROUP_PLACED     | parent -> stage1 | -              | stage-1 is in its cgroups; go on and join/    |
 *  |                   |                  |                | create namespaces (cgroup ns is rooted here)  |
 *  | NS_READY          | stage1 -> parent | -              | namespaces joined/created; parent writes      |
 *  |                   |                  |                | uid_map/gid_map/timens_offsets, runs its hook |
 *  | NS_ACK            | parent -> stage1 | -              | maps written; become root in the user ns and  |
 *  |                   |                  |                | clone the init                                |
 *  | INIT_PID          | stage1 -> parent | pid            | init created (pid in the parent's pid ns);    |
 *  |                   |                  |                | stage-1 exits, the parent reaps it            |
 *  | INIT_ACK          | parent -> init   | -              | parent knows the init (oom_score_adj written);|
 *  |                   |                  |                | the init may start (and may fail) now         |
 *  | BEFORE_PIVOT      | init -> parent   | -              | mounts done, before pivot_root (only if       |
 *  |                   |                  |                | sync_before_pivot): parent runs hooks         |
 *  | BEFORE_PIVOT_ACK  | parent -> init   | -              | hooks done; pivot                             |
 *  | READY             | init -> parent   | -              | setup done; init blocks on the exec fifo;     |
 *  |                   |                  |                | the parent closes its end and returns the pid |
 *  | ERROR             | child -> parent  | step,err,index | a step failed; the child exits; the parent    |
 *  |                   |                  |                | kills and reaps every child and raises        |
 *  | SECCOMP_FD        | init -> parent   | fd (SCM_RIGHTS)| filter loaded with NEW_LISTENER (SCMP_ACT_    |
 *  |                   |                  |                | NOTIFY): the parent hands the fd and the state|
 *  |                   |                  |                | to listenerPath, before READY                 |
 *  | SECCOMP_ACK       | parent -> init   | -              | the agent has the fd; go on                   |
 *
 * EOF on the parent's end before READY means a child died without saying
 * why (killed); the parent reports the last message it got.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "shim.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/sysmacros.h>
#include <sys/types.h>

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
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
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
    char exe[PATH_MAX]; /* args[0] resolved */
};

/* ---- small async-signal-safe helpers ---- */

/* "/proc/self/fd/<fd>" into buf (>= 32 bytes), without snprintf. */
static char *fdpath(char *buf, int fd)
{
    static const char prefix[] = "/proc/self/fd/";
    char digits[16];
    int n = 0;
    unsigned int v = (unsigned int)fd;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    memcpy(buf, prefix, sizeof prefix - 1);
    char *p = buf + sizeof prefix - 1;
    while (n)
        *p++ = digits[--n];
    *p = '\0';
    return buf;
}

static void send_msg(int sock, int type, int step, int err, int index, int pid)
{
    struct ocirun_msg m = {type, step, err, index, pid};
    ssize_t r;
    do
        r = send(sock, &m, sizeof m, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
}

/* Report a failed step to the parent and exit: the parent kills and reaps the rest. */
__attribute__((noreturn)) static void fail(struct ctx *c, int step, int err, int index)
{
    send_msg(c->sock, OCIRUN_MSG_ERROR, step, err, index, 0);
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

/* ---- init: rootfs ---- */

static void set_names(struct ctx *c)
{
    const struct ocirun_plan *p = c->plan;
    if (p->hostname && sethostname(p->hostname, strlen(p->hostname)) < 0)
        fail(c, OCIRUN_STEP_SETHOSTNAME, errno, -1);
    if (p->domainname && setdomainname(p->domainname, strlen(p->domainname)) < 0)
        fail(c, OCIRUN_STEP_SETDOMAINNAME, errno, -1);
}

static void make_root_private(struct ctx *c)
{
    if (c->plan->root_propagation &&
        mount(NULL, "/", NULL, c->plan->root_propagation, NULL) < 0)
        fail(c, OCIRUN_STEP_ROOT_PROPAGATION, errno, -1);
}

static void enter_rootfs(struct ctx *c)
{
    /* While still the host's root in the host's mount namespace: unshare
     * (CLONE_NEWNS) carries the cwd over to the new namespace's copy, so the
     * init reaches the rootfs as "." without walking the host path as the
     * container's (mapped) root, who may not search e.g. a 0700 bundle dir. */
    if (chdir(c->plan->rootfs) < 0)
        fail(c, OCIRUN_STEP_ROOTFS_OPEN, errno, -1);
    c->rootfs_via_cwd = 1;
    for (int i = 0; i < c->plan->n_joins; i++)
        if (c->plan->joins[i].clone_flag == CLONE_NEWNS)
            c->rootfs_via_cwd = 0; /* setns(mnt) resets the cwd: use the full path */
}

static void bind_rootfs(struct ctx *c)
{
    /* pivot_root needs the new root to be a mount point: bind the rootfs onto
     * itself. From the cwd: a recursive clone of "." (open_tree) attached on
     * "." (move_mount); the tree fd is then the root of the new mount. */
    if (c->rootfs_via_cwd) {
        long tree = syscall(SYS_open_tree, AT_FDCWD, ".",
                            OCI_OPEN_TREE_CLONE | O_CLOEXEC | OCI_AT_RECURSIVE);
        if (tree >= 0) {
            if (syscall(SYS_move_mount, (int)tree, "", AT_FDCWD, ".", OCI_MOVE_MOUNT_F_EMPTY_PATH) < 0)
                fail(c, OCIRUN_STEP_ROOTFS_BIND, errno, -1);
            c->rootfd = (int)tree;
            return;
        }
        if (errno != ENOSYS)
            fail(c, OCIRUN_STEP_ROOTFS_BIND, errno, -1);
    }
    /* Pre-5.2 kernel or a joined mount namespace: by path. */
    if (mount(c->plan->rootfs, c->plan->rootfs, NULL, MS_BIND | MS_REC, NULL) < 0)
        fail(c, OCIRUN_STEP_ROOTFS_BIND, errno, -1);
    /* Opened after the bind, so the fd is the root of the new mount. */
    c->rootfd = open(c->plan->rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (c->rootfd < 0)
        fail(c, OCIRUN_STEP_ROOTFS_OPEN, errno, -1);
}

/* mount(NULL, fdpath, NULL, flags): a remount; on EPERM (locked flags in a
 * user namespace) once more with the mount's current nosuid/nodev/noexec/atime. */
static int remount_fd(int fd, unsigned long flags)
{
    char p[32];
    fdpath(p, fd);
    if (mount(NULL, p, NULL, flags, NULL) == 0)
        return 0;
    if (errno != EPERM)
        return -1;
    return mount(NULL, p, NULL, flags | locked_flags(fd), NULL);
}

static void do_mount(struct ctx *c, int i)
{
    const struct ocirun_mount *m = &c->plan->mounts[i];
    char p[32];
    int fd = mkdirall_in_root(c->rootfd, m->target, m->target_is_file);
    if (fd < 0)
        fail(c, OCIRUN_STEP_MOUNT_MKDIR, -fd, i);
    /* By fd: what we mount on is the file we resolved inside the root. */
    if (mount(m->source, fdpath(p, fd), m->fstype, m->flags, m->data) < 0)
        fail(c, OCIRUN_STEP_MOUNT, errno, i);
    close(fd);
    if (!m->remount_flags && !m->propagation && !m->attr_set && !m->attr_clr)
        return;
    /* Re-resolved: the fd above is the mount point, not the new mount on it. */
    fd = open_in_root(c->rootfd, m->target, O_PATH);
    if (fd < 0)
        fail(c, OCIRUN_STEP_MOUNT_REOPEN, -fd, i);
    fdpath(p, fd);
    if (m->remount_flags && remount_fd(fd, MS_BIND | MS_REMOUNT | m->remount_flags) < 0)
        fail(c, OCIRUN_STEP_MOUNT_REMOUNT, errno, i);
    if (m->propagation && mount(NULL, p, NULL, m->propagation, NULL) < 0)
        fail(c, OCIRUN_STEP_MOUNT_PROPAGATION, errno, i);
    if (m->attr_set || m->attr_clr) {
        struct oci_mount_attr attr = {m->attr_set, m->attr_clr, 0, 0};
        if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH | OCI_AT_RECURSIVE, &attr, sizeof attr) < 0)
            fail(c, OCIRUN_STEP_MOUNT_SETATTR, errno, i);
    }
    close(fd);
}

static void do_device(struct ctx *c, int i)
{
    const struct ocirun_device *d = &c->plan->devices[i];
    char name[NAME_MAX + 1], p[32];
    int dir = open_parent_in_root(c->rootfd, d->path, name);
    if (dir < 0)
        fail(c, OCIRUN_STEP_DEVICE_MKDIR, -dir, i);
    if (d->bind_from_host) {
        /* In a user namespace mknod is refused: bind the host's node (same path) by fd. */
        int f = openat(dir, name, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (f < 0)
            fail(c, OCIRUN_STEP_DEVICE_BIND, errno, i);
        close(f);
        f = openat(dir, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (f < 0)
            fail(c, OCIRUN_STEP_DEVICE_BIND, errno, i);
        if (mount(d->path, fdpath(p, f), NULL, MS_BIND, NULL) < 0)
            fail(c, OCIRUN_STEP_DEVICE_BIND, errno, i);
        close(f);
    } else {
        dev_t dev = makedev(d->major, d->minor);
        if (mknodat(dir, name, d->mode, dev) < 0) {
            struct stat st;
            /* Like runc: replace what is there, unless it is a directory. */
            if (errno != EEXIST)
                fail(c, OCIRUN_STEP_DEVICE_MKNOD, errno, i);
            if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                fail(c, OCIRUN_STEP_DEVICE_MKNOD, errno, i);
            if (S_ISDIR(st.st_mode))
                fail(c, OCIRUN_STEP_DEVICE_MKNOD, EEXIST, i);
            if (unlinkat(dir, name, 0) < 0 || mknodat(dir, name, d->mode, dev) < 0)
                fail(c, OCIRUN_STEP_DEVICE_MKNOD, errno, i);
        }
        if (fchownat(dir, name, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) < 0)
            fail(c, OCIRUN_STEP_DEVICE_CHOWN, errno, i);
    }
    close(dir);
}

static void do_symlink(struct ctx *c, int i)
{
    const struct ocirun_symlink *s = &c->plan->symlinks[i];
    char name[NAME_MAX + 1];
    int dir = open_parent_in_root(c->rootfd, s->path, name);
    if (dir < 0)
        fail(c, OCIRUN_STEP_SYMLINK, -dir, i);
    if (symlinkat(s->target, dir, name) < 0 && errno != EEXIST)
        fail(c, OCIRUN_STEP_SYMLINK, errno, i);
    close(dir);
}

static void make_cwd(struct ctx *c)
{
    /* Created before pivot_root through the rootfd walk, as runc does; after
     * the mounts so that a cwd on a mounted filesystem lands on it. */
    if (!c->plan->process || !c->plan->process->cwd)
        return;
    int fd = mkdirall_in_root(c->rootfd, c->plan->process->cwd, 0);
    if (fd < 0)
        fail(c, OCIRUN_STEP_CWD_MKDIR, -fd, -1);
    close(fd);
}

static void pivot_to_rootfs(struct ctx *c)
{
    if (fchdir(c->rootfd) < 0)
        fail(c, OCIRUN_STEP_PIVOT_ROOT, errno, -1);
    if (c->plan->no_pivot) {
        /* --no-pivot (e.g. a ramfs root): move the rootfs onto / and chroot. */
        if (mount(".", "/", NULL, MS_MOVE, NULL) < 0)
            fail(c, OCIRUN_STEP_MOVE_ROOT, errno, -1);
        if (chroot(".") < 0)
            fail(c, OCIRUN_STEP_CHROOT, errno, -1);
    } else {
        /* pivot_root(".", "."): the old root ends up stacked on the new one. */
        if (syscall(SYS_pivot_root, ".", ".") < 0)
            fail(c, OCIRUN_STEP_PIVOT_ROOT, errno, -1);
        /* rslave first, so that detaching the old root does not propagate to the host. */
        if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0)
            fail(c, OCIRUN_STEP_OLD_ROOT_SLAVE, errno, -1);
        if (umount2(".", MNT_DETACH) < 0)
            fail(c, OCIRUN_STEP_OLD_ROOT_UMOUNT, errno, -1);
    }
    if (chdir("/") < 0)
        fail(c, OCIRUN_STEP_CHDIR_ROOT, errno, -1);
    close(c->rootfd);
    /* From here paths are resolved in the container's "/". */
    c->rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (c->rootfd < 0)
        fail(c, OCIRUN_STEP_CHDIR_ROOT, errno, -1);
}

static void set_rootfs_propagation(struct ctx *c)
{
    if (c->plan->rootfs_propagation &&
        mount(NULL, "/", NULL, c->plan->rootfs_propagation, NULL) < 0)
        fail(c, OCIRUN_STEP_ROOTFS_PROPAGATION, errno, -1);
}

/* The remaining mounts go through /proc/self/fd/N and so need the container's /proc. */
static void make_readonly_paths(struct ctx *c)
{
    char p[32];
    for (int i = 0; i < c->plan->n_readonly_paths; i++) {
        const char *path = c->plan->readonly_paths[i];
        int fd = open_in_root(c->rootfd, path, O_PATH);
        if (fd == -ENOENT)
            continue;
        if (fd < 0)
            fail(c, OCIRUN_STEP_READONLY_PATH, -fd, i);
        fdpath(p, fd);
        if (mount(p, p, NULL, MS_BIND | MS_REC, NULL) < 0)
            fail(c, OCIRUN_STEP_READONLY_PATH, errno, i);
        close(fd);
        fd = open_in_root(c->rootfd, path, O_PATH); /* now the bind mount itself */
        if (fd < 0)
            fail(c, OCIRUN_STEP_READONLY_PATH, -fd, i);
        /* Keep nosuid/nodev/noexec/atime as they are (locked in a user namespace). */
        if (mount(NULL, fdpath(p, fd), NULL,
                  MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | locked_flags(fd), NULL) < 0)
            fail(c, OCIRUN_STEP_READONLY_PATH, errno, i);
        close(fd);
    }
}

static void make_masked_paths(struct ctx *c)
{
    char p[32], nullp[32];
    int devnull = -1;
    for (int i = 0; i < c->plan->n_masked_paths; i++) {
        struct stat st;
        int fd = open_in_root(c->rootfd, c->plan->masked_paths[i], O_PATH);
        if (fd == -ENOENT)
            continue;
        if (fd < 0 || fstat(fd, &st) < 0)
            fail(c, OCIRUN_STEP_MASKED_PATH, fd < 0 ? -fd : errno, i);
        fdpath(p, fd);
        if (S_ISDIR(st.st_mode)) {
            if (mount("tmpfs", p, "tmpfs", MS_RDONLY, NULL) < 0)
                fail(c, OCIRUN_STEP_MASKED_PATH, errno, i);
        } else {
            if (devnull < 0) {
                /* CVE-2025-31133: the container owns its /dev; never bind a
                 * "/dev/null" that could be a symlink or any other file. */
                struct stat ns;
                devnull = open_in_root(c->rootfd, "/dev/null", O_PATH | O_NOFOLLOW);
                if (devnull < 0)
                    fail(c, OCIRUN_STEP_MASK_DEVNULL, -devnull, i);
                if (fstat(devnull, &ns) < 0)
                    fail(c, OCIRUN_STEP_MASK_DEVNULL, errno, i);
                if (!S_ISCHR(ns.st_mode) || ns.st_rdev != makedev(1, 3))
                    fail(c, OCIRUN_STEP_MASK_DEVNULL, ENODEV, i);
                fdpath(nullp, devnull);
            }
            if (mount(nullp, p, NULL, MS_BIND, NULL) < 0)
                fail(c, OCIRUN_STEP_MASKED_PATH, errno, i);
        }
        close(fd);
    }
    if (devnull >= 0)
        close(devnull);
}

static void make_root_readonly(struct ctx *c)
{
    if (!c->plan->root_readonly)
        return;
    if (mount(NULL, "/", NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | locked_flags(c->rootfd), NULL) < 0)
        fail(c, OCIRUN_STEP_ROOT_READONLY, errno, -1);
}

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
        /* A set that is None in the plan keeps its current value. */
        if (syscall(SYS_capget, &h, d) < 0)
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
            if ((pr->ambient & (1ULL << cap)) &&
                prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap, 0, 0) < 0)
                fail(c, OCIRUN_STEP_AMBIENT, errno, cap);
        }
    }
}

/* X_OK for the effective ids, as Go's exec.LookPath (what runc uses). */
static int can_exec(const char *path)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    if (S_ISDIR(st.st_mode))
        return -EISDIR;
    if (syscall(SYS_faccessat2, AT_FDCWD, path, X_OK, AT_EACCESS) == 0)
        return 0;
    if (errno == ENOSYS)
        return faccessat(AT_FDCWD, path, X_OK, 0) == 0 ? 0 : -errno;
    return -errno;
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

static void close_inherited_fds(struct ctx *c)
{
    /* The init is a copy of the runtime: it holds every fd the runtime had,
     * including the state lock (an flock lives as long as any fd to it) —
     * `start` would block on it while we block on the fifo. Keep 0-2, the
     * preserved fds, the sync socket and the exec fifo; close the rest. */
    unsigned int first = 3 + (c->plan->process ? (unsigned int)c->plan->process->preserve_fds : 0);
    unsigned int a = (unsigned int)(c->sock < c->fifo ? c->sock : c->fifo);
    unsigned int b = (unsigned int)(c->sock < c->fifo ? c->fifo : c->sock);
    /* the parent put both at or above `first` */
    if (close_between(first, a - 1) < 0 || close_between(a + 1, b - 1) < 0 ||
        close_between(b + 1, ~0U) < 0)
        fail(c, OCIRUN_STEP_CLOSE_RANGE, errno, -1);
}

static void prepare_fds(struct ctx *c, int preserve_fds)
{
    /* Only 0-2 and the preserved fds may reach the container (containerd's
     * shim, for one, has its listening socket at fd 3). CLOEXEC rather than
     * close: the sync socket and the exec fifo are still needed until exec. */
    unsigned int first = 3 + (unsigned int)preserve_fds;
    if (syscall(SYS_close_range, first, ~0U, OCI_CLOSE_RANGE_CLOEXEC) < 0)
        fail(c, OCIRUN_STEP_CLOSE_RANGE, errno, -1);
    for (int fd = 3; fd < (int)first; fd++) {
        int fl = fcntl(fd, F_GETFD);
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

static void wait_for_start(struct ctx *c)
{
    /* runc's exec fifo: opening it for writing blocks until `start` opens it
     * for reading; the byte tells `start` we got through. Reopened through
     * /proc/self/fd so it works from inside the container's root. */
    char p[32];
    int fd;
    do
        fd = open(fdpath(p, c->fifo), O_WRONLY | O_CLOEXEC);
    while (fd < 0 && errno == EINTR);
    if (fd < 0)
        die_late("open", "exec fifo", errno, 1);
    if (write(fd, "0", 1) != 1)
        die_late("write", "exec fifo", errno, 1);
    close(fd);
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

/* Load the filter before READY; with NOTIFY, hand the listener fd to the parent
 * (SECCOMP_FD with SCM_RIGHTS) and wait until it has reached the agent. */
static void seccomp_before_ready(struct ctx *c)
{
    const struct ocirun_plan *p = c->plan;
    int fd = load_seccomp(p);
    if (fd < 0)
        fail(c, OCIRUN_STEP_SECCOMP, -fd, -1);
    if (!p->seccomp_notify)
        return;
    struct ocirun_msg m = {OCIRUN_MSG_SECCOMP_FD, 0, 0, -1, 0};
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
        r = sendmsg(c->sock, &mh, MSG_NOSIGNAL);
    while (r < 0 && errno == EINTR);
    if (r != (ssize_t)sizeof m)
        fail(c, OCIRUN_STEP_SECCOMP_SEND, r < 0 ? errno : EPROTO, -1);
    close(fd);
    wait_for(c, OCIRUN_MSG_SECCOMP_ACK);
}

__attribute__((noreturn)) static void run_process(struct ctx *c)
{
    const struct ocirun_process *pr = c->plan->process;
    /* As root first: a cwd only root can reach still works; EACCES is retried as the user. */
    int chdir_again = enter_cwd(c, 1);
    /* Before dropping privileges: raising a hard limit needs CAP_SYS_RESOURCE. */
    set_rlimits(c);
    /* Needs CAP_SETPCAP, which the uid change below may take away. */
    drop_bounding_set(c);
    int has_seccomp = c->plan->seccomp_bpf != NULL;
    /* Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: before the uid
     * change and capset take it away (runc's order). */
    if (has_seccomp && !pr->no_new_privileges)
        seccomp_before_ready(c);
    change_user(c);
    if (chdir_again)
        enter_cwd(c, 0);
    verify_cwd(c);
    set_capabilities(c);
    /* As the container user, like runc's LookPath: what it cannot exec is not found. */
    resolve_exe(c);
    /* Last, so nothing above (capset, setuid) is limited by it. */
    if (pr->no_new_privileges && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
        fail(c, OCIRUN_STEP_NO_NEW_PRIVS, errno, -1);
    umask(pr->umask);
    prepare_fds(c, pr->preserve_fds);
    /* no_new_privs with NOTIFY: the listener fd can only reach the parent (and the
     * agent) while the parent waits for READY, so this is as late as it can be. */
    if (has_seccomp && pr->no_new_privileges && c->plan->seccomp_notify)
        seccomp_before_ready(c);
    send_msg(c->sock, OCIRUN_MSG_READY, 0, 0, -1, 0);
    close(c->sock);
    wait_for_start(c);
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
    /* Until the parent has our pid it could not kill us on an error: wait. */
    wait_for(c, OCIRUN_MSG_INIT_ACK);
    close_inherited_fds(c);
    /* umask 0 during setup: device modes and mount points exactly as planned;
     * the process's own umask is set just before exec. */
    umask(0);
    /* Needs our own uts namespace, which the init is in now. */
    set_names(c);
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
    /* Hooks (createRuntime/createContainer) see the mounts but the old root. */
    if (p->sync_before_pivot) {
        send_msg(c->sock, OCIRUN_MSG_BEFORE_PIVOT, 0, 0, -1, 0);
        wait_for(c, OCIRUN_MSG_BEFORE_PIVOT_ACK);
    }
    pivot_to_rootfs(c);
    set_rootfs_propagation(c);
    /* After pivot_root: these are container paths, resolved in the new "/". */
    make_readonly_paths(c);
    make_masked_paths(c);
    /* Last of the mounts: a read-only root must not stop anything above. */
    make_root_readonly(c);
    if (p->process)
        run_process(c);
    /* No process (config.json without one): wait; `start` reports the error. */
    prepare_fds(c, 0);
    send_msg(c->sock, OCIRUN_MSG_READY, 0, 0, -1, 0);
    close(c->sock);
    for (;;)
        pause();
}

__attribute__((noreturn)) static void stage1_main(const struct ocirun_plan *plan, int sock, int fifo)
{
    struct ctx c;
    c.plan = plan;
    c.sock = sock;
    c.fifo = fifo;
    c.rootfd = -1;
    c.rootfs_via_cwd = 0;
    c.exe[0] = '\0';
    reset_signals();
    /* CVE-2019-5736: not dumpable before joining anything, so no process in the
     * container can reach our memory or /proc/PID/exe. The init inherits it. */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        fail(&c, OCIRUN_STEP_DUMPABLE, errno, -1);
    /* Nothing runs outside the container's cgroups, and a new cgroup namespace
     * is rooted at them: wait until the parent has placed us. */
    wait_for(&c, OCIRUN_MSG_CGROUP_PLACED);
    /* Before joining or creating any namespace (see there). */
    enter_rootfs(&c);
    join_namespaces(&c);
    create_namespaces(&c);
    /* The parent writes uid_map/gid_map/timens_offsets now: only it can. */
    send_msg(sock, OCIRUN_MSG_NS_READY, 0, 0, -1, 0);
    wait_for(&c, OCIRUN_MSG_NS_ACK);
    if ((plan->new_namespaces & CLONE_NEWUSER) || plan->joins_user_ns)
        become_userns_root(&c);
    /* After becoming root in the user namespace: the keyring is owned by it. */
    join_session_keyring(&c);
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

/* ---- parent ---- */

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

/* The `ocirun` command: a small C front end (docs/helper.md).
 *
 * It hands the call to the warm helper (a Python process that has imported all
 * of ocirun and forks a worker per call) and does, in this process, what must
 * happen in the caller's own process: the clones (the container's init and
 * every exec'd process stay children of the process the caller ran), the
 * waits for those children, and receiving the caller's signals. When there is
 * no usable helper it runs the direct path instead (`ocirun-direct`, today's
 * Python launcher, exec'd in place: same output, same status) and starts a
 * helper in the background for the next calls.
 *
 *   ocirun (this) --connect--> helper --fork--> worker (adopts our namespaces,
 *        |                                         root, cwd, env, stdio, fds;
 *        |  <-- CLONE plan / WAITPID / SPAWN --    runs ocirun's Python)
 *        |  clone (the shim's C, linked in) -- sync socket -->
 *        '<-- EXIT status
 *
 * The shim's C is compiled in (one implementation of clone and of every step
 * the children run); the plan arrives as the worker's arena of C structs,
 * which is copied and relocated here (ocirun/shim/arena.py). This file knows
 * nothing of the sync protocol: the worker drives it over the socket it gets. */
#define _GNU_SOURCE
#include "../shim/shim.c"
#include "protocol.h"

#include <dirent.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <sys/mman.h>
#include <sys/un.h>
#include <time.h>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

#define MAX_FDS 253            /* SCM_MAX_FD */
#define MAX_TABLE (MAX_FDS - 8)
#define ACCEPT_TIMEOUT_MS 5000
#define HELPER_DIR_ROOT "/run/ocirun-helper"
#define DEFAULT_PATH "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static char self_dir[PATH_MAX];   /* where this binary lives: ocirun-direct and python are here */
static int fd_floor = 3;          /* our own fds go at or above: never in the caller's fd table */
static int worker_pidfd = -1;
static int commit_token = -1;     /* our copy of the commit token (protocol.h) */
static int fd_channel = -1;       /* our copy of the receiving end of the fd channel */
static uint64_t forwarding;       /* signals passed on to the worker (bit sig-1) */
static uint64_t base_forwarding;  /* SIGINT, unless the caller ignores it */
static struct sigaction original[65];
static uint64_t saved;            /* which of original[] are set */

/* ------------------------------------------------------------ small helpers */

static void die(const char *what, int err)
{
    if (err)
        fprintf(stderr, "ocirun: %s: %s\n", what, strerror(err));
    else
        fprintf(stderr, "ocirun: %s\n", what);
    _exit(1);
}

/* fd moved (CLOEXEC) to at least `floor`; the original closed. -1 on failure. */
static int move_high(int fd, int floor)
{
    if (fd < 0 || fd >= floor)
        return fd;
    int n = fcntl(fd, F_DUPFD_CLOEXEC, floor);
    int err = errno;
    close(fd);
    errno = err;
    return n;
}

static int read_all(int fd, void *buf, size_t len)
{
    char *p = buf;
    while (len) {
        ssize_t n = recv(fd, p, len, MSG_WAITALL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* One frame: header + fds + the payload parts, in as few sendmsg calls as the
 * socket takes. 0 or -1. */
static int send_frame(int sock, uint32_t type, const int *fds, int nfds,
                      const struct iovec *parts, int nparts)
{
    struct ocirun_frame h = {type, (uint32_t)nfds, 0};
    for (int i = 0; i < nparts; i++)
        h.len += parts[i].iov_len;
    struct iovec iov[64];
    union {
        char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
        struct cmsghdr align;
    } u;
    int first = 1, next = 0;
    size_t done = 0;  /* bytes of the current part already sent (-1: the header) */
    int in_header = 1;
    while (in_header || next < nparts) {
        int n = 0;
        if (in_header)
            iov[n++] = (struct iovec){(char *)&h + done, sizeof h - done};
        for (int i = next; i < nparts && n < 64; i++) {
            size_t skip = (!in_header && i == next) ? done : 0;
            iov[n++] = (struct iovec){(char *)parts[i].iov_base + skip, parts[i].iov_len - skip};
        }
        struct msghdr mh;
        memset(&mh, 0, sizeof mh);
        mh.msg_iov = iov;
        mh.msg_iovlen = (size_t)n;
        if (first && nfds > 0) {
            memset(&u, 0, sizeof u);
            mh.msg_control = u.buf;
            mh.msg_controllen = CMSG_SPACE(sizeof(int) * (size_t)nfds);
            struct cmsghdr *cm = CMSG_FIRSTHDR(&mh);
            cm->cmsg_level = SOL_SOCKET;
            cm->cmsg_type = SCM_RIGHTS;
            cm->cmsg_len = CMSG_LEN(sizeof(int) * (size_t)nfds);
            memcpy(CMSG_DATA(cm), fds, sizeof(int) * (size_t)nfds);
        }
        ssize_t r;
        do
            r = sendmsg(sock, &mh, MSG_NOSIGNAL);
        while (r < 0 && errno == EINTR);
        if (r <= 0)
            return -1;
        first = 0;
        size_t left = (size_t)r;
        if (in_header) {
            size_t want = sizeof h - done;
            if (left < want) {
                done += left;
                continue;
            }
            left -= want;
            in_header = 0;
            done = 0;
        }
        while (next < nparts && left >= parts[next].iov_len - done) {
            left -= parts[next].iov_len - done;
            next++;
            done = 0;
        }
        done += left;
    }
    return 0;
}

struct frame {
    uint32_t type;
    int fds[MAX_FDS];
    int nfds;
    char *data;     /* malloc'd payload (NUL-terminated), or NULL */
    uint64_t len;
};

static void free_frame(struct frame *f, int close_fds)
{
    if (close_fds)
        for (int i = 0; i < f->nfds; i++)
            if (f->fds[i] >= 0)
                close(f->fds[i]);
    f->nfds = 0;
    free(f->data);
    f->data = NULL;
}

static int recv_frame_flags(int sock, struct frame *f, int flags);

/* Read one frame; its fds are moved to fd_floor or above (CLOEXEC). 0, or -1
 * on EOF or error. */
static int recv_frame(int sock, struct frame *f)
{
    return recv_frame_flags(sock, f, 0);
}

/* The same, or -1 at once if none is there. */
static int recv_frame_nowait(int sock, struct frame *f)
{
    return recv_frame_flags(sock, f, MSG_DONTWAIT);
}

static int recv_frame_flags(int sock, struct frame *f, int flags)
{
    struct ocirun_frame h;
    struct iovec iov = {&h, sizeof h};
    union {
        char buf[CMSG_SPACE(sizeof(int) * MAX_FDS)];
        struct cmsghdr align;
    } u;
    struct msghdr mh;
    memset(&mh, 0, sizeof mh);
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = u.buf;
    mh.msg_controllen = sizeof u.buf;
    ssize_t r;
    do
        r = recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | flags);
    while (r < 0 && errno == EINTR);
    f->nfds = 0;
    f->data = NULL;
    if (r <= 0)
        return -1;
    for (struct cmsghdr *cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
        if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS)
            continue;
        int n = (int)((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < n && f->nfds < MAX_FDS; i++) {
            int fd;
            memcpy(&fd, CMSG_DATA(cm) + (size_t)i * sizeof(int), sizeof fd);
            f->fds[f->nfds++] = move_high(fd, fd_floor);
        }
    }
    if (r < (ssize_t)sizeof h && read_all(sock, (char *)&h + r, sizeof h - (size_t)r) < 0)
        goto bad;
    if ((int)h.nfds != f->nfds || h.len > (1ull << 30))
        goto bad;
    f->type = h.type;
    f->len = h.len;
    f->data = malloc(h.len + 1);
    if (!f->data || (h.len && read_all(sock, f->data, h.len) < 0))
        goto bad;
    f->data[h.len] = '\0';
    return 0;
bad:
    free_frame(f, 1);
    return -1;
}

static int reply(int sock, int32_t a, int32_t b, int32_t c, int32_t d, const int *fds, int nfds)
{
    int32_t v[4] = {a, b, c, d};
    struct iovec part = {v, sizeof v};
    return send_frame(sock, OCIRUN_FRAME_REPLY, fds, nfds, &part, 1);
}

/* ----------------------------------------------- CVE-2019-5736: run from a sealed copy */

/* The container's init and every exec'd process are clones of the process that
 * clones them, so until their execve /proc/PID/exe names that process's binary:
 * a container whose program is "#!/proc/self/exe" would run it inside, and could
 * then reopen it for writing through /proc/PID/exe and replace the runtime on the
 * host (CVE-2019-5736). So whichever process clones (the Python of the direct
 * path, or this front end with a helper) runs from a sealed memfd copy of its
 * binary, as runc does: there is nothing on the host to write to. Only for the
 * verbs that clone; the others never run anything in a container. */
#define SELF_DIR_ENV "OCIRUN_FRONTEND_DIR" /* the copy's self_dir: taken and unset at once */

static int clones(const char *cmd)
{
    return cmd && (!strcmp(cmd, "create") || !strcmp(cmd, "run") || !strcmp(cmd, "exec") ||
                   !strcmp(cmd, "restore"));
}

static int running_from_memfd(void)
{
    char exe[64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    return n > 0 && (exe[n] = '\0', strncmp(exe, "/memfd:", 7) == 0);
}

/* execve `path` (argv, the current environ) from a sealed memfd copy of it.
 * Returns only on failure, with errno set. */
static void exec_sealed_copy(const char *path, char **args)
{
    int src = open(path, O_RDONLY | O_CLOEXEC);
    if (src < 0)
        return;
    /* CLOEXEC: an ELF binary is loaded before the fd closes (not a #! script) */
    const char *base = strrchr(path, '/');
    int mem = (int)syscall(SYS_memfd_create, base ? base + 1 : path, MFD_CLOEXEC | MFD_ALLOW_SEALING);
    int err = errno;
    if (mem >= 0) {
        ssize_t n;
        while ((n = sendfile(mem, src, NULL, 1 << 30)) > 0)
            ;
        err = errno;
        if (n == 0 && fcntl(mem, F_ADD_SEALS, F_SEAL_SEAL | F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE) == 0)
            syscall(SYS_execveat, mem, "", args, environ, AT_EMPTY_PATH);
        err = errno;
        close(mem);
    }
    close(src);
    errno = err;
}

/* The path of `name` as execvp would find it in PATH; 0 or -1. */
static int find_in_path(const char *name, char *buf, size_t size)
{
    const char *path = getenv("PATH");
    if (!path || !*path)
        path = DEFAULT_PATH;
    for (const char *p = path; *p;) {
        const char *end = strchrnul(p, ':');
        if (end > p && snprintf(buf, size, "%.*s/%s", (int)(end - p), p, name) < (int)size &&
            access(buf, X_OK) == 0)
            return 0;
        p = *end ? end + 1 : end;
    }
    return -1;
}

/* --------------------------------------------------------------- the direct path */

/* Run ocirun-direct (the Python launcher next to us) in this process, as its own
 * sh line would: the python next to it (a venv's), else python3 from PATH. */
__attribute__((noreturn)) static void direct(int argc, char **argv, int sealed)
{
    char launcher[PATH_MAX], python[PATH_MAX];
    if (snprintf(launcher, sizeof launcher, "%s/ocirun-direct", self_dir) >= (int)sizeof launcher ||
        snprintf(python, sizeof python, "%s/python", self_dir) >= (int)sizeof python)
        die("path too long", ENAMETOOLONG);
    char **args = calloc((size_t)argc + 3, sizeof *args);
    if (!args)
        die("calloc", errno);
    int use_venv = access(python, X_OK) == 0;
    if (!use_venv && find_in_path("python3", python, sizeof python) < 0) {
        fprintf(stderr, "ocirun: python3: %s\n", strerror(ENOENT));
        _exit(127);
    }
    /* argv[0] names the interpreter where it lies (a venv's python finds its
     * pyvenv.cfg from it), whatever copy runs */
    args[0] = python;
    args[1] = "-S";
    args[2] = launcher;
    for (int i = 1; i < argc; i++)
        args[i + 2] = argv[i];
    args[argc + 2] = NULL;
    if (sealed) {
        char real[PATH_MAX];
        exec_sealed_copy(realpath(python, real) ? real : python, args);
        int err = errno;
        fprintf(stderr, "ocirun: run %s from a sealed copy (CVE-2019-5736): %s\n", python, strerror(err));
        _exit(1);
    }
    execv(python, args);
    int err = errno;
    fprintf(stderr, "ocirun: %s: %s\n", python, strerror(err));
    _exit(127);
}

/* --------------------------------------------------------------- finding the helper */

/* The subcommand (the first argument that is not a global flag or its value);
 * sets *no_helper for --no-helper. */
static const char *subcommand(int argc, char **argv, int *no_helper)
{
    static const char *with_value[] = {"--root", "--log", "--log-format", "--rootless", "--criu", NULL};
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--no-helper") == 0) {
            *no_helper = 1;
            continue;
        }
        if (a[0] != '-' || strcmp(a, "-") == 0)
            return a;
        if (strcmp(a, "--") == 0)
            return i + 1 < argc ? argv[i + 1] : NULL;
        if (!strchr(a, '='))
            for (const char **w = with_value; *w; w++)
                if (strcmp(a, *w) == 0) {
                    i++;
                    break;
                }
    }
    return NULL;
}

/* Rootless, as ocirun/rootless.py decides it: not root, or root in a user
 * namespace that does not map every id (rootless podman runs conmon and the
 * runtime as uid 0 in one). Such a caller gets a helper of its own in its own
 * user namespace, under XDG_RUNTIME_DIR (helper_dir, install_id). Read once. */
static int rootless_caller(void)
{
    static int rootless = -1;
    if (rootless >= 0)
        return rootless;
    rootless = geteuid() != 0;
    if (!rootless) {
        char map[256];
        int fd = open("/proc/self/uid_map", O_RDONLY | O_CLOEXEC);
        ssize_t n = fd < 0 ? -1 : read(fd, map, sizeof map - 1);
        if (fd >= 0)
            close(fd);
        if (n > 0) {  /* no file: a kernel without user namespaces, the initial one */
            unsigned long inside, outside, count;
            int end = 0;
            map[n] = '\0';
            rootless = !(sscanf(map, " %lu %lu %lu %n", &inside, &outside, &count, &end) == 3 &&
                         inside == 0 && outside == 0 && count == 4294967295UL && map[end] == '\0');
        }
    }
    return rootless;
}

static int helper_wanted(const char *cmd, int no_helper)
{
    const char *env = getenv("OCIRUN_HELPER");
    if (env && (!strcmp(env, "off") || !strcmp(env, "0") || !strcmp(env, "no") || !strcmp(env, "false")))
        return 0;
    if (no_helper)
        return 0;
    if (cmd && strcmp(cmd, "helper") == 0)  /* status, stop, serve: always direct */
        return 0;
    /* CRIU's restored tree is reparented to the process that ran criu (a worker,
     * not us), and a dump takes seconds: both direct (docs/checkpoint.md) */
    if (cmd && (strcmp(cmd, "checkpoint") == 0 || strcmp(cmd, "restore") == 0))
        return 0;
    /* Root's helper, or a rootless caller's own (helper_dir says where; none:
     * the direct path). */
    rootless_caller();  /* read now, before the caller's fd table is listed */
    return 1;
}

/* The helper's directory: OCIRUN_HELPER_DIR, root's next to /run/ocirun, a
 * rootless caller's in its XDG_RUNTIME_DIR (an absolute path to a directory of
 * its own; else none: the direct path). 0, or -1 if there is none. */
static int helper_dir(char *buf, size_t size)
{
    const char *d = getenv("OCIRUN_HELPER_DIR");
    struct stat st;
    int n;
    if (d && *d)
        n = snprintf(buf, size, "%s", d);
    else if (!rootless_caller())
        n = snprintf(buf, size, "%s", HELPER_DIR_ROOT);
    else if ((d = getenv("XDG_RUNTIME_DIR")) && *d == '/' && stat(d, &st) == 0 && S_ISDIR(st.st_mode) &&
             st.st_uid == geteuid())
        n = snprintf(buf, size, "%s/ocirun-helper", d);
    else
        return -1;
    return n > 0 && (size_t)n < size ? 0 : -1;
}

/* One helper per installation: its files are named after the directory we live
 * in (FNV-1a 64 of it); a rootless caller's, per user namespace too (the hash
 * goes on over a NUL and the namespace's inode in decimal: a user's shell and
 * rootless podman's namespace, each with a helper of its own in the same
 * directory). ocirun/helper/paths.py computes the same. */
static void install_id(char out[17])
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)self_dir; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull;
    }
    struct stat ns;
    if (rootless_caller() && stat("/proc/self/ns/user", &ns) == 0) {
        char ino[24];
        int n = snprintf(ino, sizeof ino, "%llu", (unsigned long long)ns.st_ino);
        for (int i = -1; i < n; i++) {  /* the NUL first */
            h ^= i < 0 ? 0 : (unsigned char)ino[i];
            h *= 0x100000001b3ull;
        }
    }
    static const char hex[] = "0123456789abcdef";
    for (int i = 15; i >= 0; i--, h >>= 4)
        out[i] = hex[h & 15];
    out[16] = '\0';
}

static int connect_helper(const char *path)
{
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    if (strlen(path) >= sizeof sa.sun_path) {
        errno = ENAMETOOLONG;
        return -1;
    }
    strcpy(sa.sun_path, path);
    int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return -1;
    s = move_high(s, fd_floor);
    if (s < 0)
        return -1;
    int r;
    do
        r = connect(s, (struct sockaddr *)&sa, sizeof sa);
    while (r < 0 && errno == EINTR);
    if (r < 0) {
        int err = errno;
        close(s);
        errno = err;
        return -1;
    }
    /* Only a helper of our own user: never hand our fds to anyone else. */
    struct ucred cred;
    socklen_t len = sizeof cred;
    if (getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &len) < 0 || cred.uid != geteuid()) {
        close(s);
        errno = EPERM;
        return -1;
    }
    return s;
}

/* Whether a rootless helper started from our cgroups found, less than
 * NOCGROUP_RETRY seconds ago, no cgroup of its own to go to (it would have
 * pinned the caller's, so it did not run: ocirun/helper/cgroup.py). It left
 * <id>.nocgroup holding the /proc/self/cgroup it had, i.e. its caller's: the
 * same cgroups, the same answer; not worth a Python start on every call. */
#define NOCGROUP_RETRY 60
static int cgroups_refused(const char *dir, const char *id)
{
    char path[PATH_MAX], mark[4096], mine[4096];
    struct stat st;
    struct timespec now;
    if (snprintf(path, sizeof path, "%s/%s.nocgroup", dir, id) >= (int)sizeof path)
        return 0;
    int fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = -1, m = -1;
    if (fstat(fd, &st) == 0 && st.st_uid == geteuid() && clock_gettime(CLOCK_REALTIME, &now) == 0 &&
        now.tv_sec - st.st_mtime < NOCGROUP_RETRY && now.tv_sec >= st.st_mtime)
        n = read(fd, mark, sizeof mark);
    close(fd);
    if (n <= 0 || (size_t)n == sizeof mark)
        return 0;
    fd = open("/proc/self/cgroup", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    m = read(fd, mine, sizeof mine);
    close(fd);
    return m == n && memcmp(mark, mine, (size_t)n) == 0;
}

/* Start a helper for the next calls, detached from us (docs/helper.md): the
 * lock makes concurrent first calls start one; the helper keeps it held for
 * its whole life. Its own session, cwd /, stdio /dev/null, no fd of ours, a
 * clean environment; it moves itself out of our cgroups. Best effort. */
static void start_helper(const char *dir, const char *id)
{
    char lockpath[PATH_MAX];
    struct stat st;
    if (mkdir(dir, 0700) < 0 && errno != EEXIST)
        return;
    /* Only a directory that is ours alone (another user could place a socket there). */
    if (lstat(dir, &st) < 0 || !S_ISDIR(st.st_mode) || st.st_uid != geteuid() || (st.st_mode & 077))
        return;
    if (rootless_caller() && cgroups_refused(dir, id))
        return;
    if (snprintf(lockpath, sizeof lockpath, "%s/%s.lock", dir, id) >= (int)sizeof lockpath)
        return;
    int lock = open(lockpath, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (lock < 0)
        return;
    lock = move_high(lock, fd_floor);
    if (lock < 0 || flock(lock, LOCK_EX | LOCK_NB) < 0) {
        if (lock >= 0)
            close(lock);
        return;  /* a helper holds it: running, or starting */
    }
    char launcher[PATH_MAX], python[PATH_MAX];
    if (snprintf(launcher, sizeof launcher, "%s/ocirun-direct", self_dir) >= (int)sizeof launcher ||
        snprintf(python, sizeof python, "%s/python", self_dir) >= (int)sizeof python) {
        close(lock);
        return;
    }
    const char *idle = getenv("OCIRUN_HELPER_IDLE");
    const char *hdir = getenv("OCIRUN_HELPER_DIR");
    const char *trace = getenv("OCIRUN_HELPER_TRACE");
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid_t a = fork();
    if (a == 0) {
        setsid();
        pid_t b = fork();
        if (b != 0)
            _exit(b < 0);
        /* The helper: nothing of the caller's but what is needed. */
        int l = fcntl(lock, F_DUPFD, 10);
        if (l < 0 || dup2(l, 3) < 0)
            _exit(1);
        syscall(SYS_close_range, 4, ~0U, 0);
        int null = open("/dev/null", O_RDWR);
        if (null < 0)
            _exit(1);
        for (int i = 0; i < 3; i++)
            if (null != i)
                dup2(null, i);
        if (null > 2)
            close(null);
        if (chdir("/") < 0)
            _exit(1);
        umask(077);
        /* Below the call that starts us (it takes the direct path meanwhile). */
        char nice_arg[16];
        errno = 0;
        int nice_now = getpriority(PRIO_PROCESS, 0);
        if (errno)
            nice_now = 0;
        snprintf(nice_arg, sizeof nice_arg, "%d", nice_now);
        if (!rootless_caller())  /* a rootless worker could not come back up (CAP_SYS_NICE) */
            setpriority(PRIO_PROCESS, 0, nice_now + 10 > 19 ? 19 : nice_now + 10);
        for (int sig = 1; sig < 65; sig++)
            signal(sig, SIG_DFL);
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        char e_idle[64], e_dir[PATH_MAX + 32], e_trace[PATH_MAX + 32];
        char *env[5];
        int n = 0;
        env[n++] = "PATH=" DEFAULT_PATH;
        if (idle && snprintf(e_idle, sizeof e_idle, "OCIRUN_HELPER_IDLE=%s", idle) < (int)sizeof e_idle)
            env[n++] = e_idle;
        if (hdir && snprintf(e_dir, sizeof e_dir, "OCIRUN_HELPER_DIR=%s", hdir) < (int)sizeof e_dir)
            env[n++] = e_dir;
        if (trace && snprintf(e_trace, sizeof e_trace, "OCIRUN_HELPER_TRACE=%s", trace) < (int)sizeof e_trace)
            env[n++] = e_trace;
        env[n] = NULL;
        char *args[] = {python, "-S", launcher, "helper", "serve", "--dir", (char *)dir,
                        "--id", (char *)id, "--lock-fd", "3", "--nice", nice_arg, NULL};
        if (access(python, X_OK) == 0) {
            execve(python, args, env);
        } else {
            args[0] = "python3";
            execvpe("python3", args, env);
        }
        _exit(127);
    }
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(lock);
    if (a > 0)
        while (waitpid(a, NULL, 0) < 0 && errno == EINTR)
            ;
}

/* -------------------------------------------------------------------- the request */

static int cmp_int(const void *a, const void *b)
{
    return *(const int *)a - *(const int *)b;
}

/* Our open fds (the caller's fd table, as we got it), sorted. -1 if unknown or too many. */
static int list_fds(int *out, int max)
{
    DIR *d = opendir("/proc/self/fd");
    if (!d)
        return -1;
    int self = dirfd(d), n = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9')
            continue;
        int fd = atoi(e->d_name);
        if (fd == self)
            continue;
        if (n == max) {
            closedir(d);
            return -1;
        }
        out[n++] = fd;
    }
    closedir(d);
    qsort(out, (size_t)n, sizeof *out, cmp_int);
    return n;
}

static int send_request(int sock, int argc, char **argv, char **envp, const int *table, int ntable)
{
    int fds[MAX_FDS];
    int n = 0;
    struct ocirun_request req;
    memset(&req, 0, sizeof req);
    req.version = OCIRUN_HELPER_PROTOCOL;
    int pidfd = (int)syscall(SYS_pidfd_open, getpid(), 0);
    if (pidfd < 0)
        return -1;
    fds[n++] = move_high(pidfd, fd_floor);
    int root = move_high(open("/", O_PATH | O_DIRECTORY | O_CLOEXEC), fd_floor);
    int cwd = move_high(open(".", O_PATH | O_DIRECTORY | O_CLOEXEC), fd_floor);
    if (fds[0] < 0 || root < 0 || cwd < 0)
        return -1;
    fds[n++] = root;
    fds[n++] = cwd;
    /* The commit token: one byte, taken by the worker or, if it is too late, by us. */
    int token[2];
    if (pipe2(token, O_CLOEXEC | O_NONBLOCK) < 0)
        return -1;
    if (write(token[1], "t", 1) != 1) {
        close(token[0]);
        close(token[1]);
        return -1;
    }
    close(token[1]);
    commit_token = move_high(token[0], fd_floor);
    if (commit_token < 0)
        return -1;
    fds[n++] = commit_token;
    /* The fd channel: our fds travel in a socket pair, so that we can take them
     * back if no worker commits (an fd in flight on an unaccepted connection would
     * keep our stdout open, and a reader waiting for its EOF, until the helper
     * gets to it). */
    int ch[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, ch) < 0)
        return -1;
    fd_channel = move_high(ch[1], fd_floor);
    ch[0] = move_high(ch[0], fd_floor);
    if (fd_channel < 0 || ch[0] < 0)
        return -1;
    fds[n++] = fd_channel;
    int passed[MAX_FDS];
    int npassed = 0;
    /* Our controlling terminal, for a foreground terminal proxy (console.host_console). */
    int tty = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (tty >= 0) {
        passed[npassed++] = move_high(tty, fd_floor);
        req.flags |= OCIRUN_REQUEST_HAS_TTY;
    }
    for (int i = 0; i < ntable; i++)
        passed[npassed++] = table[i];
    int sent = send_frame(ch[0], OCIRUN_FRAME_FDS, passed, npassed, NULL, 0);
    close(ch[0]);
    if (tty >= 0)
        close(passed[0]);
    if (sent < 0)
        return -1;
    req.argc = (uint32_t)argc;
    int envc = 0;
    while (envp[envc])
        envc++;
    req.envc = (uint32_t)envc;
    req.nfds = (uint32_t)ntable;
    struct iovec *parts = calloc((size_t)(argc + envc + 2), sizeof *parts);
    if (!parts)
        return -1;
    int p = 0;
    parts[p++] = (struct iovec){&req, sizeof req};
    parts[p++] = (struct iovec){(void *)table, sizeof(int) * (size_t)ntable};
    for (int i = 0; i < argc; i++)
        parts[p++] = (struct iovec){argv[i], strlen(argv[i]) + 1};
    for (int i = 0; i < envc; i++)
        parts[p++] = (struct iovec){envp[i], strlen(envp[i]) + 1};
    int r = send_frame(sock, OCIRUN_FRAME_REQUEST, fds, n, parts, p);
    free(parts);
    for (int i = 0; i < n; i++)  /* the worker has its copies (token, fd channel: we keep ours) */
        if (fds[i] != commit_token && fds[i] != fd_channel)
            close(fds[i]);
    return r;
}

/* ---------------------------------------------------------------------- signals */

static void forward(int sig)
{
    int err = errno;
    syscall(SYS_pidfd_send_signal, worker_pidfd, sig, NULL, 0);
    errno = err;
}

/* The caller's signals in `mask` go to the worker (whose handlers act on them as
 * the direct path's would); the others are as we found them. */
static void set_forwarding(uint64_t mask)
{
    mask |= base_forwarding;
    for (int sig = 1; sig < 65; sig++) {
        uint64_t bit = 1ull << (sig - 1);
        if (sig == SIGKILL || sig == SIGSTOP || ((mask ^ forwarding) & bit) == 0)
            continue;
        if (mask & bit) {
            struct sigaction sa;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = forward;
            sa.sa_flags = SA_RESTART;
            sigfillset(&sa.sa_mask);
            if (sigaction(sig, &sa, (saved & bit) ? NULL : &original[sig]) == 0)
                saved |= bit;
        } else if (saved & bit) {
            sigaction(sig, &original[sig], NULL);
        }
    }
    forwarding = mask;
}

static void raise_as_caller(int sig)
{
    if (sig < 1 || sig > 64)
        return;
    uint64_t bit = 1ull << (sig - 1);
    if (forwarding & bit) {
        forwarding &= ~bit;
        sigaction(sig, &original[sig], NULL);
    }
    raise(sig);
}

/* -------------------------------------------------------------------- the work */

/* CLONE: copy the arena, relocate its pointers and fds, call the shim. */
static void do_clone(int sock, struct frame *f)
{
    struct ocirun_clone c;
    int32_t err = EPROTO;
    char *arena = NULL;
    if (f->len < sizeof c)
        goto fail;
    memcpy(&c, f->data, sizeof c);
    uint64_t need = sizeof c + (uint64_t)c.n_relocs * 8 + (uint64_t)c.n_fd_slots * sizeof(struct ocirun_fd_slot);
    if (need + c.arena_len != f->len || c.plan_offset + sizeof(struct ocirun_plan) > c.arena_len)
        goto fail;
    arena = aligned_alloc(64, (c.arena_len + 63) & ~63ull);
    if (!arena) {
        err = ENOMEM;
        goto fail;
    }
    memcpy(arena, f->data + need, c.arena_len);
    uintptr_t base = (uintptr_t)arena;
    const char *relocs = f->data + sizeof c;
    for (uint32_t i = 0; i < c.n_relocs; i++) {
        uint64_t off, v;
        memcpy(&off, relocs + 8 * (size_t)i, 8);
        if (off + 8 > c.arena_len)
            goto fail;
        memcpy(&v, arena + off, 8);
        if (v < c.base || v >= c.base + c.arena_len)
            goto fail;
        v = v - c.base + base;
        memcpy(arena + off, &v, 8);
    }
    /* The fds the children need, at or above the preserved range. */
    int floor = c.floor > fd_floor ? c.floor : fd_floor;
    for (int i = 0; i < f->nfds; i++) {
        f->fds[i] = move_high(f->fds[i], floor);
        if (f->fds[i] < 0) {
            err = errno;
            goto fail;
        }
    }
    const char *slots = relocs + 8 * (size_t)c.n_relocs;
    for (uint32_t i = 0; i < c.n_fd_slots; i++) {
        struct ocirun_fd_slot s;
        memcpy(&s, slots + sizeof s * i, sizeof s);
        if (s.offset + 4 > c.arena_len || s.index < 0 || s.index >= f->nfds)
            goto fail;
        memcpy(arena + s.offset, &f->fds[s.index], 4);
    }
#define FD_AT(i) ((i) >= 0 && (i) < f->nfds ? f->fds[i] : -1)
    const struct ocirun_plan *plan = (const struct ocirun_plan *)(arena + c.plan_offset);
    struct ocirun_spawn_result res;
    memset(&res, 0, sizeof res);
    int rc;
    if (c.kind == OCIRUN_CLONE_SPAWN) {
        rc = ocirun_spawn(plan, FD_AT(c.fifo), FD_AT(c.cgroup), &res);
    } else if (c.kind == OCIRUN_CLONE_EXEC && plan->process) {
        int stdio[3] = {FD_AT(c.stdio[0]), FD_AT(c.stdio[1]), FD_AT(c.stdio[2])};
        rc = ocirun_exec(plan, stdio, FD_AT(c.cgroup), &res);
    } else {
        goto fail;
    }
#undef FD_AT
    free(arena);
    free_frame(f, 1);  /* the children have their copies */
    if (rc < 0) {
        reply(sock, -1, res.step, res.err, 0, NULL, 0);
        return;
    }
    if (reply(sock, 0, res.pid, res.used_clone3, 0, &res.sock, 1) < 0) {
        close(res.sock);
        return;
    }
    close(res.sock);  /* the worker's copy is the parent's end now */
    return;
fail:
    free(arena);
    free_frame(f, 1);
    reply(sock, -1, OCIRUN_STEP_CLONE, err, 0, NULL, 0);
}

/* SPAWN: os.posix_spawn of a hook (DUP2 and CLOSE actions, SETSIGDEF). */
static void do_spawn(int sock, struct frame *f)
{
    struct ocirun_spawn s;
    if (f->len < sizeof s) {
        reply(sock, -EPROTO, 0, 0, 0, NULL, 0);
        return;
    }
    memcpy(&s, f->data, sizeof s);
    size_t at = sizeof s + sizeof(struct ocirun_spawn_action) * (size_t)s.n_actions;
    if (s.n_actions > 4096 || s.argc > 1u << 20 || s.envc > 1u << 20 || at > f->len) {
        reply(sock, -EPROTO, 0, 0, 0, NULL, 0);
        return;
    }
    const struct ocirun_spawn_action *act = (const void *)(f->data + sizeof s);
    char **strs = calloc((size_t)s.argc + s.envc + 3, sizeof *strs);
    if (!strs) {
        reply(sock, -ENOMEM, 0, 0, 0, NULL, 0);
        return;
    }
    /* path, argv..., envp... : NUL-terminated, one after the other */
    size_t want = 1 + (size_t)s.argc + s.envc;
    size_t got = 0;
    while (got < want && at < f->len) {
        strs[got++] = f->data + at;
        at += strlen(f->data + at) + 1;
    }
    if (got != want) {
        free(strs);
        reply(sock, -EPROTO, 0, 0, 0, NULL, 0);
        return;
    }
    char *path = strs[0];
    char **argv = strs + 1;
    char **envp = calloc((size_t)s.envc + 1, sizeof *envp);
    char **args = calloc((size_t)s.argc + 1, sizeof *args);
    if (!envp || !args) {
        free(strs);
        free(envp);
        free(args);
        reply(sock, -ENOMEM, 0, 0, 0, NULL, 0);
        return;
    }
    for (uint32_t i = 0; i < s.argc; i++)
        args[i] = argv[i];
    for (uint32_t i = 0; i < s.envc; i++)
        envp[i] = argv[s.argc + i];
    int pipefd[2];
    if (pipe2(pipefd, O_CLOEXEC) < 0) {
        int e = errno;
        free(strs);
        free(envp);
        free(args);
        reply(sock, -e, 0, 0, 0, NULL, 0);
        return;
    }
    sigset_t all, old;
    sigfillset(&all);
    sigprocmask(SIG_SETMASK, &all, &old);
    pid_t pid = fork();
    if (pid == 0) {
        /* our handlers (forwarding to the worker) are not the hook's */
        for (int sig = 1; sig < 65; sig++) {
            uint64_t bit = 1ull << (sig - 1);
            if ((forwarding & bit) || (s.sigdef & bit))
                signal(sig, SIG_DFL);
        }
        sigprocmask(SIG_SETMASK, &old, NULL);
        int e = 0;
        for (uint32_t i = 0; i < s.n_actions && !e; i++) {
            if (act[i].kind == OCIRUN_SPAWN_DUP2) {
                if (act[i].a < 0 || act[i].a >= f->nfds) {
                    e = EBADF;
                    break;
                }
                int from = f->fds[act[i].a];
                if (from == act[i].b) {
                    int fl = fcntl(from, F_GETFD);
                    if (fl < 0 || fcntl(from, F_SETFD, fl & ~FD_CLOEXEC) < 0)
                        e = errno;
                } else if (dup2(from, act[i].b) < 0) {
                    e = errno;
                }
            } else if (act[i].kind == OCIRUN_SPAWN_CLOSE) {
                if (close(act[i].a) < 0 && errno != EBADF)
                    e = errno;
            }
        }
        if (!e) {
            execve(path, args, envp);
            e = errno;
        }
        while (write(pipefd[1], &e, sizeof e) < 0 && errno == EINTR)
            ;
        _exit(127);
    }
    int e = pid < 0 ? errno : 0;
    sigprocmask(SIG_SETMASK, &old, NULL);
    close(pipefd[1]);
    if (pid > 0) {
        ssize_t n;
        do
            n = read(pipefd[0], &e, sizeof e);
        while (n < 0 && errno == EINTR);
        if (n == (ssize_t)sizeof e) {
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
        } else {
            e = 0;
        }
    }
    close(pipefd[0]);
    free(strs);
    free(envp);
    free(args);
    free_frame(f, 1);
    reply(sock, e ? -e : pid, 0, 0, 0, NULL, 0);
}

/* WAITPID: a blocking wait for one child watches the worker too (its death
 * ends us: what a killed ocirun leaves). */
static void do_waitpid(int sock, struct frame *f)
{
    int32_t v[2] = {0, 0};
    if (f->len >= sizeof v)
        memcpy(v, f->data, sizeof v);
    pid_t pid = v[0];
    int options = v[1];
    free_frame(f, 1);
    if (pid > 0 && !(options & WNOHANG)) {
        int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
        if (pfd >= 0) {
            struct pollfd p[2] = {{pfd, POLLIN, 0}, {sock, POLLIN, 0}};
            for (;;) {
                int r = poll(p, 2, -1);
                if (r < 0 && errno == EINTR)
                    continue;
                if (r < 0 || p[0].revents)
                    break;
                if (p[1].revents & (POLLHUP | POLLERR))
                    die("the helper's worker exited before the command finished", 0);
                if (p[1].revents) {
                    char c;
                    ssize_t n = recv(sock, &c, 1, MSG_PEEK | MSG_DONTWAIT);
                    if (n == 0)
                        die("the helper's worker exited before the command finished", 0);
                    break;  /* unexpected: go and wait anyway */
                }
            }
            close(pfd);
        }
    }
    int status = 0;
    pid_t r;
    do
        r = waitpid(pid, &status, options);
    while (r < 0 && errno == EINTR);
    reply(sock, r < 0 ? -errno : r, status, 0, 0, NULL, 0);
}

/* The worker's requests, until it sends EXIT (or dies). */
__attribute__((noreturn)) static void serve(int sock)
{
    struct frame f;
    for (;;) {
        if (recv_frame(sock, &f) < 0)
            die("the helper's worker exited before the command finished", 0);
        int32_t v[2] = {0, 0};
        switch (f.type) {
        case OCIRUN_FRAME_CLONE:
            do_clone(sock, &f);
            continue;
        case OCIRUN_FRAME_SPAWN:
            do_spawn(sock, &f);
            continue;
        case OCIRUN_FRAME_WAITPID:
            do_waitpid(sock, &f);
            continue;
        case OCIRUN_FRAME_SUBREAPER: {
            int r = prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0);
            free_frame(&f, 1);
            reply(sock, r < 0 ? -errno : 0, 0, 0, 0, NULL, 0);
            continue;
        }
        case OCIRUN_FRAME_SIGNALS: {
            uint64_t mask = 0;
            if (f.len >= sizeof mask)
                memcpy(&mask, f.data, sizeof mask);
            free_frame(&f, 1);
            set_forwarding(mask);
            reply(sock, 0, 0, 0, 0, NULL, 0);
            continue;
        }
        case OCIRUN_FRAME_RAISE:
            if (f.len >= sizeof v[0])
                memcpy(v, f.data, sizeof v[0]);
            free_frame(&f, 1);
            raise_as_caller(v[0]);
            reply(sock, 0, 0, 0, 0, NULL, 0);
            continue;
        case OCIRUN_FRAME_EXIT:
            if (f.len >= sizeof v[0])
                memcpy(v, f.data, sizeof v[0]);
            _exit(v[0] & 0xff);
        default:
            free_frame(&f, 1);
            die("unexpected message from the helper's worker", 0);
        }
    }
}

/* ACCEPT (the worker's pidfd), REFUSE, or nothing in time: 0 to go on, -1 for
 * the direct path. In time: the worker committed (it took the token) or we take
 * the token back (protocol.h). */
static int await_accept(int sock)
{
    struct pollfd p = {sock, POLLIN, 0};
    const char *t = getenv("OCIRUN_HELPER_TIMEOUT");  /* ms; for tests */
    int timeout = t && *t ? atoi(t) : ACCEPT_TIMEOUT_MS;
    int r;
    do
        r = poll(&p, 1, timeout);
    while (r < 0 && errno == EINTR);
    if (r == 0) {
        char c;
        if (read(commit_token, &c, 1) == 1) {
            /* ours: no worker will run it; and our fds come back out of the channel */
            struct frame back;
            if (recv_frame_nowait(fd_channel, &back) == 0)
                free_frame(&back, 1);
            return -1;
        }
        /* the worker has it: it runs the call; wait for it */
    } else if (r < 0) {
        return -1;
    }
    struct frame f;
    if (recv_frame(sock, &f) < 0) {
        char c;
        if (read(commit_token, &c, 1) == 1)
            return -1;  /* gone before it committed */
        die("the helper's worker exited before the command finished", 0);
    }
    if (f.type == OCIRUN_FRAME_REFUSE) {  /* before it took the token: it did nothing */
        if (getenv("OCIRUN_HELPER_DEBUG"))
            fprintf(stderr, "ocirun: helper refused: %s\n", f.data ? f.data : "");
        free_frame(&f, 1);
        return -1;
    }
    if (f.type != OCIRUN_FRAME_ACCEPT)
        die("unexpected message from the helper's worker", 0);
    if (f.nfds == 1) {
        worker_pidfd = f.fds[0];
        f.nfds = 0;
    }
    free_frame(&f, 1);
    return 0;
}

int main(int argc, char **argv)
{
    /* A sealed copy of us (below) learns where the original lives from its
     * parent's environment, which it leaves as the caller gave it. */
    const char *given = getenv(SELF_DIR_ENV);
    if (given && running_from_memfd() && strlen(given) < sizeof self_dir) {
        strcpy(self_dir, given);
        prctl(PR_SET_NAME, "ocirun", 0, 0, 0);  /* not "memfd:ocirun" in ps */
    }
    unsetenv(SELF_DIR_ENV);
    if (!self_dir[0]) {
        char exe[PATH_MAX];
        ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
        if (n <= 0)
            die("cannot find my own path (/proc/self/exe)", errno);
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (!slash || running_from_memfd())
            die("cannot find my own directory (run from a copy?)", 0);
        *slash = '\0';
        memcpy(self_dir, exe, (size_t)(slash - exe) + 1);
    }
    int no_helper = 0;
    const char *cmd = subcommand(argc, argv, &no_helper);
    int sealed = clones(cmd);
    if (!helper_wanted(cmd, no_helper))
        direct(argc, argv, sealed);
    if (sealed && !running_from_memfd()) {
        /* we will clone the container's processes: from a sealed copy of us */
        char me[PATH_MAX];
        if (snprintf(me, sizeof me, "%s/ocirun", self_dir) < (int)sizeof me &&
            setenv(SELF_DIR_ENV, self_dir, 1) == 0) {
            exec_sealed_copy(me, argv);
            unsetenv(SELF_DIR_ENV);
        }
        direct(argc, argv, sealed);  /* no copy of us: the direct path makes its own */
    }

    /* The caller's fd table, before we open anything; our own fds go above it. */
    int table[MAX_TABLE];
    int ntable = list_fds(table, MAX_TABLE);
    if (ntable < 0)
        direct(argc, argv, sealed);
    fd_floor = ntable > 0 && table[ntable - 1] + 1 > 3 ? table[ntable - 1] + 1 : 3;

    char dir[PATH_MAX], path[PATH_MAX], id[17];
    if (helper_dir(dir, sizeof dir) < 0)
        direct(argc, argv, sealed);
    install_id(id);
    if (snprintf(path, sizeof path, "%s/%s.sock", dir, id) >= (int)sizeof path)
        direct(argc, argv, sealed);
    int sock = connect_helper(path);
    if (sock < 0) {
        if (errno == ENOENT || errno == ECONNREFUSED)
            start_helper(dir, id);
        direct(argc, argv, sealed);
    }
    /* SIGINT before ACCEPT would end us, as a Python not yet in main(): the same. */
    struct sigaction cur;
    if (sigaction(SIGINT, NULL, &cur) == 0 && cur.sa_handler != SIG_IGN)
        base_forwarding = 1ull << (SIGINT - 1);
    if (send_request(sock, argc, argv, environ, table, ntable) < 0 || await_accept(sock) < 0) {
        close(sock);
        if (worker_pidfd >= 0)
            close(worker_pidfd);
        direct(argc, argv, sealed);
    }
    set_forwarding(0);
    close(commit_token);
    close(fd_channel);
    serve(sock);
}

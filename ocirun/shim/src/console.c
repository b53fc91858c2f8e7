/* Terminals (process.terminal): a pty made inside the container's own devpts
 * becomes the process's stdio and controlling terminal, is bound over
 * /dev/console, and its master goes to the parent over the sync socket.
 * Part of shim.c (unity build).
 *
 * Everything here works on "the current root" (c->rootfd, after pivot_root
 * for the init): a process that joins a running container (exec) calls
 * setup_console() the same way, with mount_console = 0.
 *
 * Nothing in the container is trusted (CVE-2025-52565): /dev/pts/ptmx is
 * resolved inside the root, opened O_PATH first and checked to be the ptmx
 * (char 5:2) of a devpts filesystem before it is opened for real; the slave
 * is the peer of that master (TIOCGPTPEER, never a path the container could
 * swap) and is checked to be a UNIX98 pty slave (major 136-143) of the same
 * devpts; /dev/console is opened O_NOFOLLOW and the slave is bound over it
 * by fd. */

#define OCI_DEVPTS_SUPER_MAGIC 0x1cd1
#define OCI_UNIX98_PTY_SLAVE_MAJOR 136
#define OCI_UNIX98_PTY_MAJOR_COUNT 8
#define OCI_TTYAUX_MAJOR 5
#define OCI_PTMX_MINOR 2
#ifndef TIOCGPTPEER
#define TIOCGPTPEER _IO('T', 0x41)
#endif

/* The master: /dev/pts/ptmx of the current root, verified before it is opened
 * for reading and writing (opening an arbitrary device can have effects, and a
 * node copied from the host's ptmx would give a pty of the host's devpts). */
static int open_ptmx(struct ctx *c, struct stat *st)
{
    struct statfs sf;
    int path = open_in_root(c->rootfd, "/dev/pts/ptmx", O_PATH | O_NOFOLLOW);
    if (path < 0)
        fail(c, OCIRUN_STEP_CONSOLE_OPEN_PTMX, -path, -1);
    if (fstat(path, st) < 0 || fstatfs(path, &sf) < 0)
        fail(c, OCIRUN_STEP_CONSOLE_PTMX_CHECK, errno, -1);
    if (!S_ISCHR(st->st_mode) || st->st_rdev != makedev(OCI_TTYAUX_MAJOR, OCI_PTMX_MINOR) ||
        sf.f_type != OCI_DEVPTS_SUPER_MAGIC)
        fail(c, OCIRUN_STEP_CONSOLE_PTMX_CHECK, ENODEV, -1);
    /* Reopened through the verified fd: the same inode, whatever the path says now. */
    int fd = reopen_fd(c, path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0)
        fail(c, OCIRUN_STEP_CONSOLE_OPEN_PTMX, errno, -1);
    close(path);
    return fd;
}

/* The slave of master, checked to be a pty slave of the master's devpts. */
static int open_peer(struct ctx *c, int master, const struct stat *ptmx)
{
    unsigned int n;
    int unlock = 0;
    struct stat st;
    /* A new pty is locked until unlockpt: its slave cannot be opened before. */
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0)
        fail(c, OCIRUN_STEP_CONSOLE_UNLOCKPT, errno, -1);
    if (ioctl(master, TIOCGPTN, &n) < 0)
        fail(c, OCIRUN_STEP_CONSOLE_OPEN_PEER, errno, -1);
    /* TIOCGPTPEER (4.13+): the peer of this very master, without a path lookup. */
    int fd = ioctl(master, TIOCGPTPEER, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (fd < 0 && (errno == EINVAL || errno == ENOTTY)) {
        char path[32] = "/dev/pts/";
        *put_decimal(path + 9, n) = '\0';
        fd = open_in_root(c->rootfd, path, O_RDWR | O_NOCTTY | O_NOFOLLOW);
        if (fd < 0) {
            errno = -fd;
            fd = -1;
        }
    }
    if (fd < 0)
        fail(c, OCIRUN_STEP_CONSOLE_OPEN_PEER, errno, -1);
    if (fstat(fd, &st) < 0)
        fail(c, OCIRUN_STEP_CONSOLE_PEER_CHECK, errno, -1);
    /* UNIX98_PTY_SLAVE_MAJOR .. +7, numbered as the master said, on the same devpts. */
    unsigned int maj = major(st.st_rdev);
    if (!S_ISCHR(st.st_mode) || maj < OCI_UNIX98_PTY_SLAVE_MAJOR ||
        maj >= OCI_UNIX98_PTY_SLAVE_MAJOR + OCI_UNIX98_PTY_MAJOR_COUNT ||
        (maj - OCI_UNIX98_PTY_SLAVE_MAJOR) * 256 + minor(st.st_rdev) != n ||
        st.st_dev != ptmx->st_dev)
        fail(c, OCIRUN_STEP_CONSOLE_PEER_CHECK, ENODEV, -1);
    return fd;
}

/* Bind the slave over /dev/console of the current root, both by fd: a symlink
 * planted at /dev/console is refused, never followed. */
static void mount_console_fd(struct ctx *c, int slave)
{
    char name[NAME_MAX + 1];
    struct stat st;
    int dir = open_parent_in_root(c->rootfd, "/dev/console", name);
    if (dir < 0)
        fail(c, OCIRUN_STEP_CONSOLE_CREATE, -dir, -1);
    /* An empty file as the mount point when there is none (runc does the same). */
    int f = openat(dir, name, O_CREAT | O_EXCL | O_WRONLY | O_NOFOLLOW | O_CLOEXEC, 0666);
    if (f >= 0)
        close(f);
    else if (errno != EEXIST)
        fail(c, OCIRUN_STEP_CONSOLE_CREATE, errno, -1);
    f = openat(dir, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
    if (f < 0 || fstat(f, &st) < 0)
        fail(c, OCIRUN_STEP_CONSOLE_CREATE, errno, -1);
    if (S_ISLNK(st.st_mode))
        fail(c, OCIRUN_STEP_CONSOLE_CREATE, ELOOP, -1);
    if (!S_ISREG(st.st_mode) && !S_ISCHR(st.st_mode))
        fail(c, OCIRUN_STEP_CONSOLE_CREATE, S_ISDIR(st.st_mode) ? EISDIR : EINVAL, -1);
    if (mount_fd(c, NULL, slave, f, NULL, MS_BIND, NULL) < 0)
        fail(c, OCIRUN_STEP_CONSOLE_MOUNT, errno, -1);
    close(f);
    close(dir);
}

/* The pty for process pr: made, optionally bound over /dev/console, made our
 * stdio and controlling terminal (new session), its master sent to the parent
 * in a CONSOLE_FD message. Needs /proc (reopen by fd) and root in the
 * container; call before the user change. */
static void setup_console(struct ctx *c, const struct ocirun_process *pr, int mount_console)
{
    struct stat ptmx;
    int master = open_ptmx(c, &ptmx);
    int slave = open_peer(c, master, &ptmx);
    /* Before anything runs on it: the first program already sees consoleSize. */
    if (pr->console_height || pr->console_width) {
        struct winsize ws;
        memset(&ws, 0, sizeof ws);
        ws.ws_row = pr->console_height;
        ws.ws_col = pr->console_width;
        if (ioctl(master, TIOCSWINSZ, &ws) < 0)
            fail(c, OCIRUN_STEP_CONSOLE_WINSIZE, errno, -1);
    }
    if (mount_console)
        mount_console_fd(c, slave);
    /* The user owns their terminal (runc's fixStdioPermissions); the gid stays
     * the one devpts gave (gid=5 "tty" in the usual config). */
    if (fchown(slave, pr->uid, (gid_t)-1) < 0)
        fail(c, OCIRUN_STEP_CONSOLE_CHOWN, errno, -1);
    /* A new session has no controlling terminal, so TIOCSCTTY can make this one
     * it (the init already leads its own: init_main made it). */
    if (getsid(0) != getpid() && setsid() < 0)
        fail(c, OCIRUN_STEP_CONSOLE_SETSID, errno, -1);
    if (ioctl(slave, TIOCSCTTY, 0) < 0)
        fail(c, OCIRUN_STEP_CONSOLE_SETCTTY, errno, -1);
    /* After TIOCSCTTY, which needs the slave open; stdio replaced only now, so
     * every failure above was still reported with the caller's stdio intact. */
    for (int fd = 0; fd < 3; fd++)
        if (dup2(slave, fd) < 0)
            fail(c, OCIRUN_STEP_CONSOLE_STDIO, errno, fd);
    if (slave > 2)
        close(slave);
    /* Last, so the parent never gets a master whose setup then failed here. */
    int r = send_fd_msg(c->sock, OCIRUN_MSG_CONSOLE_FD, master);
    if (r < 0)
        fail(c, OCIRUN_STEP_CONSOLE_SEND, -r, -1);
    close(master);
}

/* Id-mapped mounts (config.md: the idmap/ridmap options, mount uidMappings/
 * gidMappings). Part of shim.c (unity build).
 *
 * Who does what, and why the parent: mount_setattr(MOUNT_ATTR_IDMAP) needs
 * CAP_SYS_ADMIN in the user namespace of the source's superblock (the host's,
 * for a host directory) and in the user namespace that carries the mapping.
 * The init of a container with a user namespace has neither, so the parent
 * (the runtime, in the host's namespaces) makes each id-mapped mount as a
 * detached tree (open_tree(OPEN_TREE_CLONE)) before it clones stage-1; the
 * init only attaches it (move_mount), which needs CAP_SYS_ADMIN in its own
 * mount namespace only. runc 1.2 and crun do the same (runc in a goroutine
 * that has joined the container's mount namespace; here the parent stays in
 * the host's, so a source is resolved as the host sees it). */

#define OCI_MOUNT_ATTR_IDMAP 0x00100000
#define OCI_MOVE_MOUNT_T_EMPTY_PATH 0x00000040

/* ---- parent ---- */

/* "/proc/<pid>/<name>" into buf (>= 64 bytes). */
static char *procpid_path(char *buf, long pid, const char *name)
{
    memcpy(buf, "/proc/", 6);
    char *p = put_decimal(buf + 6, (unsigned long)pid);
    *p++ = '/';
    size_t len = strlen(name);
    memcpy(p, name, len + 1);
    return buf;
}

/* Write all of data to /proc/<pid>/<name> in one write(2), as the id map files
 * require. 0 or -errno. */
static int write_proc_file(long pid, const char *name, const char *data)
{
    char path[64];
    int fd = open(procpid_path(path, pid, name), O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t len = strlen(data);
    ssize_t n = write(fd, data, len);
    int err = n < 0 ? errno : (n != (ssize_t)len ? EIO : 0);
    close(fd);
    return -err;
}

static void reset_result(struct ocirun_spawn_result *res)
{
    res->pid = -1;
    res->sock = -1;
    res->used_clone3 = 0;
    res->step = 0;
    res->err = 0;
}

int ocirun_idmap_userns(const char *uid_map, const char *gid_map, struct ocirun_spawn_result *res)
{
    int hold[2];
    reset_result(res);
    /* The child lives until it reads EOF here: when we close our end after
     * opening its namespace, or when we die (so it never outlives us). */
    if (pipe2(hold, O_CLOEXEC) < 0) {
        res->step = OCIRUN_STEP_IDMAP_USERNS_CLONE;
        res->err = errno;
        return -1;
    }
    /* Every signal blocked around clone, as for stage-1: no Python handler may
     * run in the copy. It keeps them blocked (SIGKILL still works). */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) {
        char b;
        close(hold[1]);
        while (read(hold[0], &b, 1) < 0 && errno == EINTR)
            ;
        _exit(0);
    }
    int err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    close(hold[0]);
    if (pid < 0) {
        close(hold[1]);
        res->step = OCIRUN_STEP_IDMAP_USERNS_CLONE;
        res->err = err;
        return -1;
    }
    /* We are privileged in the parent user namespace (CAP_SETUID/CAP_SETGID):
     * gid_map needs no "setgroups deny" first. */
    int step = OCIRUN_STEP_IDMAP_UID_MAP, fd = -1;
    int r = write_proc_file(pid, "uid_map", uid_map);
    if (r == 0) {
        step = OCIRUN_STEP_IDMAP_GID_MAP;
        r = write_proc_file(pid, "gid_map", gid_map);
    }
    if (r == 0) {
        char path[64];
        step = OCIRUN_STEP_IDMAP_USERNS_OPEN;
        /* The fd keeps the namespace (and its maps) alive without the process. */
        fd = open(procpid_path(path, pid, "ns/user"), O_RDONLY | O_CLOEXEC);
        r = fd < 0 ? -errno : 0;
    }
    close(hold[1]); /* EOF: the child exits */
    while (waitpid((pid_t)pid, NULL, 0) < 0 && errno == EINTR)
        ;
    if (r < 0) {
        res->step = step;
        res->err = -r;
        return -1;
    }
    return fd;
}

int ocirun_idmap_tree(const char *source, int recursive_clone, int recursive_idmap, int userns_fd,
                      int floor, struct ocirun_spawn_result *res)
{
    reset_result(res);
    int step = OCIRUN_STEP_IDMAP_OPEN_TREE;
    /* OPEN_TREE_CLOEXEC is O_CLOEXEC. rbind: the whole tree below source. */
    long tree = syscall(SYS_open_tree, AT_FDCWD, source,
                        OCI_OPEN_TREE_CLONE | O_CLOEXEC | (recursive_clone ? OCI_AT_RECURSIVE : 0));
    if (tree < 0)
        goto fail;
    /* The clone of a shared mount is in its peer group: once attached in the
     * container, mounts made below it would propagate back to the host. Slave,
     * as an ordinary bind made in the container's rslave namespace is; before
     * the idmap, which it does not depend on. Every mount of the clone. */
    step = OCIRUN_STEP_IDMAP_PROPAGATION;
    struct oci_mount_attr prop = {0, 0, MS_SLAVE, 0};
    if (syscall(SYS_mount_setattr, (int)tree, "", AT_EMPTY_PATH | (recursive_clone ? OCI_AT_RECURSIVE : 0),
                &prop, sizeof prop) < 0)
        goto fail;
    /* idmap: the top mount only (an rbind's submounts keep their ids);
     * ridmap: every mount of the clone. Only a detached mount can take it. */
    step = OCIRUN_STEP_IDMAP_SETATTR;
    struct oci_mount_attr idmap = {OCI_MOUNT_ATTR_IDMAP, 0, 0, (uint64_t)userns_fd};
    if (syscall(SYS_mount_setattr, (int)tree, "", AT_EMPTY_PATH | (recursive_idmap ? OCI_AT_RECURSIVE : 0),
                &idmap, sizeof idmap) < 0)
        goto fail;
    if (tree < floor) {
        /* Never inside the preserved range: those fds are the container's. */
        step = OCIRUN_STEP_IDMAP_DUP_FD;
        int high = fcntl((int)tree, F_DUPFD_CLOEXEC, floor);
        if (high < 0)
            goto fail;
        close((int)tree);
        tree = high;
    }
    return (int)tree;
fail:
    res->step = step;
    res->err = errno;
    if (tree >= 0)
        close((int)tree); /* the last reference: the detached clone is unmounted */
    return -1;
}

/* Plain binds of a container with a user namespace (#11 item 16): its root
 * cannot reach a source only the host's root can (a directory below a 0700
 * one, say), so the mount(2) in the init is refused. As for id-mapped mounts
 * the parent makes each one as a detached tree the init attaches; runc (1.1's
 * mount sources, 1.2's open_tree) and crun open such sources with the
 * runtime's privileges too.
 *
 * Opened where, and why: not in the runtime's own mount namespace. A mount
 * the init makes is a copy of a mount of its namespace, which the kernel
 * copied from the host's into a namespace of a less privileged user namespace
 * and so locked (MNT_LOCK_READONLY/NOSUID/NODEV/NOEXEC/ATIME, locked
 * submounts): the container cannot remount a host read-only filesystem
 * read-write through it. A clone made in the host's namespace would carry no
 * such locks. So a helper enters a user namespace that maps every id to
 * itself (the runtime's privileges, over every file) and makes a mount
 * namespace there: the host's mounts are copied into it locked, as into the
 * container's, and open_tree clones them with their locks. The helper shares
 * our fd table (CLONE_FILES): its trees are ours when it exits. */
#define OCI_IDENTITY_MAP "0 0 4294967295\n"

int ocirun_bind_trees(const char **sources, const int *recursive, int n, int floor, int *fds_out,
                      struct ocirun_spawn_result *res)
{
    reset_result(res);
    for (int i = 0; i < n; i++)
        fds_out[i] = -1;
    int userns = ocirun_idmap_userns(OCI_IDENTITY_MAP, OCI_IDENTITY_MAP, res);
    if (userns < 0)
        return -1;
    int report[2];
    if (pipe2(report, O_CLOEXEC) < 0) {
        res->step = OCIRUN_STEP_BIND_TREE_HELPER;
        res->err = errno;
        close(userns);
        return -1;
    }
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    long pid = syscall(SYS_clone, CLONE_FILES | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0) {
        /* (step, errno, index) of the first failure, or (0, 0, n): all made.
         * Only writes: the fd table is the parent's, closing is its job. */
        int msg[3] = {0, 0, n};
        if (setns(userns, CLONE_NEWUSER) < 0) {
            msg[0] = OCIRUN_STEP_BIND_TREE_HELPER;
        } else if (unshare(CLONE_NEWNS) < 0) {
            msg[0] = OCIRUN_STEP_BIND_TREE_HELPER;
        } else {
            for (int i = 0; i < n; i++) {
                msg[2] = i;
                msg[0] = OCIRUN_STEP_BIND_TREE_OPEN;
                long tree = syscall(SYS_open_tree, AT_FDCWD, sources[i],
                                    OCI_OPEN_TREE_CLONE | O_CLOEXEC | (recursive[i] ? OCI_AT_RECURSIVE : 0));
                if (tree < 0)
                    break;
                /* Never inside the preserved range: those fds are the container's. */
                int high = (int)tree;
                if (tree < floor) {
                    msg[0] = OCIRUN_STEP_IDMAP_DUP_FD;
                    high = fcntl((int)tree, F_DUPFD_CLOEXEC, floor);
                    if (high < 0)
                        break;
                    close((int)tree);
                }
                if (write(report[1], &high, sizeof high) != (ssize_t)sizeof high)
                    _exit(1);
                msg[0] = 0;
                msg[2] = n;
            }
        }
        msg[1] = msg[0] ? errno : 0;
        if (write(report[1], msg, sizeof msg) != (ssize_t)sizeof msg)
            _exit(1);
        _exit(0);
    }
    int err = errno;
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    /* The fd table is shared with the helper: close nothing before it is gone. */
    if (pid > 0) {
        while (waitpid((pid_t)pid, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    close(report[1]);
    close(userns);
    if (pid < 0) {
        close(report[0]);
        res->step = OCIRUN_STEP_BIND_TREE_HELPER;
        res->err = err;
        return -1;
    }
    /* The trees made, in order, then the verdict (EOF: it died first). */
    int got = 0, msg[3] = {OCIRUN_STEP_BIND_TREE_HELPER, EPROTO, -1};
    for (;;) {
        int buf[3];
        ssize_t r;
        do
            r = read(report[0], buf, got < n ? sizeof(int) : sizeof buf);
        while (r < 0 && errno == EINTR);
        if (r == (ssize_t)sizeof(int) && got < n) {
            fds_out[got++] = buf[0];
            continue;
        }
        if (r == (ssize_t)sizeof buf)
            memcpy(msg, buf, sizeof msg);
        break;
    }
    close(report[0]);
    if (msg[0] == 0 && got == n) {
        /* Slaves, as a bind made in the container's rslave namespace is: the
         * host's mounts still propagate in, nothing made below goes out. */
        for (int i = 0; i < n; i++) {
            struct oci_mount_attr prop = {0, 0, MS_SLAVE, 0};
            if (syscall(SYS_mount_setattr, fds_out[i], "", AT_EMPTY_PATH | (recursive[i] ? OCI_AT_RECURSIVE : 0),
                        &prop, sizeof prop) < 0) {
                msg[0] = OCIRUN_STEP_IDMAP_PROPAGATION;
                msg[1] = errno;
                msg[2] = i;
                break;
            }
        }
        if (msg[0] == 0)
            return 0;
    }
    for (int i = 0; i < got; i++)
        close(fds_out[i]);
    for (int i = 0; i < n; i++)
        fds_out[i] = -1;
    res->step = msg[0];
    res->err = msg[1];
    res->pid = msg[2]; /* the index of the source that failed */
    return -1;
}

/* ---- init ---- */

/* Attach mount i's detached tree (id-mapped, or a bind the parent opened) on
 * the mount point fd resolved inside the root (by fd, like every mount), then
 * close it: nothing of it may reach the container's process. */
static void attach_tree(struct ctx *c, int i, int target_fd)
{
    const struct ocirun_mount *m = &c->plan->mounts[i];
    if (syscall(SYS_move_mount, m->tree_fd, "", target_fd, "",
                OCI_MOVE_MOUNT_F_EMPTY_PATH | OCI_MOVE_MOUNT_T_EMPTY_PATH) < 0)
        fail(c, OCIRUN_STEP_IDMAP_MOVE_MOUNT, errno, i);
    close(m->tree_fd);
}

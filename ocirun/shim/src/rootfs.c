/* init: the root filesystem (mounts, devices, pivot_root, masked and
 * read-only paths). Part of shim.c (unity build). */

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

/* Whether fd is the rootfs's own root: the same inode on the same mount (statx's
 * mount id, Linux 5.8; a bind of the rootfs elsewhere is another mount). Without
 * mount ids, the same inode and device. */
static int is_root_of(int fd, int rootfd)
{
    struct statx a, b;
    unsigned mask = STATX_INO | STATX_MNT_ID;
    if (statx(fd, "", AT_EMPTY_PATH, mask, &a) < 0 || statx(rootfd, "", AT_EMPTY_PATH, mask, &b) < 0)
        return 0;
    if (a.stx_ino != b.stx_ino || a.stx_dev_major != b.stx_dev_major || a.stx_dev_minor != b.stx_dev_minor)
        return 0;
    if ((a.stx_mask & b.stx_mask & STATX_MNT_ID) == 0)
        return 1;
    return a.stx_mnt_id == b.stx_mnt_id;
}

static void do_mount(struct ctx *c, int i)
{
    const struct ocirun_mount *m = &c->plan->mounts[i];
    char p[32];
    int lower = -1;
    int fd = mkdirall_in_root(c->rootfd, m->target, m->target_is_file);
    if (fd < 0)
        fail(c, OCIRUN_STEP_MOUNT_MKDIR, -fd, i);
    /* A destination that resolves to the root itself (a symlink in the rootfs to
     * "/" or ".."; the validator refuses "/", "/..", "." as written): a mount
     * there would cover the rootfs bind and the container would run on what it
     * hid, its writes landing in the bundle. */
    if (is_root_of(fd, c->rootfd))
        fail(c, OCIRUN_STEP_MOUNT_MKDIR, EBUSY, i);
    /* tmpcopyup: opened before the mount hides it, this fd keeps reading the
     * directory underneath (src/copyup.c). */
    if (m->copy_up && (lower = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        fail(c, OCIRUN_STEP_MOUNT_COPYUP, errno, i);
    /* By fd: what we mount on is the file we resolved inside the root. An
     * id-mapped bind, and any bind in a user namespace, comes ready-made from
     * the parent (src/idmap.c). */
    if (m->tree_fd >= 0)
        attach_tree(c, i, fd);
    else if (mount(m->source, fdpath(p, fd), m->fstype, m->flags, m->data) < 0)
        fail(c, OCIRUN_STEP_MOUNT, errno, i);
    close(fd);
    if (lower >= 0) {
        /* Copied before the remount below: a read-only tmpfs is made read-only
         * only once it holds the copy (the planner left MS_RDONLY to it). */
        int upper = open_in_root(c->rootfd, m->target, O_RDONLY | O_DIRECTORY);
        if (upper < 0)
            fail(c, OCIRUN_STEP_MOUNT_REOPEN, -upper, i);
        if (copy_dir_contents(lower, upper, 0) < 0)
            fail(c, OCIRUN_STEP_MOUNT_COPYUP, errno, i);
        struct stat st;
        if (m->copy_up == 2 && (fstat(lower, &st) < 0 || fchmod(upper, st.st_mode & 07777) < 0))
            fail(c, OCIRUN_STEP_MOUNT_COPYUP, errno, i);
        close(upper);
        close(lower);
    }
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
            if (errno != EEXIST)
                fail(c, OCIRUN_STEP_DEVICE_MKNOD, errno, i);
            if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                fail(c, OCIRUN_STEP_DEVICE_MKNOD, errno, i);
            if (d->must_match) {
                /* config-linux.md: a file already at path that does not match the
                 * requested device is an error (runc keeps whatever is there). */
                if ((st.st_mode & S_IFMT) != (d->mode & S_IFMT) ||
                    (!S_ISFIFO(st.st_mode) && st.st_rdev != dev))
                    fail(c, OCIRUN_STEP_DEVICE_EXISTS, EEXIST, i);
                /* The same device: it gets the requested mode (then owner, below).
                 * lstat said it is no symlink, so fchmodat follows nothing. */
                if (fchmodat(dir, name, d->mode & 07777, 0) < 0)
                    fail(c, OCIRUN_STEP_DEVICE_MKNOD, errno, i);
            } else {
                /* A default device: we supply it, whatever the rootfs left there
                 * (a regular file, say), unless it is a directory. */
                if (S_ISDIR(st.st_mode))
                    fail(c, OCIRUN_STEP_DEVICE_MKNOD, EEXIST, i);
                if (unlinkat(dir, name, 0) < 0 || mknodat(dir, name, d->mode, dev) < 0)
                    fail(c, OCIRUN_STEP_DEVICE_MKNOD, errno, i);
            }
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

/* stdio on a /dev/null (char 1:3) becomes the container's /dev/null, if that
 * is the null device: never dup anything else onto the process's stdio. */
static void reopen_dev_null(struct ctx *c)
{
    struct stat ns, st;
    /* Looked at (O_PATH) before it is opened: opening a device can do things. */
    int null = open_in_root(c->rootfd, "/dev/null", O_PATH | O_NOFOLLOW);
    if (null < 0)
        return; /* no /dev/null in the container: nothing to point stdio at */
    int is_null = fstat(null, &ns) == 0 && S_ISCHR(ns.st_mode) && ns.st_rdev == makedev(1, 3);
    close(null);
    if (!is_null)
        return;
    /* Nothing of the container runs yet: the node checked is the node opened. */
    null = open_in_root(c->rootfd, "/dev/null", O_RDWR | O_NOFOLLOW);
    if (null < 0)
        fail(c, OCIRUN_STEP_REOPEN_DEVNULL, -null, -1);
    for (int fd = 0; fd < 3; fd++) {
        if (fstat(fd, &st) < 0 || !S_ISCHR(st.st_mode) || st.st_rdev != ns.st_rdev)
            continue; /* closed, or not a null device */
        if (dup3(null, fd, 0) < 0)
            fail(c, OCIRUN_STEP_REOPEN_DEVNULL, errno, fd);
    }
    close(null);
}

static void set_rootfs_propagation(struct ctx *c)
{
    if (c->plan->rootfs_propagation &&
        mount(NULL, "/", NULL, c->plan->rootfs_propagation, NULL) < 0)
        fail(c, OCIRUN_STEP_ROOTFS_PROPAGATION, errno, -1);
}

/* The remaining mounts are made on fds, named through our own procfs (src/selffd.c):
 * a /proc the config mounted cannot redirect them. */
static void make_readonly_paths(struct ctx *c)
{
    for (int i = 0; i < c->plan->n_readonly_paths; i++) {
        const char *path = c->plan->readonly_paths[i];
        int fd = open_in_root(c->rootfd, path, O_PATH);
        if (fd == -ENOENT)
            continue;
        if (fd < 0)
            fail(c, OCIRUN_STEP_READONLY_PATH, -fd, i);
        if (mount_fd(c, NULL, fd, fd, NULL, MS_BIND | MS_REC, NULL) < 0)
            fail(c, OCIRUN_STEP_READONLY_PATH, errno, i);
        close(fd);
        fd = open_in_root(c->rootfd, path, O_PATH); /* now the bind mount itself */
        if (fd < 0)
            fail(c, OCIRUN_STEP_READONLY_PATH, -fd, i);
        /* Keep nosuid/nodev/noexec/atime as they are (locked in a user namespace). */
        if (mount_fd(c, NULL, -1, fd, NULL, MS_BIND | MS_REMOUNT | MS_RDONLY | MS_REC | locked_flags(fd),
                     NULL) < 0)
            fail(c, OCIRUN_STEP_READONLY_PATH, errno, i);
        close(fd);
    }
}

static void make_masked_paths(struct ctx *c)
{
    int devnull = -1;
    for (int i = 0; i < c->plan->n_masked_paths; i++) {
        struct stat st;
        int fd = open_in_root(c->rootfd, c->plan->masked_paths[i], O_PATH);
        if (fd == -ENOENT)
            continue;
        if (fd < 0 || fstat(fd, &st) < 0)
            fail(c, OCIRUN_STEP_MASKED_PATH, fd < 0 ? -fd : errno, i);
        if (S_ISDIR(st.st_mode)) {
            if (mount_fd(c, "tmpfs", -1, fd, "tmpfs", MS_RDONLY, NULL) < 0)
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
            }
            if (mount_fd(c, NULL, devnull, fd, NULL, MS_BIND, NULL) < 0)
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

/* tmpcopyup (runc's mount extension; podman sends it with --tmpfs): a tmpfs
 * mounted over a directory starts with a copy of what that directory held.
 * Part of shim.c (unity build): runs in the init before pivot_root, so the
 * same rules hold: no malloc (getdents64 into a stack buffer, not opendir),
 * every name opened relative to a directory fd with O_NOFOLLOW, nothing
 * resolved by path. */

struct oci_dirent64 {
    uint64_t d_ino;
    int64_t d_off;
    unsigned short d_reclen;
    unsigned char d_type;
    char d_name[];
};

/* Deeper trees are refused (ELOOP) rather than risking the stack: each level
 * holds a dirent buffer and a link buffer. */
#define COPYUP_MAX_DEPTH 64

static int copy_dir_contents(int from, int to, int depth);

static int copy_file_data(int from, int to)
{
    for (;;) {
        ssize_t n = sendfile(to, from, NULL, 1 << 30);
        if (n == 0)
            return 0;
        if (n < 0 && errno != EINTR)
            return -1;
    }
}

/* name in `from` (O_RDONLY | from_flags) and in `to` (to_flags, mode), both
 * without following a symlink: fds[0], fds[1]. -1 + errno, nothing left open. */
static int open_both(int from, int to, const char *name, int from_flags, int to_flags, mode_t mode, int fds[2])
{
    fds[0] = openat(from, name, O_RDONLY | from_flags | O_NOFOLLOW | O_CLOEXEC);
    if (fds[0] < 0)
        return -1;
    fds[1] = openat(to, name, to_flags | O_NOFOLLOW | O_CLOEXEC, mode);
    if (fds[1] < 0) {
        int e = errno;
        close(fds[0]);
        errno = e;
        return -1;
    }
    return 0;
}

/* Close both and pass r through, errno kept. */
static int close_both(int fds[2], int r)
{
    int e = errno;
    close(fds[0]);
    close(fds[1]);
    errno = e;
    return r;
}

/* One entry of directory `from` to `to` under the same name, then its owner,
 * mode and times (after the contents: adding entries changes a directory's
 * mtime, and chown clears set-id bits, so chmod comes after chown). */
static int copy_entry(int from, int to, const char *name, int depth)
{
    struct stat st;
    char link[PATH_MAX];
    int fds[2];
    if (fstatat(from, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return -1;
    switch (st.st_mode & S_IFMT) {
    case S_IFDIR:
        if (mkdirat(to, name, 0700) < 0 || open_both(from, to, name, O_DIRECTORY, O_RDONLY | O_DIRECTORY, 0, fds) < 0)
            return -1;
        if (close_both(fds, copy_dir_contents(fds[0], fds[1], depth + 1)) < 0)
            return -1;
        break;
    case S_IFREG:
        if (open_both(from, to, name, 0, O_WRONLY | O_CREAT | O_EXCL, 0600, fds) < 0)
            return -1;
        if (close_both(fds, copy_file_data(fds[0], fds[1])) < 0)
            return -1;
        break;
    case S_IFLNK: {
        ssize_t n = readlinkat(from, name, link, sizeof link - 1);
        if (n < 0)
            return -1;
        link[n] = '\0';
        if (symlinkat(link, to, name) < 0)
            return -1;
        break;
    }
    case S_IFCHR:
    case S_IFBLK:
    case S_IFIFO:
        if (mknodat(to, name, st.st_mode, st.st_rdev) < 0)
            return -1;
        break;
    default:
        return 0; /* a socket: nothing to copy (runc skips it too) */
    }
    if (fchownat(to, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0)
        return -1;
    /* We made the entry ourselves just now, so it is no symlink here. */
    if (!S_ISLNK(st.st_mode) && fchmodat(to, name, st.st_mode & 07777, 0) < 0)
        return -1;
    struct timespec times[2] = {st.st_atim, st.st_mtim};
    if (utimensat(to, name, times, AT_SYMLINK_NOFOLLOW) < 0)
        return -1;
    return 0;
}

/* Copy everything in directory fd `from` into directory fd `to`. -1 + errno. */
static int copy_dir_contents(int from, int to, int depth)
{
    char buf[4096] __attribute__((aligned(8)));
    if (depth > COPYUP_MAX_DEPTH) {
        errno = ELOOP;
        return -1;
    }
    if (lseek(from, 0, SEEK_SET) < 0)
        return -1;
    for (;;) {
        long n = syscall(SYS_getdents64, from, buf, sizeof buf);
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        for (long off = 0; off < n;) {
            struct oci_dirent64 *d = (struct oci_dirent64 *)(buf + off);
            off += d->d_reclen;
            if (strcmp(d->d_name, ".") == 0 || strcmp(d->d_name, "..") == 0)
                continue;
            if (copy_entry(from, to, d->d_name, depth) < 0)
                return -1;
        }
    }
}

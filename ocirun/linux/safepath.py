"""Resolve a path inside a root directory without ever leaving it.

Python has no openat2(RESOLVE_IN_ROOT), so this walks the path one component
at a time with O_NOFOLLOW, expands symlinks itself relative to the root and
clamps ``..`` at the root: a symlink in the container's rootfs can never lead
the runtime to a host file. Used by the parent for the few files it reads in
the rootfs (/etc/passwd for HOME); the C child uses openat2 itself.
"""

from __future__ import annotations

import errno
import os

_MAX_SYMLINKS = 40


def open_in_root(root: str, path: str, flags: int = os.O_RDONLY) -> int:
    """Open ``path`` (absolute or relative, as seen from inside ``root``); return an fd.

    Raises OSError (ENOENT, ELOOP, ...) like open(2) would inside a chroot.
    """
    root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        return _walk(root_fd, path, flags)
    finally:
        os.close(root_fd)


def _walk(root_fd: int, path: str, flags: int) -> int:
    pending = [c for c in path.split("/") if c not in ("", ".")]
    stack: list[int] = [os.dup(root_fd)]  # fds of the directories walked so far
    links = 0
    try:
        while pending:
            name = pending.pop(0)
            if name == "..":
                if len(stack) > 1:
                    os.close(stack.pop())
                continue
            last = not pending
            fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
            st = os.fstat(fd)
            if _is_symlink(st.st_mode):
                os.close(fd)
                links += 1
                if links > _MAX_SYMLINKS:
                    raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
                target = os.readlink(name, dir_fd=stack[-1])
                if target.startswith("/"):
                    while len(stack) > 1:
                        os.close(stack.pop())
                pending[:0] = [c for c in target.split("/") if c not in ("", ".")]
                continue
            if last:
                os.close(fd)
                return os.open(name, flags | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=stack[-1])
            if not _is_dir(st.st_mode):
                os.close(fd)
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
            stack.append(fd)
        return os.open(".", flags | os.O_CLOEXEC, dir_fd=stack[-1])
    finally:
        for fd in stack:
            os.close(fd)


def _is_symlink(mode: int) -> bool:
    return (mode & 0o170000) == 0o120000


def _is_dir(mode: int) -> bool:
    return (mode & 0o170000) == 0o040000


def read_in_root(root: str, path: str, limit: int = 1 << 20) -> bytes:
    fd = open_in_root(root, path)
    try:
        chunks = []
        size = 0
        while size < limit:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def resolve_in_root(root: str, path: str) -> str:
    """``path`` as seen from inside ``root`` with every symlink followed (inside
    ``root``: ``..`` and absolute links are clamped there), as an absolute path
    relative to ``root``; the part from the first missing component on is kept
    as written, cleaned (filepath-securejoin's SecureJoin, without the root)."""
    pending = [c for c in path.split("/") if c not in ("", ".")]
    done: list[str] = []
    links = 0
    while pending:
        name = pending.pop(0)
        if name == "..":
            if done:
                done.pop()
            continue
        here = os.path.join(root, *done, name)
        try:
            st = os.lstat(here)
        except (FileNotFoundError, NotADirectoryError):
            done.append(name)
            continue
        if _is_symlink(st.st_mode):
            links += 1
            if links > _MAX_SYMLINKS:
                raise OSError(errno.ELOOP, os.strerror(errno.ELOOP), path)
            target = os.readlink(here)
            if target.startswith("/"):
                done = []
            pending[:0] = [c for c in target.split("/") if c not in ("", ".")]
            continue
        done.append(name)
    return "/" + "/".join(done)

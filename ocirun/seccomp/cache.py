"""A content-addressed cache of compiled filters (crun does the same).

key = sha256(canonical seccomp section + libseccomp version + kernel release
and arch) (``compile.cache_key``); value = the BPF bytes. A hit skips
libseccomp's compile entirely (see docs/seccomp.md for the numbers).

A cached filter is trusted as if ocirun had just compiled it, so the cache is
only used when it is safe: the directory must be a real directory (no
symlink), owned by the effective uid and not writable by group or others;
entries are read with O_NOFOLLOW and carry the sha256 of their BPF, so a torn
or foreign file is a miss, never a wrong filter. Writes are atomic (temp file
+ rename). Every failure is a miss: the cache is an optimisation only.

The default directory is a sibling of the state root, not inside it: any name
inside ``/run/ocirun`` (even ``.seccomp-cache``) is a valid container id
and would show up in ``ocirun list``.
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False  # typing is for annotations only: not imported by create (docs/performance.md)
if TYPE_CHECKING:
    from typing import Any


def _sha256_impl() -> Any:
    """CPython's own sha256 (_sha256 in 3.11, _sha2 in 3.12+), not hashlib's:
    importing hashlib loads OpenSSL, ~3 ms of every `create`."""
    for name in ("_sha256", "_sha2"):
        try:
            return __import__(name).sha256
        except (ImportError, AttributeError):
            pass
    import hashlib

    return hashlib.sha256


sha256 = _sha256_impl()

DEFAULT_CACHE_DIR = "/run/ocirun-seccomp-cache"
_MAGIC = b"ocirun-bpf1\n"
_DIGEST = 32
_MAX_BPF = 8 * 65536  # far above BPF_MAXINSNS (4096); anything bigger is not ours


class FilterCache:
    def __init__(self, directory: str = DEFAULT_CACHE_DIR, max_entries: int = 256) -> None:
        self.directory = directory
        self.max_entries = max_entries

    def _open_dir(self, create: bool) -> int | None:
        flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
        try:
            fd = os.open(self.directory, flags)
        except FileNotFoundError:
            if not create:
                return None
            try:
                os.mkdir(self.directory, 0o700)
                fd = os.open(self.directory, flags)
            except OSError:
                return None
        except OSError:
            return None
        st = os.fstat(fd)
        if st.st_uid != os.geteuid() or st.st_mode & 0o077:
            os.close(fd)
            return None
        return fd

    def get(self, key: str) -> bytes | None:
        dfd = self._open_dir(create=False)
        if dfd is None:
            return None
        try:
            fd = os.open(f"{key}.bpf", os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dfd)
        except OSError:
            return None
        finally:
            os.close(dfd)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_size > _MAX_BPF:
                return None
            data = os.read(fd, st.st_size + 1)
        except OSError:
            return None
        finally:
            os.close(fd)
        head = len(_MAGIC) + _DIGEST
        if not data.startswith(_MAGIC) or len(data) <= head:
            return None
        digest, bpf = data[len(_MAGIC):head], data[head:]
        if len(bpf) % 8 or sha256(bpf).digest() != digest:
            return None
        return bpf

    def put(self, key: str, bpf: bytes) -> None:
        from ocirun.util.dryrun import current

        rec = current()
        if rec is not None and rec.dry_run:
            return  # ocirun explain creates nothing, not even a cache entry
        dfd = self._open_dir(create=True)
        if dfd is None:
            return
        import _thread

        # the thread too: the library may compile the same filter in two threads at once
        tmp = f".tmp-{key}-{os.getpid()}-{_thread.get_ident()}"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                         0o600, dir_fd=dfd)
            try:
                os.write(fd, _MAGIC + sha256(bpf).digest() + bpf)
            finally:
                os.close(fd)
            os.rename(tmp, f"{key}.bpf", src_dir_fd=dfd, dst_dir_fd=dfd)
            self._prune(dfd)
        except OSError:
            try:
                os.unlink(tmp, dir_fd=dfd)
            except OSError:
                pass
        finally:
            os.close(dfd)

    def _prune(self, dfd: int) -> None:
        """Keep at most max_entries filters: drop the least recently written."""
        names = [n for n in os.listdir(dfd) if n.endswith(".bpf")]
        if len(names) <= self.max_entries:
            return
        aged = []
        for n in names:
            try:
                aged.append((os.stat(n, dir_fd=dfd, follow_symlinks=False).st_mtime_ns, n))
            except OSError:
                pass
        aged.sort()
        for _, n in aged[: len(aged) - self.max_entries]:
            try:
                os.unlink(n, dir_fd=dfd)
            except OSError:
                pass

    def clear(self) -> None:
        dfd = self._open_dir(create=False)
        if dfd is None:
            return
        try:
            for n in os.listdir(dfd):
                if n.endswith(".bpf") or n.startswith(".tmp-"):
                    try:
                        os.unlink(n, dir_fd=dfd)
                    except OSError:
                        pass
        finally:
            os.close(dfd)

"""Write a new user namespace's id maps, as root or rootless (the parent's side of NS_READY).

The host's root writes /proc/PID/uid_map and gid_map itself. A rootless
runtime (effective uid not 0) may write only a single mapping of its own uid
and gid, and the gid map only once setgroups(2) is denied in that namespace
(user_namespaces(7)); anything else (the ranges podman sends, from
/etc/subuid and /etc/subgid) goes through the setuid helpers newuidmap and
newgidmap (Debian's uidmap package), which check the ranges against those
files. As runc: write directly first, and on EPERM use the helper.

Stage-1 is dumpable while this runs (shim: rootless_euid), so that its /proc
files belong to the user: the parent may open them, and newuidmap, which
refuses a process its caller does not own, accepts it.
"""

from __future__ import annotations

import errno
import os

from ocirun.errors import SetupError

#: Where newuidmap/newgidmap are looked for after $PATH (conmon may give the
#: runtime a short PATH; `env -i` none at all).
_FALLBACK_DIRS = ("/usr/bin", "/usr/sbin", "/bin", "/sbin", "/usr/local/bin")


def write_id_maps(pid: int, uid_map: bytes | None, gid_map: bytes | None, *,
                  rootless_euid: bool = False, setgroups_deny: bool = False) -> None:
    """uid_map, then (setgroups "deny" first if asked) gid_map of process ``pid``.
    ``rootless_euid``: on EPERM, use newuidmap/newgidmap. Raises SetupError."""
    if uid_map is not None:
        _write_map(pid, "uid", uid_map, rootless_euid)
    if gid_map is not None:
        if setgroups_deny:
            # user_namespaces(7): an unprivileged process may write gid_map only
            # once setgroups is denied in the namespace (else it could drop groups
            # that deny it access); the container then cannot call setgroups(2).
            write_proc(pid, "setgroups", b"deny")
        _write_map(pid, "gid", gid_map, rootless_euid)


def write_proc(pid: int, name: str, data: bytes) -> None:
    """All of ``data`` to /proc/PID/NAME in one write(2). Raises SetupError."""
    path = f"/proc/{pid}/{name}"
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
    except OSError as e:
        raise SetupError(f"write {path}", e.errno or 0) from None


def _write_map(pid: int, kind: str, data: bytes, rootless_euid: bool) -> None:
    try:
        write_proc(pid, f"{kind}_map", data)
        return
    except SetupError as err:
        if not (rootless_euid and err.errno == errno.EPERM):
            raise
    _run_helper(pid, kind, data)


def _run_helper(pid: int, kind: str, data: bytes) -> None:
    """newuidmap/newgidmap PID ID HOST-ID COUNT ..."""
    tool = f"new{kind}map"
    what = f"the {kind} mappings of the container's user namespace"
    lines = [ln.split() for ln in data.decode().splitlines() if ln.strip()]
    path = _find(tool)
    if path is None:
        raise SetupError(
            f"write {what}", errno.EPERM,
            f"{tool} is needed and was not found (install Debian's uidmap package): without it a "
            f"rootless container can map only your own {kind} (a single mapping of size 1, as "
            f"`ocirun spec --rootless` writes), and these mappings are {_show(lines)}")
    argv = [path, str(pid), *(field for line in lines for field in line)]
    import subprocess  # only here: rootless with several ranges

    try:
        done = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, timeout=30, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        raise SetupError(f"write {what}", detail=f"{tool} did not run: {exc}") from None
    if done.returncode != 0:
        said = done.stdout.decode(errors="replace").strip().splitlines()
        detail = said[-1] if said else f"exit status {done.returncode}"
        user = _user_name()
        raise SetupError(
            f"write {what} with {tool}", detail=(
                f"{detail} (the mappings {_show(lines)} must lie within your own {kind} or the "
                f"ranges /etc/sub{kind} gives {user})"))


def _show(lines: list[list[str]]) -> str:
    """"0:1001:1, 1:100000:65536" (container id:host id:count, as /etc/subuid writes ranges)."""
    return ", ".join(":".join(line) for line in lines) or "empty"


def _user_name() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return f"uid {os.getuid()}"


def _find(tool: str) -> str | None:
    dirs = [d for d in os.environ.get("PATH", "").split(os.pathsep) if d]
    for d in (*dirs, *_FALLBACK_DIRS):
        path = os.path.join(d, tool)
        if os.access(path, os.X_OK):
            return path
    return None


__all__ = ["write_id_maps", "write_proc"]

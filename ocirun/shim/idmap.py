"""Id-mapped mounts on the parent's side (the C half is ocirun/shim/src/idmap.c).

``make_trees`` turns every ``MountStep`` with an ``idmap`` into a detached,
id-mapped mount (an open_tree fd) before the container's first child is
cloned; the init attaches each one with move_mount in config order. Why the
parent: mount_setattr(MOUNT_ATTR_IDMAP) needs CAP_SYS_ADMIN over the source's
filesystem (the host's user namespace) and over the user namespace holding the
mapping, which a container's init in its own user namespace does not have.

Each distinct mapping gets one user namespace, made by ``ocirun_idmap_userns``
(a short-lived child in a new user namespace whose uid_map/gid_map the C side
writes; reaped before it returns); a joined container user namespace is opened
by path. The user namespace fds are closed as soon as the trees exist (a mount
keeps its mapping); the tree fds are CLOEXEC, at or above ``floor`` (never in
the preserved range) and closed by the caller once the child has its copies.
"""

from __future__ import annotations

import errno as _errno
import os

from ocirun.errors import SetupError
from ocirun.plan.model import LaunchPlan, MountStep
from ocirun.plan.mount_options import MS_REC


def make_trees(plan: LaunchPlan, floor: int) -> list[int]:
    """One fd per ``plan.mounts`` entry: its detached tree (id-mapped, or a plain
    bind the parent opens: ``MountStep.open_by_parent``), or -1.

    Raises SetupError naming the mount (its JSON path) and the failed step;
    then nothing is left open and no process is left behind."""
    from ocirun.shim import load

    ffi, lib = load()
    trees = [-1] * len(plan.mounts)
    userns: dict[tuple[bytes | None, bytes | None, bytes | None], int] = {}
    try:
        _bind_trees(plan, floor, trees)
        for i, m in enumerate(plan.mounts):
            idmap = m.idmap
            if idmap is None:
                continue
            key = (idmap.uid_map, idmap.gid_map, idmap.userns_path)
            if key not in userns:
                userns[key] = _userns_fd(m)
            res = ffi.new("struct ocirun_spawn_result *")
            fd = lib.ocirun_idmap_tree(m.source or b"", int(bool(m.flags & MS_REC)), int(idmap.recursive),
                                       userns[key], floor, res)
            if fd < 0:
                raise _error(m, res.step, res.err)
            trees[i] = fd
    except BaseException:
        for fd in trees:
            if fd >= 0:
                os.close(fd)
        raise
    finally:
        for fd in userns.values():
            os.close(fd)
    return trees


def _bind_trees(plan: LaunchPlan, floor: int, trees: list[int]) -> None:
    """The plain binds of a container with a user namespace, opened in one
    helper (ocirun_bind_trees: the runtime's privileges, the host's mount locks)."""
    from ocirun.shim import load

    wanted = [i for i, m in enumerate(plan.mounts) if m.open_by_parent and m.idmap is None]
    if not wanted:
        return
    ffi, lib = load()
    keep = [ffi.new("char[]", plan.mounts[i].source or b"") for i in wanted]
    sources = ffi.new("const char *[]", keep)
    recursive = ffi.new("int[]", [int(bool(plan.mounts[i].flags & MS_REC)) for i in wanted])
    out = ffi.new("int[]", len(wanted))
    res = ffi.new("struct ocirun_spawn_result *")
    if lib.ocirun_bind_trees(sources, recursive, len(wanted), floor, out, res) < 0:
        m = plan.mounts[wanted[res.pid]] if 0 <= res.pid < len(wanted) else None
        raise _bind_error(m, res.step, res.err)
    for k, i in enumerate(wanted):
        trees[i] = out[k]


def _bind_error(m: MountStep | None, step: int, err: int) -> SetupError:
    """The message a failed mount(2) of that bind in the init gave (it is the same
    mount), or the helper's step."""
    from ocirun.shim import STEPS, _c_step_names

    name = _c_step_names().get(step, "NONE")
    if m is not None and name == "BIND_TREE_OPEN":
        return SetupError(_dec(m.describe) or f"bind mount {_dec(m.source)} to {_dec(m.target)}", err)
    what = f"{_dec(m.describe)}: " if m is not None else "bind mounts: "
    return SetupError(what + STEPS.get(name, name), err)


def _userns_fd(m: MountStep) -> int:
    from ocirun.shim import load

    ffi, lib = load()
    idmap = m.idmap
    assert idmap is not None
    if idmap.userns_path is not None:
        try:
            return os.open(idmap.userns_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as e:
            raise SetupError(f"{_where(m)}: open user namespace {_dec(idmap.userns_path)}", e.errno or 0) from None
    res = ffi.new("struct ocirun_spawn_result *")
    fd = lib.ocirun_idmap_userns(idmap.uid_map or b"", idmap.gid_map or b"", res)
    if fd < 0:
        raise _error(m, res.step, res.err)
    return fd


def _error(m: MountStep, step: int, err: int) -> SetupError:
    from ocirun.shim import STEPS, _c_step_names

    name = _c_step_names().get(step, "NONE")
    text = f"{_where(m)}: {STEPS.get(name, name)}"
    detail = None
    source = _dec(m.source)
    recursive = m.idmap is not None and m.idmap.recursive
    if name in ("IDMAP_UID_MAP", "IDMAP_GID_MAP") and err == _errno.EINVAL:
        which = "uid" if name == "IDMAP_UID_MAP" else "gid"
        detail = (f"invalid argument (the kernel refused the {which} mappings: overlapping ranges, "
                  "ids out of range, or more than 340 lines)")
    elif name == "IDMAP_SETATTR" and err == _errno.EINVAL:
        where = f"{source} (or a mount below it: ridmap)" if recursive else source
        detail = f"invalid argument (the filesystem of {where} does not support id-mapped mounts on this kernel)"
    elif name == "IDMAP_OPEN_TREE" and err == _errno.ENOENT:
        detail = f"{source}: no such file or directory"
    return SetupError(text, err, detail)


def _where(m: MountStep) -> str:
    """"$.mounts[3]: bind mount /src to /dst"."""
    path = m.idmap.json_path if m.idmap is not None else "$.mounts"
    return f"{path}: {_dec(m.describe)}"


def _dec(b: bytes | None) -> str:
    return b.decode(errors="surrogateescape") if b is not None else ""

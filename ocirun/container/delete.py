"""`ocirun delete`: remove a stopped container (--force: kill it first).

``delete --force`` of a container whose create did not finish (killed: a
directory with creating.json and no state.json) removes what that create left:
every process still in the cgroup directories it recorded before making them
(its stage-1 and init die with it, see ocirun.shim; this catches the rest),
then those directories. Mounts go with the processes (they live in the
container's mount namespace), and so do the network namespace and the
devices moved into it, as when any container is deleted. Without --force, and
for ``state`` and the other verbs, such a container is an error that says so
(ocirun.errors.ContainerIncomplete)."""

from __future__ import annotations

import os
import select
import time
from _signal import SIGKILL  # not `signal`: its enums cost every call ~6 ms to import

from ocirun.cli import GlobalOptions
from ocirun.container.common import cgroup_of, open_store, status_of
from ocirun.errors import ContainerNotFound, InvalidStateError
from ocirun.testhooks import reached

TYPE_CHECKING = False  # argparse is only for annotations (importing it costs a call ~5 ms)
if TYPE_CHECKING:
    import argparse


def cmd_delete(g: GlobalOptions, args: argparse.Namespace) -> int:
    try:
        delete_container(g, args.id, force=args.force)
    except ContainerNotFound:
        if args.force:
            # containerd and podman call `delete --force` for ids that may never have been created
            return 0
        raise
    return 0


def delete_container(g: GlobalOptions, container_id: str, *, force: bool = False) -> None:
    from ocirun.store import validate_id

    validate_id(container_id)
    store = open_store(g)
    if force and not store.has_state(container_id):
        # a create that died half way: undo what it recorded; if a create was still
        # running and has now finished, fall through and delete that container
        if store.remove_incomplete(container_id, undo=undo_partial_create) or not store.has_state(container_id):
            raise ContainerNotFound(container_id)
    with store.lock(container_id):
        reached("delete:locked")
        record = store.load(container_id)
        status = status_of(store, record)
        if status != "stopped":
            if not force:
                raise InvalidStateError(
                    f"cannot delete container {container_id} that is not stopped: {status}"
                )
            kill_and_wait(record)
            reached("delete:killed")
        cg = cgroup_of(record)
        if cg is not None:
            cg.destroy()
            reached("delete:cgroup-destroyed")
        store.remove(container_id)
        reached("delete:removed")
    poststop = (record.runtime or {}).get("hooks", {}).get("poststop")
    if poststop:
        # runtime.md: after the container is deleted, before delete returns; failures warn
        from ocirun.container.start import hook_state
        from ocirun.hooks import run_poststop

        run_poststop(poststop, hook_state(record))


def undo_partial_create(intent: dict | None) -> None:
    """What an interrupted create left, from its creating.json: the processes in the
    cgroup it was making (killed; v1: every hierarchy), then the directories it
    was about to make. A directory that create found already there is left alone;
    a parent directory another container uses meanwhile too (only the container's
    own leaf must go)."""
    rec = (intent or {}).get("cgroup")
    if not isinstance(rec, dict):
        return
    from ocirun.cgroups import base, manager_from_record

    cg = manager_from_record(rec)
    planned = list(cg.created)
    cg.created = []
    cg.destroy()  # kills what is left in it (thawing a frozen one), removes nothing
    if rec.get("version") == 0:
        return  # no cgroup of its own (rootless): nothing was made
    leaves = set(rec["paths"].values()) if rec.get("version") == 1 else {rec.get("path")}
    for d in reversed(planned):  # innermost first
        if d in leaves:
            base.remove_dirs([d])  # with any child cgroup the container made
            continue
        try:
            os.rmdir(d)  # a parent made for it: only if nobody else uses it now
        except OSError:
            pass


def kill_and_wait(record, timeout: float = 10.0) -> None:
    """SIGKILL the init (and everything in its cgroup) and wait until it has exited."""
    from ocirun.linux.proc import open_pidfd, read_stat, send_signal

    cg = cgroup_of(record)
    if cg is not None and cg.version != 0:
        from ocirun.container.kill import signal_all

        signal_all(cg, SIGKILL)
    elif cg is not None:  # no cgroup of its own (rootless): its pid namespace
        from ocirun.cgroups.base import kill_pids
        from ocirun.container.common import container_pids

        kill_pids(container_pids(record, cg), SIGKILL)
    pidfd = open_pidfd(record.pid, record.init_start_time)
    if pidfd is None:
        return
    try:
        try:
            send_signal(pidfd, SIGKILL)
        except ProcessLookupError:
            return
        # Its pidfd is readable once it is a zombie. The init of a pid namespace
        # becomes one only after the namespace's other processes are reaped, by
        # their parents: an exec'd process's is our caller (or its subreaper), which
        # may be waiting for us. Inside its exit is gone enough: it runs nothing again.
        deadline = time.monotonic() + timeout
        while not select.select([pidfd], [], [], 0.01)[0] and time.monotonic() < deadline:
            st = read_stat(record.pid)
            if st is None or st.exiting or (record.init_start_time is not None
                                            and st.start_time != record.init_start_time):
                break
    finally:
        os.close(pidfd)

"""Container status: its values, how it is derived, and which operations it allows.

The status is never stored (the record's ``status_hint`` is only a hint): it
is derived each time from facts about the host, as crun and runc do:

=====================================================  ==========
fact (checked in this order)                           status
=====================================================  ==========
no pid, and the writer said ``creating``                creating
no pid; no such process; a zombie; another start time   stopped
the container's cgroup is frozen                        paused
the exec fifo exists (the init waits for ``start``)    created
otherwise                                               running
=====================================================  ==========

``paused`` is checked before ``created`` as runc does: a created container
can be paused, and must then be reported paused so that ``resume`` works.

:func:`derive_status` is the pure rule; :func:`current_status` gathers the
facts. :func:`require` checks an operation against the status (runtime.md's
lifecycle, with runc's extensions and runc's messages).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from ocirun.store import ContainerRecord, Store

CREATING = "creating"
CREATED = "created"
RUNNING = "running"
PAUSED = "paused"
STOPPED = "stopped"

#: Every status, in lifecycle order. ``paused`` is runc's addition to the spec's four.
STATUSES = (CREATING, CREATED, RUNNING, PAUSED, STOPPED)

#: operation -> the statuses in which it is allowed.
#: runtime.md: start needs created; kill needs created or running; delete needs stopped.
#: runc's extensions, kept for drop-in compatibility: kill also works on a paused
#: container; pause works on created or running ones; exec on created or running
#: ones (and on paused ones only with --ignore-paused).
ALLOWED: dict[str, frozenset[str]] = {
    "start": frozenset({CREATED}),
    "kill": frozenset({CREATED, RUNNING, PAUSED}),
    "delete": frozenset({STOPPED}),
    "pause": frozenset({CREATED, RUNNING}),
    "resume": frozenset({PAUSED}),
    "exec": frozenset({CREATED, RUNNING}),
    "exec-ignore-paused": frozenset({CREATED, RUNNING, PAUSED}),
}


def derive_status(
    record: ContainerRecord,
    *,
    proc_start_time: int | None,
    fifo_exists: bool,
    frozen: bool,
    zombie: bool = False,
) -> str:
    """The status of ``record``'s container from facts gathered by the caller.

    ``proc_start_time``: field 22 of /proc/PID/stat for ``record.pid`` now, or
    None if there is no such process. A value other than the recorded
    ``init_start_time`` means the pid was recycled: the init is gone.
    ``zombie``: the process has exited and waits to be reaped.
    """
    if record.pid <= 0:
        return CREATING if record.status_hint == CREATING else STOPPED
    if proc_start_time is None or proc_start_time != record.init_start_time or zombie:
        return STOPPED
    if frozen:
        return PAUSED
    if fifo_exists:
        return CREATED
    return RUNNING


def _never_frozen(record: ContainerRecord) -> bool:
    return False


def current_status(
    store: Store,
    record: ContainerRecord,
    *,
    is_frozen: Callable[[ContainerRecord], bool] | None = None,
) -> str:
    """The container's status now: reads /proc, the exec fifo and (through
    ``is_frozen``, by default "never") the freezer, as far as needed."""
    from ocirun.linux.proc import read_stat

    st = read_stat(record.pid)
    start, zombie = (None, False) if st is None else (st.start_time, st.exited)
    status = derive_status(record, proc_start_time=start, fifo_exists=False, frozen=False,
                           zombie=zombie)
    if status != RUNNING:
        return status  # no live init: the freezer and the fifo cannot change that; skip them
    frozen = (is_frozen or _never_frozen)(record)
    fifo_exists = os.path.lexists(store.exec_fifo_path(record.id))
    return derive_status(record, proc_start_time=start, fifo_exists=fifo_exists, frozen=frozen,
                         zombie=zombie)


def allowed(status: str, operation: str) -> bool:
    """True if ``operation`` (a key of ALLOWED) may be applied in ``status``."""
    return status in ALLOWED[operation]


def require(status: str, operation: str, container_id: str = "") -> None:
    """Raise InvalidStateError (runc's wording) unless ``operation`` is allowed in ``status``.

    The messages callers match on: kill of a stopped container contains
    "container not running" (containerd looks for it); delete of a live one is
    "cannot delete container ID that is not stopped: STATUS".
    """
    if operation not in ALLOWED:
        raise ValueError(f"unknown operation: {operation}")
    if status in ALLOWED[operation]:
        return
    from ocirun.errors import InvalidStateError

    raise InvalidStateError(_refusal(status, operation, container_id))


def _refusal(status: str, operation: str, container_id: str) -> str:
    if operation == "start":
        if status == STOPPED:
            return "cannot start a container that has stopped"
        if status == RUNNING:
            return "cannot start an already running container"
        return f"cannot start a container in the {status} state"
    if operation == "delete":
        return f"cannot delete container {container_id} that is not stopped: {status}"
    if operation == "resume":
        return "container not paused"
    if operation.startswith("exec"):
        if status == PAUSED:
            return "cannot exec in a paused container (use --ignore-paused to override)"
        return f"cannot exec in a {status} container"
    # kill, pause
    return "container not running"

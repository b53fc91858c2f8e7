"""Fault injection for the robustness tests (tests/robustness); unset in real use.

``OCIRUN_TEST_KILL_AT=POINT`` makes the runtime SIGKILL itself when it reaches
POINT, as an OOM kill or a client's timeout would; ``OCIRUN_TEST_STOP_AT=POINT``
makes it SIGSTOP itself there, so that a test can act in the window that
follows and then SIGCONT (or SIGKILL) it. POINT is ``<verb>:<step>``:

============  ==================================================================
verb          steps, in the order they are reached
============  ==================================================================
create, run   ``claimed`` (state dir made and locked), ``intent`` (creating.json
              written), ``fifo``, ``cgroup`` (made), ``cgroup-applied``, ``clone``
              (stage-1 exists, not yet placed), ``placed``, then one per sync
              message received from the children (``NS_READY``, ``INIT_PID``,
              ``BEFORE_PIVOT``, ``SECCOMP_FD``, ``CONSOLE_FD``, ``READY``; see
              ocirun/shim/__init__.py), ``saved`` (state.json written, at READY),
              ``pid-file``, ``COMMIT`` (sent; the init not yet acknowledged)
restore       ``claimed``, ``intent``, ``cgroup``, ``cgroup-applied``, the shim's
              (``clone``, ``placed``, ``NS_READY``, ``INIT_PID``, ``READY``: the
              rootfs prepared, its init exits), ``criu-root`` (the rootfs bound
              for CRIU), ``restored`` (CRIU's post-restore), ``saved``, ``pid-file``
start         ``locked``, ``released`` (the init has read the exec fifo: it execs),
              ``saved``
exec          ``clone``, ``placed``, ``EXEC_PID`` (the process is in the container, waiting
              for EXEC_ACK), ``execed``
delete        ``locked``, ``killed``, ``cgroup-destroyed``, ``removed``
============  ==================================================================

The variables are read once, at import; unset (always, outside the tests) a
point costs one comparison with None.
"""

from __future__ import annotations

import os

_KILL_AT = os.environ.get("OCIRUN_TEST_KILL_AT") or None
_STOP_AT = os.environ.get("OCIRUN_TEST_STOP_AT") or None


def reached(point: str) -> None:
    """The runtime is at ``point``: die or stop here if a test asked for it."""
    if _KILL_AT is None and _STOP_AT is None:
        return
    if point == _KILL_AT:
        os.kill(os.getpid(), 9)  # SIGKILL
    if point == _STOP_AT:
        os.kill(os.getpid(), 19)  # SIGSTOP


__all__ = ["reached"]

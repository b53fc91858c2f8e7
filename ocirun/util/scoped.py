"""A value set for the current thread (context) only, as a ``with`` block.

The library (``ocirun.Runtime``) and ``ocirun explain`` run ocirun's code in a
caller's process, maybe in several threads at once; what they redirect (where
warnings go, whether cgroup writes happen) must not leak into another thread.
A :class:`ContextSlot` holds a ``contextvars.ContextVar`` made on first use:
the CLI never sets one, so it never imports contextvars (~0.2 ms a call).
"""

from __future__ import annotations

import _thread

TYPE_CHECKING = False  # typing costs every call ~3 ms to import
if TYPE_CHECKING:
    from typing import Any

_make_lock = _thread.allocate_lock()


class ContextSlot:
    """``get()`` is None until a ``with slot.set(value):`` block in this thread."""

    __slots__ = ("name", "_var")

    def __init__(self, name: str) -> None:
        self.name = name
        self._var: Any = None

    def get(self) -> Any:
        var = self._var
        return None if var is None else var.get()

    def set(self, value: Any) -> _Setting:
        return _Setting(self, value)

    def _ensure(self) -> Any:
        with _make_lock:  # two threads' first use must share one variable
            if self._var is None:
                from contextvars import ContextVar

                self._var = ContextVar(self.name, default=None)
        return self._var


class _Setting:
    __slots__ = ("slot", "value", "token")

    def __init__(self, slot: ContextSlot, value: Any) -> None:
        self.slot = slot
        self.value = value
        self.token: Any = None

    def __enter__(self) -> Any:
        self.token = self.slot._ensure().set(self.value)
        return self.value

    def __exit__(self, *exc: object) -> None:
        self.slot._ensure().reset(self.token)


#: Where ocirun.errors.warn sends a warning in this thread: a callable(message), or None (stderr).
WARNINGS = ContextSlot("ocirun_warnings")
#: The active ocirun.util.dryrun.Recording of this thread, or None (do it for real).
DRY_RUN = ContextSlot("ocirun_dry_run")

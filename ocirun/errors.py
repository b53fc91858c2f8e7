"""Typed errors. Each carries enough context (a JSON path, a setup step, a file)
for the CLI edge to turn it into exactly one user-facing message.

Nothing below the CLI prints; everything raises one of these.
"""

from __future__ import annotations

import errno as _errno
import os

TYPE_CHECKING = False  # collections.abc imports collections: ~1 ms a call
if TYPE_CHECKING:
    from collections.abc import Iterable


class OcirunError(Exception):
    """Base of every error ocirun reports to its user (exit status 1)."""

    exit_code = 1

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class Problem:
    """One violation in a config: where (a JSON path such as ``$.process.args``) and what.

    (Not a dataclass: every call imports this module, and dataclasses costs ~6 ms.)
    """

    __slots__ = ("path", "message")

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        self.message = message

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Problem) and (self.path, self.message) == (other.path, other.message)

    def __hash__(self) -> int:
        return hash((self.path, self.message))

    def __repr__(self) -> str:
        return f"Problem({self.path!r}, {self.message!r})"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ConfigError(OcirunError):
    """config.json is unreadable, malformed, or violates the schema or a spec MUST.

    Carries every problem found, so the user fixes them all in one go.
    """

    def __init__(self, source: str, problems: Iterable[Problem]) -> None:
        self.source = source
        self.problems = tuple(problems)
        if len(self.problems) == 1:
            text = f"{source}: {self.problems[0]}"
        else:
            text = f"{source}: {len(self.problems)} problems: " + "; ".join(
                str(p) for p in self.problems
            )
        super().__init__(text)


class BundleError(OcirunError):
    """The bundle directory itself is unusable (missing, no config.json, no rootfs)."""


class UsageError(OcirunError):
    """Bad command line: unknown flag, missing argument, bad value."""


class UnknownCommand(UsageError):
    """A subcommand runc does not have either: runc (urfave/cli) exits 3 with these words."""

    exit_code = 3

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"No help topic for '{name}'")


class OutputFileError(OcirunError):
    """A file named on the command line to be written (--pid-file, --log) cannot be."""

    def __init__(self, path: str, err: OSError) -> None:
        self.path = path
        super().__init__(f"open {path}: {os.strerror(err.errno or 0).lower()}")


class NotImplementedYet(OcirunError):
    """A runc subcommand or feature that ocirun does not implement (yet)."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what}: not implemented in ocirun")


class ContainerIdError(OcirunError):
    """An id that the state store refuses (bad characters, too long, '.' or '..')."""


class ContainerNotFound(OcirunError):
    def __init__(self, container_id: str) -> None:
        self.container_id = container_id
        super().__init__(f"container does not exist: {container_id}")


class ContainerIncomplete(ContainerNotFound):
    """A container directory without state.json: a create still in progress, one
    that was interrupted (killed) before it finished, or (no creating.json either)
    what an interrupted delete left."""

    def __init__(self, container_id: str, *, creating: bool, create_interrupted: bool = True,
                 verb: str = "create") -> None:
        self.container_id = container_id
        self.creating = creating
        if creating:
            text = f"container {container_id} is still being created (no state yet)"
        elif create_interrupted:
            text = (f"container {container_id} was not fully created (its {verb} was interrupted); "
                    f"`delete --force {container_id}` removes what it left")
        else:
            text = (f"container {container_id} is incomplete (an interrupted create or delete left "
                    f"it); `delete --force {container_id}` removes what it left")
        OcirunError.__init__(self, text)


class ContainerExists(OcirunError):
    def __init__(self, container_id: str) -> None:
        self.container_id = container_id
        super().__init__(f"container with id exists: {container_id}")


class InvalidStateError(OcirunError):
    """The operation is not allowed in the container's current status (runtime.md)."""


class StateStoreError(OcirunError):
    """The state directory is unreadable or corrupt."""


class CgroupError(OcirunError):
    """A cgroup operation failed; names the file or directory."""

    def __init__(self, path: str, what: str, err: OSError | None = None) -> None:
        self.path = path
        self.errno = err.errno if err is not None and err.errno else 0
        detail = f": {os.strerror(err.errno).lower()}" if err is not None and err.errno else ""
        super().__init__(f"cgroup {what} {path}{detail}")


class SetupError(OcirunError):
    """A container setup step failed, in the parent or in the C child.

    ``step`` names the step (``mount proc to /proc``); ``errno`` is the
    kernel's answer. The message reads ``<step>: <strerror>``.
    """

    def __init__(self, step: str, errno: int = 0, detail: str | None = None) -> None:
        self.step = step
        self.errno = errno
        if detail is not None:
            text = f"{step}: {detail}"
        elif errno:
            text = f"{step}: {os.strerror(errno).lower()}"
        else:
            text = step
        super().__init__(text)

    @property
    def errno_name(self) -> str:
        return _errno.errorcode.get(self.errno, str(self.errno))


class HookError(OcirunError):
    """A lifecycle hook failed or timed out."""


class CriuError(OcirunError):
    """CRIU cannot be used here, or a checkpoint or restore through it failed."""

    @classmethod
    def failed(cls, kind: str, errno: int, errmsg: str | None, complaint: str = "") -> CriuError:
        """CRIU answered ``success: false`` to a request of ``kind`` (DUMP, RESTORE ...)."""
        text = f"criu {kind.lower().replace('_', '-')} failed"
        if errmsg:
            text += f": {errmsg}"
        elif errno:
            text += f": {os.strerror(errno).lower()}"
        if complaint:
            text += f": {complaint}"
        return cls(text)


class OcirunWarning(UserWarning):
    """What the library (``ocirun.Runtime``) gives ``warnings.warn`` where the CLI
    prints ``warning: ...`` on stderr (e.g. a capability the host cannot grant)."""


def warn(message: str) -> None:
    """A warning the user should see: ``warning: <message>`` on stderr, or, inside
    ``with ocirun.util.scoped.WARNINGS.set(fn):``, ``fn(message)`` (this thread only)."""
    from ocirun.util.scoped import WARNINGS  # imported only when there is a warning

    sink = WARNINGS.get()
    if sink is not None:
        sink(message)
        return
    import sys

    sys.stderr.write(f"warning: {message}\n")
    sys.stderr.flush()

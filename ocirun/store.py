"""The state directory: container ids, claiming, locking, atomic state.json.

Layout (``root`` is ``--root``, default /run/ocirun)::

    <root>/                 0700, made by the first mutating operation
    <root>/<id>/            0700, made by mkdir: the id is claimed (exactly one create wins)
    <root>/<id>/state.json  the ContainerRecord; replaced atomically, never written in place
    <root>/<id>/exec.fifo   create -> start handshake; present while the container is "created"
    <root>/<id>/creating.json  what a create (or restore) in progress may leave behind (its own pid,
                            the cgroup directories it is about to make, network devices
                            it moved), written before it makes any of it; removed once
                            state.json is saved; "verb": create or restore
    <root>/<id>/criu-root   restore only: the rootfs bound for CRIU while it restores

A directory without state.json is a create still in progress, or one that
died half way: ``state``, ``delete`` and the other verbs say so
(:class:`~ocirun.errors.ContainerIncomplete`); ``delete --force`` removes what
it left with :meth:`Store.remove_incomplete`.

Locking: every mutating command holds an exclusive ``flock`` on the
container directory itself (see :meth:`Store.lock`). Readers (``state``,
``list``) take no lock: they rely on state.json being replaced by rename.
"""

from __future__ import annotations

import errno
import fcntl
import os

from ocirun import SPEC_VERSION
from ocirun.errors import ContainerExists, ContainerIdError, ContainerNotFound, StateStoreError
from ocirun.linux.proc import unescape_mount_path
from ocirun.util import jsonio

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

STATE_FILE = "state.json"
EXEC_FIFO = "exec.fifo"
INTENT_FILE = "creating.json"

#: The longest id accepted. runc sets no bound of its own, but the id is a
#: directory name, so anything longer than NAME_MAX (255) fails at mkdir
#: anyway, with a less helpful message.
MAX_ID_LENGTH = 255

# runc's idRegex is `^[\w+-\.]+$`; in RE2 `+-\.` is the *range* '+'..'.', i.e.
# "+,-." -- so runc accepts commas, and so do we. \w is ASCII-only in Go.
# (A set, not a regex: `re` costs every call ~3 ms to import.)
_ID_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_+,-.")


def validate_id(container_id: str) -> str:
    """Return ``container_id`` if the store accepts it, else raise ContainerIdError.

    The rules are runc's: one or more of ``A-Z a-z 0-9 _ + , - .``, not ``.``
    or ``..`` (so never a path), and (ours) at most MAX_ID_LENGTH characters.
    """
    if container_id == "":
        raise ContainerIdError("container id cannot be empty")  # runc's words
    if (
        not isinstance(container_id, str)
        or len(container_id) > MAX_ID_LENGTH
        or not container_id
        or not _ID_CHARS.issuperset(container_id)
        or container_id in (".", "..")
    ):
        text = str(container_id)
        shown = text if len(text) <= 80 else text[:77] + "..."
        raise ContainerIdError(f"invalid container id format: {shown!r}")
    return container_id


class ContainerRecord:
    """What is persisted in state.json: what later commands need from create.

    ``status_hint`` is the last status the writer knew of; it is NOT the
    container's status, which is always derived (see ocirun.state).
    ``runtime`` is for what create computed that later commands need
    (cgroup paths, namespace paths, hooks ...); it must be JSON-serialisable.
    ``extra`` keeps keys of state.json this version does not know, so that
    rewriting a record written by a newer ocirun does not lose them.

    (A plain immutable class, not a dataclass: `state`, `start`, `kill` and
    `delete` load it on every call, and importing dataclasses costs ~8 ms.)
    """

    __slots__ = ("id", "pid", "init_start_time", "bundle", "rootfs", "created", "oci_version",
                 "owner", "annotations", "has_process", "status_hint", "runtime", "extra")
    _COMPARED = __slots__[:-1]  # extra is not part of equality

    id: str
    pid: int
    init_start_time: int
    bundle: str
    rootfs: str
    created: str
    oci_version: str
    owner: str
    annotations: dict[str, str]
    has_process: bool
    status_hint: str
    runtime: dict[str, Any]
    extra: dict[str, Any]

    def __init__(self, *, id: str, bundle: str, rootfs: str, created: str, pid: int = 0,
                 init_start_time: int = 0, oci_version: str = SPEC_VERSION, owner: str = "",
                 annotations: dict[str, str] | None = None, has_process: bool = True,
                 status_hint: str = "created", runtime: dict[str, Any] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        values = {
            "id": id, "pid": pid, "init_start_time": init_start_time, "bundle": bundle,
            "rootfs": rootfs, "created": created, "oci_version": oci_version, "owner": owner,
            "annotations": {} if annotations is None else annotations,
            "has_process": has_process, "status_hint": status_hint,
            "runtime": {} if runtime is None else runtime,
            "extra": {} if extra is None else extra,
        }
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"ContainerRecord is immutable: cannot set {name!r}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"ContainerRecord is immutable: cannot delete {name!r}")

    def replace(self, **changes: Any) -> ContainerRecord:
        """A copy with some fields changed (as dataclasses.replace)."""
        values = {name: getattr(self, name) for name in self.__slots__}
        values.update(changes)
        return ContainerRecord(**values)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ContainerRecord):
            return NotImplemented
        return all(getattr(self, n) == getattr(other, n) for n in self._COMPARED)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}={getattr(self, n)!r}" for n in self._COMPARED)
        return f"ContainerRecord({inner})"

    def to_dict(self) -> dict[str, Any]:
        """The JSON object written to state.json."""
        out: dict[str, Any] = dict(self.extra)
        out.update(
            ociVersion=self.oci_version,
            id=self.id,
            pid=self.pid,
            initStartTime=self.init_start_time,
            bundle=self.bundle,
            rootfs=self.rootfs,
            created=self.created,
            owner=self.owner,
            annotations=dict(self.annotations),
            hasProcess=self.has_process,
            statusHint=self.status_hint,
            runtime=self.runtime,
        )
        return out

    @classmethod
    def from_dict(cls, data: Any) -> ContainerRecord:
        """The record in a state.json object. ValueError if a field is missing or mistyped."""
        if not isinstance(data, dict):
            raise ValueError("state is not a JSON object")
        data = dict(data)

        def take(key: str, types: type | tuple[type, ...], default: Any = None) -> Any:
            if key not in data:
                if default is not None:
                    return default
                raise ValueError(f"missing {key!r}")
            value = data.pop(key)
            # bool is an int in Python; an int field must not accept true/false
            if not isinstance(value, types) or (isinstance(value, bool) and bool not in _tuple(types)):
                raise ValueError(f"{key!r} has the wrong type ({type(value).__name__})")
            return value

        record = cls(
            oci_version=take("ociVersion", str),
            id=take("id", str),
            pid=take("pid", int),
            init_start_time=take("initStartTime", int, 0),
            bundle=take("bundle", str),
            rootfs=take("rootfs", str),
            created=take("created", str),
            owner=take("owner", str, ""),
            annotations=take("annotations", dict, {}),
            has_process=take("hasProcess", bool, True),
            status_hint=take("statusHint", str, "created"),
            runtime=take("runtime", dict, {}),
            extra=data,
        )
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in record.annotations.items()):
            raise ValueError("'annotations' must map strings to strings")
        return record


def _tuple(types: type | tuple[type, ...]) -> tuple[type, ...]:
    return types if isinstance(types, tuple) else (types,)


class ContainerDir:
    """A claimed container directory (returned by :meth:`Store.claim`)."""

    __slots__ = ("id", "path")

    def __init__(self, container_id: str, path: str) -> None:
        self.id = container_id
        self.path = path

    @property
    def state_path(self) -> str:
        return os.path.join(self.path, STATE_FILE)

    @property
    def exec_fifo_path(self) -> str:
        return os.path.join(self.path, EXEC_FIFO)

    def __repr__(self) -> str:
        return f"ContainerDir({self.id!r}, {self.path!r})"


class ContainerLock:
    """An exclusive flock on a container directory; a context manager (see Store.lock)."""

    __slots__ = ("container_id", "path", "fd")

    def __init__(self, container_id: str, path: str) -> None:
        self.container_id = container_id
        self.path = path
        self.fd = -1

    def __enter__(self) -> ContainerLock:
        if self.fd >= 0:
            return self  # already held (Store.claim_locked): flock again would deadlock
        while True:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            except (FileNotFoundError, NotADirectoryError):
                raise ContainerNotFound(self.container_id) from None
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
                # While we waited, the holder may have removed the directory (delete),
                # and a new create may even have claimed the id again: the lock we hold
                # is only good if the path still names the directory we locked.
                try:
                    now = os.stat(self.path)
                except (FileNotFoundError, NotADirectoryError):
                    raise ContainerNotFound(self.container_id) from None
                mine = os.fstat(fd)
            except BaseException:
                os.close(fd)
                raise
            if (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
                self.fd = fd
                return self
            os.close(fd)  # a new directory of the same id: lock that one instead

    def __exit__(self, *exc: object) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the last fd of the open file releases the flock
            self.fd = -1


class Store:
    """The state directory of one ``--root``. Cheap to make: touches nothing until used."""

    __slots__ = ("root",)

    def __init__(self, root: str) -> None:
        self.root = os.path.abspath(root)

    # -- paths ---------------------------------------------------------------

    def dir_path(self, container_id: str) -> str:
        return os.path.join(self.root, validate_id(container_id))

    def state_path(self, container_id: str) -> str:
        return os.path.join(self.dir_path(container_id), STATE_FILE)

    def exec_fifo_path(self, container_id: str) -> str:
        return os.path.join(self.dir_path(container_id), EXEC_FIFO)

    # -- mutating ------------------------------------------------------------

    def claim(self, container_id: str) -> ContainerDir:
        """Create ``<root>/<id>/`` (0700), making the root if needed.

        mkdir is atomic: of any number of concurrent claims of one id exactly
        one succeeds; the others get ContainerExists.
        """
        path = self.dir_path(container_id)
        self._make_root()
        try:
            os.mkdir(path, 0o700)
        except FileExistsError:
            raise ContainerExists(container_id) from None
        except OSError as err:
            raise StateStoreError(f"create state directory {path}: {_strerror(err)}") from None
        return ContainerDir(container_id, path)

    def claim_locked(self, container_id: str) -> ContainerLock:
        """:meth:`claim`, then hold the directory's lock at once: what ``create`` does, so
        that no other command (``delete --force`` of a half-made container, which
        removes a directory without state.json once it has the lock) can take the
        lock between the claim and the create's first step. The lock is held on
        return; ``with`` it (or call ``__exit__``) to release it."""
        claimed = self.claim(container_id)
        lock = ContainerLock(container_id, claimed.path)
        lock.__enter__()
        return lock

    def lock(self, container_id: str) -> ContainerLock:
        """``with store.lock(id):`` holds an exclusive flock on the container's directory.

        Blocks while another command holds it. ContainerNotFound if the directory
        does not exist, or was removed while we waited. The lock is on an open
        file description: it is not re-entrant, even within one process.
        """
        return ContainerLock(container_id, self.dir_path(container_id))

    def save(self, record: ContainerRecord) -> None:
        """Write state.json atomically: temp file in the same directory, write,
        rename over state.json. A reader sees the old record or the new one,
        never a mix or a partial file. No fsync, as runc: the state describes
        processes that do not outlive the machine, in /run; an fsync cost every
        create and start ~7 ms on a disk-backed /run, more than runc's whole start."""
        self._write_atomic(record.id, STATE_FILE, record.to_dict())

    def save_intent(self, container_id: str, intent: dict[str, Any]) -> None:
        """Write creating.json (atomically, as state.json): what the create in
        progress is about to make, so that a killed create can be undone."""
        self._write_atomic(container_id, INTENT_FILE, intent)

    def load_intent(self, container_id: str) -> dict[str, Any] | None:
        """creating.json of a container without state.json; None if absent or unreadable."""
        try:
            with open(os.path.join(self.dir_path(container_id), INTENT_FILE), "rb") as f:
                data = jsonio.loads(f.read())
        except (OSError, ValueError):
            return None
        return data if isinstance(data, dict) else None

    def drop_intent(self, container_id: str) -> None:
        """Remove creating.json once state.json holds the container (best effort:
        state.json wins over it anyway)."""
        try:
            os.unlink(os.path.join(self.dir_path(container_id), INTENT_FILE))
        except OSError:
            pass

    def _write_atomic(self, container_id: str, name: str, obj: dict[str, Any]) -> None:
        directory = self.dir_path(container_id)
        data = jsonio.dumps(obj, separators=(",", ":")).encode()
        tmp = os.path.join(directory, f".{name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        except (FileNotFoundError, NotADirectoryError):
            raise ContainerNotFound(container_id) from None
        except OSError as err:
            raise StateStoreError(f"write {tmp}: {_strerror(err)}") from None
        try:
            try:
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
            finally:
                os.close(fd)
            os.rename(tmp, os.path.join(directory, name))
        except BaseException as exc:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            if isinstance(exc, OSError):
                raise StateStoreError(f"write {directory}/{name}: {_strerror(exc)}") from None
            raise

    def remove(self, container_id: str) -> None:
        """``rm -rf <root>/<id>``; no error if it is already (partly) gone."""
        _remove_tree(self.dir_path(container_id))

    def remove_incomplete(self, container_id: str, undo=None) -> bool:
        """Remove a container directory that has no state.json (a create that died
        half way), after ``undo(intent)`` (its creating.json, or None) has removed
        what that create left. Waits for the lock, so a create still in progress
        is never removed from under it; if state.json exists by then (that create
        succeeded), removes nothing and returns False. True if it removed it.
        """
        try:
            with self.lock(container_id):
                if self.has_state(container_id):
                    return False
                if undo is not None:
                    undo(self.load_intent(container_id))
                # A restore killed half way may have left CRIU's root bound in there:
                # detach it first, never walk into it (it is the container's rootfs).
                for mount_point in mounts_below(self.dir_path(container_id)):
                    detach_mount(mount_point)
                self.remove(container_id)
                return True
        except ContainerNotFound:
            return False

    # -- reading -------------------------------------------------------------

    def has_state(self, container_id: str) -> bool:
        """True if the container's directory holds a state.json (its create finished)."""
        return os.path.isfile(self.state_path(container_id))

    def load(self, container_id: str) -> ContainerRecord:
        """The container's record. ContainerNotFound if there is no directory or no
        state.json in it; StateStoreError if state.json is unreadable or corrupt."""
        path = self.state_path(container_id)
        try:
            with open(path, "rb") as f:
                raw = f.read()
        except (FileNotFoundError, NotADirectoryError):
            raise self._not_found(container_id) from None
        except OSError as err:
            raise StateStoreError(f"read {path}: {_strerror(err)}") from None
        try:
            record = ContainerRecord.from_dict(jsonio.loads(raw))
        except ValueError as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
            raise StateStoreError(f"corrupt state {path}: {exc}") from None
        if record.id != container_id:
            raise StateStoreError(f"corrupt state {path}: it is for container {record.id!r}")
        return record

    def _not_found(self, container_id: str) -> ContainerNotFound:
        """No state.json: no such container, or one whose create is in progress or
        was interrupted (its directory is there), which says so."""
        try:
            os.stat(self.dir_path(container_id))
        except OSError:
            return ContainerNotFound(container_id)
        from ocirun.errors import ContainerIncomplete

        intent = self.load_intent(container_id)
        creator = (intent or {}).get("creator") or {}
        alive = False
        if isinstance(creator.get("pid"), int) and creator["pid"] > 0:
            from ocirun.linux.proc import start_time

            alive = start_time(creator["pid"]) == creator.get("startTime")
        verb = (intent or {}).get("verb")
        return ContainerIncomplete(container_id, creating=alive, create_interrupted=intent is not None,
                                   verb=verb if verb in ("create", "restore") else "create")

    def list_ids(self) -> list[str]:
        """The ids of every container directory, sorted; a missing root means none.

        Includes directories whose create has not finished (no state.json):
        callers that want only complete containers skip those :meth:`load`
        reports as ContainerNotFound.
        """
        try:
            entries = os.scandir(self.root)
        except FileNotFoundError:
            return []
        except OSError as err:
            raise StateStoreError(f"read {self.root}: {_strerror(err)}") from None
        ids = []
        with entries:
            for entry in entries:
                try:
                    is_dir = entry.is_dir(follow_symlinks=False)
                except OSError:
                    continue
                if is_dir and entry.name and _ID_CHARS.issuperset(entry.name) and entry.name not in (".", ".."):
                    ids.append(entry.name)
        ids.sort()
        return ids

    # -- helpers -------------------------------------------------------------

    def _make_root(self) -> None:
        try:
            os.makedirs(self.root, 0o700, exist_ok=True)
        except OSError as err:
            hint = ""
            xdg = os.environ.get("XDG_RUNTIME_DIR")
            if xdg and self.root == os.path.join(os.path.abspath(xdg), "ocirun"):
                # the rootless default (ocirun.rootless): the variable is what to fix
                hint = (f" (the default state root in XDG_RUNTIME_DIR={xdg}: set XDG_RUNTIME_DIR to a "
                        "directory you own, or give --root DIR)")
            raise StateStoreError(f"create state root {self.root}: {_strerror(err)}{hint}") from None


def mounts_below(path: str) -> list[str]:
    """Mount points strictly below ``path`` in our mount table, deepest first."""
    prefix = os.path.realpath(path).rstrip("/") + "/"
    found = []
    try:
        with open("/proc/self/mountinfo", "rb") as f:
            for line in f:
                point = unescape_mount_path(line.split(b" ", 5)[4].decode(errors="surrogateescape"))
                if point.startswith(prefix):
                    found.append(point)
    except OSError:
        return []
    return sorted(set(found), key=len, reverse=True)


def detach_mount(path: str) -> None:
    """umount2(path, MNT_DETACH); nothing if it is not (or no longer) a mount point."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.umount2(path.encode(errors="surrogateescape"), 2) != 0:  # MNT_DETACH
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):
            raise StateStoreError(f"unmount {path}: {os.strerror(err).lower()}")


def _strerror(err: OSError) -> str:
    return os.strerror(err.errno).lower() if err.errno else str(err)


def _remove_tree(path: str, _attempts: int = 3) -> None:
    """rm -rf without following symlinks, tolerant of entries vanishing meanwhile."""
    try:
        entries = list(os.scandir(path))
    except (FileNotFoundError, NotADirectoryError) as err:
        if isinstance(err, NotADirectoryError):
            _unlink_quiet(path)
        return
    except OSError as err:
        raise StateStoreError(f"remove {path}: {_strerror(err)}") from None
    for entry in entries:
        try:
            is_dir = entry.is_dir(follow_symlinks=False)
        except OSError:
            is_dir = False
        if is_dir:
            _remove_tree(entry.path, _attempts)
        else:
            _unlink_quiet(entry.path)
    try:
        os.rmdir(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        if err.errno == errno.ENOTEMPTY and _attempts > 1:  # added meanwhile: another pass
            _remove_tree(path, _attempts - 1)
            return
        raise StateStoreError(f"remove {path}: {_strerror(err)}") from None


def _unlink_quiet(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
    except OSError as err:
        raise StateStoreError(f"remove {path}: {_strerror(err)}") from None

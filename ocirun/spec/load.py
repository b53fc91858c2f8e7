"""Bundle → validated, typed config: the one way config.json enters ocirun.

``load_bundle`` reads ``<bundle>/config.json``, parses it, checks it against
the OCI schema (fast generated validator; jsonschema only to explain a
failure) and the spec's semantic rules, and returns the immutable model.
Every problem found is reported at once, in one :class:`ConfigError`.
This module does not import jsonschema unless the config is invalid.
"""

from __future__ import annotations

import os

from ocirun.errors import BundleError, ConfigError, Problem
from ocirun.spec.model import Config
from ocirun.util import jsonio
from ocirun.util.record import record

TYPE_CHECKING = False  # typing costs every `create` ~3 ms to import
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, TypeVar

    T = TypeVar("T")

CONFIG_NAME = "config.json"
#: Go's encoding/json (runc) refuses a document nested deeper than this; so does ocirun.
MAX_DEPTH = 10_000
#: A sanity limit (real configs are tens of KiB; a big seccomp profile ~100 KiB):
#: config.json pointing at /dev/zero or a runaway generator is refused, not read.
MAX_CONFIG_SIZE = 32 << 20


@record(slots=True)
class LoadedBundle:
    """A bundle whose config passed every check."""

    bundle: str  #: absolute path of the bundle directory
    config_path: str  #: absolute path of its config.json
    rootfs: str  #: absolute path of the root filesystem (root.path resolved against the bundle)
    config: Config
    #: Deprecated-but-valid things (e.g. relative mount destinations), one line each.
    warnings: tuple[str, ...] = ()


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_config(data: bytes | str, source: str) -> Any:
    """Parse config.json text; malformed JSON is a ConfigError naming line and column.

    Also refused here, with the JSON path: strings (values or keys) holding a lone
    UTF-16 surrogate (``"\\ud800"``: valid JSON, but no UTF-8 can carry it to the
    kernel), and nesting deeper than MAX_DEPTH. A document nested deeper than
    Python's recursion allows but within MAX_DEPTH raises RecursionError: the
    caller retries under :func:`with_depth`.
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [Problem(f"byte {exc.start}", "not valid UTF-8")]) from None
    try:
        # jsonio: json.loads without importing json (errors are json's own)
        doc = jsonio.loads(text, parse_constant=_reject_constant)
    except RecursionError:
        depth = nesting_depth(text)
        if depth > MAX_DEPTH:
            raise ConfigError(source, [Problem("$", f"invalid JSON: nested {depth} levels deep, "
                                                    f"more than the {MAX_DEPTH} runc accepts")]) from None
        raise
    except ValueError as exc:
        import json

        if isinstance(exc, json.JSONDecodeError):
            where = f"line {exc.lineno}, column {exc.colno}"
            raise ConfigError(source, [Problem(where, f"invalid JSON: {exc.msg}")]) from None
        # NaN / Infinity
        raise ConfigError(source, [Problem("$", f"invalid JSON: {exc}")]) from None
    # A lone surrogate can only come from a \uD800-\uDFFF escape: look only then.
    if "\\ud" in text or "\\uD" in text:
        problems = surrogate_problems(doc)
        if problems:
            raise ConfigError(source, problems)
    return doc


def surrogate_problems(doc: Any) -> list[Problem]:
    """Every string (value or key) of ``doc`` that holds a lone surrogate, by JSON path.
    Iterative: the document may be nested MAX_DEPTH deep."""
    from ocirun.spec._paths import json_path

    def lone(text: str) -> int | None:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as exc:
            return exc.start
        return None

    problems = []
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), doc)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            at = lone(value)
            if at is not None:
                problems.append(Problem(json_path(path), f"contains a lone UTF-16 surrogate "
                                        f"(\\u{ord(value[at]):04x} at character {at}): not valid UTF-8"))
        elif isinstance(value, dict):
            for key, item in reversed(value.items()):
                at = lone(key)
                if at is not None:
                    problems.append(Problem(json_path((*path, key)), f"the key contains a lone UTF-16 "
                                            f"surrogate (\\u{ord(key[at]):04x} at character {at}): not valid UTF-8"))
                else:
                    stack.append(((*path, key), item))
        elif isinstance(value, list):
            stack.extend(((*path, i), item) for i, item in reversed(list(enumerate(value))))
    return problems


def nesting_depth(text: str) -> int:
    """How deep the arrays and objects of a JSON text nest (the top level is 1, as for Go)."""
    import re

    depth = deepest = 0
    for ch in re.sub(r'"(?:[^"\\]|\\.)*"', "", text):
        if ch in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif ch in "]}":
            depth -= 1
    return deepest


def with_depth(fn: Callable[..., T], *args: Any) -> T:
    """``fn(*args)``, with room for a document nested MAX_DEPTH deep when it needs it.

    Python's recursion limit (~1000) is hit long before runc's 10000 levels; only
    then is ``fn`` run again in a thread with a large stack and a raised recursion
    limit (the limit is process-wide: restored when the thread is done). ``fn``
    must be safe to run twice (it only reads and checks)."""
    try:
        return fn(*args)
    except RecursionError:
        pass
    import sys
    import threading

    outcome: list[Any] = []

    def run() -> None:
        try:
            outcome.append((True, fn(*args)))
        except BaseException as exc:  # handed to the caller's thread below
            outcome.append((False, exc))

    old_limit = sys.getrecursionlimit()
    old_stack = threading.stack_size(256 << 20)  # reserved, not used, unless it is needed
    sys.setrecursionlimit(old_limit + 4 * MAX_DEPTH)
    try:
        worker = threading.Thread(target=run, name="deep-config")
        worker.start()
        worker.join()
    finally:
        sys.setrecursionlimit(old_limit)
        threading.stack_size(old_stack)
    ok, value = outcome[0]
    if ok:
        return value
    if isinstance(value, RecursionError):
        raise ConfigError("config", [Problem("$", f"nested too deeply to check (at most {MAX_DEPTH} levels)")])
    raise value


def config_problems(doc: Any, bundle: str | None = None) -> list[Problem]:
    """Every schema and rule problem of a parsed config (bundle: for the rootfs check).

    A field the schema already rejected is not reported again by a rule.
    """
    from ocirun.spec.rules import check_rules, schema_view
    from ocirun.spec.schema import schema_problems

    found = schema_problems(schema_view(doc))
    seen = {p.path for p in found}
    return found + [p for p in check_rules(doc, bundle) if p.path not in seen]


def check_config(doc: Any, source: str, bundle: str | None = None) -> Config:
    """The model of a parsed config, or a ConfigError listing every problem."""
    problems = config_problems(doc, bundle)
    if problems:
        raise ConfigError(source, problems)
    return Config.from_dict(doc)


def load_bundle(bundle: str) -> LoadedBundle:
    """Read, check and model ``<bundle>/config.json``.

    Raises BundleError when the bundle directory or its config.json is missing
    or unreadable, ConfigError for anything wrong inside config.json
    (including a missing rootfs directory, reported at ``$.root.path``).
    """
    # Resolved, as runc resolves it (its state's "bundle" is the real path): symlinks
    # in the bundle's own path are the caller's choice; the rootfs is checked below.
    bundle_abs = os.path.realpath(bundle)
    if not os.path.isdir(bundle_abs):
        what = "is not a directory" if os.path.exists(bundle_abs) else "does not exist"
        raise BundleError(f"bundle {bundle_abs} {what}")
    config_path = os.path.join(bundle_abs, CONFIG_NAME)
    data = read_config_file(config_path, f"bundle {bundle_abs} has no {CONFIG_NAME}")
    return with_depth(_load, bundle_abs, config_path, data)


def read_config_file(path: str, missing: str) -> bytes:
    """The bytes of a config file: a regular file of at most MAX_CONFIG_SIZE bytes
    (a fifo is never waited on; a device is never read). BundleError otherwise,
    ``missing`` when it does not exist."""
    try:
        # O_NONBLOCK: opening a fifo for reading would wait for a writer
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK | os.O_NOCTTY)
    except FileNotFoundError:
        raise BundleError(missing) from None
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {os.strerror(exc.errno or 0).lower()}") from None
    try:
        import stat

        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise BundleError(f"cannot read {path}: is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise BundleError(f"cannot read {path}: not a regular file")
        if st.st_size > MAX_CONFIG_SIZE:
            raise BundleError(f"cannot read {path}: {st.st_size} bytes, more than the "
                              f"{MAX_CONFIG_SIZE} ocirun reads")
        chunks = []
        size = 0
        while True:  # a file growing while read stops at the limit too
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            size += len(chunk)
            if size > MAX_CONFIG_SIZE:
                raise BundleError(f"cannot read {path}: more than the {MAX_CONFIG_SIZE} bytes ocirun reads")
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise BundleError(f"cannot read {path}: {os.strerror(exc.errno or 0).lower()}") from None
    finally:
        os.close(fd)


def _load(bundle_abs: str, config_path: str, data: bytes) -> LoadedBundle:
    doc = parse_config(data, config_path)
    config = check_config(doc, config_path, bundle_abs)
    assert config.root is not None  # the rules require it on Linux
    from ocirun.spec.rules import warnings

    return LoadedBundle(
        bundle=bundle_abs,
        config_path=config_path,
        rootfs=os.path.normpath(os.path.join(bundle_abs, config.root.path)),
        config=config,
        warnings=tuple(warnings(doc)),
    )

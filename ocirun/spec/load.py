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
    from typing import Any

CONFIG_NAME = "config.json"


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
    """Parse config.json text; malformed JSON is a ConfigError naming line and column."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise ConfigError(source, [Problem(f"byte {exc.start}", "not valid UTF-8")]) from None
    try:
        # jsonio: json.loads without importing json (errors are json's own)
        return jsonio.loads(text, parse_constant=_reject_constant)
    except ValueError as exc:
        import json

        if isinstance(exc, json.JSONDecodeError):
            where = f"line {exc.lineno}, column {exc.colno}"
            raise ConfigError(source, [Problem(where, f"invalid JSON: {exc.msg}")]) from None
        # NaN / Infinity
        raise ConfigError(source, [Problem("$", f"invalid JSON: {exc}")]) from None


def config_problems(doc: Any, bundle: str | None = None) -> list[Problem]:
    """Every schema and rule problem of a parsed config (bundle: for the rootfs check).

    A field the schema already rejected is not reported again by a rule.
    """
    from ocirun.spec.rules import check_rules
    from ocirun.spec.schema import schema_problems

    found = schema_problems(doc)
    seen = {p.path for p in found}
    return found + [p for p in check_rules(doc, bundle) if p.path not in seen]


def check_config(doc: Any, source: str, bundle: str | None = None) -> Config:
    """The model of a parsed config, or a ConfigError listing every problem."""
    problems = config_problems(doc, bundle)
    if problems:
        raise ConfigError(source, problems)
    return Config.from_dict(doc)


def default_user_mappings(doc: Any, ids: tuple[int, int]) -> str | None:
    """A new user namespace without uidMappings and gidMappings gets a single mapping
    of container root to ``ids`` (the rootless runtime's own uid and gid), as crun
    does (``crun spec --rootless`` writes no mappings); the warning to give, or None
    when nothing was added. runc refuses such a config, and so does ocirun as root."""
    linux = doc.get("linux") if isinstance(doc, dict) else None
    if not isinstance(linux, dict) or linux.get("uidMappings") or linux.get("gidMappings"):
        return None
    namespaces = linux.get("namespaces")
    if not isinstance(namespaces, list) or not any(
            isinstance(ns, dict) and ns.get("type") == "user" and not ns.get("path") for ns in namespaces):
        return None
    uid, gid = ids
    linux["uidMappings"] = [{"containerID": 0, "hostID": uid, "size": 1}]
    linux["gidMappings"] = [{"containerID": 0, "hostID": gid, "size": 1}]
    return (f"$.linux: a new user namespace without uidMappings/gidMappings: container root is "
            f"mapped to your own uid {uid} and gid {gid} (as crun does)")


def load_bundle(bundle: str, *, rootless_ids: tuple[int, int] | None = None) -> LoadedBundle:
    """Read, check and model ``<bundle>/config.json``.

    Raises BundleError when the bundle directory or its config.json is missing
    or unreadable, ConfigError for anything wrong inside config.json
    (including a missing rootfs directory, reported at ``$.root.path``).
    ``rootless_ids``: the (euid, egid) of a rootless runtime (effective uid not 0):
    a user namespace without mappings then maps root to them (:func:`default_user_mappings`).
    """
    bundle_abs = os.path.abspath(bundle)
    if not os.path.isdir(bundle_abs):
        what = "is not a directory" if os.path.exists(bundle_abs) else "does not exist"
        raise BundleError(f"bundle {bundle_abs} {what}")
    config_path = os.path.join(bundle_abs, CONFIG_NAME)
    try:
        with open(config_path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise BundleError(f"bundle {bundle_abs} has no {CONFIG_NAME}") from None
    except OSError as exc:
        raise BundleError(f"cannot read {config_path}: {os.strerror(exc.errno or 0).lower()}") from None
    doc = parse_config(data, config_path)
    added = default_user_mappings(doc, rootless_ids) if rootless_ids is not None else None
    config = check_config(doc, config_path, bundle_abs)
    assert config.root is not None  # the rules require it on Linux
    from ocirun.spec.rules import warnings

    return LoadedBundle(
        bundle=bundle_abs,
        config_path=config_path,
        rootfs=os.path.normpath(os.path.join(bundle_abs, config.root.path)),
        config=config,
        warnings=tuple(warnings(doc)) + ((added,) if added else ()),
    )

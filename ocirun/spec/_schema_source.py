"""The OCI JSON Schemas as both validators see them.

The files under ``schemas/`` are the upstream v1.3.0 schemas, unchanged. Two
things are decided here, once, for the generated fast validator and for the
jsonschema reference alike, so that the two cannot drift apart:

* **Where the schemas live.** They are named by URIs under :data:`BASE_URI`
  and served from the local directory; nothing is ever fetched from the
  network (an unknown URI is an error).
* **One upstream typo is repaired in memory.** ``defs.json`` has
  ``"$ref": "#definitions/uint32"`` (``ArrayOfUint32``) where a JSON pointer
  ``#/definitions/uint32`` is meant; neither validator can resolve the former.
  :func:`load_schema` rewrites a ``$ref`` fragment that lacks its leading
  ``/`` to the pointer it obviously means.

* **A device's ``fileMode`` may carry the file-type bits.** config-linux.md
  says ``fileMode`` is a uint32; the schema caps it at 511 (``FileMode``).
  podman and containerd send ``S_IFCHR | 0600`` (8576) for ``--device`` and
  ``--privileged``, and runc accepts it, so :func:`load_schema` lets
  ``linux.devices[].fileMode`` be any value up to ``0o177777``; the semantic
  rules check that type bits, when present, match the device's ``type``.

This module is imported only off the hot path (code generation, and the
reference validator after the fast one said "invalid").
"""

from __future__ import annotations

import json
import os
from typing import Any

#: Directory holding the upstream schema files (``ocirun/spec/schemas``).
SCHEMA_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "schemas")
#: The base URI every schema file is named under (never dereferenced on the network).
BASE_URI = "https://opencontainers.org/schema/"
#: The schema a config.json is checked against; it references the others.
ROOT_SCHEMA = "config-schema.json"


#: ``linux.devices[].fileMode``: permission bits, optionally with the file-type bits.
DEVICE_FILE_MODE: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": 0o177777}


def schema_names() -> list[str]:
    """Every ``*.json`` schema file in :data:`SCHEMA_DIR`, sorted."""
    return sorted(n for n in os.listdir(SCHEMA_DIR) if n.endswith(".json"))


def _fix_refs(node: Any) -> Any:
    if isinstance(node, dict):
        out = {}
        for key, value in node.items():
            if (
                key == "$ref"
                and isinstance(value, str)
                and "#" in value
                and not value.endswith("#")
            ):
                doc, _, fragment = value.partition("#")
                if not fragment.startswith("/"):
                    value = f"{doc}#/{fragment}"
            out[key] = _fix_refs(value)
        return out
    if isinstance(node, list):
        return [_fix_refs(v) for v in node]
    return node


def load_schema(name: str) -> dict[str, Any]:
    """One schema file, parsed, with the ``$ref`` repair applied; the root one gets its ``id``."""
    if os.sep in name or name.startswith(".") or not name.endswith(".json"):
        raise ValueError(f"not a schema file name: {name!r}")
    with open(os.path.join(SCHEMA_DIR, name), encoding="utf-8") as f:
        schema: dict[str, Any] = _fix_refs(json.load(f))
    if name == "defs-linux.json":
        schema["definitions"]["Device"]["properties"]["fileMode"] = DEVICE_FILE_MODE
    if name == ROOT_SCHEMA:
        schema = {"id": BASE_URI + name, **schema}
    return schema


def load_by_uri(uri: str) -> dict[str, Any]:
    """The schema named by ``uri`` (``BASE_URI + file``, optional fragment ignored)."""
    if not uri.startswith(BASE_URI):
        raise LookupError(f"refusing to resolve schema outside {BASE_URI}: {uri}")
    name = uri[len(BASE_URI):].partition("#")[0]
    if name not in schema_names():
        raise LookupError(f"no such schema: {uri}")
    return load_schema(name)

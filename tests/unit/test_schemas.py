"""schemas/: upstream's v1.3.0 files byte for byte, with their licence; every `$ref`
resolved from this directory and never over the network; and the spec's own
features and state fixtures classified by the same local resolution."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import referencing
import referencing.jsonschema

from ocirun.spec import _schema_source, schema

REPO = Path(__file__).resolve().parents[2]
SCHEMAS = REPO / "schemas"
SPEC = Path("/work/shared/oci-runtime-spec")
needs_spec = pytest.mark.skipif(not (SPEC / "schema").is_dir(), reason="runtime-spec checkout not present")


@needs_spec
def test_schema_files_are_upstream_s_byte_for_byte() -> None:
    ours = sorted(p.name for p in SCHEMAS.glob("*.json"))
    theirs = sorted(p.name for p in (SPEC / "schema").glob("*.json"))
    assert ours == theirs
    for name in ours:
        assert (SCHEMAS / name).read_bytes() == (SPEC / "schema" / name).read_bytes(), name
    assert (SCHEMAS / "LICENSE").read_bytes() == (SPEC / "LICENSE").read_bytes()


def test_licence_and_provenance_are_there() -> None:
    assert "Apache License" in (SCHEMAS / "LICENSE").read_text()
    provenance = (SCHEMAS / "PROVENANCE.md").read_text()
    assert "v1.3.0" in provenance and "unchanged" in provenance


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_ref_is_local() -> None:
    """A relative $ref resolves under the base URI, which is served from schemas/."""
    refs = {r for p in SCHEMAS.glob("*.json") for r in _refs(json.loads(p.read_text()))}
    assert len(refs) > 50
    for ref in refs:
        target = ref.partition("#")[0]
        assert "://" not in target and not target.startswith("/"), ref
        assert target == "" or (SCHEMAS / target).is_file(), ref


def test_a_ref_outside_the_schemas_is_refused_not_fetched() -> None:
    with pytest.raises(LookupError, match="refusing"):
        _schema_source.load_by_uri("http://json-schema.org/draft-04/schema")
    with pytest.raises(LookupError, match="no such schema"):
        _schema_source.load_by_uri(_schema_source.BASE_URI + "nope.json")


def test_reference_validator_needs_no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_network(*args: object, **kwargs: object) -> None:
        raise AssertionError("a schema check tried to open a socket")

    monkeypatch.setattr(socket, "socket", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    schema._reference_validator.cache_clear()
    try:
        full = json.loads((Path(__file__).parent / "fixtures" / "full-config.json").read_text())
        assert schema.reference_is_valid(full)  # every $ref of the linux schemas resolved
        bad = dict(full, ociVersion=1)
        assert [p.path for p in schema.reference_problems(bad)] == ["$.ociVersion"]
    finally:
        schema._reference_validator.cache_clear()


def _validator(root: str) -> jsonschema.Draft4Validator:
    """Draft-04 over the schema `root`, every $ref served from schemas/ (no retrieve)."""
    base = _schema_source.BASE_URI
    registry: referencing.Registry[Any] = referencing.Registry().with_resources(
        (base + n, referencing.Resource.from_contents(
            _schema_source.load_schema(n), default_specification=referencing.jsonschema.DRAFT4))
        for n in _schema_source.schema_names())
    return jsonschema.Draft4Validator({"$ref": base + root}, registry=registry)


def _fixtures(kind: str, verdict: str) -> list[Path]:
    return sorted((SPEC / "schema" / "test" / kind / verdict).glob("*.json"))


@needs_spec
@pytest.mark.parametrize("kind, root", [("features", "features-schema.json"), ("state", "state-schema.json")])
def test_spec_features_and_state_fixtures(kind: str, root: str) -> None:
    validator = _validator(root)
    good, bad = _fixtures(kind, "good"), _fixtures(kind, "bad")
    assert good and bad
    for path in good:
        validator.validate(json.loads(path.read_text()))
    for path in bad:
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError:
            continue  # invalid-json.json: not JSON at all
        assert not validator.is_valid(doc), path.name

"""The generated fast validator against the jsonschema reference.

(a) the committed generated module is current; (b) the spec's own good/bad
fixtures are classified correctly by both, and alike; (c) deterministic
mutations of full configs are classified alike; plus the hot path's import
discipline (no jsonschema, no fastjsonschema).
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ocirun.spec import schema

REPO = Path(__file__).parents[2]
SPEC_TESTS = Path("/work/shared/oci-runtime-spec/schema/test/config")
LOCAL_FIXTURES = Path(__file__).parent / "fixtures"
spec_fixtures = pytest.mark.skipif(not SPEC_TESTS.is_dir(), reason="runtime-spec checkout not present")


def _fixtures(kind: str) -> list[Path]:
    return sorted((SPEC_TESTS / kind).glob("*.json")) if SPEC_TESTS.is_dir() else []


def test_generated_module_is_current(tmp_path: Path) -> None:
    pytest.importorskip("fastjsonschema")
    out = tmp_path / "compiled.py"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "gen-schema-validator"), "-o", str(out)], check=True
    )
    committed = (REPO / "ocirun" / "spec" / "_compiled_schema.py").read_text()
    assert out.read_text() == committed, "stale: run scripts/gen-schema-validator"


def test_generated_module_needs_no_fastjsonschema() -> None:
    text = (REPO / "ocirun" / "spec" / "_compiled_schema.py").read_text()
    assert "import fastjsonschema" not in text and "from fastjsonschema" not in text
    code = (
        "import sys; sys.modules['fastjsonschema'] = None\n"  # any import of it now fails
        "from ocirun.spec import _compiled_schema as c\n"
        "c.validate({'ociVersion': '1.3.0'})\n"
        "try:\n    c.validate({'ociVersion': 1})\nexcept c.JsonSchemaValueException: print('rejected')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "rejected"


def test_valid_config_never_imports_jsonschema(tmp_path: Path) -> None:
    bundle = tmp_path / "b"
    (bundle / "rootfs").mkdir(parents=True)
    from ocirun.spec.generate import default_spec

    (bundle / "config.json").write_text(json.dumps(default_spec()))
    code = (
        "import sys\nfrom ocirun.spec.load import load_bundle\n"
        f"load_bundle({str(bundle)!r})\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "('jsonschema', 'referencing', 'fastjsonschema', 'jsonschema_specifications'))\n"
        "print(bad)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "[]"


@spec_fixtures
@pytest.mark.parametrize("path", _fixtures("good"), ids=lambda p: p.name)
def test_spec_good_fixtures(path: Path) -> None:
    doc = json.loads(path.read_text())
    assert schema.fast_is_valid(doc)
    assert schema.reference_is_valid(doc)
    assert schema.schema_problems(doc) == []


@spec_fixtures
@pytest.mark.parametrize("path", _fixtures("bad"), ids=lambda p: p.name)
def test_spec_bad_fixtures(path: Path) -> None:
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError:
        from ocirun.errors import ConfigError
        from ocirun.spec.load import parse_config

        with pytest.raises(ConfigError, match="line 1, column 2"):
            parse_config(path.read_bytes(), str(path))
        return
    assert not schema.fast_is_valid(doc)
    assert not schema.reference_is_valid(doc)
    problems = schema.schema_problems(doc)
    assert problems and all(p.path.startswith("$.") for p in problems)


def test_problem_paths_and_all_violations() -> None:
    doc = {"ociVersion": 1, "process": {"cwd": "/", "args": ["sh", 2, None]}, "annotations": {"a.b": 3}}
    got = {(p.path, p.message) for p in schema.schema_problems(doc)}
    assert ("$.ociVersion", "1 is not of type 'string'") in got
    assert ("$.process.args[1]", "2 is not of type 'string'") in got
    assert ("$.process.args[2]", "None is not of type 'string'") in got
    assert ("$.annotations['a.b']", "3 is not of type 'string'") in got
    assert len(got) == 4


def test_single_branch_anyof_reports_the_field() -> None:
    doc = {"ociVersion": "1.3.0", "linux": {"namespaces": [{"type": "pid"}, {"path": "/x"}]}}
    assert [(p.path, p.message) for p in schema.schema_problems(doc)] == [
        ("$.linux.namespaces[1]", "'type' is a required property")
    ]


@pytest.mark.parametrize(
    "pattern_field, value",
    [
        (("process", "rlimits", 0, "type"), "RLIMIT_NOFILE\n"),
        (("linux", "devices", 0, "type"), "c\n"),
        (("linux", "intelRdt", "memBwSchema"), "MB:0=20\n"),
        (("linux", "resources", "hugepageLimits", 0, "pageSize"), "2MB\n"),
        (("process", "execCPUAffinity", "final"), "0-3\n"),
    ],
)
def test_dollar_means_end_of_input_in_both(pattern_field: tuple[Any, ...], value: str) -> None:
    """ECMA-262 '$' (JSON Schema's regex dialect) never matches before a final newline."""
    doc = _full()
    _set(doc, pattern_field, value)
    assert not schema.fast_is_valid(doc)
    assert not schema.reference_is_valid(doc)
    _set(doc, pattern_field, value.rstrip("\n"))
    assert schema.fast_is_valid(doc) and schema.reference_is_valid(doc)


def test_ecma_pattern() -> None:
    assert schema.ecma_pattern("^a$") == "^a\\Z"
    assert schema.ecma_pattern("^a\\$$") == "^a\\$\\Z"


# --------------------------------------------------------------------------- differential


def _full() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((LOCAL_FIXTURES / "full-config.json").read_text())
    return doc


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for part in path[:-1]:
        doc = doc[part]
    doc[path[-1]] = value


def _nodes(doc: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    yield path, doc
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _nodes(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            yield from _nodes(v, (*path, i))


#: Replacement values: every JSON type, the boundaries of the spec's integer ranges,
#: floats that are whole numbers, and strings aimed at the spec's patterns.
REPLACEMENTS: list[Any] = [
    None, True, False, 0, 1, -1, 1.0, 0.5, 2**31, -(2**31) - 1, 2**32, 2**63, -(2**63) - 1, 2**64,
    "", "x", "x\n", "RLIMIT_CPU", "c", "MB:1", "2MB", "0-3,7", [], ["x"], [1], {}, {"x": 1}, {"type": "pid"},
]


PER_NODE = 4  # replacements tried at each node, rotating through REPLACEMENTS


def _mutations(doc: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Deterministic: node i gets REPLACEMENTS[(i + 5j) % n] for j < PER_NODE, is deleted,
    and (objects) gains an unknown property. Every replacement is used across the nodes."""
    n = len(REPLACEMENTS)
    for i, (path, node) in enumerate(list(_nodes(doc))):
        if path:
            for value in (REPLACEMENTS[(i + 5 * j) % n] for j in range(PER_NODE)):
                if value is node or (type(value) is type(node) and value == node):
                    continue
                mutated = copy.deepcopy(doc)
                _set(mutated, path, value)
                yield f"{path} = {value!r}", mutated
            parent_path, key = path[:-1], path[-1]
            mutated = copy.deepcopy(doc)
            parent = mutated
            for part in parent_path:
                parent = parent[part]
            del parent[key]
            yield f"del {path}", mutated
        if isinstance(node, dict):
            mutated = copy.deepcopy(doc)
            target = mutated
            for part in path:
                target = target[part]
            target["unknownProperty"] = {"x": [1]}
            yield f"{path} + unknown", mutated


@pytest.mark.parametrize("source", ["full-config", "spec-example"])
def test_differential_mutations(source: str) -> None:
    if source == "full-config":
        base = _full()
    else:
        if not SPEC_TESTS.is_dir():
            pytest.skip("runtime-spec checkout not present")
        base = json.loads((SPEC_TESTS / "good" / "spec-example.json").read_text())
    disagreements = []
    counts = {True: 0, False: 0}
    for label, doc in _mutations(base):
        fast, ref = schema.fast_is_valid(doc), schema.reference_is_valid(doc)
        counts[ref] += 1
        if fast != ref:
            disagreements.append(f"{label}: fast={fast} reference={ref}")
    assert disagreements == []
    # the mutations exercise both verdicts in quantity
    assert counts[True] > 200 and counts[False] > 1000, counts


def test_rules_and_model_survive_every_mutation() -> None:
    """On every mutated config the rules run without an exception, and whatever passes
    both the schema and the rules becomes a model (nothing downstream sees the dict)."""
    from ocirun.spec.model import Config
    from ocirun.spec.rules import check_rules

    accepted = 0
    for label, doc in _mutations(_full()):
        found = check_rules(doc)
        assert all(p.path.startswith("$") for p in found), label
        if not found and schema.fast_is_valid(doc):
            Config.from_dict(doc).to_dict()
            accepted += 1
    assert accepted > 200


def test_schema_files_untouched() -> None:
    """Our schema repair happens in memory; the committed files stay upstream's."""
    text = (REPO / "schemas" / "defs.json").read_text()
    assert '"$ref": "#definitions/uint32"' in text
    assert os.path.islink(REPO / "ocirun" / "spec" / "schemas")

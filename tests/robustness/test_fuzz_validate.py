"""Hostile config.json through `ocirun validate`, in-process, thousands of examples.

Property: exit 0 with "<bundle>: valid" (warnings allowed), or exit 1 with
exactly one message that names where the problem is (a JSON path such as
``$.process.user.uid``, or for malformed files the line and column or byte);
never a traceback or "internal error"; no fd left open, nothing written
anywhere in the bundle.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import subprocess
from pathlib import Path

import pytest
from hostile import byte_mutation, encode, hostile_config
from hypothesis import given, settings
from robust import OCIRUN, scale

from ocirun import cli

#: Where a ConfigError says the problem is: the JSON path, or the place in a malformed file.
LOCATION = re.compile(r"(^|: |; )(\$(?:[.\[][^:;]*)?|line \d+, column \d+|byte \d+): ")


@pytest.fixture(scope="module")
def vbundle(tmp_path_factory) -> Path:
    """A bundle with an empty rootfs: validate looks at the directory, not into it."""
    d = tmp_path_factory.mktemp("validate-bundle")
    (d / "rootfs").mkdir()
    return d


def _listing(d: Path) -> list[str]:
    return sorted(str(p.relative_to(d)) for p in d.rglob("*"))


def validate_in_process(bundle: Path, data: bytes) -> tuple[int, str, str]:
    (bundle / "config.json").write_bytes(data)
    fds = sorted(os.listdir("/proc/self/fd"))
    before = _listing(bundle)
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = cli.main(["validate", "--bundle", str(bundle)])
    assert sorted(os.listdir("/proc/self/fd")) == fds, "validate left an fd open"
    assert _listing(bundle) == before, "validate wrote into the bundle"
    return rc, out.getvalue(), err.getvalue()


def assert_validate_outcome(bundle: Path, rc: int, out: str, err: str) -> None:
    assert "Traceback" not in err and "internal error" not in err, err
    # Lines end at "\n" only: a message may quote a form feed or a U+2028 of the config.
    assert err == "" or err.endswith("\n"), repr(err)
    lines = err[:-1].split("\n") if err else []
    problems = [ln for ln in lines if not ln.startswith("warning: ")]
    if rc == 0:
        assert out == f"{bundle}: valid\n"
        assert problems == [], err
        return
    assert rc == 1, (rc, err)
    assert out == ""
    assert len(problems) == 1, err
    message = problems[0]
    prefix = f"{bundle / 'config.json'}: "
    assert message.startswith(prefix), message
    assert LOCATION.search(message[len(prefix):]), f"no JSON path or location in: {message}"


@settings(max_examples=scale(400, 30000))
@given(case=hostile_config())
def test_validate_hostile_configs(vbundle, case):
    seed, doc, done = case
    rc, out, err = validate_in_process(vbundle, encode(doc))
    assert_validate_outcome(vbundle, rc, out, err)


@settings(max_examples=scale(800, 30000))
@given(case=byte_mutation())
def test_validate_byte_mutations_of_real_configs(vbundle, case):
    seed, data, kind = case
    rc, out, err = validate_in_process(vbundle, data)
    assert_validate_outcome(vbundle, rc, out, err)


@pytest.mark.parametrize("seed", sorted(p.stem for p in (Path(__file__).parent / "fixtures" / "real-configs").glob("*.json")))
def test_every_seed_is_valid_as_it_is(vbundle, seed):
    """The seeds themselves (root.path pointed at the bundle's rootfs) validate: the
    fuzzing starts from configs ocirun accepts, so mutations are what it meets."""
    from hostile import SEEDS

    rc, out, err = validate_in_process(vbundle, encode(SEEDS[seed]))
    assert_validate_outcome(vbundle, rc, out, err)
    if seed != "crun-spec-rootless" and seed != "runc-spec-rootless":
        assert rc == 0, err


def _nested_unknown_key(depth: int) -> bytes:
    return (b'{"ociVersion": "1.0.2", "root": {"path": "rootfs"}, "x-unknown": '
            + b'{"a": ' * depth + b"{}" + b"}" * depth + b"}")


@pytest.mark.parametrize("depth", [
    100, 900,
    1000,
    9998,  # with the top-level object and the innermost {}: 10,000 levels, runc's (Go's) limit
])
def test_validate_deeply_nested_unknown_key(vbundle, depth):
    """An unknown key nested ``depth`` objects deep (runc accepts 10,000 levels): the CLI
    (a fresh interpreter, as clients run it) checks the rest of the config and
    ignores it as runc does; never an internal error."""
    (vbundle / "config.json").write_bytes(_nested_unknown_key(depth))
    p = subprocess.run([*OCIRUN, "validate", "--bundle", str(vbundle)], capture_output=True, timeout=60,
                       stdin=subprocess.DEVNULL)
    assert_validate_outcome(vbundle, p.returncode, p.stdout.decode(), p.stderr.decode())
    assert p.returncode == 0, p.stderr  # runc accepts it

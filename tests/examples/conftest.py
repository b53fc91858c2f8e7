"""The examples (examples/*/run and their READMEs' podman commands), as root.

The run scripts use the runtime OCIRUN names (default: the worktree's
.venv/bin/ocirun), as they do by hand. The podman tests reuse the e2e tests'
private podman configuration (tests/e2e/engines.py) with the runtime
registered under the name the READMEs use, `ocirun`.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "e2e"))

from engines import Podman, become_subreaper, reap_orphans  # noqa: E402


def pytest_configure(config):
    if os.geteuid() == 0:
        # conmon double-forks: it is reparented to us, and reaped.
        become_subreaper()


@pytest.fixture(autouse=True)
def _root_only():
    if os.geteuid() != 0:
        pytest.skip("the examples need root")


@pytest.fixture(scope="session")
def runtime_binary() -> Path:
    given = os.environ.get("OCIRUN")
    if given:
        found = given if "/" in given else next(
            (str(Path(d) / given) for d in os.environ.get("PATH", "").split(":") if (Path(d) / given).is_file()),
            given)
        return Path(found).resolve()
    path = REPO / ".venv" / "bin" / "ocirun"
    if not path.is_file():
        pytest.fail(f"{path} not found (run ./scripts/setup)")
    return path


@pytest.fixture(scope="session")
def podman_session(tmp_path_factory, runtime_binary) -> Iterator[Podman]:
    # Registered as "ocirun" whatever the binary (the READMEs say --runtime ocirun).
    pm = Podman(tmp_path_factory.mktemp("podman"), runtime_binary,
                extra_runtimes={"ocirun": runtime_binary})
    try:
        yield pm
    finally:
        leaks = pm.close()
        reap_orphans()
    assert not leaks, "podman teardown: " + "; ".join(leaks)

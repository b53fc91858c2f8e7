"""The standing robustness suite (issue #11): config fuzzing, kill anywhere, races,
CVE regressions. Root tests on real containers, with the integration fixtures
(see robust.py) and their leak check.

Run size: the CI run is bounded and deterministic (Hypothesis derandomized,
no example database, fixed example counts); OCIRUN_ROBUSTNESS=big runs the
long one (docs/robustness.md).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings
from robust import BIG, integration

# The integration fixtures, by name: pytest finds fixtures among a conftest's attributes.
bundle_image = integration.bundle_image
bundle = integration.bundle
ocirun = integration.ocirun

_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much,
            HealthCheck.function_scoped_fixture]
# CI: the same examples on every run (derandomize), nothing read from or saved to a
# database (a fresh clone has none; a developer's would change what CI runs).
settings.register_profile("ci", derandomize=True, database=None, deadline=None,
                          suppress_health_check=_SLOW_OK, print_blob=True)
# big: random, remembers failures in .hypothesis/ (git-ignored) to replay them first.
settings.register_profile("big", deadline=None, suppress_health_check=_SLOW_OK, print_blob=True)
settings.load_profile("big" if BIG else "ci")


def pytest_configure(config):
    integration.pytest_configure(config)  # we are the subreaper of orphaned inits


@pytest.fixture(autouse=True)
def _root_only():
    if os.geteuid() != 0:
        pytest.skip("robustness tests need root")

"""Hypothesis profiles for the property tests.

- "dev" (default for local runs): derandomized, so every run replays the same examples.
- "ci" (chosen when the environment variable CI is set): random examples on every run. The seed is
  drawn here and printed in the report header, so a failure reproduces with
  `pytest --hypothesis-seed=SEED` (and the failing example's blob is printed too). The seed is
  printed in the report's header and again after the summary (the header is hidden under -q).
- "stress": "ci" with 5x each test's examples, for a thorough local hunt.

HYPOTHESIS_PROFILE=name picks one explicitly (as does pytest's `--hypothesis-profile`). Property
tests give their example count relative to the profile: `max_examples(n)` in a test module is
n x the profile's max_examples / 100.
"""
from __future__ import annotations

import os
import random

import pytest
from hypothesis import HealthCheck, settings

_COMMON = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("dev", derandomize=True, max_examples=100, **_COMMON)
settings.register_profile("ci", derandomize=False, print_blob=True, max_examples=100, **_COMMON)
settings.register_profile("stress", derandomize=False, print_blob=True, max_examples=500, **_COMMON)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or ("ci" if os.environ.get("CI") else "dev"))


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config):
    """Random profiles: draw the run's seed here (unless --hypothesis-seed gives one) so it can be
    reported; hypothesis's pytest plugin then seeds every test with it."""
    if settings.default.derandomize or not hasattr(config.option, "hypothesis_seed"):
        return
    worker = getattr(config, "workerinput", None)  # a pytest-xdist worker: the controller's seed
    if worker is not None and worker.get("hypothesis_seed") is not None:
        config.option.hypothesis_seed = worker["hypothesis_seed"]
    if config.option.hypothesis_seed is None:
        config.option.hypothesis_seed = str(random.SystemRandom().randrange(2 ** 32))


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node):
    """pytest-xdist (the tests run in two processes): every worker takes the seed the controller
    drew and prints, so `--hypothesis-seed=SEED` replays the examples each worker ran."""
    node.workerinput["hypothesis_seed"] = getattr(node.config.option, "hypothesis_seed", None)


def _describe(config) -> str:
    profile = settings.get_current_profile_name()
    if settings.default.derandomize:
        return f"hypothesis profile {profile!r}: derandomized (fixed examples)"
    seed = getattr(config.option, "hypothesis_seed", None)
    return f"hypothesis profile {profile!r}: seed {seed} (reproduce: pytest --hypothesis-seed={seed})"


def pytest_report_header(config):
    return _describe(config)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """The seed again at the end: the header is hidden under -q (this project's default)."""
    terminalreporter.write_line(_describe(config))

"""Test-wide settings: strict rank promotion (as equinox's suite) and hypothesis profiles."""

import os
import tempfile

# One persistent compilation cache for the whole run, set before JAX loads, so that the xdist workers and every
# subprocess a test starts (which inherit the environment) reuse a program compiled elsewhere in the suite (the
# experiments' scripts, the CLI's runs and the multi-device children compile the same training steps). Keyed by
# XLA on the program, the flags and the versions. A user's own settings win.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "jaxconv-tests-jax-cache"))
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# On GPUs float32 dots and convolutions default to TF32 (a 10-bit mantissa, errors near 1e-3): the suite compares
# against float64 references, so it asks for full float32 — through the environment, so that every subprocess a
# test starts (the CLI runs test_checkpoint compares bit for bit with one run in this process) computes alike.
# `precision=` tests set their own (tests/reference.py's `contraction_rtol` says what each precision may lose).
os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
# The xdist workers and the subprocesses tests start share one GPU: each allocates what it needs, not 75% up front.
os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")

import jax  # noqa: E402
import pytest
from hypothesis import HealthCheck, settings

jax.config.update("jax_numpy_rank_promotion", "raise")
jax.config.update("jax_default_matmul_precision", os.environ["JAX_DEFAULT_MATMUL_PRECISION"])  # if JAX loaded first

# Each new shape is a compile, so examples are few and slow, and their timing erratic: no deadline. The fast tier's
# profile draws 10 examples, the slow tier's (`--runslow`, what CI runs) 30; both are derandomized (the same
# examples every run). `HYPOTHESIS_PROFILE=long` (or pytest's `--hypothesis-profile=long`) runs thousands of
# fresh ones.
for _name, _examples in (("fast", 10), ("ci", 30)):
    settings.register_profile(
        _name, max_examples=_examples, deadline=None, suppress_health_check=[HealthCheck.too_slow],
        derandomize=True, print_blob=True,
    )  # fmt: skip
settings.register_profile(
    "long", max_examples=3000, deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)


def pytest_configure(config):
    if config.getoption("hypothesis_profile", None) is None:  # hypothesis's own option wins
        tier = "ci" if config.getoption("--runslow") else "fast"
        settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or tier)


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run the tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)

"""Test-wide settings: strict rank promotion (as equinox's suite), hypothesis profiles, the two tiers (`--runslow`)
and the fast tier's compile level."""

import importlib.metadata
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


# The fast tier's time is three quarters XLA:CPU compiling many small programs, and most of a training program's
# compile is LLVM optimising its kernels: at LLVM's -O0 the fast tier takes about 15% less (the experiments' training
# programs compile in half the time). The programs are the same HLO — XLA's own passes, fusion and YNNPACK/Eigen
# routing are untouched — only their machine code is less optimised. The slow tier (`--runslow`, what CI runs)
# compiles every test, the fast tier's included, as users' programs are compiled. Not with an accelerator's plugin
# installed (the flag would reach its compiler too), nor where the user's XLA_FLAGS already say.
FAST_TIER_XLA_FLAG = "--xla_backend_optimization_level=0"


def _accelerator_plugin_installed() -> bool:
    names = (d.metadata["Name"] or "" for d in importlib.metadata.distributions())
    return any(n.lower().replace("_", "-").startswith(("jax-cuda", "jax-rocm", "libtpu")) for n in names)


def pytest_configure(config):
    if config.getoption("hypothesis_profile", None) is None:  # hypothesis's own option wins
        tier = "ci" if config.getoption("--runslow") else "fast"
        settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE") or tier)
    # Before any computation starts XLA's backend (which reads XLA_FLAGS once); the xdist workers and every
    # subprocess a test starts inherit it.
    flags = os.environ.get("XLA_FLAGS", "")
    if config.getoption("--runslow") or "xla_backend_optimization_level" in flags or _accelerator_plugin_installed():
        return
    os.environ["XLA_FLAGS"] = f"{flags} {FAST_TIER_XLA_FLAG}".strip()


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", help="also run the tests marked slow")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def xla_cpu_threads(monkeypatch):
    """Sets, for one test, the XLA:CPU thread count that routes jaxconv's ``"xla"`` strategy (``set_threads(n)``).

    The route is chosen when ``conv2d`` is traced, so the caches of the two jitted functions whose traces read the
    count (``_conv_nhwc``, where ``conv2d`` picks the route, and the primitive's eager implementation, whose ``"xla"``
    lowering asks again) are cleared when the count is set and again after the test: no trace made for the real
    count is reused under the patched one, and none made under it outlives the test. Not ``jax.clear_caches()``: on
    a worker that has compiled thousands of programs it takes seconds (4.6-6.2 s measured in the fast tier here),
    and every later test on the worker then traces and lowers its programs again.
    """
    from jaxconv.conv import _conv, _primitive, _strategies

    def clear():
        _conv._conv_nhwc.clear_cache()
        _primitive._impl_jit.clear_cache()

    def set_threads(n: int) -> None:
        monkeypatch.setattr(_strategies, "xla_cpu_threads", lambda: n)
        clear()

    yield set_threads
    clear()

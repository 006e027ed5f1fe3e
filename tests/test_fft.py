"""``strategy="fft"``: equal to lax's convolution in float64, within its stated float32 bound, with gradients.

Configurations are seeded random draws (1, 2 and 3 spatial dims, stride, dilation, groups, every padding mode);
the float32 bound is ``|err| <= eps32 * log2(P) * ||x_n|| * ||k_o||`` per output (``P`` the transform's size,
``x_n`` the padded image, ``k_o`` the output channel's kernel), tested against the same convolution in float64.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

import jaxconv
from jaxconv.conv._spec import PADDING_MODES
from jaxconv.conv._strategies import fft_size
from tests.reference import enable_x64, numpy_convnd

LAYOUTS = {1: "NWC", 2: "NHWC", 3: "NDHWC"}


def draw(rng, dims):
    """A random small configuration with ``dims`` spatial dims: operands (float64) and options."""
    groups = int(rng.choice([1, 2]))
    c, o = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    taps = tuple(int(v) for v in rng.integers(1, 4, dims))
    options = dict(
        stride=tuple(int(v) for v in rng.integers(1, 3, dims)),
        dilation=tuple(int(v) for v in rng.integers(1, 3, dims)),
        groups=groups,
        padding=tuple((int(lo), int(hi)) for lo, hi in rng.integers(0, 3, (dims, 2))),
        padding_mode=str(rng.choice(PADDING_MODES)),
        layout=LAYOUTS[dims],
    )
    spatial = tuple(int(v) for v in rng.integers(6, 10 if dims < 3 else 8, dims))
    x = rng.standard_normal((2, *spatial, c))
    kernel = rng.standard_normal((*taps, c // groups, o))
    return x, kernel, options


def conv(dims):
    return getattr(jaxconv, f"conv{dims}d")


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_fft_equals_the_numpy_loop_in_float64_with_gradients_equal_to_xlas(dims):
    rng = np.random.default_rng(100 + dims)
    with enable_x64():
        for _ in range(2):
            x, kernel, options = draw(rng, dims)
            pads = options["padding"]
            want = numpy_convnd(
                x,
                kernel,
                stride=options["stride"],
                dilation=options["dilation"],
                pads=pads,
                groups=options["groups"],
                mode=options["padding_mode"],
            )
            f = conv(dims)
            got = f(x, kernel, strategy="fft", **options)
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
            ct = rng.standard_normal(want.shape)

            def loss(x, k, strategy, f=f, ct=ct, options=options):
                return jnp.vdot(f(x, k, strategy=strategy, **options), ct)

            grads = [jax.grad(loss, (0, 1))(x, kernel, s) for s in ("fft", "xla")]
            for got_grad, want_grad in zip(*grads, strict=True):
                np.testing.assert_allclose(got_grad, want_grad, rtol=1e-12, atol=1e-12)


def test_fft_second_derivatives_match_finite_differences():
    rng = np.random.default_rng(7)
    with enable_x64():
        x, kernel, options = draw(rng, 1)
        check_grads(lambda x, k: conv(1)(x, k, strategy="fft", **options), (x, kernel), 2, ["rev"])


def test_fft_float32_error_is_within_its_bound():
    """On seeded draws, including large kernels (where the bound matters), the observed constant stays below 1."""
    rng = np.random.default_rng(11)
    worst = 0.0
    for image, taps, channels in [(64, 17, 1), (48, 9, 3), (40, 33, 2), (30, 5, 4)]:
        x = rng.standard_normal((2, image, image, channels)) * rng.choice([1e-3, 1, 1e3])
        kernel = rng.standard_normal((taps, taps, channels, 3))
        got = jaxconv.conv2d(x.astype(np.float32), kernel.astype(np.float32), padding="SAME", strategy="fft")
        with enable_x64():
            want = np.asarray(jaxconv.conv2d(x, kernel, padding="SAME", strategy="xla"))
        pad = (taps - 1) // 2, taps // 2
        padded = np.pad(x, ((0, 0), pad, pad, (0, 0)))
        norm_x = np.sqrt((padded**2).sum(axis=(1, 2, 3)))[:, None, None, None]
        norm_k = np.sqrt((kernel**2).sum(axis=(0, 1, 2)))[None, None, None, :]
        size = fft_size(padded.shape[1]) ** 2
        bound = np.finfo(np.float32).eps * math.log2(size) * norm_x * norm_k
        ratio = float((np.abs(np.asarray(got, np.float64) - want) / bound).max())
        worst = max(worst, ratio)
    print(f"worst observed constant {worst:.3g}")
    assert 0 < worst <= 1


def test_auto_takes_fft_for_large_kernels_and_the_transposes_run_it():
    rng = np.random.default_rng(12)
    x = jnp.asarray(rng.standard_normal((1, 40, 40, 1)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((17, 17, 1, 1)), jnp.float32)
    for strategy in ("fft", "auto"):
        np.testing.assert_allclose(
            jaxconv.conv_transpose2d(x, kernel, stride=2, padding=3, strategy=strategy),
            jaxconv.conv_transpose2d(x, kernel, stride=2, padding=3, strategy="xla"),
            atol=2e-4,
        )
    general = jaxconv.conv_general_dilated(x, kernel, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    np.testing.assert_allclose(general, jaxconv.conv2d(x, kernel, padding="SAME", strategy="fft"), atol=2e-4)


def test_fft_vmap_over_kernels_is_extra_groups():
    rng = np.random.default_rng(13)
    x = jnp.asarray(rng.standard_normal((2, 12, 12, 2)), jnp.float32)
    kernels = jnp.asarray(rng.standard_normal((3, 4, 4, 2, 2)), jnp.float32)
    mapped = jax.vmap(lambda k: jaxconv.conv2d(x, k, strategy="fft"))(kernels)
    each = jnp.stack([jaxconv.conv2d(x, k, strategy="xla") for k in kernels])
    np.testing.assert_allclose(mapped, each, atol=1e-4)

"""dtype behaviour, caching (no retrace) and composition with JAX's transformations."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import CONTRACTION_RTOL, contraction_rtol, enable_x64, numpy_conv2d

import jaxconv
from jaxconv.conv._conv import _conv_nhwc

STRATEGIES = ("window", "shift", "direct", "xla")


def operands(seed=0, shape=(2, 7, 6, 3), kernel_shape=(3, 3, 3, 2)):
    rng = np.random.default_rng(seed)
    return rng.standard_normal(shape).astype(np.float32), rng.standard_normal(kernel_shape).astype(np.float32)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize(("dtype", "tol"), [("float16", 1e-2), ("bfloat16", 5e-2), ("float32", 1e-5)])
def test_float_dtypes(strategy, dtype, tol):
    x, kernel = operands()
    x_low, kernel_low = jnp.asarray(x, dtype), jnp.asarray(kernel, dtype)
    out = jaxconv.conv2d(x_low, kernel_low, padding="SAME", strategy=strategy)
    assert out.dtype == jnp.dtype(dtype)
    # Reference on the rounded inputs: only the output rounding and accumulation remain.
    expected = numpy_conv2d(np.asarray(x_low, np.float64), np.asarray(kernel_low, np.float64), pads=((1, 1), (1, 1)))
    np.testing.assert_allclose(np.asarray(out, np.float64), expected, rtol=tol, atol=tol * 4)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_float64_with_x64(strategy):
    with enable_x64():
        x, kernel = operands()
        out = jaxconv.conv2d(x.astype(np.float64), kernel.astype(np.float64), strategy=strategy)
        assert out.dtype == jnp.float64
        np.testing.assert_allclose(out, numpy_conv2d(x, kernel), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("image_dtype", [bool, np.int32, np.uint8])
@pytest.mark.parametrize("kernel_dtype", ["float32", "bfloat16"])
def test_bool_and_integer_images_promote_to_kernel_dtype(image_dtype, kernel_dtype):
    rng = np.random.default_rng(1)
    x = rng.integers(0, 2, (8, 8)).astype(image_dtype)
    kernel = jnp.asarray([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]], kernel_dtype)
    out = jaxconv.conv2d(x, kernel)
    assert out.dtype == jnp.dtype(kernel_dtype)
    expected = numpy_conv2d(x.astype(np.float64)[None, :, :, None], np.asarray(kernel, np.float64)[:, :, None, None])
    np.testing.assert_array_equal(np.asarray(out, np.float64), expected[0, :, :, 0])


def test_mixed_float_dtypes_promote():
    x, kernel = operands()
    assert jaxconv.conv2d(jnp.asarray(x, jnp.float16), kernel).dtype == jnp.float32
    assert jaxconv.conv2d(x, jnp.asarray(kernel, jnp.bfloat16)).dtype == jnp.float32
    assert jaxconv.conv2d(jnp.asarray(x, jnp.bfloat16), kernel.astype(jnp.bfloat16), np.ones(2)).dtype == jnp.bfloat16


@pytest.mark.parametrize("strategy", ("window", "shift", "direct", "xla", "auto"))
def test_no_retrace_on_same_shapes_and_options(strategy):
    x, kernel = operands(seed=2, shape=(1, 9, 9, 3))
    opts = dict(padding="SAME", stride=2, padding_mode="reflect", strategy=strategy)
    jaxconv.conv2d(x, kernel, **opts)
    cached = _conv_nhwc._cache_size()
    jaxconv.conv2d(x + 1.0, kernel * 2.0, **opts)
    jaxconv.conv2d(x.tolist(), kernel, **{**opts, "stride": (2, 2), "padding": "same"})  # same spec, other spelling
    assert _conv_nhwc._cache_size() == cached

    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def user_fn(x, kernel):
        return jaxconv.conv2d(x, kernel, **opts)

    user_fn(x, kernel)
    user_fn(x * 3.0, kernel)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_vmap_over_extra_batch_dims(strategy):
    x, kernel = operands(seed=3)
    stacked = jnp.stack([x, 2 * x, -x])  # [3, N, H, W, C]
    kernels = jnp.stack([kernel, kernel + 1.0, kernel * 0.5])
    opts = dict(padding="SAME", strategy=strategy)
    out = jax.vmap(lambda x, k: jaxconv.conv2d(x, k, **opts))(stacked, kernels)
    for i in range(3):
        np.testing.assert_allclose(out[i], jaxconv.conv2d(stacked[i], kernels[i], **opts), rtol=1e-5, atol=1e-5)
    per_image = jax.vmap(lambda image: jaxconv.conv2d(image, kernel, **opts))(x)  # over N with unbatched inputs
    np.testing.assert_allclose(per_image, jaxconv.conv2d(x, kernel, **opts), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_forward_mode_jvp_jacfwd_and_hessian(strategy):
    x, kernel = operands(seed=4, shape=(1, 5, 5, 2), kernel_shape=(2, 2, 2, 1))
    opts = dict(stride=2, padding=1, padding_mode="replicate", strategy=strategy)

    def f(k):
        return jaxconv.conv2d(x, k, **opts)

    tangent = jnp.ones_like(kernel)
    primal, jvp_out = jax.jvp(f, (kernel,), (tangent,))
    np.testing.assert_allclose(jvp_out, f(tangent), rtol=1e-5, atol=1e-5)  # linear in the kernel
    np.testing.assert_allclose(jax.jacfwd(f)(kernel), jax.jacrev(f)(kernel), rtol=1e-5, atol=1e-5)
    hess = jax.hessian(lambda k: jnp.sum(f(k) ** 2))(kernel)
    jac = jax.jacrev(f)(kernel).reshape(-1, kernel.size)
    np.testing.assert_allclose(hess.reshape(kernel.size, kernel.size), 2 * jac.T @ jac, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_inside_lax_scan(strategy):
    """Repeated 3x3 box blur with circular padding inside scan: the image mean is conserved exactly-ish."""
    x, _ = operands(seed=5, shape=(1, 8, 8, 1))
    box = jnp.full((3, 3, 1, 1), 1.0 / 9.0)

    def body(image, _):
        return jaxconv.conv2d(image, box, padding="SAME", padding_mode="circular", strategy=strategy), None

    final, _ = jax.lax.scan(body, jnp.asarray(x), None, length=5)
    looped = jnp.asarray(x)
    for _ in range(5):
        looped = body(looped, None)[0]
    np.testing.assert_allclose(final, looped, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(final.mean(), x.mean(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("precision", [None, "highest", jax.lax.Precision.DEFAULT])
def test_precision_passes_through(precision):
    x, kernel = operands(seed=6)
    out = jaxconv.conv2d(x, kernel, precision=precision, strategy="shift")
    # Explicit DEFAULT is TF32 on GPUs (relative error ~1e-3); None is the suite's "highest".
    expected = numpy_conv2d(x, kernel)
    error = np.linalg.norm(np.asarray(out) - expected) / np.linalg.norm(expected)
    assert error < contraction_rtol(precision), error


@pytest.mark.parametrize(("arithmetic", "mantissa_bits"), [("tensorfloat32", 10), ("bfloat16", 7)])
@pytest.mark.parametrize("seed", [6, 7])
def test_each_arithmetic_fits_its_tolerance_and_not_float32s(arithmetic, mantissa_bits, seed):
    """A GPU's TF32 (a TPU's bfloat16) rounds a float32 contraction's operands to 10 (7) mantissa bits and sums in
    float32: simulated on the CPU, its error fits that arithmetic's tolerance and fails float32's."""
    x, kernel = operands(seed=seed)
    rounded = [
        np.asarray(jax.lax.reduce_precision(a, exponent_bits=8, mantissa_bits=mantissa_bits)) for a in (x, kernel)
    ]
    expected = numpy_conv2d(x, kernel)
    error = np.linalg.norm(numpy_conv2d(*rounded) - expected) / np.linalg.norm(expected)
    assert CONTRACTION_RTOL["float32"] < error < CONTRACTION_RTOL[arithmetic], error

"""conv1d and conv3d (and conv2d through the same N-d code) against a NumPy loop, lax and PyTorch, values and gradients.

Configurations are drawn from a seeded generator (the seed is the test id), so the cases are not hand-picked.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from reference import SPATIAL_LETTERS, draw_geometry, enable_x64, numpy_convnd, pairwise, tiered, torch_convnd

import jaxconv

STRATEGIES = ("window", "shift", "direct", "xla", "auto")
MODES = ("zeros", "reflect", "replicate", "circular")
CONV = {1: jaxconv.conv1d, 2: jaxconv.conv2d, 3: jaxconv.conv3d}


def draw_case(seed, dims, *, mode=None, beyond_reach=False):
    """A random small convolution: operands (channels-last, float32) and options."""
    rng = np.random.default_rng(seed)
    groups, c, o, taps, stride, dilation = draw_geometry(rng, dims, max_stride=2)
    spatial = [int(rng.integers(5, 8 if dims < 3 else 6)) for _ in range(dims)]
    reach = [(k - 1) * d for k, d in zip(taps, dilation, strict=True)]
    mode = mode or str(rng.choice(MODES))
    top = [r + 3 if beyond_reach else r for r in reach]
    if mode == "reflect":
        top = [min(t, s - 1) for t, s in zip(top, spatial, strict=True)]
    pads = tuple((int(rng.integers(0, t + 1)), int(rng.integers(0, t + 1))) for t in top)
    x = rng.standard_normal((int(rng.integers(1, 3)), *spatial, c)).astype(np.float32)
    kernel = rng.standard_normal((*taps, c // groups, o)).astype(np.float32)
    bias = rng.standard_normal((o,)).astype(np.float32)
    options = dict(stride=tuple(stride), dilation=tuple(dilation), padding=pads, groups=groups, padding_mode=mode)
    return x, kernel, bias, options


def reference_options(options):
    return dict(
        stride=options["stride"], dilation=options["dilation"], pads=options["padding"], groups=options["groups"],
        mode=options["padding_mode"],
    )  # fmt: skip


def to_channels_first(x, kernel):
    dims = x.ndim - 2
    return np.moveaxis(x, -1, 1), kernel.transpose(dims + 1, dims, *range(dims))


@pairwise("strategy,seed,dims", STRATEGIES, range(4), [1, 3])
def test_values_match_numpy_loop(strategy, seed, dims):
    x, kernel, bias, options = draw_case(100 * dims + seed, dims)
    out = CONV[dims](x, kernel, bias, strategy=strategy, **options)
    expected = numpy_convnd(x, kernel, bias, **reference_options(options))
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_channels_first_values_and_gradients_equal_pytorch(dims, mode):
    """NCW/NCHW/NCDHW with OI... kernels: PyTorch's convNd after F.pad in the mode (nn.ConvNd's padding_mode)."""
    pytest.importorskip("torch")
    x, kernel, bias, options = draw_case(7 * dims + len(mode), dims, mode=mode)
    xf, kf = to_channels_first(x, kernel)
    layout = f"NC{SPATIAL_LETTERS[dims]}"
    with enable_x64():
        xf64, kf64, b64 = (jnp.asarray(a, jnp.float64) for a in (xf, kf, bias))

        def f(xv, kv):
            return CONV[dims](xv, kv, b64, layout=layout, **options)

        out, vjp = jax.vjp(f, xf64, kf64)
        ct = np.random.default_rng(dims).standard_normal(out.shape)
        dx, dk = vjp(jnp.asarray(ct))
    expected, tdx, tdk = torch_convnd(xf, kf, bias, **reference_options(options), grad_out=ct)
    np.testing.assert_allclose(out, expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dx, tdx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dk, tdk, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("seed", tiered(range(3), fast={0}))
@pytest.mark.parametrize("strategy", ["window", "shift", "direct", "xla", "auto"])
@pytest.mark.parametrize("dims", [1, 3])
def test_gradients_beyond_the_kernels_reach_equal_pytorch(dims, strategy, seed):
    """Zero padding up to reach + 3 on each side independently: both gradients, float64, against PyTorch. For
    ``"xla"`` (and ``"auto"`` where it resolves to it) the padding beyond the reach goes outside XLA's convolution
    (``_strategies.xla_padding``), where lax's own transpose would be wrong (openxla/xla#48713)."""
    pytest.importorskip("torch")
    x, kernel, bias, options = draw_case(1000 * dims + seed, dims, mode="zeros", beyond_reach=True)
    with enable_x64():
        out, vjp = jax.vjp(
            lambda xv, kv: CONV[dims](xv, kv, strategy=strategy, **options),
            jnp.asarray(x, jnp.float64),
            jnp.asarray(kernel, jnp.float64),
        )
        ct = np.random.default_rng(seed).standard_normal(out.shape)
        dx, dk = vjp(jnp.asarray(ct))
    xf, kf = to_channels_first(x, kernel)
    ctf = np.moveaxis(ct, -1, 1)
    expected, tdx, tdk = torch_convnd(xf, kf, **reference_options(options), grad_out=ctf)
    np.testing.assert_allclose(np.moveaxis(np.asarray(out), -1, 1), expected, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(np.moveaxis(np.asarray(dx), -1, 1), tdx, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(dk, tdk.transpose(*range(2, dims + 2), 1, 0), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("strategy", ["window", "shift", "direct", "xla"])
@pytest.mark.parametrize("dims", [1, 3])
def test_gradients_match_lax_autodiff(dims, strategy):
    """Zero padding within the kernel's reach (where lax's own gradient is right), float32, jit."""
    x, kernel, bias, options = draw_case(500 + dims, dims, mode="zeros")
    letters = SPATIAL_LETTERS[dims]

    def ours(xv, kv, bv):
        return jnp.sum(jnp.sin(CONV[dims](xv, kv, bv, strategy=strategy, **options)))

    def theirs(xv, kv, bv):
        out = lax.conv_general_dilated(
            xv, kv, options["stride"], options["padding"], rhs_dilation=options["dilation"],
            dimension_numbers=(f"N{letters}C", f"{letters}IO", f"N{letters}C"), feature_group_count=options["groups"],
            precision="highest",
        )  # fmt: skip
        return jnp.sum(jnp.sin(out + bv.reshape(*(1,) * (dims + 1), -1)))

    got = jax.jit(jax.grad(ours, argnums=(0, 1, 2)))(x, kernel, bias)
    want = jax.grad(theirs, argnums=(0, 1, 2))(x, kernel, bias)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=2e-4, atol=2e-4)


def test_conv1d_is_conv2d_on_one_row_and_conv3d_on_one_slab():
    rng = np.random.default_rng(3)
    x, kernel = rng.standard_normal((2, 9, 4)).astype(np.float32), rng.standard_normal((3, 2, 6)).astype(np.float32)
    options = dict(stride=2, padding=((2, 1),), dilation=2, groups=2, padding_mode="circular")
    one = jaxconv.conv1d(x, kernel, **options)
    two = jaxconv.conv2d(
        x[:, None], kernel[None], stride=(1, 2), padding=((0, 0), (2, 1)), dilation=(1, 2), groups=2,
        padding_mode="circular",
    )  # fmt: skip
    three = jaxconv.conv3d(
        x[:, None, None], kernel[None, None], stride=(1, 1, 2), padding=((0, 0), (0, 0), (2, 1)), dilation=(1, 1, 2),
        groups=2, padding_mode="circular",
    )  # fmt: skip
    np.testing.assert_allclose(two[:, 0], one, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(three[:, 0, 0], one, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dims", [1, 3])
def test_unbatched_and_plain_inputs(dims):
    rng = np.random.default_rng(dims)
    spatial, taps = (6,) * dims, (3,) * dims
    x = rng.standard_normal((2, *spatial, 3)).astype(np.float32)
    kernel = rng.standard_normal((*taps, 3, 4)).astype(np.float32)
    conv = CONV[dims]
    batched = conv(x, kernel, padding="SAME")
    np.testing.assert_allclose(conv(x[1], kernel, padding="SAME"), batched[1], rtol=1e-6, atol=1e-6)
    xf, kf = to_channels_first(x, kernel)
    layout = f"NC{SPATIAL_LETTERS[dims]}"
    np.testing.assert_allclose(conv(xf[1], kf, padding="SAME", layout=layout), np.moveaxis(batched[1], -1, 0),
                               rtol=1e-6, atol=1e-6)  # fmt: skip
    plain = conv(x[0, ..., 0], kernel[..., 0, 0], padding="FULL")
    expected = numpy_convnd(x[:1, ..., :1], kernel[..., :1, :1], stride=(1,) * dims, dilation=(1,) * dims,
                            pads=((2, 2),) * dims)[0, ..., 0]  # fmt: skip
    np.testing.assert_allclose(plain, expected, rtol=1e-5, atol=1e-5)


ERRORS = [
    (1, np.zeros((2, 8, 4)), np.zeros((3, 4, 6)), {"stride": (1, 1)}, ValueError, "stride"),
    (1, np.zeros((2, 8, 4)), np.zeros((3, 4, 6)), {"layout": "NHWC"}, ValueError, "layout"),
    (1, np.zeros((2, 2, 8, 4)), np.zeros((3, 4, 6)), {}, ValueError, "x"),
    (1, np.zeros((2, 8, 4)), np.zeros((3, 3, 4, 6)), {}, ValueError, "kernel"),
    (1, np.zeros((2, 8, 4)), np.zeros((3, 4, 6)), {"padding": ((1, 1), (1, 1))}, ValueError, "padding"),
    (1, np.zeros((2, 8, 4)), np.zeros((3, 4, 6)), {"padding": 8, "padding_mode": "reflect"}, ValueError, "padding"),
    (3, np.zeros((1, 4, 4, 4, 2)), np.zeros((2, 2, 2, 1, 2)), {}, ValueError, "kernel"),
    (3, np.zeros((1, 4, 4, 4, 2)), np.zeros((2, 2, 2, 2, 2)), {"dilation": (1, 0, 1)}, ValueError, "dilation"),
    (3, np.zeros((1, 4, 4, 4, 2)), np.zeros((2, 2, 2, 2, 2)), {"groups": 3}, ValueError, "groups"),
    (3, np.zeros((1, 4, 4, 4, 2)), np.zeros((5, 2, 2, 2, 2)), {}, ValueError, "kernel"),
    (3, np.zeros((1, 4, 4, 4, 2)), np.zeros((2, 2, 2, 2, 2)), {"strategy": "winograd"}, ValueError, "strategy"),
    (3, np.zeros((1, 4, 4, 4, 2)), np.zeros((2, 2, 2, 2, 2), np.int32), {}, TypeError, "kernel"),
]  # fmt: skip


@pytest.mark.parametrize(("dims", "x", "kernel", "options", "error", "argument"), ERRORS)
def test_bad_input_names_the_function_and_argument(dims, x, kernel, options, error, argument):
    for call in (CONV[dims], jax.jit(lambda xv, kv: CONV[dims](xv, kv, **options))):
        with pytest.raises(error, match=f"^conv{dims}d: `{argument}`"):
            call(x, kernel, **options) if call is CONV[dims] else call(x, kernel)


@pytest.mark.parametrize(("dtype", "preferred"), [(jnp.bfloat16, jnp.float32), (jnp.float16, jnp.float32),
                                                  (jnp.int8, jnp.int32)])  # fmt: skip
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_preferred_element_type(dims, dtype, preferred):
    """Small integers: every product and sum is exact in the result dtype, so the answer is exactly the NumPy loop's."""
    rng = np.random.default_rng(dims)
    x = rng.integers(-8, 8, (2, *(5,) * dims, 4))
    kernel = rng.integers(-8, 8, (*(3,) * dims, 2, 6))
    bias = rng.integers(-8, 8, (6,))
    options = dict(stride=2, padding="SAME", groups=2, padding_mode="reflect")
    out = CONV[dims](jnp.asarray(x, dtype), jnp.asarray(kernel, dtype), jnp.asarray(bias, dtype),
                     preferred_element_type=preferred, **options)  # fmt: skip
    assert out.dtype == preferred
    pads = tuple(lax.padtype_to_pads((5,) * dims, (3,) * dims, (2,) * dims, "SAME"))
    expected = numpy_convnd(x, kernel, bias, stride=(2,) * dims, dilation=(1,) * dims, pads=pads, groups=2,
                            mode="reflect")  # fmt: skip
    np.testing.assert_array_equal(np.asarray(out, np.float64), expected)
    if jnp.issubdtype(dtype, jnp.floating):  # differentiable; the gradient has the operand's dtype
        k = jnp.asarray(kernel, dtype)
        grad = jax.grad(lambda v: jnp.sum(CONV[dims](v, k, preferred_element_type=preferred, **options)))
        assert grad(jnp.asarray(x, dtype)).dtype == dtype


def test_preferred_element_type_errors():
    x, kernel = np.zeros((1, 6, 2), np.float32), np.zeros((3, 2, 4), np.float32)
    with pytest.raises(TypeError, match="^conv1d: `preferred_element_type`"):
        jaxconv.conv1d(x, kernel, preferred_element_type=jnp.int32)
    with pytest.raises(TypeError, match="^conv1d: `preferred_element_type`"):
        jaxconv.conv1d(x, kernel, preferred_element_type="not a dtype")
    with pytest.raises(TypeError, match="^conv1d: `kernel`"):
        jaxconv.conv1d(x.astype(np.int8), kernel.astype(np.int8))

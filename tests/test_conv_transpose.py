"""conv_transpose1d/2d/3d: the adjoint of convNd w.r.t. its input (jax.vjp), PyTorch's conv_transposeNd, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from reference import SPATIAL_LETTERS, draw_geometry, enable_x64, pairwise

import jaxconv

CONV = {1: jaxconv.conv1d, 2: jaxconv.conv2d, 3: jaxconv.conv3d}
TRANSPOSE = {1: jaxconv.conv_transpose1d, 2: jaxconv.conv_transpose2d, 3: jaxconv.conv_transpose3d}


def draw(seed, dims, *, symmetric=False, extra_below_dilation=False):
    """A random transposed convolution: x ``[N, *out, O]``, the conv's kernel ``[*taps, C // G, O]``, options."""
    rng = np.random.default_rng(seed)
    groups, c, o, taps, stride, dilation = draw_geometry(rng, dims, max_stride=3)
    bound = max if extra_below_dilation else (lambda s, d: s)
    extra = [int(rng.integers(0, bound(s, d))) for s, d in zip(stride, dilation, strict=True)]
    reach = [(k - 1) * d for k, d in zip(taps, dilation, strict=True)]
    if symmetric:
        pads = [int(rng.integers(0, r + 1)) for r in reach]
        padding = tuple(pads)
        pairs = tuple((p, p) for p in pads)
    else:  # beyond the reach on either side
        pairs = tuple((int(rng.integers(0, r + 3)), int(rng.integers(0, r + 3))) for r in reach)
        padding = pairs
    spatial = [int(rng.integers(2, 5)) for _ in range(dims)]
    # The input size the transposed convolution produces, (h - 1) * s + e - lo - hi + p, must be >= 1.
    spatial = [
        max(h, -(-(lo + hi - e - p + 1) // s) + 1)
        for h, (lo, hi), e, p, s in zip(spatial, pairs, [r + 1 for r in reach], extra, stride, strict=True)
    ]
    x = rng.standard_normal((int(rng.integers(1, 3)), *spatial, o))
    kernel = rng.standard_normal((*taps, c // groups, o))
    bias = rng.standard_normal((c,))
    options = dict(stride=tuple(stride), dilation=tuple(dilation), padding=padding, groups=groups)
    return x, kernel, bias, options, tuple(extra), pairs


def input_size(x_spatial, kernel, options, extra, pairs):
    return tuple(
        (h - 1) * s + (k - 1) * d + 1 - lo - hi + p
        for h, s, k, d, (lo, hi), p in zip(
            x_spatial, options["stride"], kernel.shape[:-2], options["dilation"], pairs, extra, strict=True
        )
    )  # fmt: skip


@pairwise("strategy,dims,seed", ["window", "shift", "direct", "xla", "auto"], [1, 2, 3], range(2))
def test_equals_the_vjp_of_conv_wrt_its_input(strategy, dims, seed):
    """float64: conv_transposeNd(y, k) == vjp of (x -> convNd(x, k)) at y, and <conv(x), y> == <x, conv_t(y)>."""
    y, kernel, _, options, extra, pairs = draw(10 * dims + seed, dims)
    with enable_x64():
        y, kernel = jnp.asarray(y), jnp.asarray(kernel)
        size = input_size(y.shape[1:-1], kernel, options, extra, pairs)
        x0 = jnp.asarray(
            np.random.default_rng(seed).standard_normal((y.shape[0], *size, kernel.shape[-2] * options["groups"]))
        )
        out, vjp = jax.vjp(lambda x: CONV[dims](x, kernel, strategy="window", **options), x0)
        assert out.shape == y.shape
        (expected,) = vjp(y)
        got = TRANSPOSE[dims](y, kernel, output_padding=extra, strategy=strategy, **options)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(jnp.vdot(out, y), jnp.vdot(x0, got), rtol=1e-12)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("dims", [1, 2, 3])
def test_channels_first_equals_pytorch_values_and_gradients(dims, seed):
    """PyTorch's conv_transposeNd (weight [C_in, C_out // G, *taps], symmetric int padding, output_padding below
    the stride *or* the dilation) in float64, and its gradients w.r.t. input, weight and bias."""
    torch = pytest.importorskip("torch")
    fn = getattr(torch.nn.functional, f"conv_transpose{dims}d")
    y, kernel, bias, options, extra, _ = draw(70 * dims + seed, dims, symmetric=True, extra_below_dilation=True)
    yf = np.ascontiguousarray(np.moveaxis(y, -1, 1))
    weight = np.ascontiguousarray(kernel.transpose(dims + 1, dims, *range(dims)))  # OI* = torch's [in, out/G, *]
    tensors = [torch.tensor(a, requires_grad=True) for a in (yf, weight, bias)]
    t_out = fn(*tensors, stride=options["stride"], padding=options["padding"], output_padding=extra,
               groups=options["groups"], dilation=options["dilation"])  # fmt: skip
    ct = np.random.default_rng(seed).standard_normal(tuple(t_out.shape))
    t_out.backward(torch.tensor(ct))
    with enable_x64():
        out, vjp = jax.vjp(
            lambda a, w, b: TRANSPOSE[dims](
                a, w, b, output_padding=extra, layout=f"NC{SPATIAL_LETTERS[dims]}", **options
            ),
            *(jnp.asarray(a) for a in (yf, weight, bias)),
        )
        grads = vjp(jnp.asarray(ct))
    np.testing.assert_allclose(out, t_out.detach().numpy(), rtol=1e-10, atol=1e-10)
    for g, t in zip(grads, tensors, strict=True):
        np.testing.assert_allclose(g, t.grad.numpy(), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("strategy", ["window", "direct", "xla"])
def test_differentiable_to_second_order(strategy):
    y, kernel, bias, options, extra, _ = draw(5, 2)
    with enable_x64():

        def f(a, w, b):
            return jaxconv.conv_transpose2d(a, w, b, output_padding=extra, strategy=strategy, **options)

        check_grads(f, tuple(jnp.asarray(a) for a in (y, kernel, bias)), order=2, modes=("fwd", "rev"),
                    atol=1e-6, rtol=1e-6)  # fmt: skip


def test_unbatched_plain_and_jit():
    rng = np.random.default_rng(0)
    y, kernel = (
        rng.standard_normal((2, 4, 5, 6)).astype(np.float32),
        rng.standard_normal((3, 3, 2, 6)).astype(np.float32),
    )
    batched = jaxconv.conv_transpose2d(y, kernel, stride=2, padding=1)
    np.testing.assert_allclose(jaxconv.conv_transpose2d(y[1], kernel, stride=2, padding=1), batched[1], rtol=1e-6)
    jitted = jax.jit(lambda a, w: jaxconv.conv_transpose2d(a, w, stride=2, padding=1))
    np.testing.assert_allclose(jitted(y, kernel), batched, rtol=1e-6)
    plain = jaxconv.conv_transpose1d(y[0, 0, :, 0], kernel[0, :, 0, 0], stride=3)
    np.testing.assert_allclose(plain, jaxconv.conv_transpose1d(y[0, 0, :, :1], kernel[0, :, :1, :1], stride=3)[:, 0])


X, K = np.zeros((1, 4, 4, 6), np.float32), np.zeros((3, 3, 2, 6), np.float32)
ERRORS = [
    ({"stride": 2, "output_padding": 2}, ValueError, "output_padding"),
    ({"stride": 2, "dilation": 3, "output_padding": (3, 0)}, ValueError, "output_padding"),
    ({"output_padding": -1}, ValueError, "output_padding"),
    ({"padding": -1}, ValueError, "padding"),
    ({"padding": "SAME"}, ValueError, "padding"),
    ({"padding": 4}, ValueError, "padding"),
    ({"stride": 0}, ValueError, "stride"),
    ({"groups": 4}, ValueError, "groups"),
    ({"layout": "NWC"}, ValueError, "layout"),
]  # fmt: skip


@pytest.mark.parametrize(("options", "error", "argument"), ERRORS)
def test_bad_input_is_rejected_naming_the_argument(options, error, argument):
    with pytest.raises(error, match=f"^conv_transpose2d: `{argument}`"):
        jaxconv.conv_transpose2d(X, K, **options)
    with pytest.raises(error, match=f"^conv_transpose2d: `{argument}`"):
        jax.jit(lambda a, w: jaxconv.conv_transpose2d(a, w, **options))(X, K)


def test_channel_mismatch_is_rejected():
    with pytest.raises(ValueError, match="`kernel`'s output channels"):
        jaxconv.conv_transpose2d(np.zeros((1, 4, 4, 5), np.float32), K)

"""conv2d against independent references: a plain NumPy loop and lax.conv_general_dilated."""

import itertools
import math

import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax import lax
from reference import lax_conv2d, numpy_conv2d, pairwise

import jaxconv

STRATEGIES = ("window", "shift", "direct", "xla", "auto")
MODES = ("zeros", "reflect", "replicate", "circular")
TOL = dict(rtol=1e-5, atol=1e-5)


def explicit_pads(padding, hw, kernel_hw, stride, dilation):
    """The test's own reading of the padding forms (lax.padtype_to_pads for SAME)."""
    extent = [(k - 1) * d + 1 for k, d in zip(kernel_hw, dilation, strict=True)]
    if padding == "VALID":
        return ((0, 0), (0, 0))
    if padding == "SAME":
        return tuple(lax.padtype_to_pads(hw, extent, stride, "SAME"))
    if padding == "FULL":
        return tuple((e - 1, e - 1) for e in extent)
    if isinstance(padding, int):
        return ((padding, padding), (padding, padding))
    if isinstance(padding[0], int):
        return ((padding[0], padding[0]), (padding[1], padding[1]))
    return tuple(tuple(p) for p in padding)


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def random_case(seed, n, h, w, c, o, kh, kw, groups, with_bias):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, h, w, c)).astype(np.float32)
    kernel = rng.standard_normal((kh, kw, c // groups, o)).astype(np.float32)
    bias = rng.standard_normal((o,)).astype(np.float32) if with_bias else None
    return x, kernel, bias


def check_against_references(
    x, kernel, bias, *, strategy, stride=1, dilation=1, padding="VALID", groups=1, mode="zeros"
):
    out = jaxconv.conv2d(
        x, kernel, bias, stride=stride, dilation=dilation, padding=padding, groups=groups, padding_mode=mode,
        strategy=strategy,
    )  # fmt: skip
    stride, dilation = pair(stride), pair(dilation)
    pads = explicit_pads(padding, x.shape[1:3], kernel.shape[:2], stride, dilation)
    opts = dict(stride=stride, dilation=dilation, pads=pads, groups=groups, mode=mode)
    expected = numpy_conv2d(x, kernel, bias, **opts)
    assert out.shape == expected.shape
    assert out.dtype == jnp.float32
    np.testing.assert_allclose(out, expected, **TOL)
    np.testing.assert_allclose(out, lax_conv2d(x, kernel, None if bias is None else jnp.asarray(bias), **opts), **TOL)
    return out


@pytest.mark.parametrize("sizes", [(5, 6, 4), (3, 3, 3), (5, 3, 2), (4, 7, 1)])
def test_pairwise_fast_cases_meet_every_pair_of_values(sizes):
    """The fast tier's subset of a pairwise-tiered product (``reference.pairwise``) holds every pair of values of any
    two factors, in ``len(a) * len(b)`` cases; the slow tier holds every combination."""
    factors = [[f"{name}{i}" for i in range(n)] for name, n in zip("abc", sizes, strict=True)]
    params = pairwise("a,b,c", *factors).args[1]
    fast = [p.values for p in params if not p.marks]
    assert len(params) == math.prod(sizes) and len(fast) == sizes[0] * sizes[1]
    for one, two in itertools.combinations(range(3), 2):
        assert {(case[one], case[two]) for case in fast} == set(itertools.product(factors[one], factors[two]))
    with pytest.raises(ValueError, match="the third factor must be the shortest"):
        pairwise("a,b,c", [1, 2], [1, 2, 3], [1, 2, 3])


@pairwise("strategy,padding,mode", STRATEGIES, ["VALID", "SAME", "FULL", 1, (2, 1), ((0, 2), (1, 0))], MODES)
def test_padding_forms_and_modes(strategy, padding, mode):
    x, kernel, bias = random_case(0, n=2, h=7, w=6, c=4, o=6, kh=3, kw=2, groups=2, with_bias=True)
    check_against_references(
        x, kernel, bias, strategy=strategy, stride=(2, 1), dilation=(1, 2), padding=padding, groups=2, mode=mode
    )


@pairwise("strategy,stride,dilation", STRATEGIES, [1, 2, (1, 3)], [1, 2, (2, 1)])
def test_stride_and_dilation(strategy, stride, dilation):
    x, kernel, bias = random_case(1, n=1, h=9, w=10, c=3, o=2, kh=3, kw=3, groups=1, with_bias=False)
    check_against_references(x, kernel, bias, strategy=strategy, stride=stride, dilation=dilation, padding="SAME")


@pairwise("strategy,groups,with_bias", STRATEGIES, [1, 2, 4], [False, True])
def test_groups_and_bias(strategy, groups, with_bias):
    """groups == C == 4 is the depthwise case (here with a channel multiplier of 2)."""
    x, kernel, bias = random_case(2, n=2, h=6, w=5, c=4, o=8, kh=2, kw=3, groups=groups, with_bias=with_bias)
    check_against_references(x, kernel, bias, strategy=strategy, groups=groups, padding=1, mode="reflect")


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("form", ["NHWC4", "NHWC3", "NCHW4", "NCHW3", "plain2"])
def test_layouts_and_ranks(strategy, form):
    x, kernel, bias = random_case(3, n=2, h=6, w=7, c=3, o=2, kh=3, kw=2, groups=1, with_bias=True)
    opts = dict(stride=(1, 2), padding="SAME", padding_mode="circular", strategy=strategy)
    ref_opts = dict(stride=(1, 2), pads=explicit_pads("SAME", (6, 7), (3, 2), (1, 2), (1, 1)), mode="circular")
    expected = numpy_conv2d(x, kernel, bias, **ref_opts)
    if form == "plain2":
        out = jaxconv.conv2d(x[0, :, :, 0], kernel[:, :, 0, 0], bias[:1], **opts)
        expected = numpy_conv2d(x[:1, :, :, :1], kernel[:, :, :1, :1], bias[:1], **ref_opts)[0, :, :, 0]
    elif form.startswith("NHWC"):
        batched = form == "NHWC4"
        out = jaxconv.conv2d(x if batched else x[0], kernel, bias, layout="NHWC", **opts)
        expected = expected if batched else expected[0]
    else:
        batched = form == "NCHW4"
        x_nchw, kernel_oihw = x.transpose(0, 3, 1, 2), kernel.transpose(3, 2, 0, 1)
        out = jaxconv.conv2d(x_nchw if batched else x_nchw[0], kernel_oihw, bias, layout="NCHW", **opts)
        expected = expected.transpose(0, 3, 1, 2)
        expected = expected if batched else expected[0]
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, **TOL)


@pytest.mark.parametrize("padding", ["SAME", "FULL"])
@pytest.mark.parametrize("stride", [1, 2, 3])
def test_output_sizes(padding, stride):
    """SAME gives ceil(H / stride); FULL pads (K-1)*d on each side."""
    x = jnp.zeros((1, 11, 8, 1))
    kernel = jnp.zeros((4, 3, 1, 1))
    out = jaxconv.conv2d(x, kernel, stride=stride, dilation=(2, 1), padding=padding)
    if padding == "SAME":
        assert out.shape[1:3] == (math.ceil(11 / stride), math.ceil(8 / stride))
    else:
        assert out.shape[1:3] == ((11 + 2 * 6 - 7) // stride + 1, (8 + 2 * 2 - 3) // stride + 1)


@given(
    strategy=st.sampled_from(STRATEGIES[:4]),
    hw=st.sampled_from([(5, 5), (6, 9), (8, 7)]),
    channels=st.sampled_from([(1, 1), (2, 4), (4, 4), (3, 6)]),
    kernel_hw=st.sampled_from([(1, 1), (2, 3), (3, 3)]),
    stride=st.sampled_from([1, 2, (2, 1)]),
    dilation=st.sampled_from([1, 2, (1, 2)]),
    padding=st.sampled_from(["VALID", "SAME", "FULL", 1, (0, 2), ((1, 0), (2, 1))]),
    mode=st.sampled_from(MODES),
    use_groups=st.booleans(),
    with_bias=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property_matches_references(
    strategy, hw, channels, kernel_hw, stride, dilation, padding, mode, use_groups, with_bias, seed
):
    c, o = channels
    groups = math.gcd(c, o) if use_groups else 1
    pads = explicit_pads(padding, hw, kernel_hw, pair(stride), pair(dilation))
    if mode == "reflect" and max(max(pads[0]) - hw[0], max(pads[1]) - hw[1]) >= 0:
        return  # reflect needs pad < size: covered by the bad-input tests
    x, kernel, bias = random_case(seed, 2, *hw, c, o, *kernel_hw, groups, with_bias)
    check_against_references(
        x, kernel, bias, strategy=strategy, stride=stride, dilation=dilation, padding=padding, groups=groups, mode=mode
    )


def test_strategies_agree_on_larger_input():
    x, kernel, bias = random_case(4, n=3, h=24, w=20, c=8, o=16, kh=5, kw=3, groups=4, with_bias=True)
    outs = [jaxconv.conv2d(x, kernel, bias, padding="SAME", groups=4, stride=(1, 2), strategy=s) for s in STRATEGIES]
    for out in outs[1:]:
        np.testing.assert_allclose(out, outs[0], rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("shift", [(0, 1), (3, -2), (-5, 7)])
def test_translation_equivariance_circular(strategy, shift):
    """With circular padding, shifting the image shifts the output exactly (integer values: sums are exact)."""
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.integers(-3, 4, (2, 12, 10, 2)), jnp.float32)
    kernel = jnp.asarray(rng.integers(-2, 3, (3, 5, 2, 3)), jnp.float32)
    opts = dict(padding="SAME", padding_mode="circular", strategy=strategy)
    out = jaxconv.conv2d(x, kernel, **opts)
    shifted = jaxconv.conv2d(jnp.roll(x, shift, axis=(1, 2)), kernel, **opts)
    np.testing.assert_array_equal(shifted, jnp.roll(out, shift, axis=(1, 2)))


def test_seed_pattern_is_found_anywhere():
    """The seed's 2x3 pattern planted at several places peaks exactly at each top-left corner."""
    pattern = jnp.array([[1.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    image = jnp.zeros((10, 12))
    corners = [(0, 0), (4, 6), (8, 9)]
    for i, j in corners:
        image = image.at[i : i + 2, j : j + 3].set(pattern)
    response = jaxconv.conv2d(image, pattern)
    assert sorted(zip(*np.nonzero(np.asarray(response) == 3.0), strict=True)) == corners

"""The window/shift primitive's derivative rules: against autodiff of lax.conv_general_dilated, forward and reverse.

The rules are hand-written (bilinear JVP, transposes that are themselves convolutions), so they are checked against
JAX's own autodiff of lax's convolution — first and second order, forward and reverse mode, under vmap and scan,
in half precision — and the gradient is checked to contain no scatter (the slow path it replaces).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from reference import draw_geometry, enable_x64, lax_conv2d, numpy_conv2d_vjp, tiered

import jaxconv

# Stride, dilation, groups, padding and padding modes that exercise every branch of the transposes: uneven
# leftover rows (stride not dividing), asymmetric padding, depthwise, and each non-zero padding mode's VJP.
CONFIGS = {
    "stride3_leftover": dict(stride=3, padding="VALID"),
    "stride_dilation_asym": dict(stride=(2, 1), dilation=(2, 3), padding=((1, 2), (0, 3))),
    "depthwise_reflect": dict(groups=4, padding="SAME", padding_mode="reflect", stride=2),
    "grouped_circular": dict(groups=2, padding=2, padding_mode="circular", dilation=2),
    "replicate_full": dict(padding="FULL", padding_mode="replicate", stride=(1, 2)),
}
STRATEGIES = ("window", "shift", "direct")


def operands(config, dtype=jnp.float32, seed=0, hw=(9, 8)):
    rng = np.random.default_rng(seed)
    groups = CONFIGS[config].get("groups", 1)
    x = jnp.asarray(rng.standard_normal((2, *hw, 4)), dtype)
    kernel = jnp.asarray(rng.standard_normal((3, 2, 4 // groups, 8)), dtype)
    return x, kernel


def conv(strategy, config):
    return lambda x, k: jaxconv.conv2d(x, k, strategy=strategy, **CONFIGS[config])


def loss(f):
    return lambda x, k: jnp.sum(jnp.sin(f(x, k)))


def assert_gradients_match(ours, ref, x, k):
    """The gradient of ``loss(ours)`` w.r.t. both operands (jitted) and a Hessian-vector product through it, against
    ``ref``'s (lax's autodiff)."""
    grads = jax.jit(jax.grad(loss(ours), argnums=(0, 1)))(x, k)
    expected = jax.grad(loss(ref), argnums=(0, 1))(x, k)
    for a, b in zip(grads, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    hvp = jax.jit(jax.grad(lambda x: jnp.vdot(jax.grad(loss(ours))(x, k), jnp.cos(x))))(x)
    hvp_ref = jax.grad(lambda x: jnp.vdot(jax.grad(loss(ref))(x, k), jnp.cos(x)))(x)
    np.testing.assert_allclose(hvp, hvp_ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_vjp_and_jvp_match_lax_autodiff(strategy, config):
    x, k = operands(config)
    ours, ref = conv(strategy, config), conv("xla", config)
    grads = jax.jit(jax.grad(loss(ours), argnums=(0, 1)))(x, k)
    expected = jax.grad(loss(ref), argnums=(0, 1))(x, k)
    for name, a, b in zip(("x", "kernel"), grads, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4, err_msg=f"d/d{name}")
    tangents = (jnp.cos(x), jnp.sin(k))
    _, jvp_ours = jax.jit(lambda x, k: jax.jvp(ours, (x, k), tangents))(x, k)
    _, jvp_ref = jax.jvp(ref, (x, k), tangents)
    np.testing.assert_allclose(jvp_ours, jvp_ref, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_gradient_has_no_scatter(strategy):
    x, k = operands("stride_dilation_asym")
    jaxpr = str(jax.make_jaxpr(jax.grad(loss(conv(strategy, "stride_dilation_asym")), argnums=(0, 1)))(x, k))
    assert "scatter" not in jaxpr
    assert "jaxconv_correlate" in jaxpr


@pytest.mark.parametrize("strategy", tiered(STRATEGIES, fast={2}))  # test_grad's second order: every strategy
def test_second_order_float64(strategy):
    """hessian (forward-over-reverse) and reverse-over-reverse, w.r.t. both operands, against lax."""
    config = "depthwise_reflect"
    with enable_x64():
        x, k = operands(config, jnp.float64, hw=(5, 4))
        ours, ref = loss(conv(strategy, config)), loss(conv("xla", config))
        for argnum in (0, 1):
            a = jax.jit(jax.hessian(ours, argnums=argnum))(x, k)
            b = jax.jit(jax.hessian(ref, argnums=argnum))(x, k)
            np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9, err_msg=f"hessian wrt {argnum}")
        rr = jax.jit(jax.grad(lambda k: jnp.sum(jax.grad(ours)(x, k) ** 2)))(k)
        rr_ref = jax.jit(jax.grad(lambda k: jnp.sum(jax.grad(ref)(x, k) ** 2)))(k)
        np.testing.assert_allclose(rr, rr_ref, rtol=1e-9, atol=1e-9)
        assert rr.dtype == jnp.float64


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_vmap_over_kernel_and_input_and_of_grad(strategy):
    config = "grouped_circular"
    x, k = operands(config)
    xs, ks = jnp.stack([x, 2 * x, -x]), jnp.stack([k, -k, 0.5 * k])
    ours, ref = conv(strategy, config), conv("xla", config)
    for axes in ((0, 0), (None, 0), (0, None)):
        np.testing.assert_allclose(
            jax.vmap(ours, axes)(xs if axes[0] == 0 else x, ks if axes[1] == 0 else k),
            jax.vmap(ref, axes)(xs if axes[0] == 0 else x, ks if axes[1] == 0 else k),
            rtol=1e-5,
            atol=1e-4,
            err_msg=str(axes),
        )
    per_example = jax.vmap(jax.grad(loss(ours), argnums=(0, 1)), (0, 0))(xs, ks)
    expected = jax.vmap(jax.grad(loss(ref), argnums=(0, 1)), (0, 0))(xs, ks)
    for a, b in zip(per_example, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_scan_of_grad(strategy):
    x, k = operands("stride3_leftover")

    def step(carry, _):
        g = jax.grad(loss(conv(strategy, "stride3_leftover")), argnums=1)(x, carry)
        return carry - 0.01 * g, None

    ours, _ = lax.scan(step, k, None, length=3)

    def ref_step(carry, _):
        g = jax.grad(loss(conv("xla", "stride3_leftover")), argnums=1)(x, carry)
        return carry - 0.01 * g, None

    expected, _ = lax.scan(ref_step, k, None, length=3)
    np.testing.assert_allclose(ours, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_half_precision_gradients(strategy, dtype):
    """Half inputs accumulate in float32; gradients keep the input dtype and agree with lax to half precision."""
    config = "stride_dilation_asym"
    x, k = operands(config, dtype)
    grads = jax.grad(lambda x, k: jnp.sum(conv(strategy, config)(x, k).astype(jnp.float32)), argnums=(0, 1))(x, k)
    x32, k32 = x.astype(jnp.float32), k.astype(jnp.float32)
    expected = jax.grad(lambda x, k: jnp.sum(conv("xla", config)(x, k)), argnums=(0, 1))(x32, k32)
    tol = 2e-2 if dtype == jnp.float16 else 1e-1
    for a, b in zip(grads, expected, strict=True):
        assert a.dtype == dtype
        np.testing.assert_allclose(a.astype(jnp.float32), b, rtol=tol, atol=tol * float(jnp.abs(b).max()))


# "direct" contracts per shape: unrolled broadcast multiply-adds (C//G <= 8, incl. depthwise with a multiplier), one
# dot per tap (C//G > 8); its input gradient switches to XLA's convolution for O//G > 8 and its kernel gradient
# to XLA's backward-filter convolution unless C//G == 1 and (G > 1 or O == 1). Each branch against lax, both orders
# of channel counts.
DIRECT_SHAPES = {
    "single_channel_halving": (1, 1, 1),
    "one_in_many_out": (1, 5, 1),
    "dot_per_tap_and_xla_transpose": (12, 16, 1),
    "unrolled_into_many_outputs": (3, 16, 1),
    "depthwise": (6, 6, 6),
    "depthwise_multiplier": (4, 12, 4),
    "grouped_few_channels": (8, 4, 2),
}


@pytest.mark.parametrize("shape", tiered(sorted(DIRECT_SHAPES), fast={sorted(DIRECT_SHAPES).index("one_in_many_out")}))
def test_direct_contraction_paths(shape):
    c, o, groups = DIRECT_SHAPES[shape]
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 7, 6, c)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, c // groups, o)), jnp.float32)
    opts = dict(groups=groups, padding="SAME", stride=(2, 1), padding_mode="reflect")
    ours = lambda x, k: jaxconv.conv2d(x, k, strategy="direct", **opts)  # noqa: E731
    ref = lambda x, k: jaxconv.conv2d(x, k, strategy="xla", **opts)  # noqa: E731
    np.testing.assert_allclose(jax.jit(ours)(x, k), ref(x, k), rtol=1e-5, atol=1e-4)
    grads = jax.jit(jax.value_and_grad(loss(ours), argnums=(0, 1)))(x, k)[1]
    expected = jax.grad(loss(ref), argnums=(0, 1))(x, k)
    for a, b in zip(grads, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4)
    tangents = (jnp.cos(x), jnp.sin(k))
    np.testing.assert_allclose(jax.jvp(ours, (x, k), tangents)[1], jax.jvp(ref, (x, k), tangents)[1], rtol=1e-5,
                               atol=1e-4)  # fmt: skip


@pytest.mark.parametrize("chunks", ["whole batch", "one image at a time"])
@pytest.mark.parametrize("seed", tiered(range(8), fast={0, 1}))
def test_tap_dots_input_gradient_matches_a_numpy_loop(monkeypatch, seed, chunks):
    """One dot and shifted sums (``"direct"``'s input gradient with many outputs per group) against the NumPy loop,
    in float64, on seeded random 2-D geometries with any stride, dilation, groups and padding (the rule uses it for
    stride 1 only; the function holds for all), over the whole batch and through ``lax.map`` in chunks."""
    from jaxconv.conv import _strategies
    from jaxconv.conv._spec import make_spec

    rng = np.random.default_rng(seed)
    groups, c, _, taps, stride, dilation = draw_geometry(rng, 2, max_stride=3)
    o = groups * int(rng.integers(9, 13))
    pads = tuple((int(lo), int(hi)) for lo, hi in rng.integers(0, 4, (2, 2)))
    shape = (3, *(int(v) for v in rng.integers(5, 10, 2)), c)
    if chunks != "whole batch":
        monkeypatch.setattr(_strategies, "TAP_DOTS_WHOLE_BYTES", 0)
        monkeypatch.setattr(_strategies, "TAP_DOTS_CHUNK_BYTES", 1)
    opts = dict(stride=stride, padding=pads, dilation=dilation, groups=groups, padding_mode="zeros", precision=None)
    spec = make_spec(shape, (*taps, c // groups, o), strategy="direct", **opts)
    with enable_x64():
        x, k, ct = (rng.standard_normal(s) for s in (shape, spec.kernel_shape, spec.out_shape))
        got = jax.jit(_strategies.tap_dots_input_gradient, static_argnums=2)(jnp.asarray(ct), jnp.asarray(k), spec)
        expected, _ = numpy_conv2d_vjp(x, k, ct, stride=stride, dilation=dilation, pads=pads, groups=groups)
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


def test_input_gradient_rule_takes_tap_dots_where_it_measured_faster():
    from jaxconv.conv._primitive import input_gradient_rule
    from jaxconv.conv._spec import make_spec

    def rule(x_shape, k_shape, strategy="direct", **opts):
        opts = dict(stride=1, padding="SAME", dilation=1, groups=1, padding_mode="zeros", precision=None) | opts
        return input_gradient_rule(make_spec(x_shape, k_shape, strategy=strategy, **opts))

    assert rule((16, 128, 128, 3), (3, 3, 3, 16)) == "tap_dots"
    assert rule((64, 28, 28, 1), (5, 5, 1, 16), dilation=2) == "tap_dots"
    assert rule((8, 32, 32, 4), (3, 3, 2, 24), groups=2) == "tap_dots"  # 12 outputs per group
    assert rule((16, 128, 128, 3), (3, 3, 3, 16), stride=2) == "xla"
    assert rule((16, 128, 128, 3), (1, 1, 3, 16)) == "xla"
    assert rule((16, 128, 128, 3), (3, 1, 3, 16)) == "xla"
    assert rule((16, 128, 3), (3, 3, 16)) == "xla"  # 1-D: not measured
    assert rule((16, 128, 128, 3), (3, 3, 3, 8)) == "direct"  # few outputs: direct's own transpose
    assert rule((8, 32, 32, 4), (3, 3, 2, 16), groups=2) == "direct"  # 8 outputs per group
    assert rule((16, 128, 128, 3), (3, 3, 3, 16), strategy="window") == "window"


@pytest.mark.parametrize("case", ["ungrouped_reflect", "grouped_dilated"])
def test_direct_gradients_through_tap_dots_match_lax(case):
    """The rule's path through the primitive: first and second derivatives against lax's autodiff."""
    c, o, opts = {
        "ungrouped_reflect": (3, 16, dict(padding="SAME", padding_mode="reflect")),
        "grouped_dilated": (4, 24, dict(padding=((3, 1), (0, 2)), dilation=(2, 1), groups=2)),
    }[case]
    rng = np.random.default_rng(len(case))
    x = jnp.asarray(rng.standard_normal((2, 9, 8, c)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, c // opts.get("groups", 1), o)), jnp.float32)
    ours = lambda x, k: jaxconv.conv2d(x, k, strategy="direct", **opts)  # noqa: E731
    ref = lambda x, k: jaxconv.conv2d(x, k, strategy="xla", **opts)  # noqa: E731
    assert_gradients_match(ours, ref, x, k)


def test_direct_forward_is_one_fusion_with_a_loss():
    """The unrolled sum stays out of a consumer's reduction (XLA:CPU's YNN fusion would materialise every slice)."""
    x, k = jnp.ones((2, 9, 8, 1)), jnp.ones((3, 3, 1, 2))
    f = jax.jit(lambda x, k: jnp.vdot(jaxconv.conv2d(x, k, strategy="direct"), jnp.ones((2, 7, 6, 2))))
    assert "reduce-precision" in f.lower(x, k).as_text(dialect="hlo")
    assert float(f(x, k)) == 9.0 * 2 * 7 * 6 * 2


@pytest.mark.parametrize("rows", [0, 1, 2, 3, 5, 8, 13, 1000])
def test_halving_sum_matches_numpy(rows):
    """The depthwise kernel gradient's pairwise sum over rows, any count (odd ones get a zero row), in float64."""
    from jaxconv.conv._strategies import halving_sum

    values = np.random.default_rng(rows).standard_normal((rows, 3))
    with enable_x64():
        got = jax.jit(halving_sum)(jnp.asarray(values))
        assert got.dtype == jnp.float64
        np.testing.assert_allclose(got, values.sum(axis=0), rtol=1e-13, atol=1e-13)


# Strided input gradients by phases: phases that no tap reaches (stride 2 with dilation 2, stride 4 over a 3-tap
# kernel), strides not dividing the input, dilation coprime to the stride, groups, 1-D and 3-D.
PHASE_CASES = {
    "empty_phases_dilated": ((2, 9, 8, 4), (3, 2, 2, 6), dict(stride=2, dilation=2, padding=1, groups=2)),
    "stride_beyond_kernel": ((2, 13, 11, 3), (3, 3, 3, 4), dict(stride=4, padding=((2, 1), (0, 3)))),
    "coprime_dilation": ((1, 11, 12, 2), (3, 2, 2, 3), dict(stride=(3, 2), dilation=(2, 3), padding="SAME")),
    "one_d": ((2, 17, 3), (4, 3, 2), dict(stride=3, dilation=2, padding=(3,))),
    "three_d": ((1, 7, 6, 5, 2), (2, 3, 2, 2, 2), dict(stride=(2, 1, 3), padding="SAME")),
}


@pytest.mark.parametrize("strategy", ["window", "shift"])
@pytest.mark.parametrize("case", tiered(sorted(PHASE_CASES), fast={sorted(PHASE_CASES).index("stride_beyond_kernel")}))
def test_phase_input_gradient_matches_lax(strategy, case):
    x_shape, k_shape, opts = PHASE_CASES[case]
    conv_fn = {3: jaxconv.conv1d, 4: jaxconv.conv2d, 5: jaxconv.conv3d}[len(x_shape)]
    rng = np.random.default_rng(len(case))
    x = jnp.asarray(rng.standard_normal(x_shape), jnp.float32)
    k = jnp.asarray(rng.standard_normal(k_shape), jnp.float32)
    ours = lambda x, k: conv_fn(x, k, strategy=strategy, **opts)  # noqa: E731
    ref = lambda x, k: conv_fn(x, k, strategy="xla", **opts)  # noqa: E731
    # The phased gradient is itself differentiable: a second derivative through it.
    assert_gradients_match(ours, ref, x, k)


def test_phases_split_the_taps():
    """Each tap reaches exactly one phase, and the phases' sizes add up to the dim."""
    from jaxconv.conv._primitive import phases

    for size, kernel, stride, dilation in [(7, 3, 2, 1), (9, 2, 2, 2), (13, 3, 4, 1), (11, 3, 3, 2)]:
        split = phases(size, kernel, stride, dilation)
        assert sum(p.size for p in split) == size
        reached = sorted(a for p in split for a in range(kernel)[p.taps][: p.reaching])
        assert reached == list(range(kernel))
        for r, p in enumerate(split):
            assert all((a * dilation - r) % stride == 0 for a in range(kernel)[p.taps][: p.reaching])


@pytest.mark.parametrize("threads", [1, 2])
@pytest.mark.parametrize("seed", tiered(range(2), fast={0}))
def test_xla_on_all_threads_matches_lax(xla_cpu_threads, threads, seed):
    """The "xla" strategy on XLA:CPU's threads (stride 1, ungrouped, float32, kernels >= 3x3: one extra output row,
    cropped; lax's transposes as derivatives), forced on and off whatever this machine's core count, on seeded random
    geometry (padding up to beyond the reach), against lax: forward, gradients, JVP, reverse-over-reverse,
    vmap over the kernel."""
    xla_cpu_threads(threads)
    rng = np.random.default_rng(seed)
    taps = tuple(int(t) for t in rng.integers(3, 6, 2))
    dilation = tuple(int(d) for d in rng.integers(1, 3, 2))
    extent = [(t - 1) * d + 1 for t, d in zip(taps, dilation, strict=True)]
    padding = tuple(tuple(int(p) for p in rng.integers(0, e + 2, 2)) for e in extent)
    hw = [int(rng.integers(e + 2, e + 9)) for e in extent]
    c, o = (int(v) for v in rng.integers(1, 13, 2))
    x = jnp.asarray(rng.standard_normal((int(rng.integers(1, 4)), *hw, c)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((*taps, c, o)), jnp.float32)
    ours = lambda x, k: jaxconv.conv2d(x, k, padding=padding, dilation=dilation, strategy="xla")  # noqa: E731
    # jnp.pad, then lax's valid convolution: its autodiff is right for any padding (the window's own is not on CPU,
    # beyond the kernel's reach)
    ref = functools.partial(lax_conv2d, dilation=dilation, pads=padding)
    case = f"taps {taps} dilation {dilation} padding {padding} x {x.shape} o {o}"
    routed = "jaxconv_correlate" in str(jax.make_jaxpr(ours)(x, k))
    assert routed == (threads > 1 and jax.default_backend() == "cpu"), case
    np.testing.assert_allclose(jax.jit(ours)(x, k), ref(x, k), rtol=1e-5, atol=1e-4, err_msg=case)
    grads = jax.jit(jax.grad(loss(ours), argnums=(0, 1)))(x, k)
    expected = jax.grad(loss(ref), argnums=(0, 1))(x, k)
    for name, a, b in zip(("x", "kernel"), grads, expected, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-3, err_msg=f"d/d{name}: {case}")
    tangents = (jnp.cos(x), jnp.sin(k))
    np.testing.assert_allclose(
        jax.jvp(ours, (x, k), tangents)[1], jax.jvp(ref, (x, k), tangents)[1], rtol=1e-4, atol=1e-3, err_msg=case
    )
    rr = jax.grad(lambda k: jnp.sum(jax.grad(loss(ours))(x, k) ** 2))(k)
    rr_ref = jax.grad(lambda k: jnp.sum(jax.grad(loss(ref))(x, k) ** 2))(k)
    np.testing.assert_allclose(rr, rr_ref, rtol=1e-3, atol=1e-2, err_msg=case)
    ks = jnp.stack([k, -0.5 * k])
    np.testing.assert_allclose(
        jax.vmap(ours, (None, 0))(x, ks), jax.vmap(ref, (None, 0))(x, ks), rtol=1e-5, atol=1e-4, err_msg=case
    )

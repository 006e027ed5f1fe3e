"""Locally connected convolutions: ``conv_general_dilated_local`` against lax's (values and both gradients) and a
NumPy loop on seeded random geometry; ``local_conv1d/2d/3d`` against the loop in every padding mode and layout, and
against finite differences; Flax's ``ConvLocal`` with jaxconv injected; equal filters are ``conv2d``; vmap, jit, and
every bad input an error naming the argument."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from jax.test_util import check_grads
from reference import enable_x64, numpy_local_convnd

import jaxconv
from jaxconv.conv._local import _local_nhwc


def _perm(canonical, spec):
    """The permutation taking an array laid out as ``canonical`` to ``spec``'s layout (both strings of letters)."""
    return [canonical.index(c) for c in spec]


def draw_general(seed):
    """A random ``conv_general_dilated_local`` call that lax accepts with a non-empty output, from ``seed``:
    ``1 + seed % 3`` spatial dims, random dimension numbers, window 1-3 per dim, strides, both dilations (the input's
    on odd seeds), and padding as a string or pairs from -2 to 3 beyond the window's reach."""
    rng = np.random.default_rng(seed)
    dims = 1 + seed % 3
    while True:
        letters = "DHW"[3 - dims :]
        specs = tuple("".join(rng.permutation(list(first + letters))) for first in ("NC", "OI", "NC"))
        order = "".join(c for c in specs[1] if c not in "OI")  # lax numbers the spatial dims in rhs_spec's order
        taps = [int(rng.integers(1, 4)) for _ in range(dims)]
        rhs_dil = [int(rng.integers(1, 3)) for _ in range(dims)]
        lhs_dil = [int(rng.integers(1, 4)) for _ in range(dims)] if seed % 2 else [1] * dims  # odd seeds: dilated
        strides = [int(rng.integers(1, 3)) for _ in range(dims)]
        spatial = [int(rng.integers(2, 7 if dims < 3 else 5)) for _ in range(dims)]
        reach = [(k - 1) * d for k, d in zip(taps, rhs_dil, strict=True)]
        if max(lhs_dil) == 1 and rng.random() < 0.4:
            padding = str(rng.choice(["VALID", "SAME", "SAME_LOWER"]))
        else:
            padding = tuple((int(rng.integers(-2, r + 4)), int(rng.integers(-2, r + 4))) for r in reach)
        n, c, o = (int(v) for v in rng.integers(1, 3, size=3))
        options = dict(window_strides=strides, padding=padding, filter_shape=taps, lhs_dilation=lhs_dil,
                       rhs_dilation=rhs_dil, dimension_numbers=specs)  # fmt: skip
        lhs = jax.ShapeDtypeStruct(tuple(np.take((n, *spatial, c), _perm("N" + order + "C", specs[0]))), jnp.float32)
        try:  # lax's output shape says how many filters the kernel holds
            out = jax.eval_shape(functools.partial(lax.conv_general_dilated_patches, **options), lhs).shape
        except ValueError:  # lax refuses it (e.g. cropping more than the input): draw again
            continue
        out_hw = [out[specs[2].index(a)] for a in order]
        if min(out_hw) > 0:
            rhs_shape = tuple(np.take((*out_hw, c * int(np.prod(taps)), o), _perm(order + "IO", specs[1])))
            return dict(options=options, specs=specs, order=order, lhs_shape=lhs.shape, rhs_shape=rhs_shape, seed=seed)


def numpy_general(cfg, lhs, rhs, ct):
    """The NumPy loop on the canonical (channels-last) forms of ``cfg``'s operands; the output and the gradients of
    ``sum(out * ct)``, each in the caller's layout."""
    specs, order, options = cfg["specs"], cfg["order"], cfg["options"]
    x = np.transpose(lhs, _perm(specs[0], "N" + order + "C"))
    k = np.transpose(rhs, _perm(specs[1], order + "IO"))  # [*out, C * T, O], the window channel-major
    dims, taps = len(order), options["filter_shape"]
    kk = np.moveaxis(k.reshape(*k.shape[:dims], x.shape[-1], *taps, k.shape[-1]), dims, -2)  # [*out, *taps, C, O]
    pads = options["padding"]
    if isinstance(pads, str):
        extent = [(t - 1) * d + 1 for t, d in zip(taps, options["rhs_dilation"], strict=True)]
        pads = lax.padtype_to_pads(x.shape[1:-1], extent, options["window_strides"], pads)
    out, dx, dk = numpy_local_convnd(
        x, kk, stride=options["window_strides"], dilation=options["rhs_dilation"], pads=pads,
        lhs_dilation=options["lhs_dilation"], cotangent=np.transpose(ct, _perm(specs[2], "N" + order + "C")),
    )  # fmt: skip
    dk = np.moveaxis(dk, -2, dims).reshape(k.shape)
    return (
        np.transpose(out, _perm("N" + order + "C", specs[2])),
        np.transpose(dx, _perm("N" + order + "C", specs[0])),
        np.transpose(dk, _perm(order + "IO", specs[1])),
    )


def check_general(seed):
    cfg = draw_general(seed)
    rng = np.random.default_rng(seed + 1)
    lhs, rhs = rng.standard_normal(cfg["lhs_shape"]), rng.standard_normal(cfg["rhs_shape"])
    ours32 = jax.jit(functools.partial(jaxconv.conv_general_dilated_local, **cfg["options"]))
    lax32 = functools.partial(lax.conv_general_dilated_local, **cfg["options"])
    got, want = (
        ours32(lhs.astype(np.float32), rhs.astype(np.float32)),
        lax32(lhs.astype(np.float32), rhs.astype(np.float32)),
    )
    assert got.shape == want.shape and got.dtype == want.dtype == jnp.float32
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    with enable_x64():
        out, vjp = jax.vjp(functools.partial(jaxconv.conv_general_dilated_local, **cfg["options"]), lhs, rhs)
        ct = rng.standard_normal(out.shape)
        ours = (out, *vjp(jnp.asarray(ct)))
        lax_out, lax_vjp = jax.vjp(functools.partial(lax.conv_general_dilated_local, **cfg["options"]), lhs, rhs)
        theirs = (lax_out, *lax_vjp(jnp.asarray(ct)))
    for name, g, w, r in zip(("out", "d_lhs", "d_rhs"), ours, theirs, numpy_general(cfg, lhs, rhs, ct), strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-10, atol=1e-10, err_msg=f"{name} vs the NumPy loop, {cfg}")
        np.testing.assert_allclose(g, w, rtol=1e-10, atol=1e-10, err_msg=f"{name} vs lax, {cfg}")


@pytest.mark.parametrize("seed", range(3))  # one draw of each spatial rank (1 + seed % 3)
def test_general_equals_lax_and_numpy_values_and_both_gradients(seed):
    check_general(seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3, 60))
def test_general_equals_lax_and_numpy_many_draws(seed):
    check_general(seed)


def draw_local(seed):
    """A random ``local_conv{1,2,3}d`` call (``1 + seed % 3`` spatial dims) from ``seed``.

    Returns ``(dims, rank, x, kernel, bias, options, pads)``: the operands channels last (``[N, *spatial, C]``,
    ``[*out, *taps, C, O]``, bias ``[O]``, ``[*out, O]`` or ``None``), any padding mode and form; ``rank`` (batched,
    unbatched, or plain with N = C = O = 1) and the layout in ``options`` say how to call it; ``pads`` are the
    explicit ``(low, high)`` pairs the padding stands for.
    """
    rng = np.random.default_rng(seed)
    dims = 1 + seed % 3
    spatial = [int(rng.integers(3, 7 if dims < 3 else 5)) for _ in range(dims)]
    taps = [int(rng.integers(1, 4)) for _ in range(dims)]
    stride = [int(rng.integers(1, 3)) for _ in range(dims)]
    dilation = [int(rng.integers(1, 3)) for _ in range(dims)]
    extent = [(t - 1) * d + 1 for t, d in zip(taps, dilation, strict=True)]
    mode = str(rng.choice(["zeros", "reflect", "replicate", "circular"]))
    padding = str(rng.choice(["VALID", "SAME", "FULL", "pairs"]))
    if padding == "SAME":
        pads = lax.padtype_to_pads(spatial, extent, stride, "SAME")
    elif padding == "FULL":
        pads = [(e - 1, e - 1) for e in extent]
    elif padding == "pairs":
        pads = padding = [
            tuple(int(p) for p in rng.integers(0, min(e, s), size=2)) for e, s in zip(extent, spatial, strict=True)
        ]
    else:
        pads = [(0, 0)] * dims
    if mode == "reflect" and any(max(p) >= s for p, s in zip(pads, spatial, strict=True)):
        mode = "replicate"
    padded = [s + lo + hi for s, (lo, hi) in zip(spatial, pads, strict=True)]
    out = [(p - e) // s + 1 for p, e, s in zip(padded, extent, stride, strict=True)]
    if min(out) < 1:
        return draw_local(seed + 3000)
    rank = str(rng.choice(["batched", "unbatched", "plain"]))
    n, c, o = (2, int(rng.integers(1, 3)), int(rng.integers(1, 3))) if rank != "plain" else (1, 1, 1)
    x = rng.standard_normal((n, *spatial, c))
    kernel = rng.standard_normal((*out, *taps, c, o))
    bias = {0: None, 1: rng.standard_normal(o), 2: rng.standard_normal((*out, o))}[int(rng.integers(0, 3))]
    layout = ("N" + "DHW"[3 - dims :] + "C") if rng.random() < 0.5 else ("NC" + "DHW"[3 - dims :])
    options = dict(stride=stride, dilation=dilation, padding=padding, padding_mode=mode, layout=layout)
    return dims, rank, x, kernel, bias, options, pads


@pytest.mark.parametrize("seed", range(8))
def test_local_conv_equals_numpy_every_mode_layout_and_rank(seed):
    dims, rank, x, kernel, bias, options, pads = draw_local(seed)
    want = numpy_local_convnd(x, kernel, stride=options["stride"], dilation=options["dilation"], pads=pads,
                              mode=options["padding_mode"])  # fmt: skip
    want = want if bias is None else want + bias
    if rank == "plain":  # [*spatial] with a [*out, *taps] kernel: no N, C or O axes
        x, kernel, want = x[0, ..., 0], kernel[..., 0, 0], want[0, ..., 0]
        bias = None if bias is None else bias[..., 0]  # [] or [*out]
    else:
        if options["layout"][1] == "C":
            x, want = np.moveaxis(x, -1, 1), np.moveaxis(want, -1, 1)
        if rank == "unbatched":
            x, want = x[0], want[0]
    got = getattr(jaxconv, f"local_conv{dims}d")(x, kernel, bias, **options)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5, err_msg=f"seed {seed}: {rank} {options}")


def test_gradients_in_every_argument_match_finite_differences():
    # float64, a padding mode that moves gradient across the edge, a stride, a dilation and a bias per output value
    rng = np.random.default_rng(7)
    with enable_x64():
        x = jnp.asarray(rng.standard_normal((1, 5, 6, 2)))
        kernel = jnp.asarray(rng.standard_normal((3, 5, 2, 2, 2, 2)))
        bias = jnp.asarray(rng.standard_normal((3, 5, 2)))
        f = functools.partial(jaxconv.local_conv2d, stride=(2, 1), dilation=(1, 2), padding=((1, 1), (1, 0)),
                              padding_mode="reflect")  # fmt: skip
        check_grads(f, (x, kernel, bias), order=1, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)


def test_equal_filters_are_the_convolution_and_their_gradient_sums_the_positions():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((2, 7, 6, 3)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 2, 3, 4)), jnp.float32)
    options = dict(stride=(2, 1), dilation=(1, 2), padding="SAME", padding_mode="circular")
    conv = jaxconv.conv2d(x, k, **options)
    ct = jnp.asarray(rng.standard_normal(conv.shape), jnp.float32)

    def local(k):  # one copy of the filter at every output position
        return jaxconv.local_conv2d(x, jnp.broadcast_to(k, (*conv.shape[1:3], *k.shape)), **options)

    np.testing.assert_allclose(local(k), conv, rtol=1e-5, atol=1e-5)
    # a tied weight's gradient is the sum of its copies' gradients: the convolution's kernel gradient
    tied = jax.grad(lambda k: jnp.vdot(local(k), ct))(k)
    shared = jax.grad(lambda k: jnp.vdot(jaxconv.conv2d(x, k, **options), ct))(k)
    np.testing.assert_allclose(tied, shared, rtol=1e-4, atol=1e-4)


def test_flax_conv_local_with_jaxconv_injected(monkeypatch):
    linen = pytest.importorskip("flax.linen")
    rng = np.random.default_rng(5)
    x = jnp.asarray(rng.standard_normal((2, 7, 6, 3)), jnp.float32)
    for padding, mode, extra in (("VALID", "zeros", dict(strides=2)), ("CIRCULAR", "circular", {})):
        layer = linen.ConvLocal(features=4, kernel_size=(3, 2), padding=padding, **extra)
        params = layer.init(jax.random.key(0), x)
        params = jax.tree_util.tree_map(lambda p: p + jnp.asarray(rng.standard_normal(p.shape), p.dtype), params)
        lax_out = layer.apply(params, x)
        # Flax calls lax.conv_general_dilated_local; jaxconv's drop-in takes its place by name
        monkeypatch.setattr(lax, "conv_general_dilated_local", jaxconv.conv_general_dilated_local)
        injected = layer.apply(params, x)
        monkeypatch.undo()
        np.testing.assert_allclose(injected, lax_out, rtol=1e-5, atol=1e-5)
        # the same parameters through local_conv2d: Flax's [Ho, Wo, C*KH*KW, O] kernel is [Ho, Wo, KH, KW, C, O] here
        k = params["params"]["kernel"]
        ho, wo = k.shape[:2]
        kernel = k.reshape(ho, wo, 3, 3, 2, 4).transpose(0, 1, 3, 4, 2, 5)
        stride = extra.get("strides", 1)
        ours = jaxconv.local_conv2d(x, kernel, params["params"]["bias"], stride=stride,
                                    padding="VALID" if padding == "VALID" else "SAME", padding_mode=mode)  # fmt: skip
        np.testing.assert_allclose(ours, lax_out, rtol=1e-5, atol=1e-5)


def test_vmap_over_images_and_kernels():
    rng = np.random.default_rng(11)
    xs = jnp.asarray(rng.standard_normal((3, 2, 5, 5, 2)), jnp.float32)
    ks = jnp.asarray(rng.standard_normal((3, 5, 5, 3, 3, 2, 2)), jnp.float32)
    f = functools.partial(jaxconv.local_conv2d, padding="SAME", padding_mode="reflect")
    batched = jax.vmap(f)(xs, ks)
    for i in range(3):
        np.testing.assert_allclose(batched[i], f(xs[i], ks[i]), rtol=1e-6, atol=1e-6)
    per_image = jax.vmap(lambda image: f(image, ks[0]))(xs[0])  # over N with unbatched images
    np.testing.assert_allclose(per_image, f(xs[0], ks[0]), rtol=1e-6, atol=1e-6)


def test_no_retrace_on_same_shapes_and_options():
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((1, 6, 6, 2)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((3, 3, 3, 3, 2, 2)), jnp.float32)
    opts = dict(padding="SAME", stride=2, padding_mode="replicate")
    jaxconv.local_conv2d(x, kernel, **opts)
    cached = _local_nhwc._cache_size()
    jaxconv.local_conv2d(x + 1.0, kernel * 2.0, **opts)
    jaxconv.local_conv2d(x.tolist(), kernel, **{**opts, "stride": (2, 2), "padding": "same"})  # other spellings
    assert _local_nhwc._cache_size() == cached

    chex.clear_trace_counter()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def user_fn(x, kernel):
        return jaxconv.local_conv2d(x, kernel, **opts)

    user_fn(x, kernel)
    user_fn(x * 3.0, kernel)


@pytest.mark.parametrize(("dtype", "preferred"), [(jnp.bfloat16, jnp.float32), (jnp.int8, jnp.int32)])
def test_preferred_element_type(dtype, preferred):
    rng = np.random.default_rng(0)
    x, kernel = rng.integers(-8, 8, (2, 5, 6, 3)), rng.integers(-8, 8, (5, 3, 3, 3, 3, 2))  # SAME, stride (1, 2)
    got = jaxconv.local_conv2d(jnp.asarray(x, dtype), jnp.asarray(kernel, dtype), stride=(1, 2), padding="SAME",
                               preferred_element_type=preferred)  # fmt: skip
    pads = lax.padtype_to_pads((5, 6), (3, 3), (1, 2), "SAME")
    exact = numpy_local_convnd(x, kernel, stride=(1, 2), dilation=(1, 1), pads=pads)  # small ints: exact
    assert got.dtype == preferred
    np.testing.assert_array_equal(np.asarray(got), exact.astype(preferred))


X = np.zeros((2, 6, 6, 3), np.float32)
K = np.zeros((4, 4, 3, 3, 3, 5), np.float32)  # VALID 3x3 on 6x6: 4x4 output positions

# (id, x, kernel, options, error, argument named in the message)
CASES = [
    ("x_rank5", np.zeros((1, 2, 6, 6, 3), np.float32), K, {}, ValueError, "x"),
    ("kernel_rank4", X, np.zeros((3, 3, 3, 5), np.float32), {}, ValueError, "kernel"),
    ("kernel_rank6_for_plain_x", np.zeros((6, 6), np.float32), K, {}, ValueError, "kernel"),
    ("kernel_positions_not_output", X, np.zeros((6, 6, 3, 3, 3, 5), np.float32), {}, ValueError, "kernel"),
    ("kernel_positions_with_stride", X, K, {"stride": 2}, ValueError, "kernel"),
    ("channel_mismatch", X, np.zeros((4, 4, 3, 3, 2, 5), np.float32), {}, ValueError, "kernel"),
    ("kernel_too_large", X, np.zeros((1, 1, 7, 7, 3, 5), np.float32), {}, ValueError, "kernel"),
    ("kernel_integer", X, K.astype(np.int32), {}, TypeError, "kernel"),
    ("stride_zero", X, K, {"stride": 0}, ValueError, "stride"),
    ("dilation_float", X, K, {"dilation": 1.5}, TypeError, "dilation"),
    ("padding_unknown", X, K, {"padding": "HALF"}, ValueError, "padding"),
    ("padding_negative", X, K, {"padding": -1}, ValueError, "padding"),
    ("reflect_too_wide", X, np.zeros((18, 18, 3, 3, 3, 5), np.float32), {"padding": 6, "padding_mode": "reflect"},
     ValueError, "padding"),
    ("padding_mode_unknown", X, K, {"padding_mode": "mirror"}, ValueError, "padding_mode"),
    ("layout_unknown", X, K, {"layout": "NCDHW"}, ValueError, "layout"),
    ("bias_wrong_shape", X, K, {"bias": np.zeros((4, 5))}, ValueError, "bias"),
    ("bias_string", X, K, {"bias": "zero"}, TypeError, "bias"),
    ("preferred_not_a_dtype", X, K, {"preferred_element_type": "fast"}, TypeError, "preferred_element_type"),
]  # fmt: skip


@pytest.mark.parametrize(("x", "kernel", "options", "error", "argument"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_bad_input_eager_and_under_jit(x, kernel, options, error, argument):
    with pytest.raises(error, match=f"local_conv2d: `{argument}`"):
        jaxconv.local_conv2d(x, kernel, **options)
    with pytest.raises(error, match=f"local_conv2d: `{argument}`"):
        jax.jit(lambda x, k: jaxconv.local_conv2d(x, k, **options))(x, kernel)


def test_kernel_not_matching_the_output_names_the_shapes():
    with pytest.raises(ValueError, match=r"`kernel` must hold one filter per output position.*\(4, 4\)"):
        jaxconv.local_conv2d(X, np.zeros((5, 4, 3, 3, 3, 5), np.float32))


def test_general_rejections_are_lax_messages():
    x, k = jnp.ones((1, 2, 5, 5)), jnp.ones((4, 2 * 9, 3, 3))  # NCHW, OIHW: a 3x3 window at 3x3 output positions
    valid = dict(window_strides=(1, 1), padding="VALID", filter_shape=(3, 3))
    jaxconv.conv_general_dilated_local(x, k, **valid)
    bad = [
        (k, dict(valid, padding="SAME", lhs_dilation=(2, 1))),
        (k, dict(valid, padding="HALF")),
        (k, dict(valid, precision=(lax.Precision.HIGHEST,) * 3)),
        (jnp.ones((4, 2 * 9, 3, 2)), valid),  # a filter missing for one output column
        (jnp.ones((4, 2 * 8, 3, 3)), valid),  # windows one value short
    ]
    for rhs, options in bad:
        with pytest.raises(Exception) as ours:  # noqa: B017 (whatever lax raises: ValueError, TypeError)
            jaxconv.conv_general_dilated_local(x, rhs, **options)
        with pytest.raises(type(ours.value)) as theirs:
            lax.conv_general_dilated_local(x, rhs, **options)
        assert str(ours.value) == str(theirs.value)

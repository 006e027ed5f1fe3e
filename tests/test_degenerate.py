"""Where lax's convolution works, jaxconv's does: the drop-in and convNd / conv_transposeNd at every strategy give
lax's values, derivatives (vjp and jvp) and dtypes under strict dtype promotion (float16, bfloat16, float32, float64,
int8 -> int32), with size-0 dims (batch, channels, outputs, spatial, a vmapped axis of either operand), with no
spatial dims at all (a matrix product per group), and for the drop-in's other degenerate geometries."""

import contextlib
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from reference import enable_x64, tiered

import jaxconv

STRATEGIES = ("auto", "window", "shift", "direct", "xla")
CALLERS = ("conv_general_dilated", *STRATEGIES)  # the drop-in (its own "auto"), and convNd with each strategy
LAYOUTS = {1: "NCW", 2: "NCHW", 3: "NCDHW"}


@pytest.fixture(autouse=True)
def strict_promotion():
    """Every call here under strict dtype promotion, as JAX's and Equinox's test setups run: lax's convolution
    takes it, so jaxconv's must."""
    with jax.numpy_dtype_promotion("strict"):
        yield


def convolve(caller, x, k, *, stride, padding, dilation, groups=1, preferred=None):
    """``caller``'s convolution of a channels-first ``x`` ``[N, C, *spatial]`` with ``k`` ``[O, C // groups, *taps]``:
    the drop-in, or ``conv{S}d`` with ``caller`` as its strategy."""
    if caller == "conv_general_dilated":
        return jaxconv.conv_general_dilated(
            x, k, stride, padding, rhs_dilation=dilation, feature_group_count=groups, precision="highest",
            preferred_element_type=preferred,
        )  # fmt: skip
    dims = x.ndim - 2
    return getattr(jaxconv, f"conv{dims}d")(
        x, k, stride=stride, padding=padding, dilation=dilation, groups=groups, layout=LAYOUTS[dims],
        strategy=caller, precision="highest", preferred_element_type=preferred,
    )  # fmt: skip


def lax_convolve(x, k, *, stride, padding, dilation, groups=1, preferred=None):
    return lax.conv_general_dilated(
        x, k, stride, padding, rhs_dilation=dilation, feature_group_count=groups, precision="highest",
        preferred_element_type=preferred,
    )  # fmt: skip


@functools.partial(jax.jit, static_argnums=0)
def derivatives(fn, x, k, ct, tx, tk):
    """``fn(x, k)``, its vjp at ``ct`` and its jvp along ``(tx, tk)``, in one jit."""
    out, vjp = jax.vjp(fn, x, k)
    return (out, *vjp(ct), jax.jvp(fn, (x, k), (tx, tk))[1])


def assert_same(got, want):
    """Each array: lax's shape, dtype and values (the draws are small integers, so every sum is exact)."""
    for g, w in zip(got, want, strict=True):
        assert (g.shape, g.dtype) == (w.shape, w.dtype)
        np.testing.assert_array_equal(np.asarray(g, np.complex128), np.asarray(w, np.complex128))


def draw(rng, shape, dtype):
    """Small random integers (every sum exact in every dtype), with an imaginary part for a complex ``dtype``."""
    values = rng.integers(-2, 3, shape)
    if jnp.issubdtype(dtype, jnp.complexfloating):
        values = values + 1j * rng.integers(-2, 3, shape)
    return jnp.asarray(values, dtype)


def draw_derivative_inputs(seed, fn, x, k):
    """A random output cotangent and operand tangents for ``fn`` (the cotangent in ``fn``'s result dtype)."""
    rng = np.random.default_rng(seed)
    out = jax.eval_shape(fn, x, k)
    return draw(rng, out.shape, out.dtype), draw(rng, x.shape, x.dtype), draw(rng, k.shape, k.dtype)


# Operand dtype, preferred_element_type, x64 mode.
PROMOTIONS = [
    ("bfloat16", "float32", False),
    ("float16", "float32", False),
    ("float16", None, False),
    ("float32", None, False),
    ("bfloat16", "float32", True),
    ("float32", "float64", True),
    ("float64", None, True),
    ("int8", "int32", False),
]
# Grouped, strided, dilated, padded within the kernel's reach (where lax's gradients are right).
GEOMETRY = dict(stride=(2, 1), padding=((1, 2), (0, 2)), dilation=(1, 2), groups=2)


@functools.cache
def lax_results(dtype, preferred, x64, seed=0):
    """lax's value (and for floating operands its vjp and jvp) on ``GEOMETRY``, under strict promotion."""
    rng = np.random.default_rng(seed)
    with jax.numpy_dtype_promotion("strict"), enable_x64() if x64 else contextlib.nullcontext():
        x, k = draw(rng, (1, 2, 5, 6), dtype), draw(rng, (4, 1, 3, 2), dtype)
        fn = functools.partial(lax_convolve, preferred=preferred, **GEOMETRY)
        if jnp.issubdtype(dtype, jnp.integer):
            return (x, k), (fn(x, k),)
        extra = draw_derivative_inputs(seed + 1, fn, x, k)
        return (x, k, *extra), derivatives(fn, x, k, *extra)


def assert_lax_results(caller, dtype, preferred, x64):
    """``caller`` on ``GEOMETRY`` gives :func:`lax_results` (under strict promotion, as every test here)."""
    operands, want = lax_results(dtype, preferred, x64)
    with enable_x64() if x64 else contextlib.nullcontext():
        fn = functools.partial(convolve, caller, preferred=preferred, **GEOMETRY)
        got = (fn(*operands),) if len(operands) == 2 else derivatives(fn, *operands)
        assert_same(got, want)


# Every (caller, promotion) pair runs with --runslow; the fast tier keeps a third of them, a covering in which every
# caller meets a half-precision, a float32 or float64, and (for most) an integer or x64 promotion.
DTYPE_CASES = [(caller, *promotion) for caller in CALLERS for promotion in PROMOTIONS]


@pytest.mark.parametrize(
    ("caller", "dtype", "preferred", "x64"),
    tiered(DTYPE_CASES, fast={i for i in range(len(DTYPE_CASES)) if i % 3 == 0}, several=True),
)
def test_dtypes_under_strict_promotion_are_lax(caller, dtype, preferred, x64):
    assert_lax_results(caller, dtype, preferred, x64)


# The drop-in's dtypes beyond convNd's (lax's own convolution, or float16 operands for a bfloat16 result).
DROP_IN_PROMOTIONS = [
    ("complex64", None, False),
    ("complex64", "complex128", True),
    ("int8", "float32", False),
    ("float16", "bfloat16", False),
]


@pytest.mark.parametrize(("dtype", "preferred", "x64"), DROP_IN_PROMOTIONS)
def test_drop_in_dtypes_under_strict_promotion_are_lax(dtype, preferred, x64):
    assert_lax_results("conv_general_dilated", dtype, preferred, x64)


# name: (x shape, kernel shape, vmapped axes of (x, kernel) or None, groups, padding per spatial dim)
EMPTY = {
    "batch": ((0, 2, 4), (3, 2, 2), None, 1, (0, 1)),
    "channels": ((1, 0, 4), (3, 0, 2), None, 1, (1, 0)),
    "grouped channels": ((1, 0, 4), (4, 0, 2), None, 2, (0, 0)),
    "outputs": ((1, 2, 4), (0, 2, 2), None, 1, (0, 0)),
    "spatial, padded": ((1, 2, 0), (3, 2, 1), None, 1, (1, 1)),
    "vmapped kernels": ((1, 2, 4), (0, 3, 2, 2), (None, 0), 1, (0, 0)),
    "vmapped inputs": ((0, 1, 2, 4), (3, 2, 2), (0, None), 1, (0, 0)),
    "vmapped both": ((1, 2, 0, 4), (3, 0, 2, 2), (2, 1), 1, (0, 0)),
}


def empty_operands(case, dims):
    """``EMPTY[case]``'s operands with ``dims`` spatial dims (the first as listed, the others 3 wide, 2 taps)."""
    x_shape, k_shape, axes, groups, pads = EMPTY[case]
    rng = np.random.default_rng(dims)
    x = draw(rng, (*x_shape, *(3,) * (dims - 1)), jnp.float32)
    k = draw(rng, (*k_shape, *(2,) * (dims - 1)), jnp.float32)
    options = dict(stride=(1,) * dims, padding=(pads, *((0, 0),) * (dims - 1)), dilation=(1,) * dims, groups=groups)
    return x, k, axes, options


@pytest.mark.parametrize(
    ("case", "dims"), [(case, 2) for case in EMPTY] + [("vmapped kernels", 1), ("vmapped kernels", 3)]
)
@pytest.mark.parametrize("caller", CALLERS)
def test_size_zero_dims_are_lax(caller, case, dims):
    x, k, axes, options = empty_operands(case, dims)

    def mapped(fn):
        fn = functools.partial(fn, **options)
        return fn if axes is None else jax.vmap(fn, in_axes=axes)

    ours, theirs = mapped(functools.partial(convolve, caller)), mapped(lax_convolve)
    extra = draw_derivative_inputs(dims, theirs, x, k)
    assert_same(derivatives(ours, x, k, *extra), derivatives(theirs, x, k, *extra))


TRANSPOSED = {"bfloat16": (1, 3, 2), "batch": (0, 3, 2), "channels": (1, 0, 2), "outputs": (1, 3, 0),
              "vmapped kernels": (1, 3, 2)}  # fmt: skip  # name: (batch, the convolution's outputs and inputs)


@pytest.mark.parametrize(
    ("case", "dims"), [(case, 2) for case in TRANSPOSED] + [("vmapped kernels", 1), ("vmapped kernels", 3)]
)
@pytest.mark.parametrize("strategy", STRATEGIES)
def test_transposes_are_lax_input_gradients(strategy, case, dims):
    """conv_transposeNd(y, k) is the vjp of (x -> lax's conv(x, k)) at y: at bfloat16 and with size-0 dims."""
    n, o, c = TRANSPOSED[case]
    rng = np.random.default_rng(len(case) + dims)
    dtype = jnp.bfloat16 if case == "bfloat16" else jnp.float32
    spatial, taps = (3, 4, 2)[:dims], (3, 2, 1)[:dims]
    y, k = draw(rng, (n, o, *spatial), dtype), draw(rng, (*(0,) * (case == "vmapped kernels"), o, c, *taps), dtype)
    options = dict(stride=(2, 1, 1)[:dims], padding=((1, 0), (1, 1), (0, 0))[:dims], dilation=(1,) * dims)
    extra = (1, 0, 0)[:dims]
    rows = zip(spatial, options["stride"], taps, options["padding"], extra, strict=True)
    size = tuple((h - 1) * s + t - lo - hi + p for h, s, t, (lo, hi), p in rows)  # the convolution's input

    def ours(y, k):
        return getattr(jaxconv, f"conv_transpose{dims}d")(
            y, k, output_padding=extra, layout=LAYOUTS[dims], strategy=strategy, **options
        )

    def theirs(y, k):
        x = jnp.zeros((n, c, *size), dtype)
        return jax.vjp(lambda x: lax_convolve(x, k, **options), x)[1](y)[0]

    if case == "vmapped kernels":
        ours, theirs = jax.vmap(ours, in_axes=(None, 0)), jax.vmap(theirs, in_axes=(None, 0))
    more = draw_derivative_inputs(dims, theirs, y, k)
    assert_same(derivatives(ours, y, k, *more), derivatives(theirs, y, k, *more))


# dimension numbers, (feature groups, batch groups), operand dtype, preferred_element_type
NO_SPATIAL = [
    (("NC", "IO", "NC"), (1, 1), "float32", None),
    (("CN", "OI", "CN"), (2, 1), "bfloat16", "float32"),
    (None, (3, 1), "float16", None),
    (("NC", "OI", "CN"), (1, 2), "float32", None),
    (("NC", "IO", "NC"), (2, 1), "int8", "int32"),
]


def per_group_products(x, k, groups):
    """A plain NumPy matrix product per feature group: ``[N, C] x [O, C // groups] -> [N, O]``, in float64."""
    x, k = np.asarray(x, np.float64), np.asarray(k, np.float64)
    parts = np.split(k, groups)  # [O // groups, C // groups] each
    return np.concatenate([xg @ kg.T for xg, kg in zip(np.split(x, groups, axis=1), parts, strict=True)], axis=1)


@pytest.mark.parametrize(("specs", "groups", "dtype", "preferred"), NO_SPATIAL)
def test_no_spatial_dims_are_a_product_per_group(specs, groups, dtype, preferred):
    fgc, bgc = groups
    rng = np.random.default_rng(fgc + 3 * bgc)
    x, k = draw(rng, (2 * bgc, 2 * fgc), dtype), draw(rng, (3 * fgc * bgc, 2), dtype)  # canonical [N, C], [O, I]
    lhs, rhs = (x.T if specs and specs[0] == "CN" else x), (k.T if specs and specs[1] == "IO" else k)
    options = dict(dimension_numbers=specs, feature_group_count=fgc, batch_group_count=bgc, precision="highest")
    ours = functools.partial(jaxconv.conv_general_dilated, window_strides=(), padding="SAME", **options)
    theirs = functools.partial(lax.conv_general_dilated, window_strides=(), padding="SAME", **options)
    ours, theirs = (functools.partial(f, preferred_element_type=preferred) for f in (ours, theirs))
    out = jax.jit(ours)(lhs, rhs)
    if bgc == 1:  # one product per feature group, laid out as the output spec says
        want = per_group_products(x, k, fgc)
        np.testing.assert_array_equal(np.asarray(out, np.float64), want.T if specs and specs[2] == "CN" else want)
    if jnp.issubdtype(dtype, jnp.integer):
        assert_same((out,), (theirs(lhs, rhs),))
        return
    extra = draw_derivative_inputs(1, theirs, lhs, rhs)
    assert_same(derivatives(ours, lhs, rhs, *extra), derivatives(theirs, lhs, rhs, *extra))
    empty = lhs[:0] if not specs or specs[0][0] == "N" else lhs[:, :0]  # no batch at all: lax's empty result
    assert_same((ours(empty, rhs),), (theirs(empty, rhs),))


# The drop-in's geometries lax accepts beyond convNd's (which asks the kernel to fit): x shape, kernel shape, options.
DROP_IN = {
    "kernel beyond the input": ((1, 2, 2, 5), (3, 2, 3, 2), dict(padding="VALID")),
    "cropped to nothing": ((1, 2, 3, 4), (3, 2, 1, 1), dict(padding=((-3, 0), (0, 0)))),
    "dilated empty input, padded": ((1, 2, 0, 4), (3, 2, 1, 2), dict(padding=((1, 1), (0, 0)), lhs_dilation=(2, 1))),
    "empty input, SAME": ((1, 2, 0, 4), (3, 2, 2, 2), dict(padding="SAME")),
}


@pytest.mark.parametrize("case", DROP_IN)
def test_drop_in_degenerate_geometry_is_lax(case):
    x_shape, k_shape, options = DROP_IN[case]
    rng = np.random.default_rng(len(case))
    x, k = draw(rng, x_shape, jnp.float32), draw(rng, k_shape, jnp.float32)
    ours, theirs = (functools.partial(f, window_strides=(1, 1), **options)
                    for f in (jaxconv.conv_general_dilated, lax.conv_general_dilated))  # fmt: skip
    extra = draw_derivative_inputs(2, theirs, x, k)
    assert_same(derivatives(ours, x, k, *extra), derivatives(theirs, x, k, *extra))

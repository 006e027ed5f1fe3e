"""conv_general_dilated, the drop-in for lax's: a property-based sweep against lax (values, and gradients where lax's
are right) and PyTorch (gradients everywhere, including padding beyond the kernel's reach and cropping)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from jax import lax
from reference import enable_x64

import jaxconv


@st.composite
def configurations(draw):
    """A random convolution in canonical channels-first form, and random dimension numbers to call it with."""
    dims = draw(st.integers(1, 3))
    letters = "DHW"[3 - dims :]
    specs = tuple("".join(draw(st.permutations(first + letters))) for first in ("NC", "OI", "NC"))  # lhs, rhs, out
    fgc, bgc = draw(st.sampled_from([(1, 1), (2, 1), (1, 2)]))
    cg, m, n = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    small = st.integers(1, 2)
    taps = [draw(st.integers(1, 3)) for _ in range(dims)]
    rhs_dil = [draw(small) for _ in range(dims)]
    lhs_dil = [draw(small) for _ in range(dims)] if draw(st.booleans()) else [1] * dims
    spatial = [draw(st.integers(2, 6 if dims < 3 else 4)) for _ in range(dims)]
    strides = [draw(small) for _ in range(dims)]
    reach = [(k - 1) * d for k, d in zip(taps, rhs_dil, strict=True)]
    if max(lhs_dil) == 1 and draw(st.booleans()):
        padding = draw(st.sampled_from(["VALID", "SAME", "SAME_LOWER"]))
    else:
        padding = tuple((draw(st.integers(-2, r + 3)), draw(st.integers(-2, r + 3))) for r in reach)
    try:
        shape = jax.eval_shape(
        functools.partial(
            lax.conv_general_dilated, window_strides=strides, padding=padding, lhs_dilation=lhs_dil,
            rhs_dilation=rhs_dil, feature_group_count=fgc, batch_group_count=bgc,
        ),
        jax.ShapeDtypeStruct((bgc * n, fgc * cg, *spatial), jnp.float32),
        jax.ShapeDtypeStruct((fgc * bgc * m, cg, *taps), jnp.float32),
        ).shape  # fmt: skip
    except ValueError:  # lax refuses it (e.g. cropping more than the input): not a configuration to compare
        assume(False)
    assume(min(shape) > 0)
    seed = draw(st.integers(0, 2**31 - 1))
    # lax numbers the spatial dims (strides, padding, dilations) in the order rhs_spec names them.
    order = "".join(c for c in specs[1] if c not in "OI")
    return dict(
        dims=dims, specs=specs, order=order, strides=strides, padding=padding, lhs_dil=lhs_dil, rhs_dil=rhs_dil, fgc=fgc, bgc=bgc,  # noqa: E501
        lhs_shape=(bgc * n, fgc * cg, *spatial), rhs_shape=(fgc * bgc * m, cg, *taps), seed=seed, reach=reach,
    )  # fmt: skip


def _perm(canonical, spec):
    """The permutation taking a canonical (channels-first, "NC" + spatial) array to ``spec``'s layout."""
    return [canonical.index(c) for c in spec]


def operands(cfg, dtype):
    rng = np.random.default_rng(cfg["seed"])
    letters = cfg["order"]
    lhs = rng.standard_normal(cfg["lhs_shape"]).astype(dtype).transpose(_perm("NC" + letters, cfg["specs"][0]))
    rhs = rng.standard_normal(cfg["rhs_shape"]).astype(dtype).transpose(_perm("OI" + letters, cfg["specs"][1]))
    return lhs, rhs


def call(fn, cfg, lhs, rhs):
    return fn(
        lhs, rhs, cfg["strides"], cfg["padding"], lhs_dilation=cfg["lhs_dil"], rhs_dilation=cfg["rhs_dil"],
        dimension_numbers=cfg["specs"], feature_group_count=cfg["fgc"], batch_group_count=cfg["bgc"],
        precision="highest",
    )  # fmt: skip


def lax_gradient_is_right(cfg):
    """lax's input gradient is a convolution with low padding (extent - 1 - low): XLA:CPU gets it wrong when that is
    negative (padding beyond the kernel's reach); compare to lax only with padding within it, no input dilation."""
    pads = cfg["padding"]
    if isinstance(pads, str):
        return pads == "VALID"
    return max(cfg["lhs_dil"]) == 1 and all(
        0 <= p <= r for (lo, hi), r in zip(pads, cfg["reach"], strict=True) for p in (lo, hi)
    )


def torch_reference(cfg, lhs, rhs, ct):
    """PyTorch in float64, channels first: input dilated by zero insertion, padded (negative: cropped) by F.pad,
    then conv{1,2,3}d; returns the output and the gradients of sum(out * ct), all in the caller's layouts."""
    torch = pytest.importorskip("torch")
    letters = cfg["order"]
    lhs_spec, rhs_spec, out_spec = cfg["specs"]
    x = torch.tensor(np.ascontiguousarray(np.transpose(lhs, _perm(lhs_spec, "NC" + letters))), requires_grad=True)
    w = torch.tensor(np.ascontiguousarray(np.transpose(rhs, _perm(rhs_spec, "OI" + letters))), requires_grad=True)
    sizes = [(s - 1) * d + 1 for s, d in zip(x.shape[2:], cfg["lhs_dil"], strict=True)]
    dilated = torch.zeros((*x.shape[:2], *sizes), dtype=x.dtype)
    dilated[(slice(None), slice(None), *(slice(None, None, d) for d in cfg["lhs_dil"]))] = x
    pads = cfg["padding"]
    if isinstance(pads, str):
        taps = [(k - 1) * d + 1 for k, d in zip(w.shape[2:], cfg["rhs_dil"], strict=True)]
        pads = lax.padtype_to_pads(x.shape[2:], taps, cfg["strides"], pads)
    padded = torch.nn.functional.pad(dilated, [p for pair in reversed(pads) for p in pair])
    conv = getattr(torch.nn.functional, f"conv{cfg['dims']}d")
    out = conv(padded, w, stride=cfg["strides"], dilation=cfg["rhs_dil"], groups=cfg["fgc"])
    out.backward(torch.tensor(np.ascontiguousarray(np.transpose(ct, _perm(out_spec, "NC" + letters)))))
    back = [
        np.transpose(t, _perm("NC" + letters, out_spec)) for t in (out.detach().numpy(),)
    ] + [np.transpose(x.grad.numpy(), _perm("NC" + letters, lhs_spec)),
         np.transpose(w.grad.numpy(), _perm("OI" + letters, rhs_spec))]  # fmt: skip
    return back


@given(configurations())
def test_values_equal_lax(cfg):
    lhs, rhs = operands(cfg, np.float32)
    got = jax.jit(functools.partial(call, jaxconv.conv_general_dilated, cfg))(lhs, rhs)
    want = call(lax.conv_general_dilated, cfg, lhs, rhs)
    assert got.shape == want.shape and got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@given(configurations())
# float64 VJPs of three implementations per draw, the suite's slowest property test: half the profile's examples
@settings(max_examples=max(1, settings.default.max_examples // 2))
def test_gradients_equal_lax_where_right_and_pytorch_everywhere(cfg):
    with enable_x64():
        lhs, rhs = operands(cfg, np.float64)
        out, vjp = jax.vjp(functools.partial(call, jaxconv.conv_general_dilated, cfg), lhs, rhs)
        ct = np.random.default_rng(cfg["seed"] + 1).standard_normal(out.shape)
        grads = vjp(jnp.asarray(ct))
        if lax_gradient_is_right(cfg):
            _, lax_vjp = jax.vjp(functools.partial(call, lax.conv_general_dilated, cfg), lhs, rhs)
            for g, w in zip(grads, lax_vjp(jnp.asarray(ct)), strict=True):
                np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9)
    if cfg["bgc"] == 1:  # PyTorch has no batch groups
        expected = torch_reference(cfg, lhs, rhs, ct)
        for g, w in zip((out, *grads), expected, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-9, atol=1e-9)


def test_lax_rejections_are_lax_messages():
    x, k = jnp.ones((1, 2, 5, 5)), jnp.ones((3, 2, 3, 3))
    for bad in (dict(padding="SAME", lhs_dilation=(2, 1)), dict(padding="HALF"), dict(feature_group_count=2)):
        options = dict(dict(window_strides=(1, 1), padding="VALID"), **bad)
        with pytest.raises(Exception) as ours:  # noqa: B017 (whatever lax raises: ValueError, TypeError, RuntimeError)
            jaxconv.conv_general_dilated(x, k, **options)
        with pytest.raises(type(ours.value)) as theirs:
            lax.conv_general_dilated(x, k, **options)
        assert str(ours.value) == str(theirs.value)


@pytest.mark.parametrize(("dtype", "preferred"), [(jnp.bfloat16, jnp.float32), (jnp.float16, jnp.float32),
                                                  (jnp.int8, jnp.int32)])  # fmt: skip
def test_preferred_element_type(dtype, preferred):
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.integers(-8, 8, (2, 7, 6, 4)), dtype)
    k = jnp.asarray(rng.integers(-8, 8, (3, 3, 4, 5)), dtype)
    options = dict(window_strides=(1, 2), padding="SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    got = jaxconv.conv_general_dilated(x, k, preferred_element_type=preferred, **options)
    exact = lax.conv_general_dilated(x.astype(jnp.int32), k.astype(jnp.int32), **options)  # small ints: exact
    assert got.dtype == preferred
    np.testing.assert_array_equal(np.asarray(got), np.asarray(exact).astype(preferred))


def test_batch_groups_run_lax():
    rng = np.random.default_rng(1)
    x, k = rng.standard_normal((4, 3, 6, 5)).astype(np.float32), rng.standard_normal((6, 3, 2, 2)).astype(np.float32)
    options = dict(window_strides=(1, 1), padding=((-1, 2), (1, 1)), batch_group_count=2, precision="highest")
    np.testing.assert_allclose(jaxconv.conv_general_dilated(x, k, **options),
                               lax.conv_general_dilated(x, k, **options), rtol=1e-5, atol=1e-5)  # fmt: skip

"""The two ``dynamic_slice`` + ``vmap`` strategies, laid out to feed one large contraction.

Both work on an already padded NHWC image ``xp`` and an HWIO kernel, under a *valid* spec (no padding left):

- ``"window"``: one ``dynamic_slice`` per output position — the kernel's (dilated) window ``[N, EH, EW, C]`` —
  vmapped over all positions with ``out_axes`` chosen so the stacked windows land directly as im2col rows
  ``[N, Ho, Wo, KH, KW, C]``: the position and tap axes are already where the contraction wants them, so the
  weighting-and-summing of every window is one dot ``[N*Ho*Wo, KH*KW*C] @ [KH*KW*C, O]`` with no transpose.
- ``"shift"``: one ``dynamic_slice`` per kernel tap — a shifted, strided view ``[N, Ho, Wo, C]`` of the whole
  image — vmapped over the ``KH * KW`` taps into ``[T, N, Ho, Wo, C]`` (tap-major, so each view is written as one
  contiguous block) and contracted with the kernel over taps and channels.

The same gathers serve the backward pass: the kernel gradient is the correlation of these very columns with the
output gradient (one dot contracting over ``N, Ho, Wo``); see :mod:`jaxconv._primitive` for the input gradient.
Half-precision inputs accumulate in float32.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxconv._spec import ConvSpec, Pads

# Axis letters of each strategy's gathered columns (t: kernel tap, g/c: group/channel within group).
_COLS = {"window": "nhwtgc", "shift": "tnhwgc"}


def accumulator(dtype: Any) -> Any:
    """Half-precision inputs accumulate in float32; other dtypes in themselves."""
    return jnp.float32 if jnp.dtype(dtype).itemsize < 4 else None


def window_columns(xp: jax.Array, spec: ConvSpec) -> jax.Array:
    """One ``dynamic_slice`` per output position, vmapped: ``[N, Hp, Wp, C]`` → ``[N, Ho, Wo, KH, KW, C]``."""
    n, _, _, c = xp.shape
    (sh, sw), (dh, dw), (eh, ew) = spec.stride, spec.dilation, spec.extent
    ho, wo = spec.out_hw

    def window(i: jax.Array, j: jax.Array) -> jax.Array:
        return lax.dynamic_slice(xp, (0, i * sh, j * sw, 0), (n, eh, ew, c))[:, ::dh, ::dw, :]

    along_row = jax.vmap(window, in_axes=(None, 0), out_axes=1)  # [N, Wo, KH, KW, C]
    return jax.vmap(along_row, in_axes=(0, None), out_axes=1)(jnp.arange(ho), jnp.arange(wo))


def shift_columns(xp: jax.Array, spec: ConvSpec) -> jax.Array:
    """One ``dynamic_slice`` per kernel tap, vmapped: ``[N, Hp, Wp, C]`` → ``[KH*KW, N, Ho, Wo, C]``."""
    n, _, _, c = xp.shape
    kh, kw = spec.kernel_shape[:2]
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    ho, wo = spec.out_hw

    def view(a: jax.Array, b: jax.Array) -> jax.Array:
        shifted = lax.dynamic_slice(xp, (0, a * dh, b * dw, 0), (n, (ho - 1) * sh + 1, (wo - 1) * sw + 1, c))
        return shifted[:, ::sh, ::sw, :]

    taps_a, taps_b = jnp.divmod(jnp.arange(kh * kw), kw)
    return jax.vmap(view)(taps_a, taps_b)


def columns(xp: jax.Array, spec: ConvSpec) -> jax.Array:
    """The strategy's gathered columns, with the tap and channel axes split as ``_COLS[spec.strategy]`` says."""
    n, ho, wo, _ = spec.out_shape
    kh, kw, cg, _ = spec.kernel_shape
    g = spec.groups
    if spec.strategy == "window":
        return window_columns(xp, spec).reshape(n, ho, wo, kh * kw, g, cg)
    return shift_columns(xp, spec).reshape(kh * kw, n, ho, wo, g, cg)


def correlate(xp: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """Valid cross-correlation of a padded ``[N, Hp, Wp, C]`` with ``[KH, KW, C//G, O]``: ``[N, Ho, Wo, O]``."""
    if spec.strategy == "direct":
        return direct_correlate(xp, kernel, spec)
    n, ho, wo, o = spec.out_shape
    kh, kw, cg, _ = spec.kernel_shape
    g = spec.groups
    cols = columns(xp, spec)
    weights = kernel.reshape(kh * kw, cg, g, o // g)
    acc = accumulator(xp.dtype)
    letters = _COLS[spec.strategy]
    out = jnp.einsum(f"{letters},tcgo->nhwgo", cols, weights, precision=spec.precision, preferred_element_type=acc)
    return out.reshape(n, ho, wo, o).astype(xp.dtype)


def kernel_gradient(xp: jax.Array, cotangent: jax.Array, spec: ConvSpec) -> jax.Array:
    """The kernel's gradient: the correlation of the strategy's columns with the output gradient.

    ``dk[a, b, c, o] = sum_{n, i, j} xp[n, i*sh + a*dh, j*sw + b*dw, g(o)*C/G + c] * ct[n, i, j, o]``, one dot
    over ``N * Ho * Wo``. Returns ``[KH, KW, C//G, O]``.
    """
    if spec.strategy == "direct":
        return direct_kernel_gradient(xp, cotangent, spec)
    n, ho, wo, o = spec.out_shape
    kh, kw, cg, _ = spec.kernel_shape
    g = spec.groups
    acc = accumulator(xp.dtype)
    ct = cotangent.reshape(n, ho, wo, g, o // g)
    dk = jnp.einsum(
        f"{_COLS[spec.strategy]},nhwgo->tcgo",
        columns(xp, spec),
        ct,
        precision=spec.precision,
        preferred_element_type=acc,
    )
    return dk.reshape(kh, kw, cg, o).astype(xp.dtype)


# "direct": per-group input channels up to this many are contracted by unrolled broadcast multiply-adds, which XLA
# fuses, over all taps and channels, into one elementwise loop vectorised over the output channels. More channels
# go through one dot per tap (measured slower than XLA's convolution there, BENCHMARKS.md).
DIRECT_MAX_UNROLLED = 8


def tap_views(xp: jax.Array, spec: ConvSpec) -> list[jax.Array]:
    """One static strided slice of ``xp`` per kernel tap, tap-major: the ``[N, Ho, Wo, C]`` inputs each tap weighs."""
    n, _, _, c = xp.shape
    kh, kw = spec.kernel_shape[:2]
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    ho, wo = spec.out_hw
    return [
        lax.slice(
            xp, (0, a * dh, b * dw, 0), (n, a * dh + (ho - 1) * sh + 1, b * dw + (wo - 1) * sw + 1, c), (1, sh, sw, 1)
        )  # fmt: skip
        for a in range(kh)
        for b in range(kw)
    ]


def direct_correlate(xp: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """``"direct"``: the sum over taps of (the tap's static slice) contracted with (the tap's weights).

    With few input channels per group (``C // G <= DIRECT_MAX_UNROLLED``: single-channel, few-channel, depthwise
    with or without a channel multiplier) every (tap, channel) is one broadcast multiply-add
    ``view[..., g, c] * kernel[a, b, c, g, :]`` in the accumulator dtype, and XLA fuses the whole sum into a single
    loop over the output that reads each input value ``KH * KW`` times from cache (``precision`` does not apply:
    these are exact elementwise products). Otherwise each tap is one dot over the group's channels.
    """
    n, ho, wo, o = spec.out_shape
    kh, kw, cg, _ = spec.kernel_shape
    g = spec.groups
    m = o // g
    acc = accumulator(xp.dtype) or xp.dtype
    weights = kernel.reshape(kh * kw, cg, g, m)
    out: jax.Array | None = None
    for t, view in enumerate(tap_views(xp, spec)):
        if cg <= DIRECT_MAX_UNROLLED:
            v, w = view.astype(acc), weights[t].astype(acc)
            for c in range(cg):
                if g == 1:  # [N, Ho, Wo, 1] * [O]
                    term = v[..., c : c + 1] * w[c, 0].reshape(1, 1, 1, o)
                elif cg == 1 and m == 1:  # depthwise: [N, Ho, Wo, C] * [C]
                    term = v * w[0, :, 0].reshape(1, 1, 1, o)
                else:  # [N, Ho, Wo, G, 1] * [G, M]
                    term = v.reshape(n, ho, wo, g, cg)[..., c : c + 1] * w[c].reshape(1, 1, 1, g, m)
                out = term if out is None else out + term
        else:
            v = view.reshape(n, ho, wo, g, cg)
            term = jnp.einsum("nhwgc,cgo->nhwgo", v, weights[t], precision=spec.precision, preferred_element_type=acc)
            out = term if out is None else out + term
    assert out is not None
    return _fusion_fence(out.reshape(n, ho, wo, o).astype(xp.dtype))


def _fusion_fence(y: jax.Array) -> jax.Array:
    """An exact no-op (rounding to the dtype's own exponent and mantissa widths) that XLA:CPU does not fold away.

    XLA:CPU's YNNPACK fusion pulls an elementwise producer into a consumer's dot or reduction (a loss, a ``vdot``),
    materialising every tap's slice on the way (many times slower, BENCHMARKS.md). It does not take
    ``reduce_precision``, so the unrolled sum stays one native loop fusion.
    (``optimization_barrier`` does not help: XLA:CPU removes it before fusion.)
    """
    info = jnp.finfo(y.dtype)
    return lax.reduce_precision(y, exponent_bits=info.nexp, mantissa_bits=info.nmant)


class XlaPadding(NamedTuple):
    """A convolution's zero padding, split into what is safe to hand to XLA's convolution and what is done outside.

    Attributes:
      crop: ``((top, bottom), (left, right))`` rows/columns removed by an explicit slice (negative padding).
      pad: zeros added by an explicit pad, beyond the kernel's reach.
      window: the convolution's own padding, each side in ``[0, (K - 1) * d]``.
    """

    crop: Pads
    pad: Pads
    window: Pads


def xla_padding(padding: Pads, extent: tuple[int, int]) -> XlaPadding:
    """Splits ``padding`` so that XLA's convolution, and JAX's transposes of it, never see negative low padding.

    XLA:CPU computes a convolution with negative low padding and positive high padding wrongly (openxla/xla#48713:
    its Eigen path reads outside the input). JAX transposes a convolution padded ``(lo, hi)`` w.r.t. its input into
    one padded ``(R - lo, R - hi + r)``, where ``R = (K - 1) * d`` is the kernel's reach and ``r < stride`` the rows no
    output reads: negative as soon as one side's padding exceeds the reach. So the window keeps at most ``R`` on each
    side, and the rest is explicit zeros (which XLA may fold back into the forward window: positive, harmless);
    negative padding becomes an explicit crop. Within ``[0, R]`` everything stays in the window, unchanged.

    Args:
      padding: ``((top, bottom), (left, right))``, any sign.
      extent: the dilated kernel's spatial extent ``((KH - 1) * dh + 1, (KW - 1) * dw + 1)``.

    Returns:
      The :class:`XlaPadding` whose crop, then pad, then window padding equals ``padding``.

    Examples:
      >>> xla_padding(((3, 1), (4, 4)), (3, 3))
      XlaPadding(crop=((0, 0), (0, 0)), pad=((1, 0), (2, 2)), window=((2, 1), (2, 2)))
      >>> xla_padding(((-1, 2), (0, 0)), (2, 2))
      XlaPadding(crop=((1, 0), (0, 0)), pad=((0, 1), (0, 0)), window=((0, 1), (0, 0)))
    """

    def split(p: int, reach: int) -> tuple[int, int, int]:
        window = min(max(p, 0), reach)
        return max(-p, 0), max(p, 0) - window, window

    (top, bottom), (left, right) = padding
    rows = split(top, extent[0] - 1), split(bottom, extent[0] - 1)
    cols = split(left, extent[1] - 1), split(right, extent[1] - 1)

    def part(i: int) -> Pads:
        return (rows[0][i], rows[1][i]), (cols[0][i], cols[1][i])

    return XlaPadding(part(0), part(1), part(2))


def lax_conv(x: jax.Array, kernel: jax.Array, spec: ConvSpec, padding: Pads = ((0, 0), (0, 0))) -> jax.Array:
    """``lax.conv_general_dilated`` for ``spec`` (NHWC / HWIO), zero-padded by ``padding``, in the accumulator dtype.

    Padding is split by :func:`xla_padding`: beyond the kernel's reach (or negative) it is applied outside the
    convolution, so that neither the convolution nor its JAX-derived transposes have negative low padding.
    """
    plan = xla_padding(padding, spec.extent)
    if plan.crop != ((0, 0), (0, 0)):
        (top, bottom), (left, right) = plan.crop
        n, h, w, c = x.shape
        x = lax.slice(x, (0, top, left, 0), (n, h - bottom, w - right, c))
    if plan.pad != ((0, 0), (0, 0)):
        (top, bottom), (left, right) = plan.pad
        x = lax.pad(x, jnp.zeros((), x.dtype), ((0, 0, 0), (top, bottom, 0), (left, right, 0), (0, 0, 0)))
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=spec.stride,
        padding=plan.window,
        rhs_dilation=spec.dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=spec.groups,
        precision=spec.precision,
        preferred_element_type=accumulator(x.dtype),
    )


def xla_input_gradient(cotangent: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """XLA's backward-data convolution: the transpose of ``lax_conv`` (zero padding ``spec.padding`` inside it, the
    stride as an input dilation) w.r.t. its ``[N, H, W, C]`` input."""
    acc = accumulator(cotangent.dtype) or cotangent.dtype
    # Transposed in the accumulator dtype (inputs upcast exactly), which every jax version transposes alike.
    k_acc = kernel.astype(acc)
    x = jax.ShapeDtypeStruct(spec.in_shape, acc)
    (dx,) = jax.linear_transpose(lambda x: lax_conv(x, k_acc, spec, spec.padding), x)(cotangent.astype(acc))
    return dx.astype(cotangent.dtype)


def xla_kernel_gradient(x: jax.Array, cotangent: jax.Array, spec: ConvSpec) -> jax.Array:
    """XLA's backward-filter convolution: the transpose of ``lax_conv`` (zero padding ``spec.padding`` inside it)
    w.r.t. its kernel."""
    acc = accumulator(x.dtype) or x.dtype
    x_acc = x.astype(acc)
    kernel = jax.ShapeDtypeStruct(spec.kernel_shape, acc)
    (dk,) = jax.linear_transpose(lambda k: lax_conv(x_acc, k, spec, spec.padding), kernel)(cotangent.astype(acc))
    return dk.astype(x.dtype)


def direct_kernel_gradient(xp: jax.Array, cotangent: jax.Array, spec: ConvSpec) -> jax.Array:
    """``"direct"``'s kernel gradient (measured per shape, BENCHMARKS.md).

    One input channel per group (depthwise, with or without a multiplier): per tap, the elementwise product of the
    tap's slice and the output gradient, reduced over ``N, Ho`` (rows stay contiguous) and then ``Wo``. Otherwise
    XLA's backward-filter convolution, which beat a dot or a fused reduction per tap on every such grid point.
    """
    kh, kw, cg, o = spec.kernel_shape
    if cg != 1 or spec.groups == 1:
        return xla_kernel_gradient(xp, cotangent, spec)
    n, ho, wo, _ = spec.out_shape
    g = spec.groups
    acc = accumulator(xp.dtype) or xp.dtype
    ct = cotangent.reshape(n, ho, wo, g, o // g).astype(acc)
    taps = [
        jnp.sum(jnp.sum(view.astype(acc).reshape(n, ho, wo, g, 1) * ct, axis=(0, 1)), axis=0)
        for view in tap_views(xp, spec)
    ]
    return jnp.stack(taps).reshape(kh, kw, cg, o).astype(xp.dtype)

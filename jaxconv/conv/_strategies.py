"""The strategies' valid correlations, for 1, 2 or 3 spatial dims, in channels-last form.

All work on an already padded ``[N, *spatial, C]`` input ``xp`` and a ``[*taps, C // G, O]`` kernel under a *valid*
spec (no padding left). The two ``dynamic_slice`` + ``vmap`` ones feed one large contraction; in 2-D (NHWC, HWIO):

- ``"window"``: one ``dynamic_slice`` per output position — the kernel's (dilated) window ``[N, EH, EW, C]`` —
  vmapped over all positions with ``out_axes`` chosen so the stacked windows land directly as im2col rows
  ``[N, Ho, Wo, KH, KW, C]``: the position and tap axes are already where the contraction wants them, so the
  weighting-and-summing of every window is one dot ``[N*Ho*Wo, KH*KW*C] @ [KH*KW*C, O]`` with no transpose.
- ``"shift"``: one ``dynamic_slice`` per kernel tap — a shifted, strided view ``[N, Ho, Wo, C]`` of the whole
  image — vmapped over the ``KH * KW`` taps into ``[T, N, Ho, Wo, C]`` (tap-major, so each view is written as one
  contiguous block) and contracted with the kernel over taps and channels.

In 1-D and 3-D the same with one index per spatial dim (the output positions flattened for the contraction).
``"direct"`` is a static slice per tap multiplied and accumulated elementwise; ``"xla"`` is XLA's convolution;
``"fft"`` multiplies the Fourier transforms (:func:`fft_correlate`).

The same gathers serve the backward pass: the kernel gradient is the correlation of these very columns with the
output gradient (one dot contracting over ``N, Ho, Wo``); see :mod:`jaxconv.conv._primitive` for the input gradient.
Half-precision inputs accumulate in float32.
"""

from __future__ import annotations

import itertools
import math
import os
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from jaxconv.conv._spec import SPATIAL_LETTERS, ConvSpec, Pads

# Axis letters of each strategy's gathered columns (p: output position, t: kernel tap, g/c: group/channel in group).
_COLS = {"window": "nptgc", "shift": "tnpgc"}


def accumulator(dtype: Any) -> Any:
    """Half-precision inputs accumulate in float32; other dtypes in themselves."""
    return jnp.float32 if jnp.dtype(dtype).itemsize < 4 else None


def _strided(steps: tuple[int, ...]) -> tuple[slice, ...]:
    """An index taking every ``steps[i]``-th element of spatial dim ``i`` of an ``[N, *spatial, C]`` array."""
    return (slice(None), *(slice(None, None, s) for s in steps), slice(None))


def window_columns(xp: jax.Array, spec: ConvSpec) -> jax.Array:
    """One ``dynamic_slice`` per output position, vmapped: ``[N, *padded, C]`` → ``[N, *out, *taps, C]``.

    In 2-D: ``[N, Hp, Wp, C]`` → ``[N, Ho, Wo, KH, KW, C]``.
    """
    n, c = xp.shape[0], xp.shape[-1]
    dims = spec.spatial_dims
    every_tap = _strided(spec.dilation)

    def window(*position: jax.Array) -> jax.Array:
        starts: tuple[Any, ...] = (0, *(i * s for i, s in zip(position, spec.stride, strict=True)), 0)
        return lax.dynamic_slice(xp, starts, (n, *spec.extent, c))[every_tap]

    # Vmapped over one output axis at a time, innermost the last, each landing at axis 1: [N, *out, *taps, C].
    gather = window
    for axis in reversed(range(dims)):
        gather = jax.vmap(gather, in_axes=tuple(0 if a == axis else None for a in range(dims)), out_axes=1)
    return gather(*(jnp.arange(size) for size in spec.out_hw))


def _taps(spec: ConvSpec) -> list[tuple[int, ...]]:
    """Every kernel tap's spatial index, tap-major (the last spatial dim fastest)."""
    return list(itertools.product(*(range(k) for k in spec.kernel_shape[:-2])))


def shift_columns(xp: jax.Array, spec: ConvSpec) -> jax.Array:
    """One ``dynamic_slice`` per kernel tap, vmapped: ``[N, *padded, C]`` → ``[T, N, *out, C]``, ``T`` taps."""
    n, c = xp.shape[0], xp.shape[-1]
    span = tuple((o - 1) * s + 1 for o, s in zip(spec.out_hw, spec.stride, strict=True))
    every_output = _strided(spec.stride)

    def view(*tap: jax.Array) -> jax.Array:
        starts: tuple[Any, ...] = (0, *(a * d for a, d in zip(tap, spec.dilation, strict=True)), 0)
        return lax.dynamic_slice(xp, starts, (n, *span, c))[every_output]

    taps = jnp.asarray(_taps(spec)).T  # the default int dtype, as the constant 0 starts (int64 under x64)
    return jax.vmap(view)(*taps)


def columns(xp: jax.Array, spec: ConvSpec) -> jax.Array:
    """The strategy's gathered columns, positions flattened to ``P`` and the tap and channel axes split as
    ``_COLS[spec.strategy]`` says."""
    n, positions = spec.in_shape[0], math.prod(spec.out_hw)
    *taps, cg, _ = spec.kernel_shape
    g, t = spec.groups, math.prod(taps)
    if spec.strategy == "window":
        return window_columns(xp, spec).reshape(n, positions, t, g, cg)
    return shift_columns(xp, spec).reshape(t, n, positions, g, cg)


def correlate(xp: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """Valid cross-correlation of a padded ``[N, *padded, C]`` with ``[*taps, C//G, O]``: ``[N, *out, O]``."""
    if spec.strategy == "direct":
        return direct_correlate(xp, kernel, spec)
    if spec.strategy == "fft":
        return fft_correlate(xp, kernel, spec)
    if spec.strategy == "xla":
        return xla_correlate(xp, kernel, spec)
    *taps, cg, o = spec.kernel_shape
    g = spec.groups
    cols = columns(xp, spec)
    weights = kernel.reshape(math.prod(taps), cg, g, o // g)
    acc = accumulator(xp.dtype)
    letters = _COLS[spec.strategy]
    out = jnp.einsum(f"{letters},tcgo->npgo", cols, weights, precision=spec.precision, preferred_element_type=acc)
    return out.reshape(spec.out_shape).astype(xp.dtype)


def kernel_gradient(xp: jax.Array, cotangent: jax.Array, spec: ConvSpec) -> jax.Array:
    """The kernel's gradient: the correlation of the strategy's columns with the output gradient.

    In 2-D ``dk[a, b, c, o] = sum_{n, i, j} xp[n, i*sh + a*dh, j*sw + b*dw, g(o)*C/G + c] * ct[n, i, j, o]``, one
    dot over ``N * Ho * Wo``. Returns ``[*taps, C//G, O]``.
    """
    if spec.strategy == "direct":
        return direct_kernel_gradient(xp, cotangent, spec)
    if spec.strategy == "fft":
        return fft_kernel_gradient(xp, cotangent, spec)
    n, o = spec.in_shape[0], spec.kernel_shape[-1]
    g = spec.groups
    acc = accumulator(xp.dtype)
    ct = cotangent.reshape(n, math.prod(spec.out_hw), g, o // g)
    dk = jnp.einsum(
        f"{_COLS[spec.strategy]},npgo->tcgo",
        columns(xp, spec),
        ct,
        precision=spec.precision,
        preferred_element_type=acc,
    )
    return dk.reshape(spec.kernel_shape).astype(xp.dtype)


# "direct": per-group input channels up to this many are contracted by unrolled broadcast multiply-adds, which XLA
# fuses, over all taps and channels, into one elementwise loop vectorised over the output channels. More channels
# go through one dot per tap (measured slower than XLA's convolution there, BENCHMARKS.md).
DIRECT_MAX_UNROLLED = 8


def tap_views(xp: jax.Array, spec: ConvSpec) -> list[jax.Array]:
    """One static strided slice of ``xp`` per kernel tap, tap-major: the ``[N, *out, C]`` inputs each tap weighs."""
    n, c = xp.shape[0], xp.shape[-1]
    views = []
    for tap in _taps(spec):
        starts = tuple(a * d for a, d in zip(tap, spec.dilation, strict=True))
        limits = tuple(s + (o - 1) * st + 1 for s, o, st in zip(starts, spec.out_hw, spec.stride, strict=True))
        views.append(lax.slice(xp, (0, *starts, 0), (n, *limits, c), (1, *spec.stride, 1)))
    return views


def direct_correlate(xp: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """``"direct"``: the sum over taps of (the tap's static slice) contracted with (the tap's weights).

    With few input channels per group (``C // G <= DIRECT_MAX_UNROLLED``: single-channel, few-channel, depthwise
    with or without a channel multiplier) every (tap, channel) is one broadcast multiply-add
    ``view[..., g, c] * kernel[tap, c, g, :]`` in the accumulator dtype, and XLA fuses the whole sum into a single
    loop over the output that reads each input value ``T`` times from cache (``precision`` does not apply:
    these are exact elementwise products). Otherwise each tap is one dot over the group's channels.
    """
    n, o = spec.in_shape[0], spec.kernel_shape[-1]
    *taps, cg, _ = spec.kernel_shape
    out_hw = spec.out_hw
    lead = (1,) * (1 + len(out_hw))  # broadcast over [N, *out]
    g = spec.groups
    m = o // g
    acc = accumulator(xp.dtype) or xp.dtype
    weights = kernel.reshape(math.prod(taps), cg, g, m)
    out: jax.Array | None = None
    for t, view in enumerate(tap_views(xp, spec)):
        if cg <= DIRECT_MAX_UNROLLED:
            v, w = view.astype(acc), weights[t].astype(acc)
            for c in range(cg):
                if g == 1:  # [N, *out, 1] * [O]
                    term = v[..., c : c + 1] * w[c, 0].reshape(*lead, o)
                elif cg == 1 and m == 1:  # depthwise: [N, *out, C] * [C]
                    term = v * w[0, :, 0].reshape(*lead, o)
                else:  # [N, *out, G, 1] * [G, M]
                    term = v.reshape(n, *out_hw, g, cg)[..., c : c + 1] * w[c].reshape(*lead, g, m)
                out = term if out is None else out + term
        else:
            v = view.reshape(n, math.prod(out_hw), g, cg)
            term = jnp.einsum("npgc,cgo->npgo", v, weights[t], precision=spec.precision, preferred_element_type=acc)
            out = term if out is None else out + term
    assert out is not None
    return _fusion_fence(out.reshape(spec.out_shape).astype(xp.dtype))


def _fusion_fence(y: jax.Array) -> jax.Array:
    """An exact no-op (rounding to the dtype's own exponent and mantissa widths) that XLA:CPU does not fold away.

    XLA:CPU's YNNPACK fusion pulls an elementwise producer into a consumer's dot or reduction (a loss, a ``vdot``),
    materialising every tap's slice on the way (many times slower, BENCHMARKS.md). It does not take
    ``reduce_precision``, so the unrolled sum stays one native loop fusion.
    (``optimization_barrier`` does not help: XLA:CPU removes it before fusion.)
    """
    info = jnp.finfo(y.dtype)
    return lax.reduce_precision(y, exponent_bits=info.nexp, mantissa_bits=info.nmant)


def pad_or_crop(x: jax.Array, pads: Pads, interior: tuple[int, ...] | None = None) -> jax.Array:
    """``lax.pad`` of a channels-last ``[N, *spatial, C]`` ``x`` with zeros over its spatial dims, but a negative side
    is cropped by a slice instead (never handed to XLA as negative padding).

    Args:
      x: ``[N, *spatial, C]``.
      pads: one ``(low, high)`` per spatial dim, any sign: zeros added (positive) or elements removed (negative),
        after the interior padding.
      interior: zeros between neighbouring elements, per spatial dim (default none).

    Returns:
      ``x`` framed, the same as ``lax.pad(x, 0, [(0, 0, 0), *((lo, hi, i) ...), (0, 0, 0)])``.

    Examples:
      >>> pad_or_crop(jnp.arange(4.0).reshape(1, 4, 1), ((1, -2),), (1,))[0, :, 0]
      Array([0., 0., 0., 1., 0., 2.], dtype=float32)
    """
    interior = (0,) * len(pads) if interior is None else interior
    if any(i > 0 for i in interior) or any(p > 0 for pair in pads for p in pair):
        config = [(max(lo, 0), max(hi, 0), i) for (lo, hi), i in zip(pads, interior, strict=True)]
        x = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), *config, (0, 0, 0)])
    if any(min(pair) < 0 for pair in pads):
        crop = tuple(slice(max(-lo, 0), n - max(-hi, 0)) for (lo, hi), n in zip(pads, x.shape[1:-1], strict=True))
        window = (slice(None), *crop, slice(None))
        x = x[window]
    return x


def unpadded_frame(offsets: tuple[int, ...], counts: tuple[int, ...], spec: ConvSpec) -> Pads:
    """The :func:`pad_or_crop` frame (with interior ``stride - 1``) that puts ``counts`` values per spatial dim at the
    padded input's positions ``offset, offset + stride, ...`` and crops ``spec.padding`` off: the values land where
    they belong in the unpadded ``[N, *spatial, C]`` input.

    Examples:
      >>> from jaxconv.conv._spec import make_spec
      >>> opts = dict(dilation=1, groups=1, padding_mode="zeros", precision=None, strategy="direct")
      >>> spec = make_spec((1, 7, 1), (3, 1, 1), stride=2, padding=((1, 1),), **opts)  # padded 9, 4 outputs
      >>> unpadded_frame((2,), (4,), spec)  # padded positions 2, 4, 6, 8: unpadded 1, 3, 5, 7 (the last cropped)
      ((1, -1),)
    """
    return tuple(
        (r - lo, p - r - (m - 1) * s - 1 - hi)
        for r, m, s, p, (lo, hi) in zip(offsets, counts, spec.stride, spec.padded_hw, spec.padding, strict=True)
    )


class XlaPadding(NamedTuple):
    """A convolution's zero padding, split into what is safe to hand to XLA's convolution and what is done outside.

    Attributes:
      crop: one ``(low, high)`` per spatial dim, elements removed by an explicit slice (negative padding).
      pad: zeros added by an explicit pad, beyond the kernel's reach.
      window: the convolution's own padding, each side in ``[0, (K - 1) * d]``.
    """

    crop: Pads
    pad: Pads
    window: Pads


def xla_padding(padding: Pads, extent: tuple[int, ...]) -> XlaPadding:
    """Splits ``padding`` so that XLA's convolution, and JAX's transposes of it, never see negative low padding.

    XLA:CPU computes a convolution with negative low padding and positive high padding wrongly (openxla/xla#48713:
    its Eigen path reads outside the input). JAX transposes a convolution padded ``(lo, hi)`` w.r.t. its input into
    one padded ``(R - lo, R - hi + r)``, where ``R = (K - 1) * d`` is the kernel's reach and ``r < stride`` the rows no
    output reads: negative as soon as one side's padding exceeds the reach. So the window keeps at most ``R`` on each
    side, and the rest is explicit zeros (which XLA may fold back into the forward window: positive, harmless);
    negative padding becomes an explicit crop. Within ``[0, R]`` everything stays in the window, unchanged.

    Args:
      padding: one ``(low, high)`` per spatial dim (e.g. ``((top, bottom), (left, right))``), any sign.
      extent: the dilated kernel's spatial extent per dim, ``(K - 1) * d + 1`` (e.g. ``(EH, EW)``).

    Returns:
      The :class:`XlaPadding` whose crop, then pad, then window padding equals ``padding``.

    Examples:
      >>> xla_padding(((3, 1), (4, 4)), (3, 3))
      XlaPadding(crop=((0, 0), (0, 0)), pad=((1, 0), (2, 2)), window=((2, 1), (2, 2)))
      >>> xla_padding(((-1, 2), (0, 0)), (2, 2))
      XlaPadding(crop=((1, 0), (0, 0)), pad=((0, 1), (0, 0)), window=((0, 1), (0, 0)))
      >>> xla_padding(((5, -1),), (4,))
      XlaPadding(crop=((0, 1),), pad=((2, 0),), window=((3, 0),))
    """

    def split(p: int, reach: int) -> tuple[int, int, int]:
        window = min(max(p, 0), reach)
        return max(-p, 0), max(p, 0) - window, window

    sides = [(split(lo, e - 1), split(hi, e - 1)) for (lo, hi), e in zip(padding, extent, strict=True)]

    def part(i: int) -> Pads:
        return tuple((lo[i], hi[i]) for lo, hi in sides)

    return XlaPadding(part(0), part(1), part(2))


def lax_conv(
    x: jax.Array, kernel: jax.Array, spec: ConvSpec, padding: Pads | None = None, preferred: Any = None
) -> jax.Array:
    """``lax.conv_general_dilated`` for ``spec`` (channels-last), zero-padded by ``padding`` (default none), in the
    ``preferred`` dtype (default: the accumulator dtype).

    Padding is split by :func:`xla_padding`: beyond the kernel's reach (or negative) it is applied outside the
    convolution (:func:`pad_or_crop`), so that neither the convolution nor its JAX-derived transposes have negative
    low padding.
    """
    letters = SPATIAL_LETTERS[spec.spatial_dims]
    plan = xla_padding(((0, 0),) * spec.spatial_dims if padding is None else padding, spec.extent)
    outside = tuple((p_lo - c_lo, p_hi - c_hi) for (p_lo, p_hi), (c_lo, c_hi) in zip(plan.pad, plan.crop, strict=True))
    x = pad_or_crop(x, outside)
    return lax.conv_general_dilated(
        x,
        kernel,
        window_strides=spec.stride,
        padding=plan.window,
        rhs_dilation=spec.dilation,
        dimension_numbers=(f"N{letters}C", f"{letters}IO", f"N{letters}C"),
        feature_group_count=spec.groups,
        precision=spec.precision,
        preferred_element_type=accumulator(x.dtype) if preferred is None else preferred,
    )


def xla_cpu_threads() -> int:
    """The threads XLA:CPU's intra-op pool runs on: one per core this process may run on (``taskset`` sets it)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def spreads_over_threads(spec: ConvSpec, dtype: Any) -> bool:
    """Whether XLA's convolution for ``spec`` is given one extra output row (:func:`xla_correlate`) so that XLA:CPU
    runs it on all its threads.

    XLA:CPU hands a convolution with symmetric padding to YNNPACK, which runs it on one thread, and any other
    convolution to Eigen's, which runs on every thread of its pool. With two threads or more the Eigen route measured
    faster for float32, 2-D, ungrouped, stride-1 convolutions whose kernel is at least 3 taps in both dims, and slower
    for 1x1 kernels and strided ones; with one thread YNNPACK's is faster (BENCHMARKS.md, "two threads").

    Examples:
      >>> from jaxconv.conv._spec import make_spec
      >>> opts = dict(padding="SAME", dilation=1, groups=1, padding_mode="zeros", precision=None, strategy="xla")
      >>> many = make_spec((8, 64, 64, 32), (3, 3, 32, 32), stride=1, **opts)
      >>> spreads_over_threads(many, jnp.float32) == (jax.default_backend() == "cpu" and xla_cpu_threads() > 1)
      True
      >>> spreads_over_threads(make_spec((8, 64, 64, 32), (3, 3, 32, 32), stride=2, **opts), jnp.float32)
      False
    """
    *taps, _, _ = spec.kernel_shape
    return (
        spec.spatial_dims == 2
        and spec.groups == 1
        and all(s == 1 for s in spec.stride)
        and min(taps) >= 3
        and jnp.dtype(dtype) == jnp.float32
        and jax.default_backend() == "cpu"
        and xla_cpu_threads() > 1
    )


def xla_correlate(xp: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """XLA's own valid convolution: the ``"xla"`` strategy where :func:`spreads_over_threads` (the primitive's
    forward, see ``_primitive``), and the transposed correlations that measured faster through it.

    Where :func:`spreads_over_threads`, the convolution is padded below (or right of, whichever output dim is longer)
    by one stride of zeros, which makes its padding asymmetric, and the extra output row (column) is cropped: the
    same numbers, with ``1 / Ho`` more work, on every thread.
    """
    if not spreads_over_threads(spec, xp.dtype):
        return lax_conv(xp, kernel, spec).astype(xp.dtype)
    dim = max(range(spec.spatial_dims), key=lambda i: spec.out_hw[i])
    extra = tuple((0, spec.stride[i] if i == dim else 0) for i in range(spec.spatial_dims))
    out = lax_conv(xp, kernel, spec, extra)
    return lax.slice_in_dim(out, 0, spec.out_hw[dim], axis=dim + 1).astype(xp.dtype)


def xla_input_gradient(cotangent: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """XLA's backward-data convolution: the transpose of ``lax_conv`` (zero padding ``spec.padding`` inside it, the
    stride as an input dilation) w.r.t. its ``[N, *spatial, C]`` input."""
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


# tap_dots_input_gradient's per-tap shares of the output gradient are computed for the whole batch at once up to this
# many bytes, else in batch chunks of at most TAP_DOTS_CHUNK_BYTES, one after the other: measured (BENCHMARKS.md,
# issue 24), at 16x128² 3->16 k3 (28 MB of shares) the whole batch took 3.5x as long as chunks of 2-4 MB, while at
# 64x32² 3->32 k3 (7 MB) and 64x28² 1->16 k5 (5 MB) chunking was 10-40% slower (the loop's steps are sequential).
TAP_DOTS_WHOLE_BYTES = 8 << 20
TAP_DOTS_CHUNK_BYTES = 4 << 20


def tap_dots_input_gradient(cotangent: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """The gradient w.r.t. the unpadded input by one dot and shifted sums (``"direct"`` with many outputs per group).

    Every output position's gradient is first spread over the taps that produced it — one dot contracting the
    output channels, ``shares[n, *out, t, g, c] = sum_m cotangent[n, *out, g, m] * kernel[t, c, g, m]`` — and each
    tap's share is then added onto the input positions that tap read: shifted by the tap's (dilated) offset, spread
    by the stride (zeros between), the padding cropped off; XLA fuses the shifted sum into one loop. Where the shares
    would take more than :data:`TAP_DOTS_WHOLE_BYTES`, the batch goes through in chunks of at most
    :data:`TAP_DOTS_CHUNK_BYTES` of shares (``lax.map``), which stay in cache between the dot and the sum.

    Args:
      cotangent: ``[N, *out, O]``, the output gradient.
      kernel: ``[*taps, C // G, O]``.
      spec: the correlation (any stride, dilation, groups, padding).

    Returns:
      ``[N, *spatial, C]`` in ``cotangent``'s dtype (accumulated in :func:`accumulator`'s dtype).

    Examples:
      One output position's gradient goes back, weighted by each tap, to the pixels that tap read:

      >>> from jaxconv.conv._spec import make_spec
      >>> opts = dict(stride=1, padding="SAME", dilation=1, groups=1, padding_mode="zeros", precision=None)
      >>> spec = make_spec((1, 4, 4, 1), (3, 3, 1, 9), strategy="direct", **opts)
      >>> cotangent = jnp.zeros(spec.out_shape).at[0, 1, 1, 0].set(1.0)
      >>> tap_dots_input_gradient(cotangent, jnp.arange(81.0).reshape(3, 3, 1, 9), spec)[0, :, :, 0]
      Array([[ 0.,  9., 18.,  0.],
             [27., 36., 45.,  0.],
             [54., 63., 72.,  0.],
             [ 0.,  0.,  0.,  0.]], dtype=float32)
    """
    n, *_, c = spec.in_shape
    *taps, cg, o = spec.kernel_shape
    g, t, out_hw = spec.groups, math.prod(taps), spec.out_hw
    acc = accumulator(cotangent.dtype) or cotangent.dtype
    weights = kernel.reshape(t, cg, g, o // g)
    frames = [
        unpadded_frame(tuple(a * d for a, d in zip(tap, spec.dilation, strict=True)), out_hw, spec)
        for tap in _taps(spec)
    ]
    interior = tuple(s - 1 for s in spec.stride)

    def spread(ct: jax.Array) -> jax.Array:  # [B, *out, O] -> [B, *spatial, C]
        b = ct.shape[0]
        shares = jnp.einsum(
            "npgm,tcgm->nptgc",
            ct.reshape(b, -1, g, o // g),
            weights,
            precision=spec.precision,
            preferred_element_type=acc,
        ).reshape(b, *out_hw, t, c)
        out = None
        for i, frame in enumerate(frames):
            placed = pad_or_crop(shares[..., i, :], frame, interior)
            out = placed if out is None else out + placed
        assert out is not None
        return out

    image_bytes = math.prod(out_hw) * t * c * jnp.dtype(acc).itemsize
    if n * image_bytes <= TAP_DOTS_WHOLE_BYTES:
        dx = spread(cotangent)
    else:
        b = max(d for d in range(1, n + 1) if n % d == 0 and (d == 1 or d * image_bytes <= TAP_DOTS_CHUNK_BYTES))
        chunks = lax.map(spread, cotangent.reshape(n // b, b, *cotangent.shape[1:]))
        dx = chunks.reshape(spec.in_shape)
    return dx.astype(cotangent.dtype)


def halves_kernel_gradient(spec: ConvSpec) -> bool:
    """Whether ``"direct"`` computes the kernel gradient of ``spec`` itself, by :func:`halving_sum` per tap (else XLA's
    backward-filter convolution): one input channel per group, and either grouped (depthwise, with or without a
    multiplier) or one output channel — where the per-tap product is elementwise (BENCHMARKS.md)."""
    *_, cg, o = spec.kernel_shape
    return cg == 1 and (spec.groups > 1 or o == 1)


def direct_kernel_gradient(xp: jax.Array, cotangent: jax.Array, spec: ConvSpec) -> jax.Array:
    """``"direct"``'s kernel gradient (measured per shape, BENCHMARKS.md).

    :func:`halves_kernel_gradient` shapes (depthwise, with or without a multiplier; one input and one output channel):
    per tap, the elementwise product of the tap's slice and the output gradient, summed over ``N`` and the output
    positions by :func:`halving_sum`. Otherwise XLA's backward-filter convolution, which beat a dot, a fused
    reduction or halving sums per tap on every such grid point.
    """
    *_, cg, o = spec.kernel_shape
    if not halves_kernel_gradient(spec):
        return xla_kernel_gradient(xp, cotangent, spec)
    n, out_hw = spec.in_shape[0], spec.out_hw
    g = spec.groups
    acc = accumulator(xp.dtype) or xp.dtype
    ct = cotangent.reshape(n, *out_hw, g, o // g).astype(acc)
    taps = [
        halving_sum((view.astype(acc).reshape(n, *out_hw, g, 1) * ct).reshape(-1, o)) for view in tap_views(xp, spec)
    ]
    return jnp.stack(taps).reshape(spec.kernel_shape).astype(xp.dtype)


def halving_sum(rows: jax.Array) -> jax.Array:
    """The sum of ``rows`` ``[R, M]`` over its first axis, ``[M]``, by repeated halving: the top half plus the bottom
    half (one zero row added to it where ``R`` is odd) until one row is left.

    Each step is an elementwise add along the contiguous ``M`` axis, which XLA:CPU vectorises and fuses with what
    produces the rows; its ``reduce`` over a leading axis it does not (BENCHMARKS.md). The additions are pairwise,
    so the rounding error grows with ``log R``, not ``R``.

    Examples:
      >>> halving_sum(jnp.arange(10.0).reshape(5, 2))
      Array([20., 25.], dtype=float32)
    """
    if rows.shape[0] == 0:
        return jnp.zeros(rows.shape[1:], rows.dtype)
    while rows.shape[0] > 1:
        half = rows.shape[0] // 2
        top, bottom = rows[: rows.shape[0] - half], rows[rows.shape[0] - half :]
        if top.shape[0] > half:
            bottom = jnp.pad(bottom, ((0, 1), (0, 0)))
        rows = top + bottom
    return rows[0]


def fft_size(size: int) -> int:
    """The smallest ``2^a 3^b 5^c >= size``: a length XLA's FFT transforms fast.

    Examples:
      >>> fft_size(97), fft_size(128), fft_size(1)
      (100, 128, 1)
    """
    best = 1 << max(size - 1, 0).bit_length()
    for five in (5**k for k in range(size.bit_length())):
        for three in (3**k for k in range(size.bit_length())):
            base = five * three
            if base >= best:
                break
            best = min(best, base << max(math.ceil(math.log2(size / base)), 0))
    return best


def _spectra(values: jax.Array, spec: ConvSpec) -> jax.Array:
    """``rfftn`` over the trailing ``S`` spatial axes of a ``[..., *spatial]`` array, each zero-padded to
    :func:`fft_size` of the padded input's size (in the accumulator dtype, at least float32)."""
    dims = spec.spatial_dims
    real = values.astype(jnp.promote_types(values.dtype, jnp.float32))
    return jnp.fft.rfftn(real, s=tuple(map(fft_size, spec.padded_hw)), axes=tuple(range(-dims, 0)))


def _channels_first(x: jax.Array, groups: int) -> jax.Array:
    """``[N, *spatial, C]`` → ``[N, G, C // G, *spatial]``."""
    n, *spatial, c = x.shape
    return jnp.moveaxis(x, -1, 1).reshape(n, groups, c // groups, *spatial)


def fft_correlate(xp: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """``"fft"``: the valid correlation by the Fourier transform, ``irfftn(rfftn(x) * conj(rfftn(k)))``, cropped.

    The input and the kernel (dilated: ``d - 1`` zeros between taps) are zero-padded to at least the padded input's
    size per spatial dim (:func:`fft_size`), so that the circular correlation equals the linear one on every valid
    output; the stride is a strided crop of the stride-1 result. Per frequency the channels are contracted within each
    group (a product where one input channel per group). ``O(P log P)`` per channel pair for ``P`` padded positions,
    whatever the kernel's size. Float32 (and half precision, upcast) is transformed in complex64, float64 in
    complex128; the rounding error of each output is at most ``eps * log2(P) * ||x_n|| * ||k_o||`` (the norms of
    the image's and of the output channel's kernel, tested against float64).
    """
    dims = spec.spatial_dims
    n, o = spec.in_shape[0], spec.kernel_shape[-1]
    *taps, cg, _ = spec.kernel_shape
    g = spec.groups
    dilated = lax.pad(
        kernel, jnp.zeros((), kernel.dtype), [*((0, 0, d - 1) for d in spec.dilation), (0, 0, 0), (0, 0, 0)]
    )
    # [*extent, Cg, O] -> [G, Cg, O // G, *extent]
    k = dilated.reshape(*dilated.shape[:-1], g, o // g)
    k = k.transpose(dims + 1, dims, dims + 2, *range(dims))
    spectrum_x = _spectra(_channels_first(xp, g), spec)  # [N, G, Cg, *F]
    spectrum_k = jnp.conj(_spectra(k, spec))  # [G, Cg, M, *F]
    if cg == 1:
        product = spectrum_x * spectrum_k[None, :, 0]  # [N, G, 1, *F] * [1, G, M, *F]
    else:
        flat_x = spectrum_x.reshape(n, g, cg, -1)
        flat_k = spectrum_k.reshape(g, cg, o // g, -1)
        product = jnp.einsum("ngcf,gcmf->ngmf", flat_x, flat_k, precision=spec.precision)
        product = product.reshape(n, g, o // g, *spectrum_x.shape[3:])
    sizes = tuple(map(fft_size, spec.padded_hw))
    full = jnp.fft.irfftn(product, s=sizes, axes=tuple(range(-dims, 0)))  # [N, G, M, *sizes]
    crop = tuple(slice(0, (size - 1) * s + 1, s) for size, s in zip(spec.out_hw, spec.stride, strict=True))
    out = full[(slice(None),) * 3 + crop].reshape(n, o, *spec.out_hw)
    return jnp.moveaxis(out, 1, -1).astype(xp.dtype)


def fft_kernel_gradient(xp: jax.Array, cotangent: jax.Array, spec: ConvSpec) -> jax.Array:
    """``"fft"``'s kernel gradient: the correlation of the padded input with the output gradient (dilated by the
    stride), summed over the batch and taken at the kernel's (dilated) taps, by the Fourier transform as
    :func:`fft_correlate`. Returns ``[*taps, C // G, O]``."""
    dims = spec.spatial_dims
    *taps, cg, o = spec.kernel_shape
    g = spec.groups
    spread = pad_or_crop(cotangent, ((0, 0),) * dims, tuple(s - 1 for s in spec.stride))
    spectrum_x = _spectra(_channels_first(xp, g), spec)  # [N, G, Cg, *F]
    spectrum_ct = jnp.conj(_spectra(_channels_first(spread, g), spec))  # [N, G, M, *F]
    n = spectrum_x.shape[0]
    product = jnp.einsum(
        "ngcf,ngmf->gcmf",
        spectrum_x.reshape(n, g, cg, -1),
        spectrum_ct.reshape(n, g, o // g, -1),
        precision=spec.precision,
    ).reshape(g, cg, o // g, *spectrum_x.shape[3:])
    full = jnp.fft.irfftn(product, s=tuple(map(fft_size, spec.padded_hw)), axes=tuple(range(-dims, 0)))
    at_taps = full[
        (slice(None),) * 3 + tuple(slice(0, (k - 1) * d + 1, d) for k, d in zip(taps, spec.dilation, strict=True))
    ]
    # [G, Cg, M, *taps] -> [*taps, Cg, G, M] -> [*taps, Cg, O]
    dk = at_taps.transpose(*range(3, dims + 3), 1, 0, 2).reshape(spec.kernel_shape)
    return dk.astype(xp.dtype)

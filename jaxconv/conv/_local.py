"""Locally connected convolutions: one filter per output position, from the convolution's own window gather.

A locally connected layer is a convolution whose weights are not shared: output position ``p`` weighs its window
with its own filter. The windows are gathered exactly as the ``"window"`` strategy gathers them
(:func:`~jaxconv.conv._strategies.window_columns`: one ``dynamic_slice`` per output position, vmapped), after the
same padding (:func:`~jaxconv.conv._conv.pad_image`) and the same checks (:func:`~jaxconv.conv._spec.make_spec`);
weighing them is then one per-position contraction, ``out[n, p, o] = sum_{t, c} cols[n, p, t, c] * k[p, t, c, o]``
(an einsum batched over ``p``). Derivatives are JAX's own, through the gather, the pad and the einsum.

Kernel layout: channels last, ``[*out_spatial, *kernel_spatial, C, O]`` (in 2-D ``[Ho, Wo, KH, KW, C, O]``: the
HWIO kernel of the filter at each output position), whatever ``layout`` the image has. lax's
``conv_general_dilated_local`` and Flax's ``linen.ConvLocal`` hold the same numbers as ``[Ho, Wo, C*KH*KW, O]``
(input channel outermost in the flattened axis): ``k_lax.reshape(Ho, Wo, C, KH, KW, O).transpose(0, 1, 3, 4, 2, 5)``
is the kernel here. :func:`conv_general_dilated_local` takes lax's layout as is.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconv.conv._conv import (
    Canonical,
    _as_array,
    _canonical_dtype,
    check_preferred,
    options_of,
    pad_image,
)
from jaxconv.conv._general import dilate_and_crop, lax_geometry
from jaxconv.conv._spec import SPATIAL_LETTERS, ConvSpec, Layout, PaddingMode, check_layout, make_spec
from jaxconv.conv._strategies import accumulator, window_columns

_GENERAL = "conv_general_dilated_local"
# lax's own op, bound at import: Flax's ConvLocal calls `lax.conv_general_dilated_local` by name, so the way to inject
# the drop-in there is to put it in lax's place, and its shape check must not then call itself.
_LAX_LOCAL = lax.conv_general_dilated_local


@functools.partial(jax.jit, static_argnames=("spec", "out_dtype", "channels_outer"))
def _local_nhwc(
    x: jax.Array,
    kernel: jax.Array,
    bias: jax.Array | None,
    spec: ConvSpec,
    out_dtype: Any = None,
    channels_outer: bool = False,
) -> jax.Array:
    """The locally connected convolution in channels-last form.

    Args:
      x: ``[N, *spatial, C]``.
      kernel: ``[*out, *taps, C, O]``, or with ``channels_outer`` lax's ``[*out, C * T, O]`` (``T`` taps).
      bias: ``[O]``, ``[*out, O]`` or ``None``.
      spec: the checked description (its ``kernel_shape`` is one position's ``[*taps, C, O]``).
      out_dtype: a ``preferred_element_type``: floating operands are upcast to it first, integer ones accumulate in
        it.
      channels_outer: the kernel's flattened window axis runs channel-major, as lax's.

    Returns:
      ``[N, *out, O]``.
    """
    integer = out_dtype is not None and jnp.issubdtype(out_dtype, jnp.integer)
    if out_dtype is not None and not integer:
        wide = jnp.promote_types(x.dtype, out_dtype)
        x, kernel = x.astype(wide), kernel.astype(wide)
    xp = pad_image(x, spec)
    valid = dataclasses.replace(spec, in_shape=xp.shape, padding=((0, 0),) * spec.spatial_dims, padding_mode="zeros")
    *taps, c, o = spec.kernel_shape
    n, positions, t = xp.shape[0], math.prod(spec.out_hw), math.prod(taps)
    cols = window_columns(xp, valid).reshape(n, positions, t, c)
    weights = kernel.reshape((positions, c, t, o) if channels_outer else (positions, t, c, o))
    if integer:
        acc = out_dtype
    else:
        acc = accumulator(xp.dtype) if jnp.issubdtype(xp.dtype, jnp.floating) else None
    equation = "nptc,pcto->npo" if channels_outer else "nptc,ptco->npo"
    out = jnp.einsum(equation, cols, weights, precision=spec.precision, preferred_element_type=acc)
    out = out.reshape(spec.out_shape).astype(out_dtype or xp.dtype)
    if bias is None:
        return out
    return out + bias.astype(out.dtype).reshape((1,) * (out.ndim - bias.ndim) + bias.shape)


def _kernel_form(dims: int, plain: bool) -> str:
    """The kernel's shape in words, e.g. ``[Ho,Wo,KH,KW,C,O]`` (``[Ho,Wo,KH,KW]`` for a plain image)."""
    letters = SPATIAL_LETTERS[dims]
    outs, taps = [f"{a}o" for a in letters], [f"K{a}" for a in letters]
    return "[" + ",".join(outs + taps + ([] if plain else ["C", "O"])) + "]"


def _local(
    x: Any,
    kernel: Any,
    bias: Any,
    spatial_dims: int,
    *,
    stride: Any,
    padding: Any,
    dilation: Any,
    padding_mode: Any,
    layout: Any,
    precision: Any,
    preferred_element_type: Any,
) -> jax.Array:
    """``local_conv{spatial_dims}d``: check and canonicalise, run :func:`_local_nhwc`, restore the caller's layout."""
    dims, who = spatial_dims, f"local_conv{spatial_dims}d"
    preferred = check_preferred(preferred_element_type, who)
    layout = check_layout(layout, dims, who)
    x, kernel = _as_array("x", x, who), _as_array("kernel", kernel, who)
    dtype = _canonical_dtype(x, kernel, who, preferred)
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    plain = x.ndim == dims
    letters = ",".join(SPATIAL_LETTERS[dims])
    if not plain and x.ndim not in (dims + 1, dims + 2):
        forms = f"[N,{letters},C] or [{letters},C]" if layout[-1] == "C" else f"[N,C,{letters}] or [C,{letters}]"
        raise ValueError(
            f"{who}: `x` must have rank {dims + 2} or {dims + 1} ({forms} for layout={layout!r}) or rank {dims} "
            f"([{letters}] with a {_kernel_form(dims, True)} kernel); got shape {x.shape}"
        )
    rank = 2 * dims if plain else 2 * dims + 2
    if kernel.ndim != rank:
        raise ValueError(
            f"{who}: `kernel` must have rank {rank} ({_kernel_form(dims, plain)}, a filter per "
            f"output position) for a rank-{x.ndim} x; got shape {kernel.shape}"
        )
    if plain:
        xc, kc = x[None, ..., None], kernel[..., None, None]
    else:
        xc = x if x.ndim == dims + 2 else x[None]
        xc = xc if layout[-1] == "C" else jnp.moveaxis(xc, 1, -1)
        kc = kernel
    *taps, cin, o = kc.shape[dims:]
    if cin != xc.shape[-1]:
        raise ValueError(
            f"{who}: `kernel` input-channel size (axis {2 * dims} of {_kernel_form(dims, False)}) must equal the "
            f"input channels C={xc.shape[-1]}; got {cin} (kernel shape {kernel.shape})"
        )
    spec = make_spec(
        xc.shape,
        (*taps, cin, o),
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=1,
        padding_mode=padding_mode,
        strategy="window",
        precision=precision,
        who=who,
    )
    if kc.shape[:dims] != spec.out_hw:
        raise ValueError(
            f"{who}: `kernel` must hold one filter per output position, its leading dims the output's spatial shape "
            f"{spec.out_hw} (for this input, stride, dilation and padding {spec.padding}); got kernel shape "
            f"{kernel.shape}"
        )
    canon = Canonical(xc, kc, _local_bias(bias, spec, plain, xc.dtype, who), spec, layout, x.ndim)
    return canon.restore(_local_nhwc(canon.x, canon.kernel, canon.bias, spec, preferred))


def _local_bias(bias: Any, spec: ConvSpec, plain: bool, dtype: Any, who: str) -> jax.Array | None:
    """``bias`` checked and cast to ``dtype``: per channel ``[O]`` or per output value ``[*out, O]``, or ``None``."""
    if bias is None:
        return None
    bias = _as_array("bias", bias, who)
    o, out = spec.kernel_shape[-1], spec.out_hw
    allowed = ((), (1,), out, (*out, 1)) if plain else ((o,), (*out, o))
    if bias.shape not in allowed:
        raise ValueError(f"{who}: `bias` must have shape {' or '.join(map(str, allowed))}; got {bias.shape}")
    if not (jnp.issubdtype(bias.dtype, jnp.number) or bias.dtype == jnp.bool_):
        raise TypeError(f"{who}: `bias` must have a numeric dtype; got {bias.dtype}")
    if plain:  # one value, or one per output position: as [1] or [*out, 1]
        bias = bias.reshape(1) if bias.shape in ((), (1,)) else bias.reshape(*out, 1)
    return bias.astype(dtype)


def local_conv2d(
    x: jax.typing.ArrayLike,
    kernel: jax.typing.ArrayLike,
    bias: jax.typing.ArrayLike | None = None,
    *,
    stride: int | tuple[int, int] = 1,
    padding: str | int | tuple[int, int] | tuple[tuple[int, int], tuple[int, int]] = "VALID",
    dilation: int | tuple[int, int] = 1,
    padding_mode: PaddingMode = "zeros",
    layout: Layout = "NHWC",
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
    """2-D locally connected convolution: :func:`~jaxconv.conv2d` with its own filter at every output position.

    ``out[n, i, j, o] = bias[i, j, o] + sum_{a, b, c} xpad[n, i*sh + a*dh, j*sw + b*dw, c] * kernel[i, j, a, b, c, o]``
    (or ``bias[o]``), ``xpad`` being ``x`` padded in ``padding_mode``. A kernel whose filters are all equal is
    :func:`~jaxconv.conv2d` with that filter. The windows are the ``"window"`` strategy's gather; the weighing is one
    contraction batched over the output positions.

    Args:
      x: the image. ``layout="NHWC"``: ``[N, H, W, C]`` or ``[H, W, C]``; ``layout="NCHW"``: ``[N, C, H, W]`` or
        ``[C, H, W]``; either: a plain ``[H, W]`` image with a ``[Ho, Wo, KH, KW]`` kernel. Bool and integer images
        are promoted to the kernel's dtype.
      kernel: floating, ``[Ho, Wo, KH, KW, C, O]`` in either layout: the HWIO filter of each output position
        (``Ho``, ``Wo`` as below). lax's and Flax's ``[Ho, Wo, C*KH*KW, O]`` kernel ``k`` is
        ``k.reshape(Ho, Wo, C, KH, KW, O).transpose(0, 1, 3, 4, 2, 5)`` here.
      bias: ``[O]`` (one per channel), ``[Ho, Wo, O]`` (one per output value, as Flax's ``ConvLocal``) or ``None``
        (a plain image: ``[]``, ``[1]``, ``[Ho, Wo]`` or ``[Ho, Wo, 1]``); channels last in either layout.
      stride, padding, dilation, padding_mode, layout, precision: as :func:`~jaxconv.conv2d`.
      preferred_element_type: as :func:`~jaxconv.conv2d`: a floating result dtype the operands are upcast to first,
        or an integer one that integer operands accumulate in.

    Returns:
      ``[N, Ho, Wo, O]`` / ``[Ho, Wo, O]`` (NHWC), ``[N, O, Ho, Wo]`` / ``[O, Ho, Wo]`` (NCHW) or ``[Ho, Wo]``, with
      ``Ho = (H + top + bottom - (KH-1)*dh - 1) // sh + 1`` and likewise ``Wo``.

    Raises:
      ValueError: an argument's value is not allowed (ranks, channels, a kernel whose leading dims are not the
        output's spatial shape, stride, dilation, padding, padding_mode, layout, bias), naming it.
      TypeError: a non-floating kernel, or an argument of the wrong type.

    Examples:
      Each of the two output positions has its own filter:

      >>> import jax.numpy as jnp
      >>> import jaxconv
      >>> image = jnp.array([[1., 2., 3.]])
      >>> kernel = jnp.array([[[[1., 1.]], [[1., -1.]]]])  # [Ho=1, Wo=2, KH=1, KW=2]
      >>> jaxconv.local_conv2d(image, kernel)
      Array([[ 3., -1.]], dtype=float32)
      >>> x = jnp.ones((2, 8, 8, 3))
      >>> jaxconv.local_conv2d(x, jnp.ones((4, 4, 3, 3, 3, 5)), jnp.zeros((4, 4, 5)), stride=2, padding="SAME").shape
      (2, 4, 4, 5)
    """
    return _local(x, kernel, bias, 2, **options_of(locals()))


def local_conv1d(
    x: jax.typing.ArrayLike,
    kernel: jax.typing.ArrayLike,
    bias: jax.typing.ArrayLike | None = None,
    *,
    stride: int | tuple[int] = 1,
    padding: str | int | tuple[int] | tuple[tuple[int, int]] = "VALID",
    dilation: int | tuple[int] = 1,
    padding_mode: PaddingMode = "zeros",
    layout: Layout = "NWC",
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
    """1-D locally connected convolution: :func:`local_conv2d` with one spatial dim.

    ``out[n, i, o] = bias[i, o] + sum_{a, c} xpad[n, i*s + a*d, c] * kernel[i, a, c, o]`` (or ``bias[o]``).

    Args:
      x: ``layout="NWC"``: ``[N, W, C]`` or ``[W, C]``; ``layout="NCW"``: ``[N, C, W]`` or ``[C, W]``; either: a plain
        ``[W]`` signal with a ``[Wo, K]`` kernel.
      kernel: floating, ``[Wo, K, C, O]`` in either layout.
      bias: ``[O]``, ``[Wo, O]`` or ``None`` (a plain signal: ``[]``, ``[1]``, ``[Wo]`` or ``[Wo, 1]``).
      stride, padding, dilation, padding_mode, precision, preferred_element_type: as :func:`local_conv2d`, with one
        entry (or one ``(low, high)`` pair) per spatial dim.
      layout: ``"NWC"`` or ``"NCW"``.

    Returns:
      ``[N, Wo, O]`` / ``[Wo, O]`` (NWC), ``[N, O, Wo]`` / ``[O, Wo]`` (NCW) or ``[Wo]``, with
      ``Wo = (W + low + high - (K-1)*d - 1) // s + 1``.

    Raises:
      ValueError, TypeError: as :func:`local_conv2d`.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jaxconv
      >>> jaxconv.local_conv1d(jnp.array([0., 1., 2., 3.]), jnp.array([[1., -1.], [1., 1.], [0., 2.]]))
      Array([-1.,  3.,  6.], dtype=float32)
      >>> jaxconv.local_conv1d(jnp.ones((2, 3, 10)), jnp.ones((5, 5, 3, 4)), layout="NCW", padding=2, stride=2).shape
      (2, 4, 5)
    """
    return _local(x, kernel, bias, 1, **options_of(locals()))


def local_conv3d(
    x: jax.typing.ArrayLike,
    kernel: jax.typing.ArrayLike,
    bias: jax.typing.ArrayLike | None = None,
    *,
    stride: int | tuple[int, int, int] = 1,
    padding: str | int | tuple[int, int, int] | tuple[tuple[int, int], tuple[int, int], tuple[int, int]] = "VALID",
    dilation: int | tuple[int, int, int] = 1,
    padding_mode: PaddingMode = "zeros",
    layout: Layout = "NDHWC",
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
    """3-D locally connected convolution: :func:`local_conv2d` with three spatial dims.

    ``out[n, i, j, l, o] = bias[i, j, l, o] + sum_{a, b, e, c} xpad[n, i*sd + a*dd, j*sh + b*dh, l*sw + e*dw, c]
    * kernel[i, j, l, a, b, e, c, o]`` (or ``bias[o]``).

    Args:
      x: ``layout="NDHWC"``: ``[N, D, H, W, C]`` or ``[D, H, W, C]``; ``layout="NCDHW"``: ``[N, C, D, H, W]`` or
        ``[C, D, H, W]``; either: a plain ``[D, H, W]`` volume with a ``[Do, Ho, Wo, KD, KH, KW]`` kernel.
      kernel: floating, ``[Do, Ho, Wo, KD, KH, KW, C, O]`` in either layout.
      bias: ``[O]``, ``[Do, Ho, Wo, O]`` or ``None`` (a plain volume: ``[]``, ``[1]``, ``[Do, Ho, Wo]`` or
        ``[Do, Ho, Wo, 1]``).
      stride, padding, dilation, padding_mode, precision, preferred_element_type: as :func:`local_conv2d`, with three
        entries (or three ``(low, high)`` pairs), depth first.
      layout: ``"NDHWC"`` or ``"NCDHW"``.

    Returns:
      ``[N, Do, Ho, Wo, O]`` / ``[Do, Ho, Wo, O]`` (NDHWC), ``[N, O, Do, Ho, Wo]`` / ``[O, Do, Ho, Wo]`` (NCDHW) or
      ``[Do, Ho, Wo]``, each size as in :func:`local_conv2d`.

    Raises:
      ValueError, TypeError: as :func:`local_conv2d`.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jaxconv
      >>> jaxconv.local_conv3d(jnp.ones((3, 3, 3)), jnp.ones((2, 2, 2, 2, 2, 2)))[0, 0]
      Array([8., 8.], dtype=float32)
      >>> jaxconv.local_conv3d(jnp.ones((1, 4, 4, 4, 2)), jnp.ones((2, 2, 2, 3, 3, 3, 2, 4)), padding=0).shape
      (1, 2, 2, 2, 4)
    """
    return _local(x, kernel, bias, 3, **options_of(locals()))


def conv_general_dilated_local(
    lhs: jax.typing.ArrayLike,
    rhs: jax.typing.ArrayLike,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    filter_shape: Sequence[int],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    precision: Any = None,
) -> jax.Array:
    """``lax.conv_general_dilated_local``, computed by jaxconv: a drop-in with lax's signature and semantics.

    ``rhs``'s spatial dims are the output's positions and its ``I`` dim is each position's window flattened
    channel-major (``C`` outermost, then the window's dims in the order ``dimension_numbers[1]`` names them), as
    lax's. lax's own checks run first (``jax.eval_shape`` on lax's op), so every call lax rejects is rejected with
    lax's message. The windows are gathered by :func:`local_conv2d`'s machinery — input dilation as zeros between
    elements, negative padding as a crop — never by an XLA convolution with negative or interior padding, so values
    and gradients are right also where lax's (which extracts its patches by such a convolution) are not on XLA:CPU
    (openxla/xla #48713, #48715).

    Args:
      lhs: the input, rank ``S + 2`` for ``S`` in 1, 2, 3.
      rhs: the kernel, rank ``S + 2``: ``[*out spatial, C * prod(filter_shape), O]`` in ``dimension_numbers[1]``'s
        order (e.g. ``[Ho, Wo, C*KH*KW, O]`` for ``"HWIO"``).
      window_strides: ``S`` ints ``>= 1``.
      padding: ``"VALID"``, ``"SAME"``, ``"SAME_LOWER"`` or ``S`` pairs ``(low, high)`` of ints (negative crops).
      filter_shape: the window's ``S`` sizes, in ``dimension_numbers[1]``'s order.
      lhs_dilation: ``None`` or ``S`` ints.
      rhs_dilation: ``None`` or ``S`` ints (atrous).
      dimension_numbers: ``None`` (``("NCHW", "OIHW", "NCHW")`` and likewise in 1-D/3-D), three layout strings or a
        ``lax.ConvDimensionNumbers``.
      precision: as lax.

    Returns:
      exactly what ``lax.conv_general_dilated_local`` returns: its shape, dtype and (up to rounding) values.

    Raises:
      TypeError, ValueError: whatever ``lax.conv_general_dilated_local`` raises for these arguments (its message).

    Examples:
      >>> import jax.numpy as jnp
      >>> from jax import lax
      >>> import jaxconv
      >>> x, k = jnp.arange(40.0).reshape(1, 5, 8, 1), jnp.ones((3, 4, 1 * 2 * 3, 2))
      >>> options = dict(filter_shape=(2, 3), dimension_numbers=("NHWC", "HWIO", "NHWC"))
      >>> out = jaxconv.conv_general_dilated_local(x, k, (2, 2), ((0, 1), (1, 0)), **options)
      >>> out.shape, bool(jnp.allclose(out, lax.conv_general_dilated_local(x, k, (2, 2), ((0, 1), (1, 0)), **options)))
      ((1, 3, 4, 2), True)
    """
    options = dict(
        window_strides=window_strides,
        padding=padding,
        filter_shape=filter_shape,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        precision=precision,
    )
    lhs, rhs = jnp.asarray(lhs), jnp.asarray(rhs)
    # lax's own checks and result type (shapes only: nothing is computed).
    expected = jax.eval_shape(functools.partial(_LAX_LOCAL, **options), lhs, rhs)
    taps = tuple(int(t) for t in filter_shape)
    lhs_spec, rhs_spec, out_spec = lax.conv_dimension_numbers(lhs.shape, (1, 1, *taps), dimension_numbers)
    lhs_dilation, rhs_dilation, pads = lax_geometry(
        lhs.shape, lhs_spec, taps, window_strides, padding, lhs_dilation, rhs_dilation
    )
    if 0 in expected.shape:
        return jnp.zeros(expected.shape, expected.dtype)

    # Channels last, spatial dims in rhs_spec's order: [N, *spatial, C] and [*out, C * T, O].
    x = lhs.transpose(lhs_spec[0], *lhs_spec[2:], lhs_spec[1]).astype(expected.dtype)
    k = rhs.transpose(*rhs_spec[2:], rhs_spec[1], rhs_spec[0]).astype(expected.dtype)
    # Input dilation and negative padding first (the latter a crop); then the positive padding, as zeros.
    x, pads = dilate_and_crop(x, pads, lhs_dilation)
    spec = make_spec(
        x.shape,
        (*taps, x.shape[-1], k.shape[-1]),
        stride=tuple(window_strides),
        padding=pads,
        dilation=rhs_dilation,
        groups=1,
        padding_mode="zeros",
        strategy="window",
        precision=precision,
        who=_GENERAL,
    )
    out = _local_nhwc(x, k, None, spec, channels_outer=True)
    return out.transpose(np.argsort([out_spec[0], *out_spec[2:], out_spec[1]]))


__all__ = ["local_conv1d", "local_conv2d", "local_conv3d", "conv_general_dilated_local"]

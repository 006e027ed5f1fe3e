"""``conv_general_dilated``: a drop-in for ``lax.conv_general_dilated`` that runs jaxconv's convolution.

Same signature, same semantics, same result shape and dtype — checked against lax itself at trace time with
``jax.eval_shape``, so every call lax rejects is rejected with lax's own message — for any dimension numbers, 0-3
spatial dims, every padding form and input (lhs) dilation. Flax's ``nnx.Conv(..., conv_general_dilated=...)`` and
linen's ``Conv(..., conv_general_dilated_cls=...)`` hooks take it as is.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from jaxconv.conv._conv import _conv_nhwc
from jaxconv.conv._spec import SPATIAL_LETTERS, make_spec
from jaxconv.conv._strategies import pad_or_crop, xla_padding

_WHO = "conv_general_dilated"


def lax_geometry(
    lhs_shape: Sequence[int],
    lhs_spec: Sequence[int],
    taps: Sequence[int],
    window_strides: Sequence[int],
    padding: Any,
    lhs_dilation: Sequence[int] | None,
    rhs_dilation: Sequence[int] | None,
) -> tuple[tuple[int, ...], tuple[int, ...], list[tuple[int, int]]]:
    """lax's ``(lhs_dilation, rhs_dilation, pads)`` for a ``lax.conv_general_dilated``-style call: the dilations with
    lax's defaults filled in, and the padding as ``(low, high)`` pairs (a string resolved as lax resolves it, against
    the dilated kernel's extent ``(t - 1) * d + 1``).

    Examples:
      >>> lax_geometry((1, 1, 5, 8), (0, 1, 2, 3), (2, 3), (1, 1), "SAME", None, (1, 2))
      ((1, 1), (1, 2), [(0, 1), (2, 2)])
    """
    dims = len(taps)
    lhs_dilation = (1,) * dims if lhs_dilation is None else tuple(int(d) for d in lhs_dilation)
    rhs_dilation = (1,) * dims if rhs_dilation is None else tuple(int(d) for d in rhs_dilation)
    if isinstance(padding, str):
        extent = [(t - 1) * d + 1 for t, d in zip(taps, rhs_dilation, strict=True)]
        pads = lax.padtype_to_pads([lhs_shape[a] for a in lhs_spec[2:]], extent, window_strides, padding)
        return lhs_dilation, rhs_dilation, [(int(lo), int(hi)) for lo, hi in pads]
    return lhs_dilation, rhs_dilation, [(int(lo), int(hi)) for lo, hi in padding]


def dilate_and_crop(
    x: jax.Array, pads: Sequence[tuple[int, int]], lhs_dilation: Sequence[int]
) -> tuple[jax.Array, list[tuple[int, int]]]:
    """A channels-last ``x`` with lax's input dilation (zeros between elements) and negative padding (a crop, never
    negative padding for XLA) applied; returns it and the positive padding still to apply."""
    x = pad_or_crop(x, tuple((min(lo, 0), min(hi, 0)) for lo, hi in pads), tuple(d - 1 for d in lhs_dilation))
    return x, [(max(lo, 0), max(hi, 0)) for lo, hi in pads]


def conv_general_dilated(
    lhs: jax.typing.ArrayLike,
    rhs: jax.typing.ArrayLike,
    window_strides: Sequence[int],
    padding: str | Sequence[tuple[int, int]],
    lhs_dilation: Sequence[int] | None = None,
    rhs_dilation: Sequence[int] | None = None,
    dimension_numbers: Any = None,
    feature_group_count: int = 1,
    batch_group_count: int = 1,
    precision: Any = None,
    preferred_element_type: Any = None,
    **kwargs: Any,
) -> jax.Array:
    """``lax.conv_general_dilated``, computed by jaxconv: a drop-in with lax's signature and semantics.

    What runs: floating operands with ``batch_group_count == 1`` (and no ``out_sharding``) go to jaxconv's N-d
    convolution (:func:`jaxconv.conv2d`'s ``"auto"`` strategy; its own derivative rules). Input dilation becomes
    zeros between the input's elements, and negative padding crops the input by a slice — neither is ever handed
    to XLA as a convolution's negative or interior padding. Everything else — integer or complex operands,
    ``batch_group_count > 1``, a non-``None`` ``out_sharding`` or other keyword — is lax's own convolution, after the
    same dilation and cropping, with ``"VALID"`` padding. No spatial dims (``window_strides=()``, dimension numbers
    such as ``("NC", "IO", "NC")``: a matrix product per group) is computed as one spatial dim of size 1.

    Exactly lax's: the signature, the rejections of lax's shape rules (its messages, at trace time), the result's
    shape and dtype, its values (up to rounding) and its derivatives (``grad``, ``jvp``, ``vmap`` over either
    operand), for every dtype lax takes (``preferred_element_type`` included), under
    ``jax.numpy_dtype_promotion("strict")``, and with size-0 dims wherever lax takes them (zeros of lax's shape, zero
    derivatives). jaxconv's own, on purpose: the gradients with padding beyond the kernel's reach or with input
    dilation, right here and wrong from XLA:CPU (openxla/xla #48713, #48715); float32 accumulation of half-precision
    operands; the rounding of a strategy that sums in another order than XLA; and a kernel empty in a spatial dim is
    refused at trace time with jaxconv's message (lax's fails when lowering).

    Args:
      lhs: the input, rank ``S + 2`` for ``S`` in 0, 1, 2, 3.
      rhs: the kernel, rank ``S + 2``.
      window_strides: ``S`` ints ``>= 1`` (``()`` for ``S = 0``).
      padding: ``"VALID"``, ``"SAME"``, ``"SAME_LOWER"`` or ``S`` pairs ``(low, high)`` of ints (negative crops).
      lhs_dilation: ``None`` or ``S`` ints (a transposed convolution).
      rhs_dilation: ``None`` or ``S`` ints (atrous).
      dimension_numbers: ``None`` (``("NCHW", "OIHW", "NCHW")`` and likewise in 0-D/1-D/3-D), three layout strings
        such as ``("NHWC", "HWIO", "NHWC")``, or a ``lax.ConvDimensionNumbers``.
      feature_group_count: feature groups.
      batch_group_count: batch groups (lax's own).
      precision: as lax.
      preferred_element_type: the result dtype, e.g. float32 for bfloat16 or float16 operands (accumulated in
        float32, exactly: the operands are upcast first), int32 for int8 operands (lax's own).
      **kwargs: passed to ``lax.conv_general_dilated`` (e.g. ``out_sharding``).

    Returns:
      exactly what ``lax.conv_general_dilated`` returns: its shape, dtype and (up to rounding) values.

    Raises:
      TypeError, ValueError, RuntimeError: whatever ``lax.conv_general_dilated`` raises for these arguments (its
        message), at trace time.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jax import lax
      >>> import jaxconv
      >>> x, k = jnp.ones((2, 3, 9, 8)), jnp.ones((4, 3, 3, 3))
      >>> out = jaxconv.conv_general_dilated(x, k, (2, 1), ((-1, 2), (1, 1)))
      >>> out.shape, bool(jnp.allclose(out, lax.conv_general_dilated(x, k, (2, 1), ((-1, 2), (1, 1)))))
      ((2, 4, 4, 8), True)
      >>> jaxconv.conv_general_dilated(jnp.ones((2, 3)), jnp.ones((3, 4)), (), "VALID", None, None, ("NC", "IO", "NC"))
      Array([[3., 3., 3., 3.],
             [3., 3., 3., 3.]], dtype=float32)
    """
    options = dict(
        window_strides=window_strides,
        padding=padding,
        lhs_dilation=lhs_dilation,
        rhs_dilation=rhs_dilation,
        dimension_numbers=dimension_numbers,
        feature_group_count=feature_group_count,
        batch_group_count=batch_group_count,
        precision=precision,
        preferred_element_type=preferred_element_type,
        **kwargs,
    )
    lhs, rhs = jnp.asarray(lhs), jnp.asarray(rhs)
    # lax's own checks and result type (shapes only: nothing is computed).
    expected = jax.eval_shape(functools.partial(lax.conv_general_dilated, **options), lhs, rhs)
    dims = lhs.ndim - 2
    lhs_spec, rhs_spec, out_spec = lax.conv_dimension_numbers(lhs.shape, rhs.shape, dimension_numbers)
    if dims == 0:  # a matrix product per group: the same as one spatial dim of size 1, appended to both operands
        options.update(window_strides=(1,), padding="VALID", lhs_dilation=None, rhs_dilation=None)
        options["dimension_numbers"] = lax.ConvDimensionNumbers((*lhs_spec, 2), (*rhs_spec, 2), (*out_spec, 2))
        return conv_general_dilated(lhs[..., None], rhs[..., None], **options)[..., 0]
    taps = [rhs.shape[a] for a in rhs_spec[2:]]
    lhs_dilation, rhs_dilation, pads = lax_geometry(
        lhs.shape, lhs_spec, taps, window_strides, padding, lhs_dilation, rhs_dilation
    )

    # Channels last: [N, *spatial, C] and [*taps, I, O].
    x = lhs.transpose(lhs_spec[0], *lhs_spec[2:], lhs_spec[1])
    k = rhs.transpose(*rhs_spec[2:], rhs_spec[1], rhs_spec[0])
    to_caller = np.argsort([out_spec[0], *out_spec[2:], out_spec[1]])
    if 0 in expected.shape:
        return jnp.zeros(expected.shape, expected.dtype)
    x, pads = dilate_and_crop(x, pads, lhs_dilation)

    floating = all(jnp.issubdtype(a.dtype, jnp.floating) for a in (x, k, expected))
    extra = {name: value for name, value in kwargs.items() if value is not None}
    if not floating or batch_group_count != 1 or extra:
        # lax's own convolution, its padding beyond the kernel's reach explicit zeros as in lax_conv (openxla/xla#48713)
        extent = tuple((t - 1) * d + 1 for t, d in zip(k.shape[:-2], rhs_dilation, strict=True))
        plan = xla_padding(tuple(pads), extent)
        x = pad_or_crop(x, plan.pad)
        letters = SPATIAL_LETTERS[dims]
        out = lax.conv_general_dilated(
            x,
            k,
            window_strides,
            plan.window,
            rhs_dilation=rhs_dilation,
            dimension_numbers=(f"N{letters}C", f"{letters}IO", f"N{letters}C"),
            feature_group_count=feature_group_count,
            batch_group_count=batch_group_count,
            precision=precision,
            preferred_element_type=preferred_element_type,
            **kwargs,
        )
        return out.transpose(to_caller)

    spec = make_spec(
        x.shape,
        k.shape,
        stride=tuple(window_strides),
        padding=pads,
        dilation=rhs_dilation,
        groups=feature_group_count,
        padding_mode="zeros",
        strategy="auto",
        precision=precision,
        who=_WHO,
    )
    out_dtype = None if expected.dtype == x.dtype else expected.dtype  # preferred_element_type: upcast first
    return _conv_nhwc(x, k, None, spec, out_dtype).transpose(to_caller)


__all__ = ["conv_general_dilated"]

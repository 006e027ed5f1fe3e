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

from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from jaxconv._spec import ConvSpec

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

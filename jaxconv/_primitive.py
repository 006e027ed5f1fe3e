"""``correlate_p``: the valid cross-correlation of the gathered and direct strategies as one bilinear primitive.

Autodiff of a vmapped ``dynamic_slice`` transposes the gather into a scatter-add, which XLA:CPU runs on one
thread. So the strategies are wrapped in a primitive whose rules are themselves correlations computed by the same
gathers and dots:

- JVP: the primitive is bilinear, ``d(x ⋆ k) = dx ⋆ k + x ⋆ dk`` (so ``jvp``, ``jacfwd`` and ``hessian`` work,
  unlike with a ``custom_vjp``);
- transpose w.r.t. the kernel: the correlation of the input's columns with the output gradient
  (:func:`jaxconv._strategies.kernel_gradient`);
- transpose w.r.t. the input: a transposed convolution — the output gradient dilated by the stride, padded to
  ``FULL``, correlated (same strategy, same dilation and groups) with the spatially flipped kernel whose
  per-group in/out channels are swapped. It is ``correlate_p`` again, so it has derivatives of its own;
- batching: a mapped input folds into the batch; a mapped kernel becomes extra feature groups.

``"direct"`` (one static slice per tap, multiplied and accumulated elementwise) measured its derivatives per shape
(BENCHMARKS.md, 1 thread): its input gradient is ``direct`` again while the transposed correlation has at most
``DIRECT_MAX_UNROLLED`` input channels per group, else XLA's convolution (many-in few-out, e.g. the 16->1 transpose of
1->16 k5: direct 15.8 ms, XLA 2.5 ms); its kernel gradient is per-tap reductions for one channel per group
(depthwise) and XLA's backward-filter convolution otherwise (1->16 k5: 0.8 ms vs 2.6 for a dot per tap). The
primitive's ``"xla"`` mode (:func:`jaxconv._strategies.xla_correlate`) exists for these rules only.

Padding happens outside, on the input (``jnp.pad`` is linear and its transpose is a cheap slice-and-add), and is
fused by XLA into the gather that reads it.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax
from jax._src import core as jax_core  # typeof: whether a value varies over shard_map's axes
from jax.core import ShapedArray
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from jaxconv._spec import ConvSpec
from jaxconv._strategies import DIRECT_MAX_UNROLLED, kernel_gradient
from jaxconv._strategies import correlate as _correlate_impl

correlate_p = Primitive("jaxconv_correlate")


def _varies_over_manual_axes(value: Any) -> bool:
    """Whether ``value`` varies over a shard_map mesh axis (``aval.mat.varying`` in jax 0.10, ``aval.vma`` before)."""
    aval = jax_core.typeof(value)
    mat = getattr(aval, "mat", None)
    return bool(mat.varying if mat is not None else getattr(aval, "vma", frozenset()))


def correlate(xp: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """Valid cross-correlation by ``spec.strategy`` (``"window"``, ``"shift"``, ``"direct"``), differentiable.

    Args:
      xp: the padded input ``[N, *padded, C]`` (e.g. ``[N, Hp, Wp, C]``); ``spec.in_shape`` must equal its shape
        and ``spec.padding`` be zero.
      kernel: ``[*taps, C // groups, O]`` (e.g. ``[KH, KW, C // groups, O]``), the dtype of ``xp``.
      spec: the static description.

    Returns:
      ``[N, *out, O]`` (e.g. ``[N, Ho, Wo, O]``) in ``xp``'s dtype.
    """
    if any(_varies_over_manual_axes(v) for v in (xp, kernel)):
        # Inside shard_map, values that vary over a manual mesh axis carry that in their type, which the
        # primitive's rules do not track: use the same computation with JAX's own autodiff there.
        return _correlate_impl(xp, kernel, spec)
    return correlate_p.bind(xp, kernel, spec=spec)


_impl_jit = jax.jit(_correlate_impl, static_argnames=("spec",))


def _impl(xp: jax.Array, kernel: jax.Array, *, spec: ConvSpec) -> jax.Array:
    return _impl_jit(xp, kernel, spec=spec)


def _abstract_eval(xp: Any, kernel: Any, *, spec: ConvSpec) -> ShapedArray:
    return ShapedArray(spec.out_shape, xp.dtype)


def transposed_correlate(
    cotangent: jax.Array, kernel: jax.Array, spec: ConvSpec, pads: tuple[tuple[int, int], ...]
) -> jax.Array:
    """The transposed convolution of ``spec``'s correlation, framed by ``pads``: ``[N, *out, O]`` → ``[N, *X, C]``.

    The output gradient dilated by the stride and padded by ``pads`` (one ``(low, high)`` per spatial dim; a negative
    one crops, by a slice, never handed to XLA as negative padding), then correlated (same strategy, dilation and
    groups, stride 1) with the spatially flipped kernel whose per-group in/out channels are swapped. It is
    ``correlate_p`` again, so it has derivatives of its own. ``pads = (extent - 1, extent - 1 + rest)`` per dim
    gives the gradient w.r.t. the padded input (see :func:`input_gradient`).
    """
    dims = spec.spatial_dims
    *taps, cg, o = spec.kernel_shape
    g, c = spec.groups, spec.in_shape[-1]
    config = [(max(lo, 0), max(hi, 0), s - 1) for (lo, hi), s in zip(pads, spec.stride, strict=True)]
    full = lax.pad(cotangent, jnp.zeros((), cotangent.dtype), [(0, 0, 0), *config, (0, 0, 0)])
    crop = tuple(slice(max(-lo, 0), size - max(-hi, 0)) for (lo, hi), size in zip(pads, full.shape[1:-1], strict=True))
    window = (slice(None), *crop, slice(None))
    full = full[window]
    flipped = kernel[(slice(None, None, -1),) * dims].reshape(*taps, cg, g, o // g)
    flipped = flipped.transpose(*range(dims), dims + 2, dims + 1, dims).reshape(*taps, o // g, c)
    strategy = spec.strategy
    if strategy == "direct" and o // g > DIRECT_MAX_UNROLLED:
        strategy = "xla"  # many-in, few-out: direct contracts per tap by dots, slower than XLA (16->1 k5: 6x)
    tspec = dataclasses.replace(
        spec,
        in_shape=full.shape,
        kernel_shape=(*taps, o // g, c),
        stride=(1,) * dims,
        padding=((0, 0),) * dims,
        padding_mode="zeros",
        strategy=strategy,
    )
    return correlate(full, flipped, tspec)


def input_gradient(cotangent: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """The transposed convolution: the gradient ``[N, *padded, C]`` w.r.t. the padded input of ``correlate``."""
    reach = zip(spec.padded_hw, spec.out_hw, spec.stride, spec.extent, strict=True)
    # The padded input's rows/cols no output reads (beyond the last window) get a zero gradient: padded on high.
    pads = tuple((e - 1, e - 1 + p - ((o - 1) * s + e)) for p, o, s, e in reach)
    return transposed_correlate(cotangent, kernel, spec, pads)


def _transpose_input(cotangent: jax.Array, xp: Any, kernel: jax.Array, *, spec: ConvSpec) -> jax.Array:
    return input_gradient(cotangent, kernel, spec)


def _transpose_kernel(cotangent: jax.Array, xp: jax.Array, kernel: Any, *, spec: ConvSpec) -> jax.Array:
    return kernel_gradient(xp, cotangent, spec)


def _batch(args: tuple[jax.Array, jax.Array], dims: tuple[Any, Any], *, spec: ConvSpec) -> tuple[jax.Array, int]:
    xp, kernel = args
    bx, bk = dims
    n, *padded, c = spec.in_shape
    *taps, cg, o = spec.kernel_shape
    out_hw = spec.out_hw
    s = spec.spatial_dims
    if bk is None:  # fold the mapped axis into the batch
        xp = jnp.moveaxis(xp, bx, 0)
        b = xp.shape[0]
        folded = xp.reshape(b * n, *padded, c)
        out = correlate(folded, kernel, dataclasses.replace(spec, in_shape=folded.shape))
        return out.reshape(b, n, *out_hw, o), 0
    kernel = jnp.moveaxis(kernel, bk, 0)
    b = kernel.shape[0]
    if bx is None:
        xp = jnp.broadcast_to(xp, (b, *xp.shape))
    else:
        xp = jnp.moveaxis(xp, bx, 0)
    # One convolution per mapped kernel = extra feature groups: channel (b, g, c), output (b, g, o).
    xs = xp.transpose(*range(1, s + 2), 0, s + 2).reshape(n, *padded, b * c)
    ks = kernel.transpose(*range(1, s + 2), 0, s + 2).reshape(*taps, cg, b * o)
    gspec = dataclasses.replace(spec, in_shape=xs.shape, kernel_shape=ks.shape, groups=b * spec.groups)
    out = correlate(xs, ks, gspec).reshape(n, *out_hw, b, o)
    return jnp.moveaxis(out, s + 1, 0), 0


correlate_p.def_impl(_impl)
correlate_p.def_abstract_eval(_abstract_eval)
mlir.register_lowering(correlate_p, mlir.lower_fun(_correlate_impl, multiple_results=False))
ad.defbilinear(correlate_p, _transpose_input, _transpose_kernel)
batching.primitive_batchers[correlate_p] = _batch

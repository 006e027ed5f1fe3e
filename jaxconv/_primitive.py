"""``correlate_p``: the zero-padded cross-correlation of the gathered and direct strategies as one bilinear primitive.

Autodiff of a vmapped ``dynamic_slice`` transposes the gather into a scatter-add, which XLA:CPU runs on one
thread. So the strategies are wrapped in a primitive whose rules are themselves correlations computed by the same
gathers and dots:

- JVP: the primitive is bilinear, ``d(x ⋆ k) = dx ⋆ k + x ⋆ dk`` (so ``jvp``, ``jacfwd`` and ``hessian`` work,
  unlike with a ``custom_vjp``);
- transpose w.r.t. the kernel: the correlation of the input's columns with the output gradient
  (:func:`jaxconv._strategies.kernel_gradient`);
- transpose w.r.t. the input: a transposed convolution — the output gradient dilated by the stride, padded to
  ``FULL``, correlated (same strategy, same dilation and groups) with the spatially flipped kernel whose
  per-group in/out channels are swapped, and cropped to the unpadded input. It is ``correlate_p`` again, so it has
  derivatives of its own;
- batching: a mapped input folds into the batch; a mapped kernel becomes extra feature groups.

The zero padding is part of the primitive (``spec.padding``; the implementation pads first, and XLA fuses the pad
into the slices that read it), so that a rule computed by XLA's own convolution gets the padding inside the
convolution instead of a padded copy of the input.

Which computation each derivative of ``"direct"`` uses is chosen per shape by :func:`input_gradient_rule` and
:func:`kernel_gradient_rule`, from measurements (BENCHMARKS.md): ``"direct"`` again where it measured faster, else
``"xla"`` — the transposition of ``lax.conv_general_dilated`` with the padding (and, for the input gradient, the
stride as an input dilation) inside XLA's convolution.
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
from jaxconv._strategies import DIRECT_MAX_UNROLLED, kernel_gradient, xla_input_gradient, xla_kernel_gradient
from jaxconv._strategies import correlate as _correlate_impl

correlate_p = Primitive("jaxconv_correlate")


def _varies_over_manual_axes(value: Any) -> bool:
    """Whether ``value`` varies over a shard_map mesh axis (``aval.mat.varying`` in jax 0.10, ``aval.vma`` before)."""
    aval = jax_core.typeof(value)
    mat = getattr(aval, "mat", None)
    return bool(mat.varying if mat is not None else getattr(aval, "vma", frozenset()))


def valid_spec(spec: ConvSpec) -> ConvSpec:
    """``spec`` for the already zero-padded input: ``in_shape`` the padded shape, no padding left."""
    n, _, _, c = spec.in_shape
    return dataclasses.replace(spec, in_shape=(n, *spec.padded_hw, c), padding=((0, 0), (0, 0)))


def zero_pad(x: jax.Array, spec: ConvSpec) -> jax.Array:
    """``x`` padded with zeros by ``spec.padding``."""
    (top, bottom), (left, right) = spec.padding
    if top == bottom == left == right == 0:
        return x
    return jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)))


def _padded_correlate(x: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    return _correlate_impl(zero_pad(x, spec), kernel, valid_spec(spec))


def correlate(x: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """Zero-padded cross-correlation by ``spec.strategy`` (``"window"``, ``"shift"``, ``"direct"``), differentiable.

    Args:
      x: the image ``[N, H, W, C]``; ``spec.in_shape`` must equal its shape and ``spec.padding_mode`` be ``"zeros"``.
      kernel: ``[KH, KW, C // groups, O]``, the dtype of ``x``.
      spec: the static description.

    Returns:
      ``[N, Ho, Wo, O]`` in ``x``'s dtype.
    """
    if any(_varies_over_manual_axes(v) for v in (x, kernel)):
        # Inside shard_map, values that vary over a manual mesh axis carry that in their type, which the
        # primitive's rules do not track: use the same computation with JAX's own autodiff there.
        return _padded_correlate(x, kernel, spec)
    return correlate_p.bind(x, kernel, spec=spec)


_impl_jit = jax.jit(_padded_correlate, static_argnames=("spec",))


def _impl(xp: jax.Array, kernel: jax.Array, *, spec: ConvSpec) -> jax.Array:
    return _impl_jit(xp, kernel, spec=spec)


def _abstract_eval(xp: Any, kernel: Any, *, spec: ConvSpec) -> ShapedArray:
    return ShapedArray(spec.out_shape, xp.dtype)


def input_gradient_rule(spec: ConvSpec) -> str:
    """How the input gradient of ``spec`` is computed: ``spec.strategy``, or ``"xla"`` for ``"direct"`` with more than
    ``DIRECT_MAX_UNROLLED`` outputs per group (the transposed correlation would be many-in few-out, where direct
    contracts per tap by dots and measured slower than XLA's, BENCHMARKS.md)."""
    _, _, _, o = spec.kernel_shape
    if spec.strategy == "direct" and o // spec.groups > DIRECT_MAX_UNROLLED:
        return "xla"
    return spec.strategy


def kernel_gradient_rule(spec: ConvSpec) -> str:
    """How the kernel gradient of ``spec`` is computed: ``spec.strategy``, or ``"xla"`` (XLA's backward-filter
    convolution, the padding inside it) for ``"direct"`` unless depthwise (one input channel per group), where
    per-tap reductions measured faster (BENCHMARKS.md)."""
    _, _, cg, _ = spec.kernel_shape
    if spec.strategy == "direct" and not (cg == 1 and spec.groups > 1):
        return "xla"
    return spec.strategy


def input_gradient(cotangent: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """The transposed convolution: the gradient ``[N, H, W, C]`` w.r.t. the (unpadded) input of ``correlate``."""
    if input_gradient_rule(spec) == "xla":
        return xla_input_gradient(cotangent, kernel, spec)
    n, h, w, c = spec.in_shape
    (top, _), (left, _) = spec.padding
    hp, wp = spec.padded_hw
    kh, kw, cg, o = spec.kernel_shape
    g = spec.groups
    (sh, sw), (eh, ew) = spec.stride, spec.extent
    ho, wo = spec.out_hw
    rest_h, rest_w = hp - ((ho - 1) * sh + eh), wp - ((wo - 1) * sw + ew)  # rows/cols no output reads
    full = lax.pad(
        cotangent,
        jnp.zeros((), cotangent.dtype),
        ((0, 0, 0), (eh - 1, eh - 1 + rest_h, sh - 1), (ew - 1, ew - 1 + rest_w, sw - 1), (0, 0, 0)),
    )
    flipped = kernel[::-1, ::-1].reshape(kh, kw, cg, g, o // g).transpose(0, 1, 4, 3, 2).reshape(kh, kw, o // g, c)
    _, hf, wf, _ = full.shape
    tspec = dataclasses.replace(
        spec, in_shape=(n, hf, wf, o), kernel_shape=(kh, kw, o // g, c), stride=(1, 1), padding=((0, 0), (0, 0))
    )
    return correlate(full, flipped, tspec)[:, top : top + h, left : left + w, :]


def _transpose_input(cotangent: jax.Array, x: Any, kernel: jax.Array, *, spec: ConvSpec) -> jax.Array:
    return input_gradient(cotangent, kernel, spec)


def _transpose_kernel(cotangent: jax.Array, x: jax.Array, kernel: Any, *, spec: ConvSpec) -> jax.Array:
    if kernel_gradient_rule(spec) == "xla":
        return xla_kernel_gradient(x, cotangent, spec)
    return kernel_gradient(zero_pad(x, spec), cotangent, valid_spec(spec))


def _batch(args: tuple[jax.Array, jax.Array], dims: tuple[Any, Any], *, spec: ConvSpec) -> tuple[jax.Array, int]:
    xp, kernel = args
    bx, bk = dims
    n, hp, wp, c = spec.in_shape
    kh, kw, cg, o = spec.kernel_shape
    _, ho, wo, _ = spec.out_shape
    if bk is None:  # fold the mapped axis into the batch
        xp = jnp.moveaxis(xp, bx, 0)
        b = xp.shape[0]
        folded = xp.reshape(b * n, hp, wp, c)
        out = correlate(folded, kernel, dataclasses.replace(spec, in_shape=(b * n, hp, wp, c)))
        return out.reshape(b, n, ho, wo, o), 0
    kernel = jnp.moveaxis(kernel, bk, 0)
    b = kernel.shape[0]
    if bx is None:
        xp = jnp.broadcast_to(xp, (b, *xp.shape))
    else:
        xp = jnp.moveaxis(xp, bx, 0)
    # One convolution per mapped kernel = extra feature groups: channel (b, g, c), output (b, g, o).
    xs = xp.transpose(1, 2, 3, 0, 4).reshape(n, hp, wp, b * c)
    ks = kernel.transpose(1, 2, 3, 0, 4).reshape(kh, kw, cg, b * o)
    gspec = dataclasses.replace(
        spec, in_shape=(n, hp, wp, b * c), kernel_shape=(kh, kw, cg, b * o), groups=b * spec.groups
    )
    out = correlate(xs, ks, gspec).reshape(n, ho, wo, b, o)
    return jnp.moveaxis(out, 3, 0), 0


correlate_p.def_impl(_impl)
correlate_p.def_abstract_eval(_abstract_eval)
mlir.register_lowering(correlate_p, mlir.lower_fun(_padded_correlate, multiple_results=False))
ad.defbilinear(correlate_p, _transpose_input, _transpose_kernel)
batching.primitive_batchers[correlate_p] = _batch

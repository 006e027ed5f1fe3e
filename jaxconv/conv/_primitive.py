"""``correlate_p``: the zero-padded cross-correlation of the gathered and direct strategies as one bilinear primitive.

Autodiff of a vmapped ``dynamic_slice`` transposes the gather into a scatter-add, which XLA:CPU runs on one
thread. So the strategies are wrapped in a primitive whose rules are themselves correlations computed by the same
gathers and dots:

- JVP: the primitive is bilinear, ``d(x ⋆ k) = dx ⋆ k + x ⋆ dk`` (so ``jvp``, ``jacfwd`` and ``hessian`` work,
  unlike with a ``custom_vjp``);
- transpose w.r.t. the kernel: the correlation of the input's columns with the output gradient
  (:func:`jaxconv.conv._strategies.kernel_gradient`);
- transpose w.r.t. the input: a transposed convolution — the output gradient dilated by the stride, padded to
  ``FULL``, correlated (same strategy, same dilation and groups) with the spatially flipped kernel whose
  per-group in/out channels are swapped, and cropped to the unpadded input. It is ``correlate_p`` again, so it has
  derivatives of its own. Strided ``"window"``/``"shift"`` split it by phases of the stride instead, so that no
  inserted zero is multiplied (:func:`phase_input_gradient`);
- batching: a mapped input folds into the batch; a mapped kernel becomes extra feature groups.

The zero padding is part of the primitive (``spec.padding``; the implementation pads first, and XLA fuses the pad
into the slices that read it), so that a rule computed by XLA's own convolution gets the padding inside the
convolution instead of a padded copy of the input.

Which computation each derivative of ``"direct"`` uses is chosen per shape by :func:`input_gradient_rule` and
:func:`kernel_gradient_rule`, from measurements (BENCHMARKS.md): ``"direct"`` again where it measured faster, the
input gradient by one dot and shifted sums (``"tap_dots"``) where that did, else ``"xla"`` — the transposition of
``lax.conv_general_dilated`` with the padding (and, for the input gradient, the stride as an input dilation) inside
XLA's convolution.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.core import ShapedArray
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

from jaxconv.conv._spec import ConvSpec, Pads
from jaxconv.conv._strategies import (
    DIRECT_MAX_UNROLLED,
    halves_kernel_gradient,
    kernel_gradient,
    lax_conv,
    pad_or_crop,
    tap_dots_input_gradient,
    unpadded_frame,
    xla_input_gradient,
    xla_kernel_gradient,
)
from jaxconv.conv._strategies import correlate as _correlate_impl

correlate_p = Primitive("jaxconv_correlate")

_typeof = getattr(jax, "typeof", None) or jax.core.get_aval  # type: ignore[attr-defined]  # jax.typeof: after 0.6


def _varies_over_manual_axes(value: Any) -> bool:
    """Whether ``value`` varies over a shard_map mesh axis (``aval.mat.varying`` in jax 0.10, ``aval.vma`` before)."""
    aval = _typeof(value)
    mat = getattr(aval, "mat", None)
    return bool(mat.varying if mat is not None else getattr(aval, "vma", frozenset()))


def valid_spec(spec: ConvSpec) -> ConvSpec:
    """``spec`` for the already zero-padded input: ``in_shape`` the padded shape, no padding left."""
    n, *_, c = spec.in_shape
    return dataclasses.replace(spec, in_shape=(n, *spec.padded_hw, c), padding=((0, 0),) * spec.spatial_dims)


def zero_pad(x: jax.Array, spec: ConvSpec) -> jax.Array:
    """``x`` padded with zeros by ``spec.padding`` (a negative side cropped)."""
    return pad_or_crop(x, spec.padding)


def _padded_correlate(x: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    return _correlate_impl(zero_pad(x, spec), kernel, valid_spec(spec))


def correlate(x: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """Zero-padded cross-correlation by ``spec.strategy`` (``"window"``, ``"shift"``, ``"direct"``, ``"xla"``),
    differentiable.

    Args:
      x: the input ``[N, *spatial, C]`` (e.g. ``[N, H, W, C]``); ``spec.in_shape`` must equal its shape and
        ``spec.padding_mode`` be ``"zeros"``.
      kernel: ``[*taps, C // groups, O]`` (e.g. ``[KH, KW, C // groups, O]``), the dtype of ``x``.
      spec: the static description.

    Returns:
      ``[N, *out, O]`` (e.g. ``[N, Ho, Wo, O]``) in ``x``'s dtype; zeros where the result is empty or nothing is
      summed (no input channels, e.g. a kernel batch of size 0 under ``vmap``, which becomes zero feature groups) —
      lax's values, and constant, so their derivatives are lax's zeros too.
    """
    if 0 in spec.out_shape or 0 in spec.kernel_shape:
        return jnp.zeros(spec.out_shape, x.dtype)
    if any(_varies_over_manual_axes(v) for v in (x, kernel)):
        # Inside shard_map, values that vary over a manual mesh axis carry that in their type, which the
        # primitive's rules do not track: use the same computation with JAX's own autodiff there (for "xla",
        # lax's convolution as such: JAX's transposes of the one-row-longer form run on Eigen's slow paths).
        if spec.strategy == "xla":
            return lax_conv(x, kernel, spec, spec.padding).astype(x.dtype)
        return _padded_correlate(x, kernel, spec)
    return correlate_p.bind(x, kernel, spec=spec)


_impl_jit = jax.jit(_padded_correlate, static_argnames=("spec",))


def _impl(x: jax.Array, kernel: jax.Array, *, spec: ConvSpec) -> jax.Array:
    return _impl_jit(x, kernel, spec=spec)


def _abstract_eval(x: Any, kernel: Any, *, spec: ConvSpec) -> ShapedArray:
    return ShapedArray(spec.out_shape, x.dtype)


def input_gradient_rule(spec: ConvSpec) -> str:
    """How the input gradient of ``spec`` is computed: ``spec.strategy``, or for ``"direct"`` with more than
    ``DIRECT_MAX_UNROLLED`` outputs per group (the transposed correlation would be many-in few-out, where direct
    contracts per tap by dots and measured slower than XLA's) ``"tap_dots"``
    (:func:`~jaxconv.conv._strategies.tap_dots_input_gradient`) for 2-D, stride-1 kernels of at least 3 taps per
    dim, where it measured faster than XLA's backward-data convolution, else ``"xla"`` (BENCHMARKS.md)."""
    *taps, _, o = spec.kernel_shape
    if spec.strategy == "direct" and o // spec.groups > DIRECT_MAX_UNROLLED:
        spread = spec.spatial_dims == 2 and min(taps) >= 3 and all(s == 1 for s in spec.stride)
        return "tap_dots" if spread else "xla"
    return spec.strategy


def kernel_gradient_rule(spec: ConvSpec) -> str:
    """How the kernel gradient of ``spec`` is computed: ``spec.strategy``, or ``"xla"`` (XLA's backward-filter
    convolution, the padding inside it) for ``"direct"`` except where per-tap halving sums measured faster
    (:func:`jaxconv.conv._strategies.halves_kernel_gradient`: depthwise, or one input and one output channel;
    BENCHMARKS.md)."""
    if spec.strategy == "direct" and not halves_kernel_gradient(spec):
        return "xla"
    return spec.strategy


def transposed_correlate(cotangent: jax.Array, kernel: jax.Array, spec: ConvSpec, pads: Pads) -> jax.Array:
    """The transposed convolution of ``spec``'s correlation, framed by ``pads``: ``[N, *out, O]`` → ``[N, *X, C]``.

    The output gradient dilated by the stride and padded by ``pads`` (one ``(low, high)`` per spatial dim; a negative
    one crops, by a slice, never handed to XLA as negative padding: :func:`jaxconv.conv._strategies.pad_or_crop`), then
    correlated (same dilation and groups, stride 1; the strategy :func:`input_gradient_rule` says) with the spatially
    flipped kernel whose per-group in/out channels are swapped. It is ``correlate_p`` again, so it has derivatives of
    its own. ``pads = (extent - 1 - low, extent - 1 + rest - high)`` per dim, ``(low, high)`` the convolution's own
    padding, gives the gradient w.r.t. its unpadded input (see :func:`input_gradient`).
    """
    dims = spec.spatial_dims
    *taps, cg, o = spec.kernel_shape
    g, c = spec.groups, spec.in_shape[-1]
    full = pad_or_crop(cotangent, pads, tuple(s - 1 for s in spec.stride))
    flipped = kernel[(slice(None, None, -1),) * dims].reshape(*taps, cg, g, o // g)
    flipped = flipped.transpose(*range(dims), dims + 2, dims + 1, dims).reshape(*taps, o // g, c)
    tspec = dataclasses.replace(
        spec,
        in_shape=full.shape,
        kernel_shape=(*taps, o // g, c),
        stride=(1,) * dims,
        padding=((0, 0),) * dims,
        padding_mode="zeros",
        strategy=input_gradient_rule(spec),
    )
    return correlate(full, flipped, tspec)


# Strided input gradients by phases (:func:`phase_input_gradient`) for these strategies, which measured faster so
# (BENCHMARKS.md). Not "direct": its fused sums are recomputed in every phase that reads an output gradient XLA
# computes elementwise from the forward output (e.g. an activation's derivative), which measured slower.
PHASED = ("window", "shift")


def input_gradient(cotangent: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """The gradient ``[N, *spatial, C]`` w.r.t. the (unpadded) input of ``correlate``: XLA's backward-data
    convolution where :func:`input_gradient_rule` says ``"xla"``, :func:`tap_dots_input_gradient` where it says
    ``"tap_dots"``; :func:`phase_input_gradient` for a strided
    ``"window"`` or ``"shift"``; else :func:`transposed_correlate` framed to the FULL correlation of the padded
    input, cropped by the padding to the unpadded input."""
    rule = input_gradient_rule(spec)
    if rule == "xla":
        return xla_input_gradient(cotangent, kernel, spec)
    if rule == "tap_dots":
        return tap_dots_input_gradient(cotangent, kernel, spec)
    if any(s > 1 for s in spec.stride) and spec.strategy in PHASED:
        return phase_input_gradient(cotangent, kernel, spec)
    reach = zip(spec.padding, spec.padded_hw, spec.out_hw, spec.stride, spec.extent, strict=True)
    # The padded input's rows/cols no output reads (beyond the last window, ``rest``) get a zero gradient: padded on
    # high; the padding's own rows are cropped (the frame reduced by it, a slice where it goes negative).
    pads = tuple((e - 1 - lo, e - 1 + (p - ((o - 1) * s + e)) - hi) for (lo, hi), p, o, s, e in reach)
    return transposed_correlate(cotangent, kernel, spec, pads)


class Phase(NamedTuple):
    """Along one spatial dim, the padded-input positions ``r, r + s, r + 2s, ...`` of a stride-``s`` correlation and
    the kernel taps that reach them.

    Attributes:
      taps: the kernel's taps reaching phase ``r``, as a slice ``first::step`` (``a * d = r (mod s)``).
      reaching: how many taps (``0``: no tap reaches the phase, its gradient is zero).
      dilation: their spacing in output positions (``d / gcd(s, d)``).
      reach: the output offset of the last tap (the input position ``r + s*m`` reads output ``m - reach`` there).
      size: how many padded-input positions the phase has.
    """

    taps: slice
    reaching: int
    dilation: int
    reach: int
    size: int


def phases(size: int, kernel: int, stride: int, dilation: int) -> list[Phase]:
    """The ``stride`` phases of a padded input dim of ``size`` under a ``kernel``-tap correlation.

    Examples:
      >>> [(p.taps, p.reaching, p.reach, p.size) for p in phases(7, 3, 2, 1)]
      [(slice(0, None, 2), 2, 1, 4), (slice(1, None, 2), 1, 0, 3)]
    """
    step = stride // math.gcd(stride, dilation)
    out = []
    for r in range(stride):
        reaching = [a for a in range(kernel) if (a * dilation - r) % stride == 0]
        first = reaching[0] if reaching else 0
        last = reaching[-1] if reaching else 0
        sub = Phase(
            slice(first, None, step),
            len(reaching),
            dilation // math.gcd(stride, dilation),
            (last * dilation - r) // stride,
            len(range(r, size, stride)),
        )
        out.append(sub)
    return out


def phase_input_gradient(cotangent: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """The input gradient of a strided ``spec`` without the zeros a dilated output gradient would multiply.

    The padded input's positions split into ``prod(stride)`` phases (``r + s*m`` per dim, ``0 <= r < s``); the taps
    ``a`` with ``a * d = r (mod s)`` reach phase ``r``, and its gradient is the transposed correlation (stride 1,
    :func:`transposed_correlate`) of the undilated output gradient with those taps. Each phase is put back in its
    place (``lax.pad`` with interior zeros, the padding cropped off, a negative side padded back with zeros) and the
    phases are summed: disjoint positions, so the sum only interleaves them, in one fused loop.

    Args:
      cotangent: ``[N, *out, O]``.
      kernel: ``[*taps, C // G, O]``.
      spec: the correlation, any stride.

    Returns:
      ``[N, *spatial, C]``, the gradient w.r.t. the unpadded input.
    """
    dims, strides = spec.spatial_dims, spec.stride
    per_dim = [
        phases(p, k, s, d)
        for p, k, s, d in zip(spec.padded_hw, spec.kernel_shape[:-2], strides, spec.dilation, strict=True)
    ]
    woven = None
    for combo, phase in zip(itertools.product(*per_dim), itertools.product(*(range(s) for s in strides)), strict=True):
        if any(ph.reaching == 0 or ph.size == 0 for ph in combo):
            continue
        index = (*(ph.taps for ph in combo), slice(None), slice(None))
        sub = kernel[index]
        pads = tuple(
            (ph.reach, ph.size - 1 - ph.reach + (ph.reaching - 1) * ph.dilation - (o - 1))
            for ph, o in zip(combo, spec.out_hw, strict=True)
        )
        sub_spec = dataclasses.replace(
            spec, kernel_shape=sub.shape, stride=(1,) * dims, dilation=tuple(ph.dilation for ph in combo)
        )
        part = transposed_correlate(cotangent, sub, sub_spec, pads)
        # Back to its positions r, r + s, ... of the padded input (zeros between), the padding cropped off.
        frame = unpadded_frame(phase, tuple(ph.size for ph in combo), spec)
        placed = pad_or_crop(part, frame, tuple(s - 1 for s in strides))
        woven = placed if woven is None else woven + placed
    if woven is None:
        return jnp.zeros(spec.in_shape, cotangent.dtype)
    return woven


def _transpose_input(cotangent: jax.Array, x: Any, kernel: jax.Array, *, spec: ConvSpec) -> jax.Array:
    return input_gradient(cotangent, kernel, spec)


def _transpose_kernel(cotangent: jax.Array, x: jax.Array, kernel: Any, *, spec: ConvSpec) -> jax.Array:
    if kernel_gradient_rule(spec) == "xla":
        return xla_kernel_gradient(x, cotangent, spec)
    return kernel_gradient(zero_pad(x, spec), cotangent, valid_spec(spec))


def _batch(args: tuple[jax.Array, jax.Array], dims: tuple[Any, Any], *, spec: ConvSpec) -> tuple[jax.Array, int]:
    x, kernel = args
    bx, bk = dims
    n, *spatial, c = spec.in_shape
    *taps, cg, o = spec.kernel_shape
    out_hw = spec.out_hw
    s = spec.spatial_dims
    if bk is None:  # fold the mapped axis into the batch
        x = jnp.moveaxis(x, bx, 0)
        b = x.shape[0]
        folded = x.reshape(b * n, *spatial, c)
        out = correlate(folded, kernel, dataclasses.replace(spec, in_shape=folded.shape))
        return out.reshape(b, n, *out_hw, o), 0
    kernel = jnp.moveaxis(kernel, bk, 0)
    b = kernel.shape[0]
    if bx is None:
        x = jnp.broadcast_to(x, (b, *x.shape))
    else:
        x = jnp.moveaxis(x, bx, 0)
    # One convolution per mapped kernel = extra feature groups: channel (b, g, c), output (b, g, o).
    xs = x.transpose(*range(1, s + 2), 0, s + 2).reshape(n, *spatial, b * c)
    ks = kernel.transpose(*range(1, s + 2), 0, s + 2).reshape(*taps, cg, b * o)
    gspec = dataclasses.replace(spec, in_shape=xs.shape, kernel_shape=ks.shape, groups=b * spec.groups)
    out = correlate(xs, ks, gspec).reshape(n, *out_hw, b, o)
    return jnp.moveaxis(out, s + 1, 0), 0


correlate_p.def_impl(_impl)
correlate_p.def_abstract_eval(_abstract_eval)
mlir.register_lowering(correlate_p, mlir.lower_fun(_padded_correlate, multiple_results=False))
ad.defbilinear(correlate_p, _transpose_input, _transpose_kernel)
batching.primitive_batchers[correlate_p] = _batch

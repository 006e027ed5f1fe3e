"""``conv_transpose1d``, ``conv_transpose2d``, ``conv_transpose3d``: the adjoint of ``convNd`` w.r.t. its input.

A transposed convolution maps the convolution's output space back to its input space with the *same* kernel:
``[N, *out, O]`` → ``[N, *in, C]``. It is computed as the convolution's input gradient is
(:func:`jaxconv.conv._primitive.transposed_correlate`): the input dilated by the stride, framed by
``(extent - 1 - low, extent - 1 - high + output_padding)`` per spatial dim (a negative frame crops, by a slice), and
correlated with the flipped kernel by the chosen strategy — so it is differentiable through jaxconv's own rules.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax

from jaxconv.conv._conv import Canonical, canonical_bias, canonical_operands, options_of, resolve_strategy
from jaxconv.conv._primitive import transposed_correlate
from jaxconv.conv._spec import ConvSpec, Layout, Strategy, explicit_pads, int_tuple, make_spec

Pads = tuple[tuple[int, int], ...]


@functools.partial(jax.jit, static_argnames=("spec", "frame"))
def _transpose_nhwc(y: jax.Array, kernel: jax.Array, bias: jax.Array | None, spec: ConvSpec, frame: Pads) -> jax.Array:
    out = transposed_correlate(y, kernel, spec, frame)
    return out if bias is None else out + bias.reshape(*(1,) * (spec.spatial_dims + 1), -1)


def _canonicalize(x: Any, kernel: Any, bias: Any, dims: int, options: dict[str, Any]) -> tuple[Canonical, Pads]:
    """Validates a transposed convolution's arguments; returns the operands (``x`` in the *convolution's output*
    space), the forward convolution's spec (its input is this function's output) and the frame of ``x``."""
    who = f"conv_transpose{dims}d"
    y, k, layout, ndim = canonical_operands(x, kernel, options["layout"], dims, who)
    *taps, cg, o = k.shape
    if y.shape[-1] != o:
        raise ValueError(
            f"{who}: `kernel`'s output channels (the convolution's, O={o}) must equal x's channels "
            f"{y.shape[-1]}; got kernel shape {tuple(kernel.shape)} for x of shape {tuple(x.shape)}"
        )
    padding = options["padding"]
    pads = explicit_pads(padding, dims, who)
    if pads is None:
        raise ValueError(
            f"{who}: `padding` must be an int >= 0, {dims} ints >= 0 or {dims} pairs (low, high) of ints >= 0 "
            f"(the padding of the convolution this transposes); got {padding!r}"
        )
    stride = int_tuple("stride", options["stride"], dims, who)
    dilation = int_tuple("dilation", options["dilation"], dims, who)
    extra = int_tuple("output_padding", options["output_padding"], dims, who, minimum=0)
    for e, s, d in zip(extra, stride, dilation, strict=True):
        if e >= max(s, d):
            raise ValueError(
                f"{who}: `output_padding` must be smaller than the stride or the dilation in each spatial dim "
                f"(as PyTorch); got {options['output_padding']!r} with stride {stride} and dilation {dilation}"
            )
    groups = options["groups"]
    extent = [(t - 1) * d + 1 for t, d in zip(taps, dilation, strict=True)]
    sizes = [
        (h - 1) * s + e - lo - hi + p
        for h, s, e, (lo, hi), p in zip(y.shape[1:-1], stride, extent, pads, extra, strict=True)
    ]
    if min(sizes) < 1:
        raise ValueError(
            f"{who}: `padding` {padding!r} leaves an empty output (spatial size {tuple(sizes)}) for x of spatial size "
            f"{tuple(y.shape[1:-1])}, kernel {tuple(taps)}, stride {stride}, dilation {dilation}"
        )
    channels = cg * groups if isinstance(groups, int) and groups >= 1 else cg  # a bad `groups`: make_spec says so
    spec = make_spec(
        (y.shape[0], *sizes, channels),
        k.shape,
        stride=stride,
        padding=pads,
        dilation=dilation,
        groups=groups,
        padding_mode="zeros",
        strategy=options["strategy"],
        precision=options["precision"],
        who=who,
    )
    frame = tuple((e - 1 - lo, e - 1 - hi + p) for e, (lo, hi), p in zip(extent, pads, extra, strict=True))
    bias = canonical_bias(bias, channels, ndim == dims, y.dtype, who)
    return Canonical(y, k, bias, spec, layout, ndim), frame


def _conv_transpose(x: Any, kernel: Any, bias: Any, dims: int, **options: Any) -> jax.Array:
    canon, frame = _canonicalize(x, kernel, bias, dims, options)
    spec = dataclasses.replace(canon.spec, strategy=resolve_strategy(canon.spec))
    return canon.restore(_transpose_nhwc(canon.x, canon.kernel, canon.bias, spec, frame))


_ARGS_DOC = """
    Args:
      x: the convolution's output space. Channels last: ``[N, *spatial, O]`` or ``[*spatial, O]``; channels first
        (PyTorch's): ``[N, O, *spatial]`` or ``[O, *spatial]``; or a plain ``[*spatial]`` with a ``[*taps]`` kernel.
      kernel: *the convolution's kernel*, unchanged: channels last ``[*taps, C // groups, O]`` (e.g. HWIO),
        channels first ``[O, C // groups, *taps]`` — PyTorch's ``ConvTranspose`` weight ``[in, out // groups, *taps]``.
        Maps the ``O`` channels back to ``C``.
      bias: ``[C]`` (``[]`` or ``[1]`` for a plain input) or ``None``.
      stride, dilation, groups: the convolution's (``>= 1``; one int or one per spatial dim).
      padding: the convolution's zero padding: an int, one int per spatial dim or one ``(low, high)`` pair per dim,
        ``>= 0``; it is cropped from the result.
      output_padding: extra rows at the high end of each spatial dim (``>= 0`` and smaller than the stride or the
        dilation, as PyTorch), to pick one of the input sizes a strided convolution maps to the same output size.
      layout: channels last or first, as ``convNd``.
      strategy: ``"auto"``, ``"window"``, ``"shift"``, ``"direct"``, ``"xla"`` or ``"fft"``, for the correlation it
        runs.
      precision: passed to the contraction.

    Returns:
      ``[N, *in, C]`` (or channels first), ``in = (out - 1) * stride - low - high + (taps - 1) * dilation + 1 +
      output_padding`` per spatial dim — PyTorch's ``conv_transposeNd`` size.

    Raises:
      ValueError, TypeError: a bad value or type, naming the argument (as ``convNd``), an ``output_padding`` not
        below the stride or dilation, or a padding that leaves nothing.
"""


def conv_transpose1d(
    x: jax.typing.ArrayLike,
    kernel: jax.typing.ArrayLike,
    bias: jax.typing.ArrayLike | None = None,
    *,
    stride: int | tuple[int] = 1,
    padding: int | tuple[int] | tuple[tuple[int, int]] = 0,
    output_padding: int | tuple[int] = 0,
    dilation: int | tuple[int] = 1,
    groups: int = 1,
    layout: Layout = "NWC",
    strategy: Strategy = "auto",
    precision: Any = None,
) -> jax.Array:
    """The transposed 1-D convolution: the adjoint of :func:`jaxconv.conv1d` w.r.t. its input, plus ``bias``.
    {args}
    Examples:
      >>> import jax.numpy as jnp
      >>> import jaxconv
      >>> jaxconv.conv_transpose1d(jnp.array([1., 2.]), jnp.array([1., 10., 100.]), stride=2)
      Array([  1.,  10., 102.,  20., 200.], dtype=float32)
    """
    return _conv_transpose(x, kernel, bias, 1, **options_of(locals()))


def conv_transpose2d(
    x: jax.typing.ArrayLike,
    kernel: jax.typing.ArrayLike,
    bias: jax.typing.ArrayLike | None = None,
    *,
    stride: int | tuple[int, int] = 1,
    padding: int | tuple[int, int] | tuple[tuple[int, int], tuple[int, int]] = 0,
    output_padding: int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    layout: Layout = "NHWC",
    strategy: Strategy = "auto",
    precision: Any = None,
) -> jax.Array:
    """The transposed 2-D convolution: the adjoint of :func:`jaxconv.conv2d` w.r.t. its input, plus ``bias``.
    {args}
    Examples:
      A stride-2 convolution's kernel, used to go back up: ``[2, 4, 4, 8]`` → ``[2, 8, 8, 3]``.

      >>> import jax.numpy as jnp
      >>> import jaxconv
      >>> kernel = jnp.ones((3, 3, 3, 8))                      # conv2d: 3 channels -> 8
      >>> jaxconv.conv2d(jnp.ones((2, 8, 8, 3)), kernel, stride=2, padding=1).shape
      (2, 4, 4, 8)
      >>> jaxconv.conv_transpose2d(jnp.ones((2, 4, 4, 8)), kernel, stride=2, padding=1, output_padding=1).shape
      (2, 8, 8, 3)
    """
    return _conv_transpose(x, kernel, bias, 2, **options_of(locals()))


def conv_transpose3d(
    x: jax.typing.ArrayLike,
    kernel: jax.typing.ArrayLike,
    bias: jax.typing.ArrayLike | None = None,
    *,
    stride: int | tuple[int, int, int] = 1,
    padding: int | tuple[int, int, int] | tuple[tuple[int, int], tuple[int, int], tuple[int, int]] = 0,
    output_padding: int | tuple[int, int, int] = 0,
    dilation: int | tuple[int, int, int] = 1,
    groups: int = 1,
    layout: Layout = "NDHWC",
    strategy: Strategy = "auto",
    precision: Any = None,
) -> jax.Array:
    """The transposed 3-D convolution: the adjoint of :func:`jaxconv.conv3d` w.r.t. its input, plus ``bias``.
    {args}
    Examples:
      >>> import jax.numpy as jnp
      >>> import jaxconv
      >>> weight = jnp.ones((4, 2, 3, 3, 3))   # PyTorch's ConvTranspose3d(4, 2, 3) weight
      >>> jaxconv.conv_transpose3d(jnp.ones((1, 4, 2, 3, 4)), weight, stride=2, layout="NCDHW").shape
      (1, 2, 5, 7, 9)
    """
    return _conv_transpose(x, kernel, bias, 3, **options_of(locals()))


for _fn in (conv_transpose1d, conv_transpose2d, conv_transpose3d):
    _fn.__doc__ = _fn.__doc__.replace("    {args}\n", _ARGS_DOC)  # type: ignore[union-attr]

__all__ = ["conv_transpose1d", "conv_transpose2d", "conv_transpose3d"]

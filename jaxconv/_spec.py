"""Validation and normalisation of ``conv2d``'s arguments.

Everything here is plain Python over static shapes, so it runs at trace time — eagerly and under ``jit``
alike — and every invalid call fails here, before any array work, with one message that names the
argument, what was given and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable
from typing import Any

import numpy as np

LAYOUTS = ("NHWC", "NCHW")
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")
PADDING_STRINGS = ("VALID", "SAME", "FULL")
STRATEGIES = ("auto", "window", "shift", "direct", "xla")

Pads = tuple[tuple[int, int], tuple[int, int]]


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """Everything static about one convolution, in canonical NHWC/HWIO form.

    Hashable, so it can be a static argument of ``jax.jit``.

    Attributes:
      in_shape: ``(N, H, W, C)`` of the (unpadded) input.
      kernel_shape: ``(KH, KW, C // groups, O)``.
      stride: ``(sh, sw)``.
      dilation: ``(dh, dw)``.
      padding: ``((top, bottom), (left, right))``, explicit and non-negative.
      groups: number of feature groups.
      padding_mode: one of :data:`PADDING_MODES`.
      strategy: one of :data:`STRATEGIES` (``"auto"`` is resolved later, by the caller).
      precision: passed through to the contraction (``None``, a string or a ``lax.Precision``).
    """

    in_shape: tuple[int, int, int, int]
    kernel_shape: tuple[int, int, int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding: Pads
    groups: int
    padding_mode: str
    strategy: str
    precision: Any = None

    @property
    def padded_hw(self) -> tuple[int, int]:
        """Spatial size of the padded input ``(Hp, Wp)``."""
        (top, bottom), (left, right) = self.padding
        return self.in_shape[1] + top + bottom, self.in_shape[2] + left + right

    @property
    def extent(self) -> tuple[int, int]:
        """Spatial extent of the dilated kernel ``((KH-1)*dh+1, (KW-1)*dw+1)``."""
        kh, kw = self.kernel_shape[:2]
        dh, dw = self.dilation
        return (kh - 1) * dh + 1, (kw - 1) * dw + 1

    @property
    def out_hw(self) -> tuple[int, int]:
        """Spatial size of the output ``(Ho, Wo)``."""
        (hp, wp), (eh, ew), (sh, sw) = self.padded_hw, self.extent, self.stride
        return (hp - eh) // sh + 1, (wp - ew) // sw + 1

    @property
    def out_shape(self) -> tuple[int, int, int, int]:
        """Shape of the output ``(N, Ho, Wo, O)``."""
        return (self.in_shape[0], *self.out_hw, self.kernel_shape[3])


def _fail(argument: str, allowed: str, given: Any, error: type[Exception] = ValueError) -> Exception:
    return error(f"conv2d: `{argument}` must be {allowed}; got {given!r}")


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _positive_pair(name: str, value: Any) -> tuple[int, int]:
    allowed = "an int >= 1 or a pair of ints >= 1"
    if _is_int(value):
        value = (value, value)
    if not isinstance(value, (tuple, list)) or len(value) != 2 or not all(map(_is_int, value)):
        raise _fail(name, allowed, value, TypeError if not isinstance(value, (tuple, list)) else ValueError)
    if min(value) < 1:
        raise _fail(name, allowed, value)
    return int(value[0]), int(value[1])


def _same_pads(size: int, extent: int, stride: int) -> tuple[int, int]:
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + extent - size, 0)
    return total // 2, total - total // 2


def _explicit_padding(padding: Any, hw: tuple[int, int], extent: tuple[int, int], stride: tuple[int, int]) -> Pads:
    allowed = f"one of {PADDING_STRINGS}, an int >= 0, a pair (ph, pw) or ((top, bottom), (left, right)) of ints >= 0"
    if isinstance(padding, str):
        key = padding.upper()
        if key == "VALID":
            return (0, 0), (0, 0)
        if key == "SAME":
            return _same_pads(hw[0], extent[0], stride[0]), _same_pads(hw[1], extent[1], stride[1])
        if key == "FULL":
            return (extent[0] - 1,) * 2, (extent[1] - 1,) * 2  # type: ignore[return-value]
        raise _fail("padding", allowed, padding)
    if _is_int(padding):
        pads: Any = ((padding, padding), (padding, padding))
    elif isinstance(padding, (tuple, list)) and len(padding) == 2 and all(map(_is_int, padding)):
        pads = ((padding[0], padding[0]), (padding[1], padding[1]))
    elif (
        isinstance(padding, (tuple, list))
        and len(padding) == 2
        and all(isinstance(p, (tuple, list)) and len(p) == 2 and all(map(_is_int, p)) for p in padding)
    ):
        pads = padding
    else:
        raise _fail("padding", allowed, padding, TypeError if not isinstance(padding, (tuple, list)) else ValueError)
    if min(min(p) for p in pads) < 0:
        raise _fail("padding", allowed, padding)
    return (int(pads[0][0]), int(pads[0][1])), (int(pads[1][0]), int(pads[1][1]))


def _choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in choices:
        raise _fail(name, f"one of {choices}", value)
    return value


def check_layout(layout: Any) -> str:
    """Returns ``layout`` if it is one of :data:`LAYOUTS`, else raises ``ValueError`` naming it."""
    return _choice("layout", layout, LAYOUTS)


def make_spec(
    in_shape: tuple[int, ...],
    kernel_shape: tuple[int, ...],
    *,
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: Any,
    padding_mode: Any,
    strategy: Any,
    precision: Any,
) -> ConvSpec:
    """Validates canonical (NHWC input, HWIO kernel) shapes and options; returns a :class:`ConvSpec`.

    Raises:
      ValueError: for a value outside what is allowed (the message names the argument).
      TypeError: for an argument of the wrong type.
    """
    n, h, w, c = in_shape
    kh, kw, cg, o = kernel_shape
    padding_mode = _choice("padding_mode", padding_mode, PADDING_MODES)
    strategy = _choice("strategy", strategy, STRATEGIES)
    stride = _positive_pair("stride", stride)
    dilation = _positive_pair("dilation", dilation)
    if not _is_int(groups) or groups < 1:
        raise _fail("groups", "an int >= 1", groups, TypeError if not _is_int(groups) else ValueError)
    groups = int(groups)
    if c % groups or o % groups:
        raise _fail("groups", f"a divisor of both the input channels C={c} and the output channels O={o}", groups)
    if cg != c // groups:
        raise ValueError(
            f"conv2d: `kernel` input-channel size must equal C // groups = {c} // {groups} = {c // groups}; "
            f"got {cg} (canonical HWIO kernel shape {tuple(kernel_shape)})"
        )
    if min(kh, kw) < 1:
        raise _fail("kernel", "non-empty in both spatial dims", tuple(kernel_shape))
    extent = ((kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1)
    pads = _explicit_padding(padding, (h, w), extent, stride)
    if padding_mode == "reflect":
        for (lo, hi), size, axis in zip(pads, (h, w), ("height", "width"), strict=True):
            if max(lo, hi) >= size:
                raise _fail(
                    "padding",
                    f"smaller than the input {axis} ({size}) with padding_mode='reflect'",
                    pads,
                )
    if padding_mode in ("replicate", "circular") and min(h, w) < 1 and max(map(max, pads)) > 0:
        raise _fail("x", f"non-empty spatially to pad with padding_mode={padding_mode!r}", tuple(in_shape))
    if precision is not None and not isinstance(precision, Hashable):
        raise _fail("precision", "None, a string, a lax.Precision or a pair of them", precision, TypeError)
    spec = ConvSpec(
        in_shape=(n, h, w, c),
        kernel_shape=(kh, kw, cg, o),
        stride=stride,
        dilation=dilation,
        padding=pads,
        groups=groups,
        padding_mode=padding_mode,
        strategy=strategy,
        precision=precision,
    )
    hp, wp = spec.padded_hw
    if extent[0] > hp or extent[1] > wp:
        raise ValueError(
            f"conv2d: `kernel` (dilated extent {extent[0]}x{extent[1]}) must fit inside the padded input "
            f"({hp}x{wp}); got kernel {kh}x{kw} with dilation {dilation} on input {h}x{w} with padding {pads}"
        )
    return spec


__all__ = ["ConvSpec", "make_spec", "check_layout", "LAYOUTS", "PADDING_MODES", "PADDING_STRINGS", "STRATEGIES"]

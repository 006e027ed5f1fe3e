"""Validation and normalisation of the convolutions' arguments (``conv1d``, ``conv2d``, ``conv3d``).

Everything here is plain Python over static shapes, so it runs at trace time — eagerly and under ``jit``
alike — and every invalid call fails here, before any array work, with one message that names the
argument, what was given and what is allowed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Hashable
from typing import Any, Literal, get_args

import numpy as np

from jaxconv._checks import fail

Layout = Literal["NWC", "NCW", "NHWC", "NCHW", "NDHWC", "NCDHW"]
"""Channels last (``N...C``) or first (``NC...``), for 1, 2 or 3 spatial dims."""
PaddingMode = Literal["zeros", "reflect", "replicate", "circular"]
Strategy = Literal["auto", "window", "shift", "direct", "xla", "fft"]
"""How the correlation is computed; ``"auto"`` picks per shape and backend (see ``resolve_strategy``)."""

LAYOUTS = ("NHWC", "NCHW")
LAYOUTS_BY_DIMS = {1: ("NWC", "NCW"), 2: LAYOUTS, 3: ("NDHWC", "NCDHW")}
PADDING_MODES: tuple[str, ...] = get_args(PaddingMode)
PADDING_STRINGS = ("VALID", "SAME", "FULL")
STRATEGIES: tuple[str, ...] = get_args(Strategy)

# The spatial dims' letters and names, outermost first, for shapes and messages.
SPATIAL_LETTERS = {1: "W", 2: "HW", 3: "DHW"}
_SPATIAL_NAMES = {"D": "depth", "H": "height", "W": "width"}
_COUNT_WORDS = {1: "a 1-tuple", 2: "a pair", 3: "a triple"}

Pads = tuple[tuple[int, int], ...]


@dataclasses.dataclass(frozen=True)
class ConvSpec:
    """Everything static about one convolution with ``S`` spatial dims (1, 2 or 3), in channels-last form.

    Hashable, so it can be a static argument of ``jax.jit``. The 2-D names (``padded_hw``, ``out_hw``) hold one
    entry per spatial dim: ``(W,)`` in 1-D, ``(H, W)`` in 2-D, ``(D, H, W)`` in 3-D.

    Attributes:
      in_shape: ``(N, *spatial, C)`` of the (unpadded) input, e.g. ``(N, H, W, C)``.
      kernel_shape: ``(*taps, C // groups, O)``, e.g. ``(KH, KW, C // groups, O)`` (HWIO).
      stride: one int per spatial dim, e.g. ``(sh, sw)``.
      dilation: one int per spatial dim, e.g. ``(dh, dw)``.
      padding: one ``(low, high)`` pair per spatial dim, e.g. ``((top, bottom), (left, right))``; non-negative.
      groups: number of feature groups.
      padding_mode: one of :data:`PADDING_MODES`.
      strategy: one of :data:`STRATEGIES` (``"auto"`` is resolved later, by the caller).
      precision: passed through to the contraction (``None``, a string or a ``lax.Precision``).
    """

    in_shape: tuple[int, ...]
    kernel_shape: tuple[int, ...]
    stride: tuple[int, ...]
    dilation: tuple[int, ...]
    padding: Pads
    groups: int
    padding_mode: str
    strategy: str
    precision: Any = None

    @property
    def spatial_dims(self) -> int:
        """``S``, the number of spatial dims."""
        return len(self.stride)

    @property
    def padded_hw(self) -> tuple[int, ...]:
        """Spatial size of the padded input, e.g. ``(Hp, Wp)``."""
        return tuple(size + lo + hi for size, (lo, hi) in zip(self.in_shape[1:-1], self.padding, strict=True))

    @property
    def extent(self) -> tuple[int, ...]:
        """Spatial extent of the dilated kernel, e.g. ``((KH-1)*dh+1, (KW-1)*dw+1)``."""
        return tuple((k - 1) * d + 1 for k, d in zip(self.kernel_shape[:-2], self.dilation, strict=True))

    @property
    def out_hw(self) -> tuple[int, ...]:
        """Spatial size of the output, e.g. ``(Ho, Wo)``."""
        return tuple((p - e) // s + 1 for p, e, s in zip(self.padded_hw, self.extent, self.stride, strict=True))

    @property
    def out_shape(self) -> tuple[int, ...]:
        """Shape of the output ``(N, *out_hw, O)``, e.g. ``(N, Ho, Wo, O)``."""
        return (self.in_shape[0], *self.out_hw, self.kernel_shape[-1])


def _fail(
    argument: str, allowed: str, given: Any, error: type[Exception] = ValueError, who: str = "conv2d"
) -> Exception:
    return fail(who, argument, allowed, given, error)


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def int_tuple(name: str, value: Any, dims: int, who: str, minimum: int = 1) -> tuple[int, ...]:
    """``value`` (an int, or one int per spatial dim) as ``dims`` ints ``>= minimum``, else an error naming ``name``."""
    allowed = f"an int >= {minimum} or {_COUNT_WORDS[dims]} of ints >= {minimum}"
    if _is_int(value):
        value = (value,) * dims
    if not isinstance(value, (tuple, list)) or len(value) != dims or not all(map(_is_int, value)):
        raise _fail(name, allowed, value, TypeError if not isinstance(value, (tuple, list)) else ValueError, who)
    if min(value) < minimum:
        raise _fail(name, allowed, value, who=who)
    return tuple(int(v) for v in value)


def same_pads(size: int, extent: int, stride: int) -> tuple[int, int]:
    """``"SAME"`` padding of one dim, as lax: output ``ceil(size / stride)``, an odd extra pad at the high end."""
    out = math.ceil(size / stride)
    total = max((out - 1) * stride + extent - size, 0)
    return total // 2, total - total // 2


def _padding_allowed(dims: int) -> str:
    if dims == 2:
        return f"one of {PADDING_STRINGS}, an int >= 0, a pair (ph, pw) or ((top, bottom), (left, right)) of ints >= 0"
    return f"one of {PADDING_STRINGS}, an int >= 0, {dims} ints >= 0 or {dims} pairs (low, high) of ints >= 0"


def _is_pair(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2 and all(map(_is_int, value))


def explicit_pads(padding: Any, dims: int, who: str) -> Pads | None:
    """``padding`` given as numbers (an int, one per dim, or one ``(low, high)`` pair per dim) as pairs, else None.

    Raises:
      ValueError, TypeError: for numbers of the wrong form or negative ones, naming ``padding``.
    """
    if isinstance(padding, str):
        return None
    allowed = _padding_allowed(dims)
    if _is_int(padding):
        pads: Any = ((padding, padding),) * dims
    elif isinstance(padding, (tuple, list)) and len(padding) == dims and all(map(_is_int, padding)):
        pads = tuple((p, p) for p in padding)
    elif isinstance(padding, (tuple, list)) and len(padding) == dims and all(map(_is_pair, padding)):
        pads = padding
    else:
        error = TypeError if not isinstance(padding, (tuple, list)) else ValueError
        raise _fail("padding", allowed, padding, error, who)
    if min(min(p) for p in pads) < 0:
        raise _fail("padding", allowed, padding, who=who)
    return tuple((int(lo), int(hi)) for lo, hi in pads)


def _explicit_padding(
    padding: Any, spatial: tuple[int, ...], extent: tuple[int, ...], stride: tuple[int, ...], who: str
) -> Pads:
    dims = len(spatial)
    pads = explicit_pads(padding, dims, who)
    if pads is not None:
        return pads
    key = padding.upper()
    if key == "VALID":
        return ((0, 0),) * dims
    if key == "SAME":
        return tuple(same_pads(*args) for args in zip(spatial, extent, stride, strict=True))
    if key == "FULL":
        return tuple((e - 1, e - 1) for e in extent)
    raise _fail("padding", _padding_allowed(dims), padding, who=who)


def _choice(name: str, value: Any, choices: tuple[str, ...], who: str = "conv2d") -> str:
    if not isinstance(value, str) or value not in choices:
        raise _fail(name, f"one of {choices}", value, who=who)
    return value


def check_layout(layout: Any, dims: int = 2, who: str = "conv2d") -> str:
    """Returns ``layout`` if it is one of ``LAYOUTS_BY_DIMS[dims]``, else raises ``ValueError`` naming it."""
    return _choice("layout", layout, LAYOUTS_BY_DIMS[dims], who)


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
    who: str = "conv2d",
) -> ConvSpec:
    """Validates channels-last shapes (``[N, *spatial, C]`` input, ``[*taps, C // groups, O]`` kernel) and options.

    The number of spatial dims is ``len(in_shape) - 2``; ``who`` names the function in the messages.

    Returns:
      the :class:`ConvSpec`.

    Raises:
      ValueError: for a value outside what is allowed (the message names the argument).
      TypeError: for an argument of the wrong type.
    """
    dims = len(in_shape) - 2
    n, *spatial, c = in_shape
    *taps, cg, o = kernel_shape
    padding_mode = _choice("padding_mode", padding_mode, PADDING_MODES, who)
    strategy = _choice("strategy", strategy, STRATEGIES, who)
    stride = int_tuple("stride", stride, dims, who)
    dilation = int_tuple("dilation", dilation, dims, who)
    if not _is_int(groups) or groups < 1:
        raise _fail("groups", "an int >= 1", groups, TypeError if not _is_int(groups) else ValueError, who)
    groups = int(groups)
    if c % groups or o % groups:
        raise _fail(
            "groups", f"a divisor of both the input channels C={c} and the output channels O={o}", groups, who=who
        )
    layout = SPATIAL_LETTERS[dims]
    if cg != c // groups:
        raise ValueError(
            f"{who}: `kernel` input-channel size must equal C // groups = {c} // {groups} = {c // groups}; "
            f"got {cg} (canonical {layout}IO kernel shape {tuple(kernel_shape)})"
        )
    if min(taps) < 1:
        raise _fail("kernel", "non-empty in every spatial dim", tuple(kernel_shape), who=who)
    extent = tuple((k - 1) * d + 1 for k, d in zip(taps, dilation, strict=True))
    pads = _explicit_padding(padding, tuple(spatial), extent, stride, who)
    if padding_mode == "reflect":
        for (lo, hi), size, letter in zip(pads, spatial, layout, strict=True):
            if max(lo, hi) >= size:
                raise _fail(
                    "padding",
                    f"smaller than the input {_SPATIAL_NAMES[letter]} ({size}) with padding_mode='reflect'",
                    pads,
                    who=who,
                )
    if padding_mode in ("replicate", "circular") and min(spatial) < 1 and max(map(max, pads)) > 0:
        raise _fail("x", f"non-empty spatially to pad with padding_mode={padding_mode!r}", tuple(in_shape), who=who)
    if precision is not None and not isinstance(precision, Hashable):
        raise _fail("precision", "None, a string, a lax.Precision or a pair of them", precision, TypeError, who)
    spec = ConvSpec(
        in_shape=tuple(int(v) for v in in_shape),
        kernel_shape=tuple(int(v) for v in kernel_shape),
        stride=stride,
        dilation=dilation,
        padding=pads,
        groups=groups,
        padding_mode=padding_mode,
        strategy=strategy,
        precision=precision,
    )
    padded = spec.padded_hw
    if any(e > p for e, p in zip(extent, padded, strict=True)):
        raise ValueError(
            f"{who}: `kernel` (dilated extent {'x'.join(map(str, extent))}) must fit inside the padded input "
            f"({'x'.join(map(str, padded))}); got kernel {'x'.join(map(str, taps))} with dilation {dilation} on "
            f"input {'x'.join(map(str, spatial))} with padding {pads}"
        )
    return spec


__all__ = [
    "ConvSpec",
    "make_spec",
    "check_layout",
    "explicit_pads",
    "int_tuple",
    "same_pads",
    "LAYOUTS",
    "LAYOUTS_BY_DIMS",
    "PADDING_MODES",
    "PADDING_STRINGS",
    "SPATIAL_LETTERS",
    "STRATEGIES",
]

"""``conv2d``: a 2-D convolution built from ``lax.dynamic_slice`` and ``vmap``.

The public function canonicalises its arguments (layout, rank, dtype), validates them at trace time
(:mod:`jaxconv._spec`) and hands a hashable :class:`~jaxconv._spec.ConvSpec` to one jitted kernel that
runs the chosen strategy on NHWC input and an HWIO kernel.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxconv._primitive import correlate
from jaxconv._spec import ConvSpec, check_layout, make_spec
from jaxconv._strategies import DIRECT_MAX_UNROLLED, lax_conv

_JNP_PAD_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def pad_image(x: jax.Array, spec: ConvSpec) -> jax.Array:
    """Pads the spatial dims of an NHWC ``x`` by ``spec.padding`` in ``spec.padding_mode``.

    ``"reflect"`` mirrors without repeating the edge pixel, ``"replicate"`` repeats it, ``"circular"``
    wraps around (periodic extension), ``"zeros"`` pads with zeros — PyTorch's meanings.

    Args:
      x: ``[N, H, W, C]``.
      spec: the convolution's static description.

    Returns:
      ``[N, H + top + bottom, W + left + right, C]``.
    """
    (top, bottom), (left, right) = spec.padding
    if top == bottom == left == right == 0:
        return x
    return jnp.pad(x, ((0, 0), (top, bottom), (left, right), (0, 0)), mode=_JNP_PAD_MODE[spec.padding_mode])


def _xla(x: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """``lax.conv_general_dilated``, the reference (non-zero padding modes are padded first)."""
    if spec.padding_mode == "zeros":
        return lax_conv(x, kernel, spec, spec.padding)
    return lax_conv(pad_image(x, spec), kernel, spec)


def _gathered(x: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """``"window"`` / ``"shift"`` / ``"direct"``: the bilinear primitive, which pads with zeros itself; other padding
    modes are padded first (fused by XLA into what reads it)."""
    if spec.padding_mode == "zeros":
        return correlate(x, kernel, spec)
    xp = pad_image(x, spec)
    n, hp, wp, c = xp.shape
    valid = dataclasses.replace(spec, in_shape=(n, hp, wp, c), padding=((0, 0), (0, 0)), padding_mode="zeros")
    return correlate(xp, kernel, valid)


# "auto" on CPU: "direct" (unrolled per-tap broadcast multiply-adds) with at most DIRECT_MAX_UNROLLED input channels
# per group, else "xla"; on GPU/TPU "xla" until measured there. The measurements behind it are in BENCHMARKS.md.


def resolve_strategy(spec: ConvSpec) -> str:
    """The concrete strategy for ``spec``: itself, or for ``"auto"`` the one measured fastest for such shapes.

    Deterministic: a function of the backend and the static shapes only.

    Examples:
      >>> from jaxconv._spec import make_spec
      >>> opts = dict(stride=1, padding="SAME", dilation=1, groups=1, padding_mode="zeros", precision=None)
      >>> resolve_strategy(make_spec((32, 64, 64, 1), (3, 3, 1, 1), strategy="auto", **opts))
      'direct'
      >>> resolve_strategy(make_spec((8, 64, 64, 32), (3, 3, 32, 32), strategy="auto", **opts))
      'xla'
      >>> resolve_strategy(make_spec((8, 64, 64, 32), (3, 3, 32, 32), strategy="window", **opts))
      'window'
    """
    if spec.strategy != "auto":
        return spec.strategy
    if jax.default_backend() == "cpu" and spec.kernel_shape[2] <= DIRECT_MAX_UNROLLED:
        return "direct"
    return "xla"


@functools.partial(jax.jit, static_argnames=("spec",))
def _conv_nhwc(x: jax.Array, kernel: jax.Array, bias: jax.Array | None, spec: ConvSpec) -> jax.Array:
    strategy = resolve_strategy(spec)
    if strategy == "xla":
        out = _xla(x, kernel, spec).astype(x.dtype)
    else:
        out = _gathered(x, kernel, dataclasses.replace(spec, strategy=strategy))
    return out if bias is None else out + bias.reshape(1, 1, 1, -1)


def _as_array(name: str, value: Any) -> jax.Array:
    try:
        return jnp.asarray(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"conv2d: `{name}` must be an array of numbers; got {type(value).__name__}") from err


def _canonical_dtype(x: jax.Array, kernel: jax.Array) -> jnp.dtype:
    if not jnp.issubdtype(kernel.dtype, jnp.floating):
        raise TypeError(
            f"conv2d: `kernel` must have a floating dtype (float16, bfloat16, float32, float64); got {kernel.dtype}"
        )
    if jnp.issubdtype(x.dtype, jnp.floating):
        return jnp.promote_types(x.dtype, kernel.dtype)
    if jnp.issubdtype(x.dtype, jnp.integer) or x.dtype == jnp.bool_:
        return kernel.dtype
    raise TypeError(f"conv2d: `x` must have a bool, integer or floating dtype; got {x.dtype}")


def _rank_error(layout: str, x_shape: tuple[int, ...]) -> ValueError:
    forms = "[N,H,W,C] or [H,W,C]" if layout == "NHWC" else "[N,C,H,W] or [C,H,W]"
    return ValueError(
        f"conv2d: `x` must have rank 4 or 3 ({forms} for layout={layout!r}) or rank 2 ([H,W] with a "
        f"[KH,KW] kernel); got shape {x_shape}"
    )


class Canonical(NamedTuple):
    """A convolution's operands in canonical form, and how to put its output back in the caller's.

    Attributes:
      x: ``[N, H, W, C]``, in the result dtype.
      kernel: ``[KH, KW, C // groups, O]`` (HWIO), in the result dtype.
      bias: ``[O]`` in the result dtype, or ``None``.
      spec: the validated static description.
      layout: the caller's layout.
      ndim: the rank of the caller's ``x`` (4, 3, or 2 for a plain image).
    """

    x: jax.Array
    kernel: jax.Array
    bias: jax.Array | None
    spec: ConvSpec
    layout: str
    ndim: int

    def restore(self, out: jax.Array) -> jax.Array:
        """``[N, Ho, Wo, O]`` back to the caller's layout and rank."""
        if self.ndim == 2:
            return out[0, :, :, 0]
        if self.layout == "NCHW":
            out = out.transpose(0, 3, 1, 2)
        return out if self.ndim == 4 else out[0]


def canonicalize(
    x: jax.typing.ArrayLike,
    kernel: jax.typing.ArrayLike,
    bias: jax.typing.ArrayLike | None,
    *,
    stride: Any,
    padding: Any,
    dilation: Any,
    groups: Any,
    padding_mode: Any,
    layout: Any,
    strategy: Any,
    precision: Any,
) -> Canonical:
    """Validates :func:`conv2d`'s arguments and brings its operands to NHWC / HWIO in the result dtype.

    Raises:
      ValueError, TypeError: as :func:`conv2d`, naming the argument.
    """
    layout = check_layout(layout)
    x, kernel = _as_array("x", x), _as_array("kernel", kernel)
    dtype = _canonical_dtype(x, kernel)
    x, kernel = x.astype(dtype), kernel.astype(dtype)

    plain = x.ndim == 2
    if plain:
        if kernel.ndim != 2:
            raise ValueError(f"conv2d: `kernel` must have rank 2 [KH,KW] for a rank-2 x; got shape {kernel.shape}")
        x4, k4 = x[None, :, :, None], kernel[:, :, None, None]
    elif x.ndim in (3, 4):
        if kernel.ndim != 4:
            form = "[KH,KW,C//groups,O]" if layout == "NHWC" else "[O,C//groups,KH,KW]"
            raise ValueError(
                f"conv2d: `kernel` must have rank 4 ({form} for layout={layout!r}) for a rank-{x.ndim} x; "
                f"got shape {kernel.shape}"
            )
        x4 = x if x.ndim == 4 else x[None]
        if layout == "NCHW":
            x4, k4 = x4.transpose(0, 2, 3, 1), kernel.transpose(2, 3, 1, 0)
        else:
            k4 = kernel
    else:
        raise _rank_error(layout, x.shape)

    spec = make_spec(
        x4.shape,
        k4.shape,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
        strategy=strategy,
        precision=precision,
    )
    if bias is not None:
        bias = _as_array("bias", bias)
        allowed = ((), (1,)) if plain else ((spec.kernel_shape[3],),)
        if bias.shape not in allowed:
            raise ValueError(f"conv2d: `bias` must have shape {' or '.join(map(str, allowed))}; got {bias.shape}")
        if not (jnp.issubdtype(bias.dtype, jnp.number) or bias.dtype == jnp.bool_):
            raise TypeError(f"conv2d: `bias` must have a numeric dtype; got {bias.dtype}")
        bias = bias.reshape(-1).astype(dtype)
    return Canonical(x4, k4, bias, spec, layout, x.ndim)


def conv2d(
    x: jax.typing.ArrayLike,
    kernel: jax.typing.ArrayLike,
    bias: jax.typing.ArrayLike | None = None,
    *,
    stride: int | tuple[int, int] = 1,
    padding: str | int | tuple[int, int] | tuple[tuple[int, int], tuple[int, int]] = "VALID",
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    padding_mode: str = "zeros",
    layout: str = "NHWC",
    strategy: str = "auto",
    precision: Any = None,
) -> jax.Array:
    """2-D cross-correlation of ``x`` with ``kernel``, plus ``bias``.

    As in every deep-learning framework the kernel is *not* flipped:
    ``out[n, i, j, o] = bias[o] + sum_{a, b, c} xpad[n, i*sh + a*dh, j*sw + b*dw, g(o)*C/G + c] * kernel[a, b, c, o]``
    where ``xpad`` is ``x`` padded in ``padding_mode`` and ``g(o)`` is the group of output channel ``o``.

    Args:
      x: the image. ``layout="NHWC"``: ``[N, H, W, C]`` or unbatched ``[H, W, C]``; ``layout="NCHW"``:
        ``[N, C, H, W]`` or ``[C, H, W]``; either layout: a plain ``[H, W]`` image with a ``[KH, KW]`` kernel.
        Bool and integer images are promoted to the kernel's dtype.
      kernel: floating. ``"NHWC"``: ``[KH, KW, C // groups, O]`` (HWIO); ``"NCHW"``: ``[O, C // groups, KH, KW]``
        (OIHW, as PyTorch); ``[KH, KW]`` for a plain image.
      bias: ``[O]`` (``[]`` or ``[1]`` for a plain image) or ``None``; cast to the result dtype.
      stride: ``s`` or ``(sh, sw)``, each ``>= 1``.
      padding: ``"VALID"``; ``"SAME"`` (output ``ceil(H / sh)``, an odd extra pad at the bottom/right, as
        ``lax``); ``"FULL"`` (``(KH-1)*dh`` on each side, likewise for width); ``p``; ``(ph, pw)``; or
        ``((top, bottom), (left, right))``; all ``>= 0``.
      dilation: kernel (atrous) dilation ``d`` or ``(dh, dw)``, each ``>= 1``.
      groups: feature groups; divides ``C`` and ``O``. ``groups == C`` is a depthwise convolution.
      padding_mode: ``"zeros"``, ``"reflect"`` (mirror without repeating the edge; pad ``<`` size),
        ``"replicate"`` (repeat the edge) or ``"circular"`` (wrap around).
      layout: ``"NHWC"`` or ``"NCHW"``.
      strategy: ``"window"`` (a ``dynamic_slice`` per output position, vmapped), ``"shift"`` (a
        ``dynamic_slice`` per kernel tap, vmapped), ``"direct"`` (one static slice per kernel tap, multiplied and
        accumulated elementwise — for few channels and depthwise), ``"xla"`` (``lax.conv_general_dilated``) or
        ``"auto"`` (picked for speed). All give the same numbers.
      precision: passed to the contraction, as in ``lax.dot_general`` (``"direct"``'s elementwise products with
        at most 8 channels per group are exact and ignore it).

    Returns:
      ``[N, Ho, Wo, O]`` / ``[Ho, Wo, O]`` (NHWC), ``[N, O, Ho, Wo]`` / ``[O, Ho, Wo]`` (NCHW) or ``[Ho, Wo]``,
      with ``Ho = (H + top + bottom - (KH-1)*dh - 1) // sh + 1`` and likewise ``Wo``; dtype: the promotion
      of the (floating) image and kernel dtypes. Half-precision inputs accumulate in float32.

    Raises:
      ValueError: an argument's value is not allowed (bad rank, channel mismatch, groups, stride,
        dilation, padding, padding_mode, layout, strategy, a kernel larger than the padded image, bias).
      TypeError: a non-floating kernel, or an argument of the wrong type.

    Examples:
      The seed's pattern, found by a kernel equal to it (the peak marks the pattern's top-left corner):

      >>> import jax.numpy as jnp
      >>> import jaxconv
      >>> image = jnp.array([[0., 0., 0., 0.],
      ...                    [0., 1., 1., 0.],
      ...                    [0., 1., 0., 0.]])
      >>> kernel = jnp.array([[1., 1., 0.],
      ...                     [1., 0., 0.]])
      >>> jaxconv.conv2d(image, kernel)
      Array([[0., 1.],
             [1., 3.]], dtype=float32)
      >>> jaxconv.conv2d(image, kernel, padding="SAME", strategy="window").shape
      (3, 4)
    """
    canon = canonicalize(
        x,
        kernel,
        bias,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
        layout=layout,
        strategy=strategy,
        precision=precision,
    )
    return canon.restore(_conv_nhwc(canon.x, canon.kernel, canon.bias, canon.spec))

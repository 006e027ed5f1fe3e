"""``conv1d``, ``conv2d``, ``conv3d``: one N-d convolution built from ``lax.dynamic_slice`` and ``vmap``.

Each public function canonicalises its arguments (layout, rank, dtype), validates them at trace time
(:mod:`jaxconv.conv._spec`) and hands a hashable :class:`~jaxconv.conv._spec.ConvSpec` to one jitted kernel that
runs the chosen strategy on a channels-last input (NWC, NHWC, NDHWC) and kernel (WIO, HWIO, DHWIO).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from jaxconv.conv._primitive import correlate
from jaxconv.conv._spec import SPATIAL_LETTERS, ConvSpec, Layout, PaddingMode, Strategy, check_layout, make_spec
from jaxconv.conv._strategies import DIRECT_MAX_UNROLLED, lax_conv, spreads_over_threads

# On GPU, "window" (one gather, one dot) beat cuDNN with few input channels up to about this many gathered values
# and lost beyond it (BENCHMARKS.md, GPU section).
GPU_WINDOW_MAX_COLUMNS = 2**23

# On CPU, "direct" (one fused loop of broadcast multiply-adds, no blocking across output positions) beat XLA's
# convolution up to about this many multiply-adds per output position and group (taps x input channels x output
# channels, per group) and lost to it beyond where a group has 16 outputs or more (a ResNet stem 3->64 k7: 147 x 64,
# about 4x slower; BENCHMARKS.md, issue 24). With fewer outputs XLA's convolution is a thin dot and `direct` won.
DIRECT_MAX_PRODUCTS = 1024
DIRECT_MANY_OUTPUTS = 16

# On CPU, 2-D correlations with few input channels per group (``"direct"``'s domain) and at least this many kernel taps
# measured many times faster by the Fourier transform (``"fft"``) on every image size of the sweep, 64^2 to 1024^2;
# below it ``"direct"`` was as fast or faster (BENCHMARKS.md, "large kernels").
CPU_FFT_MIN_TAPS = 17 * 17

_JNP_PAD_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def pad_image(x: jax.Array, spec: ConvSpec) -> jax.Array:
    """Pads the spatial dims of a channels-last ``x`` by ``spec.padding`` in ``spec.padding_mode``.

    ``"reflect"`` mirrors without repeating the edge pixel, ``"replicate"`` repeats it, ``"circular"``
    wraps around (periodic extension), ``"zeros"`` pads with zeros — PyTorch's meanings.

    Args:
      x: ``[N, *spatial, C]``, e.g. ``[N, H, W, C]``.
      spec: the convolution's static description.

    Returns:
      ``[N, *padded, C]``, e.g. ``[N, H + top + bottom, W + left + right, C]``.
    """
    if not any(map(any, spec.padding)):
        return x
    return jnp.pad(x, ((0, 0), *spec.padding, (0, 0)), mode=_JNP_PAD_MODE[spec.padding_mode])


def _xla(x: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """``lax.conv_general_dilated``, the reference (non-zero padding modes are padded first); where
    :func:`~jaxconv.conv._strategies.spreads_over_threads`, through the primitive, whose forward runs XLA:CPU's
    convolution on all threads and whose derivatives are lax's own transposes."""
    if spreads_over_threads(spec, x.dtype):
        return _gathered(x, kernel, dataclasses.replace(spec, strategy="xla"))
    if spec.padding_mode == "zeros":
        return lax_conv(x, kernel, spec, spec.padding)
    return lax_conv(pad_image(x, spec), kernel, spec)


def _gathered(x: jax.Array, kernel: jax.Array, spec: ConvSpec) -> jax.Array:
    """``"window"`` / ``"shift"`` / ``"direct"``: the bilinear primitive, which pads with zeros itself; other padding
    modes are padded first (fused by XLA into what reads it)."""
    if spec.padding_mode == "zeros":
        return correlate(x, kernel, spec)
    xp = pad_image(x, spec)
    valid = dataclasses.replace(spec, in_shape=xp.shape, padding=((0, 0),) * spec.spatial_dims, padding_mode="zeros")
    return correlate(xp, kernel, valid)


def resolve_strategy(spec: ConvSpec, backend: str | None = None) -> str:
    """The concrete strategy for ``spec``: itself, or for ``"auto"`` the one measured fastest for such shapes.

    Deterministic: a function of the backend and the static shapes only (BENCHMARKS.md has the measurements).
    On CPU, ``"direct"`` for at most ``DIRECT_MAX_UNROLLED`` input channels per group — ``"fft"`` instead for 2-D
    kernels of at least ``CPU_FFT_MIN_TAPS`` taps (dilation aside), ``"xla"`` instead where a group has at least
    ``DIRECT_MANY_OUTPUTS`` outputs and more than ``DIRECT_MAX_PRODUCTS`` multiply-adds per output position
    (``prod(taps) * C/G * O/G``) —, else ``"xla"``. On GPU,
    ``"window"`` for ungrouped convolutions with at most ``DIRECT_MAX_UNROLLED`` input channels whose gathered
    windows (``N * prod(out spatial) * prod(kernel spatial) * C`` values, in 2-D ``N * Ho * Wo * KH * KW * C``)
    number at most ``GPU_WINDOW_MAX_COLUMNS``, else ``"xla"`` (cuDNN). Other backends: ``"xla"``.

    Args:
      spec: the convolution's static description.
      backend: ``"cpu"``, ``"gpu"``, ...; ``None`` for ``jax.default_backend()``.

    Examples:
      >>> from jaxconv.conv._spec import make_spec
      >>> opts = dict(stride=1, padding="SAME", dilation=1, groups=1, padding_mode="zeros", precision=None)
      >>> few = make_spec((32, 64, 64, 1), (3, 3, 1, 1), strategy="auto", **opts)
      >>> resolve_strategy(few, "cpu"), resolve_strategy(few, "gpu")
      ('direct', 'window')
      >>> large = make_spec((1, 256, 256, 1), (17, 17, 1, 1), strategy="auto", **opts)
      >>> resolve_strategy(large, "cpu"), resolve_strategy(large, "gpu")
      ('fft', 'xla')
      >>> many = make_spec((8, 64, 64, 32), (3, 3, 32, 32), strategy="auto", **opts)
      >>> resolve_strategy(many, "cpu"), resolve_strategy(many, "gpu")
      ('xla', 'xla')
      >>> stem = make_spec((4, 224, 224, 3), (7, 7, 3, 64), strategy="auto", **opts)  # 7 * 7 * 3 * 64 products
      >>> thin = make_spec((8, 64, 64, 1), (13, 13, 1, 8), strategy="auto", **opts)  # as many, 8 outputs
      >>> resolve_strategy(stem, "cpu"), resolve_strategy(thin, "cpu")
      ('xla', 'direct')
      >>> resolve_strategy(make_spec((8, 64, 64, 32), (3, 3, 32, 32), strategy="window", **opts))
      'window'
      >>> volume = make_spec((8, 64, 64, 64, 1), (3, 3, 3, 1, 1), strategy="auto", **opts)
      >>> resolve_strategy(volume, "cpu"), resolve_strategy(volume, "gpu")
      ('direct', 'xla')
    """
    if spec.strategy != "auto":
        return spec.strategy
    backend = jax.default_backend() if backend is None else backend
    *taps, cg, o = spec.kernel_shape
    if backend == "cpu" and cg <= DIRECT_MAX_UNROLLED:
        if spec.spatial_dims == 2 and math.prod(taps) >= CPU_FFT_MIN_TAPS:
            return "fft"
        m = o // spec.groups
        return "xla" if m >= DIRECT_MANY_OUTPUTS and math.prod(taps) * cg * m > DIRECT_MAX_PRODUCTS else "direct"
    if backend == "gpu" and spec.groups == 1 and cg <= DIRECT_MAX_UNROLLED:
        if spec.in_shape[0] * math.prod(spec.out_hw) * math.prod(taps) * cg <= GPU_WINDOW_MAX_COLUMNS:
            return "window"
    return "xla"


def _upcast_dtype(dtype: Any, preferred: Any) -> Any:
    """The dtype a floating convolution of ``dtype`` operands with a floating ``preferred_element_type`` runs in: the
    standard promotion of the two (``preferred`` if it holds every ``dtype`` value; float16 with bfloat16: float32),
    asked for explicitly, so that it holds under ``jax.numpy_dtype_promotion("strict")`` too.

    Examples:
      >>> _upcast_dtype(jnp.bfloat16, jnp.float32), _upcast_dtype(jnp.float16, jnp.bfloat16)
      (dtype('float32'), dtype('float32'))
    """
    with jax.numpy_dtype_promotion("standard"):
        return jnp.promote_types(dtype, preferred)


@functools.partial(jax.jit, static_argnames=("spec", "out_dtype"))
def _conv_nhwc(
    x: jax.Array, kernel: jax.Array, bias: jax.Array | None, spec: ConvSpec, out_dtype: Any = None
) -> jax.Array:
    """The convolution in channels-last form; ``out_dtype`` (a ``preferred_element_type``) sets the result dtype:
    floating operands are upcast to it first (exactly), integer ones go to XLA's convolution, which accumulates in
    it."""
    if out_dtype is not None and jnp.issubdtype(out_dtype, jnp.integer):
        out = lax_conv(pad_image(x, spec), kernel, spec, preferred=out_dtype)
    else:
        if out_dtype is not None:
            wide = _upcast_dtype(x.dtype, out_dtype)
            x, kernel = x.astype(wide), kernel.astype(wide)
        strategy = resolve_strategy(spec)
        if strategy == "xla":
            out = _xla(x, kernel, spec).astype(x.dtype)
        else:
            out = _gathered(x, kernel, dataclasses.replace(spec, strategy=strategy))
        out = out if out_dtype is None else out.astype(out_dtype)
    return out if bias is None else out + bias.astype(out.dtype).reshape(*(1,) * (spec.spatial_dims + 1), -1)


def _as_array(name: str, value: Any, who: str) -> jax.Array:
    try:
        return jnp.asarray(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{who}: `{name}` must be an array of numbers; got {type(value).__name__}") from err


def _canonical_dtype(x: jax.Array, kernel: jax.Array, who: str, preferred: Any = None) -> jnp.dtype:
    if preferred is not None and jnp.issubdtype(preferred, jnp.integer):
        if not all(jnp.issubdtype(a.dtype, jnp.integer) for a in (x, kernel)):
            raise TypeError(
                f"{who}: `preferred_element_type` {jnp.dtype(preferred)} (an integer result) needs integer `x` and "
                f"`kernel`; got {x.dtype} and {kernel.dtype}"
            )
        return jnp.promote_types(x.dtype, kernel.dtype)
    if not jnp.issubdtype(kernel.dtype, jnp.floating):
        raise TypeError(
            f"{who}: `kernel` must have a floating dtype (float16, bfloat16, float32, float64), or an integer one "
            f"with an integer `preferred_element_type`; got {kernel.dtype}"
        )
    if jnp.issubdtype(x.dtype, jnp.floating):
        return jnp.promote_types(x.dtype, kernel.dtype)
    if jnp.issubdtype(x.dtype, jnp.integer) or x.dtype == jnp.bool_:
        return kernel.dtype
    raise TypeError(f"{who}: `x` must have a bool, integer or floating dtype; got {x.dtype}")


def check_preferred(preferred: Any, who: str) -> Any:
    """``preferred_element_type`` as a floating or integer dtype, or ``None``; else a ``TypeError`` naming it."""
    if preferred is None:
        return None
    try:
        dtype = jnp.dtype(preferred)
    except TypeError:
        dtype = None
    if dtype is None or not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise TypeError(
            f"{who}: `preferred_element_type` must be None or a floating or integer dtype; got {preferred!r}"
        )
    return dtype


def _forms(layout: str) -> tuple[str, str, str]:
    """The batched input, unbatched input and kernel shapes of ``layout``, e.g. ``[N,H,W,C]``, ``[H,W,C]``,
    ``[KH,KW,C//groups,O]``."""
    letters = layout[1:-1] if layout[-1] == "C" else layout[2:]
    spatial, taps = ",".join(letters), ",".join(f"K{a}" for a in letters)
    if layout[-1] == "C":
        return f"[N,{spatial},C]", f"[{spatial},C]", f"[{taps},C//groups,O]"
    return f"[N,C,{spatial}]", f"[C,{spatial}]", f"[O,C//groups,{taps}]"


def _rank_error(layout: str, x_shape: tuple[int, ...], who: str) -> ValueError:
    dims = len(layout) - 2
    batched, unbatched, _ = _forms(layout)
    letters = SPATIAL_LETTERS[dims]
    plain, taps = ",".join(letters), ",".join(f"K{a}" for a in letters)
    return ValueError(
        f"{who}: `x` must have rank {dims + 2} or {dims + 1} ({batched} or {unbatched} for layout={layout!r}) or rank "
        f"{dims} ([{plain}] with a [{taps}] kernel); got shape {x_shape}"
    )


class Canonical(NamedTuple):
    """A convolution's operands in canonical (channels-last) form, and how to put its output back in the caller's.

    Attributes:
      x: ``[N, *spatial, C]`` (e.g. ``[N, H, W, C]``), in the result dtype.
      kernel: ``[*taps, C // groups, O]`` (e.g. HWIO; a locally connected one ``[*out, *taps, C, O]``), in the result
        dtype.
      bias: ``[O]`` (a locally connected one also ``[*out, O]``) in the result dtype, or ``None``.
      spec: the validated static description.
      layout: the caller's layout.
      ndim: the rank of the caller's ``x`` (``S + 2``, ``S + 1``, or ``S`` for a plain single-channel input).
    """

    x: jax.Array
    kernel: jax.Array
    bias: jax.Array | None
    spec: ConvSpec
    layout: str
    ndim: int

    def restore(self, out: jax.Array) -> jax.Array:
        """``[N, *out, O]`` back to the caller's layout and rank."""
        dims = self.spec.spatial_dims
        if self.ndim == dims:
            return out[0, ..., 0]
        if self.layout[1] == "C":
            out = jnp.moveaxis(out, -1, 1)
        return out if self.ndim == dims + 2 else out[0]


def canonical_operands(
    x: jax.typing.ArrayLike,
    kernel: jax.typing.ArrayLike,
    layout: Any,
    spatial_dims: int,
    who: str,
    preferred: Any = None,
) -> tuple[jax.Array, jax.Array, str, int]:
    """Checks the layout, ranks and dtypes; returns ``x`` ``[N, *spatial, C]`` and ``kernel`` ``[*taps, I, O]`` in
    channels-last form and the result dtype, the layout, and the rank of the caller's ``x``.

    Raises:
      ValueError, TypeError: as :func:`conv2d`, naming the argument.
    """
    dims = spatial_dims
    layout = check_layout(layout, dims, who)
    x, kernel = _as_array("x", x, who), _as_array("kernel", kernel, who)
    dtype = _canonical_dtype(x, kernel, who, preferred)
    x, kernel = x.astype(dtype), kernel.astype(dtype)
    if x.ndim == dims:  # a plain single-channel input
        if kernel.ndim != dims:
            taps = ",".join(f"K{a}" for a in SPATIAL_LETTERS[dims])
            raise ValueError(
                f"{who}: `kernel` must have rank {dims} [{taps}] for a rank-{dims} x; got shape {kernel.shape}"
            )
        return x[None, ..., None], kernel[..., None, None], layout, x.ndim
    if x.ndim not in (dims + 1, dims + 2):
        raise _rank_error(layout, x.shape, who)
    if kernel.ndim != dims + 2:
        raise ValueError(
            f"{who}: `kernel` must have rank {dims + 2} ({_forms(layout)[2]} for layout={layout!r}) for a "
            f"rank-{x.ndim} x; got shape {kernel.shape}"
        )
    xc = x if x.ndim == dims + 2 else x[None]
    if layout[1] == "C":  # channels first: [N, C, *spatial] and [O, I, *taps]
        return jnp.moveaxis(xc, 1, -1), kernel.transpose(*range(2, dims + 2), 1, 0), layout, x.ndim
    return xc, kernel, layout, x.ndim


def canonical_bias(bias: Any, channels: int, plain: bool, dtype: Any, who: str) -> jax.Array | None:
    """``bias`` checked against the output channels and cast to ``dtype``: ``[channels]``, or ``None``."""
    if bias is None:
        return None
    bias = _as_array("bias", bias, who)
    allowed = ((), (1,)) if plain else ((channels,),)
    if bias.shape not in allowed:
        raise ValueError(f"{who}: `bias` must have shape {' or '.join(map(str, allowed))}; got {bias.shape}")
    if not (jnp.issubdtype(bias.dtype, jnp.number) or bias.dtype == jnp.bool_):
        raise TypeError(f"{who}: `bias` must have a numeric dtype; got {bias.dtype}")
    return bias.reshape(-1).astype(dtype)


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
    spatial_dims: int = 2,
    preferred_element_type: Any = None,
) -> Canonical:
    """Validates ``conv{spatial_dims}d``'s arguments and brings its operands to channels-last in the result dtype.

    Raises:
      ValueError, TypeError: as :func:`conv2d`, naming the argument.
    """
    who = f"conv{spatial_dims}d"
    preferred = check_preferred(preferred_element_type, who)
    xc, kc, layout, ndim = canonical_operands(x, kernel, layout, spatial_dims, who, preferred)
    spec = make_spec(
        xc.shape,
        kc.shape,
        stride=stride,
        padding=padding,
        dilation=dilation,
        groups=groups,
        padding_mode=padding_mode,
        strategy=strategy,
        precision=precision,
        who=who,
    )
    bias = canonical_bias(bias, spec.kernel_shape[-1], ndim == spatial_dims, xc.dtype, who)
    return Canonical(xc, kc, bias, spec, layout, ndim)


def options_of(scope: dict[str, Any]) -> dict[str, Any]:
    """A public convolution's keyword arguments — its ``locals()`` on entry, less the operands."""
    return {name: value for name, value in scope.items() if name not in ("x", "kernel", "bias")}


def _convolve(
    x: Any, kernel: Any, bias: Any, spatial_dims: int, preferred_element_type: Any, **options: Any
) -> jax.Array:
    """``conv{spatial_dims}d``: canonicalise, run the jitted channels-last kernel, restore the caller's layout."""
    canon = canonicalize(
        x, kernel, bias, spatial_dims=spatial_dims, preferred_element_type=preferred_element_type, **options
    )
    out_dtype = check_preferred(preferred_element_type, f"conv{spatial_dims}d")
    return canon.restore(_conv_nhwc(canon.x, canon.kernel, canon.bias, canon.spec, out_dtype))


def conv2d(
    x: jax.typing.ArrayLike,
    kernel: jax.typing.ArrayLike,
    bias: jax.typing.ArrayLike | None = None,
    *,
    stride: int | tuple[int, int] = 1,
    padding: str | int | tuple[int, int] | tuple[tuple[int, int], tuple[int, int]] = "VALID",
    dilation: int | tuple[int, int] = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    layout: Layout = "NHWC",
    strategy: Strategy = "auto",
    precision: Any = None,
    preferred_element_type: Any = None,
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
        accumulated elementwise — for few channels and depthwise), ``"xla"`` (``lax.conv_general_dilated``),
        ``"fft"`` (the Fourier transforms multiplied: for large kernels; float32 rounding within
        ``eps * log2(P) * ||x|| * ||k||`` per output, ``P`` the padded image's positions) or ``"auto"`` (picked
        for speed). All give the same numbers, up to rounding.
      precision: passed to the contraction, as in ``lax.dot_general`` (``"direct"``'s elementwise products with
        at most 8 channels per group are exact and ignore it).
      preferred_element_type: ``None`` or the result dtype: a floating one (e.g. ``float32`` for ``bfloat16`` or
        ``float16`` operands: they are upcast to it first, exactly, and the result is not rounded back), or an
        integer one (e.g. ``int32`` for ``int8`` operands, which may then be integers, kernel included: XLA's
        convolution, accumulating in it, with any padding mode; forward only, integers have no gradient).

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
    return _convolve(x, kernel, bias, 2, **options_of(locals()))


def conv1d(
    x: jax.typing.ArrayLike,
    kernel: jax.typing.ArrayLike,
    bias: jax.typing.ArrayLike | None = None,
    *,
    stride: int | tuple[int] = 1,
    padding: str | int | tuple[int] | tuple[tuple[int, int]] = "VALID",
    dilation: int | tuple[int] = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    layout: Layout = "NWC",
    strategy: Strategy = "auto",
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
    """1-D cross-correlation of ``x`` with ``kernel``, plus ``bias``: :func:`conv2d` with one spatial dim.

    ``out[n, i, o] = bias[o] + sum_{a, c} xpad[n, i*s + a*d, g(o)*C/G + c] * kernel[a, c, o]``.

    Args:
      x: ``layout="NWC"``: ``[N, W, C]`` or ``[W, C]``; ``layout="NCW"``: ``[N, C, W]`` or ``[C, W]``; either: a plain
        ``[W]`` signal with a ``[K]`` kernel.
      kernel: floating. ``"NWC"``: ``[K, C // groups, O]`` (WIO); ``"NCW"``: ``[O, C // groups, K]`` (OIW, as
        PyTorch's ``conv1d``).
      bias, stride, padding, dilation, groups, padding_mode, strategy, precision, preferred_element_type: as
        :func:`conv2d`, with one entry
        (or one ``(low, high)`` pair) per spatial dim.
      layout: ``"NWC"`` or ``"NCW"``.

    Returns:
      ``[N, Wo, O]`` / ``[Wo, O]`` (NWC), ``[N, O, Wo]`` / ``[O, Wo]`` (NCW) or ``[Wo]``, with
      ``Wo = (W + low + high - (K-1)*d - 1) // s + 1``.

    Raises:
      ValueError, TypeError: as :func:`conv2d`.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jaxconv
      >>> jaxconv.conv1d(jnp.array([0., 1., 2., 3.]), jnp.array([1., -1.]))
      Array([-1., -1., -1.], dtype=float32)
      >>> jaxconv.conv1d(jnp.ones((2, 3, 10)), jnp.ones((4, 3, 5)), layout="NCW", padding=2, stride=2).shape
      (2, 4, 5)
    """
    return _convolve(x, kernel, bias, 1, **options_of(locals()))


def conv3d(
    x: jax.typing.ArrayLike,
    kernel: jax.typing.ArrayLike,
    bias: jax.typing.ArrayLike | None = None,
    *,
    stride: int | tuple[int, int, int] = 1,
    padding: str | int | tuple[int, int, int] | tuple[tuple[int, int], tuple[int, int], tuple[int, int]] = "VALID",
    dilation: int | tuple[int, int, int] = 1,
    groups: int = 1,
    padding_mode: PaddingMode = "zeros",
    layout: Layout = "NDHWC",
    strategy: Strategy = "auto",
    precision: Any = None,
    preferred_element_type: Any = None,
) -> jax.Array:
    """3-D cross-correlation of ``x`` with ``kernel``, plus ``bias``: :func:`conv2d` with three spatial dims.

    ``out[n, i, j, l, o] = bias[o] + sum_{a, b, e, c} xpad[n, i*sd + a*dd, j*sh + b*dh, l*sw + e*dw, g(o)*C/G + c]
    * kernel[a, b, e, c, o]``.

    Args:
      x: ``layout="NDHWC"``: ``[N, D, H, W, C]`` or ``[D, H, W, C]``; ``layout="NCDHW"``: ``[N, C, D, H, W]`` or
        ``[C, D, H, W]``; either: a plain ``[D, H, W]`` volume with a ``[KD, KH, KW]`` kernel.
      kernel: floating. ``"NDHWC"``: ``[KD, KH, KW, C // groups, O]`` (DHWIO); ``"NCDHW"``:
        ``[O, C // groups, KD, KH, KW]`` (OIDHW, as PyTorch's ``conv3d``).
      bias, stride, padding, dilation, groups, padding_mode, strategy, precision, preferred_element_type: as
        :func:`conv2d`, with three
        entries (or three ``(low, high)`` pairs), depth first.
      layout: ``"NDHWC"`` or ``"NCDHW"``.

    Returns:
      ``[N, Do, Ho, Wo, O]`` / ``[Do, Ho, Wo, O]`` (NDHWC), ``[N, O, Do, Ho, Wo]`` / ``[O, Do, Ho, Wo]`` (NCDHW) or
      ``[Do, Ho, Wo]``, each size as in :func:`conv2d`.

    Raises:
      ValueError, TypeError: as :func:`conv2d`.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jaxconv
      >>> jaxconv.conv3d(jnp.ones((4, 5, 6)), jnp.ones((2, 2, 2)))[0, 0]
      Array([8., 8., 8., 8., 8.], dtype=float32)
      >>> jaxconv.conv3d(jnp.ones((1, 6, 6, 6, 2)), jnp.ones((3, 3, 3, 1, 4)), groups=2, padding="SAME").shape
      (1, 6, 6, 6, 4)
    """
    return _convolve(x, kernel, bias, 3, **options_of(locals()))

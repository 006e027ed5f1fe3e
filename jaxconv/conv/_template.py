"""``match_template``: zero-mean normalised cross-correlation of a template with every window of an image.

scikit-image's ``feature.match_template`` (and OpenCV's ``TM_CCOEFF_NORMED`` on grey images), batched,
differentiable and on any device. For a window ``X`` of the (optionally padded) image and the template ``T``, both
``h x w x C`` blocks of ``n = h * w * C`` values,

``ncc = sum((X - mean X) * (T - mean T)) / sqrt(sum((X - mean X)^2) * sum((T - mean T)^2))``,

in ``[-1, 1]``, and ``0`` where the window or the template is flat. The cross term is one :func:`conv2d` (its
``"auto"`` strategy: the Fourier transform for large templates, where measured faster); the window's sum and sum
of squares are separable box sums by doubling (:func:`box_sums`), each summed from its own window's values only —
their rounding is relative to the window's own magnitude, not to the whole image's, as cumulative sums' would be.

Accuracy: the window's variance comes from ``sum(X^2) - sum(X)^2 / n`` (after centring by the image's mean), so a
score's rounding error is about ``eps`` over the window's variance relative to its mean square plus the image's;
below :data:`FLAT_TOLERANCE` ``* eps`` of that the window counts as flat and scores 0 (tests/test_template.py checks
both against scikit-image in float64).
"""

from __future__ import annotations

import functools
from typing import Any, Literal, get_args

import jax
import jax.numpy as jnp
from jax import lax

from jaxconv._checks import check_choice, fail
from jaxconv.conv._conv import conv2d

TemplateMode = Literal["constant", "edge", "reflect", "symmetric", "wrap"]
"""How ``match_template(pad_input=True)`` pads the image: NumPy's (and scikit-image's) padding modes."""
TEMPLATE_MODES: tuple[str, ...] = get_args(TemplateMode)

# A window (or the template) is flat where its sum of squared deviations is at most FLAT_TOLERANCE * eps times its
# sum of squares plus n times the image's mean square (both after centring by the image's mean): the rounding left by
# the box sums on a constant window is a few eps of the former, the Fourier cross term's a few eps of the latter.
FLAT_TOLERANCE = 64


def box_sums(x: jax.Array, size: int, axis: int = -1) -> jax.Array:
    """The sums of every ``size`` consecutive elements along ``axis``: length ``L`` → ``L - size + 1``.

    By doubling: the sums of ``1, 2, 4, ...`` consecutive elements, each two shifted copies of the previous added,
    and the window of ``size`` the sum of those its binary digits select — about ``2 log2(size)`` fused
    elementwise additions per element. Each sum adds up only values of its own window, pairwise (its rounding is
    relative to the window, not to the whole axis as a cumulative sum's would be).

    Examples:
      >>> box_sums(jnp.arange(6.0), 3)
      Array([ 3.,  6.,  9., 12.], dtype=float32)
      >>> box_sums(jnp.arange(6.0).reshape(3, 2), 2, axis=0)
      Array([[2., 4.],
             [6., 8.]], dtype=float32)
    """
    axis = axis % x.ndim
    out = x.shape[axis] - size + 1
    total: jax.Array | None = None
    offset, power, width = 0, x, 1  # power: the sums of `width` consecutive elements
    while True:
        if size & width:
            part = lax.slice_in_dim(power, offset, offset + out, axis=axis)
            total = part if total is None else total + part
            offset += width
        if 2 * width > size:
            assert total is not None
            return total
        n = power.shape[axis]
        power = lax.slice_in_dim(power, 0, n - width, axis=axis) + lax.slice_in_dim(power, width, n, axis=axis)
        width *= 2


@functools.partial(jax.jit, static_argnames=("pad_input", "mode", "constant_values"))
def _match(image: jax.Array, template: jax.Array, pad_input: bool, mode: str, constant_values: float) -> jax.Array:
    """:func:`match_template` on a checked ``[..., H, W, C]`` image and ``[h, w, C]`` template of one float dtype.

    On CPU a batch is scored one image at a time (``lax.map``), so that each image's intermediates stay in cache
    (measured faster on 16 images of 1024^2 here); elsewhere all at once.
    """
    *lead, height, width, channels = image.shape
    x = image.reshape(-1, height, width, channels)
    if x.shape[0] > 1 and jax.default_backend() == "cpu":
        out = lax.map(lambda one: _scores(one[None], template, pad_input, mode, constant_values)[0], x)
    else:
        out = _scores(x, template, pad_input, mode, constant_values)
    return out.reshape(*lead, *out.shape[1:])


def _scores(x: jax.Array, template: jax.Array, pad_input: bool, mode: str, constant_values: float) -> jax.Array:
    """The scores ``[N, Ho, Wo]`` of ``[N, H, W, C]`` images."""
    h, w, channels = template.shape
    if pad_input:
        fill = {"constant_values": constant_values} if mode == "constant" else {}
        x = jnp.pad(x, ((0, 0), (h // 2, (h - 1) // 2), (w // 2, (w - 1) // 2), (0, 0)), mode=mode, **fill)
    # Centred by the (padded) image's mean, which changes no window's deviations: sums of squares stay small.
    x = x - lax.stop_gradient(x.mean(axis=(1, 2, 3), keepdims=True))
    n = h * w * channels
    deviation = template - template.mean()
    ssd = jnp.sum(deviation**2)
    cross = conv2d(x, deviation[..., None])[..., 0]  # [N, Ho, Wo]

    # The window sums of the values and of their squares, together: [2, N, Hp, Wp] -> [2, N, Ho, Wo].
    s1, s2 = box_sums(box_sums(jnp.stack([x.sum(-1), (x**2).sum(-1)]), w, axis=3), h, axis=2)
    spread = s2 - s1**2 / n  # n times the window's variance
    tol = FLAT_TOLERANCE * jnp.finfo(x.dtype).eps
    scale = lax.stop_gradient(jnp.mean(x**2, axis=(1, 2, 3), keepdims=True)[..., 0])
    flat = (spread <= tol * (s2 + n * scale)) | (ssd <= tol * jnp.sum(template**2))
    denominator = jnp.sqrt(jnp.where(flat, 1, spread * ssd))  # never the root of 0: gradients stay finite
    return jnp.where(flat, 0, jnp.clip(cross / denominator, -1, 1))


def _array(name: str, value: Any) -> jax.Array:
    try:
        array = jnp.asarray(value)
    except (TypeError, ValueError) as err:
        raise fail("match_template", name, "an array of numbers", type(value).__name__, TypeError) from err
    if not (jnp.issubdtype(array.dtype, jnp.number) or array.dtype == jnp.bool_) or jnp.iscomplexobj(array):
        raise fail("match_template", name, "an array of bool, integer or floating dtype", array.dtype, TypeError)
    return array


def match_template(
    image: jax.typing.ArrayLike,
    template: jax.typing.ArrayLike,
    *,
    pad_input: bool = False,
    mode: TemplateMode = "constant",
    constant_values: float = 0.0,
) -> jax.Array:
    """Zero-mean normalised cross-correlation of ``template`` with every window of ``image``, in ``[-1, 1]``.

    scikit-image's ``feature.match_template``: output ``(i, j)`` is
    ``sum((X - mean X) * (T - mean T)) / sqrt(sum((X - mean X)^2) * sum((T - mean T)^2))`` over the ``h x w`` (x
    ``C``) window ``X`` starting at ``(i, j)`` — at ``(i - h // 2, j - w // 2)`` with ``pad_input``, where the image
    is padded by ``h // 2`` above and ``(h - 1) // 2`` below (likewise for width) and the padded values count in the
    window's mean and variance. A flat window (or a constant template) gives 0: in float32 "flat" means a window
    variance below about ``64 * eps`` of its own mean square or of the image's (the rounding the sums leave there).
    Equal to OpenCV's ``TM_CCOEFF_NORMED`` on grey images wherever that is defined (windows not flat).

    Args:
      image: ``[..., H, W]`` (grey, with a ``[h, w]`` template) or ``[..., H, W, C]`` (with a ``[h, w, C]``
        template); leading dims are a batch. Bool and integer images are promoted to float32.
      template: ``[h, w]`` or ``[h, w, C]``, ``h <= H``, ``w <= W``. A colour window and template are compared as
        whole ``h x w x C`` blocks (one mean and one variance, as scikit-image's 3-D result).
      pad_input: whether to pad the image so that the output has the image's size, each output centred on its
        window (``False``: the ``H - h + 1`` by ``W - w + 1`` windows inside the image).
      mode: with ``pad_input``, NumPy's padding mode: ``"constant"``, ``"edge"``, ``"reflect"``, ``"symmetric"``
        or ``"wrap"``.
      constant_values: the padding value for ``mode="constant"``.

    Returns:
      ``[..., H - h + 1, W - w + 1]``, or ``[..., H, W]`` with ``pad_input``; the floating dtype of the operands
      (at least float32). Differentiable (finite gradients on flat windows too), and ``jit``/``vmap``-safe.

    Raises:
      ValueError: a template rank other than 2 or 3, an image of too low a rank, channels that differ, a template
        larger than the image, an empty template, an unknown ``mode``.
      TypeError: an operand that is not an array of numbers, a ``pad_input`` that is not a bool, a
        ``constant_values`` that is not a number.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jaxconv
      >>> image = jnp.zeros((5, 6)).at[2:4, 3:5].set(jnp.array([[1.0, 2.0], [3.0, 5.0]]))
      >>> score = jaxconv.match_template(image, jnp.array([[2.0, 4.0], [6.0, 10.0]]))
      >>> score.shape, [int(i) for i in jnp.unravel_index(jnp.argmax(score), score.shape)], round(float(score.max()), 5)
      ((4, 5), [2, 3], 1.0)
      >>> jaxconv.match_template(jnp.ones((2, 8, 8, 3)), jnp.ones((3, 3, 3)), pad_input=True).shape
      (2, 8, 8)
    """
    who = "match_template"
    image, template = _array("image", image), _array("template", template)
    if template.ndim not in (2, 3):
        raise fail(who, "template", "of rank 2 [h, w] or 3 [h, w, C]", template.shape)
    if image.ndim < template.ndim:
        raise fail(who, "image", f"of rank >= {template.ndim} for a rank-{template.ndim} template", image.shape)
    if template.ndim == 3 and image.shape[-1] != template.shape[-1]:
        raise fail(who, "template", f"[h, w, C] with the image's C = {image.shape[-1]} channels", template.shape)
    spatial = image.shape[image.ndim - template.ndim :][:2]
    if min(template.shape) < 1 or any(t > s for t, s in zip(template.shape[:2], spatial, strict=True)):
        raise fail(who, "template", f"non-empty and no larger than the image's (H, W) = {spatial}", template.shape)
    if not isinstance(pad_input, bool):
        raise fail(who, "pad_input", "a bool", pad_input, TypeError)
    check_choice(who, "mode", mode, TEMPLATE_MODES)
    if isinstance(constant_values, bool) or not isinstance(constant_values, (int, float)):
        raise fail(who, "constant_values", "a number", constant_values, TypeError)
    dtype = jnp.result_type(*(a.dtype for a in (image, template) if jnp.issubdtype(a.dtype, jnp.floating)), jnp.float32)
    if template.ndim == 2:
        image, template = image[..., None], template[..., None]
    return _match(image.astype(dtype), template.astype(dtype), pad_input, mode, float(constant_values))

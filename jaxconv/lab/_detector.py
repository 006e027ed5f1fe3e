"""The detector: one kernel and a bias per pattern, its logit map, and the loss that trains it.

Decision rule, everywhere in jaxconv: the logit map is ``conv2d(image, kernel) + bias`` (VALID, NHWC,
kernel HWIO ``[KH, KW, 1, K]``: one output channel per pattern), and a detection of pattern ``k`` at output
``(i, j)`` means logit ``> 0`` there. For one pattern (K = 1) the channel axis is dropped: ``[B, Ho, Wo]``.

Two alternatives to weight sharing give a logit map of the same shape, so that the same loss, training loop
and evaluation take them (:data:`MODELS`; which one a params dict is, its keys say — :func:`model_of`):

- ``"conv"``: ``{"kernel": [KH, KW, 1, K], "bias": [K]}``, one kernel slid everywhere (the default);
- ``"local"``: ``{"kernels": [Ho, Wo, KH, KW, 1, K], "bias": [Ho, Wo, K]}``, a locally connected layer (one
  ``KH x KW`` filter and bias per output position, :func:`jaxconv.local_conv2d`): the same windows, no sharing;
- ``"dense"``: ``{"matrix": [H * W, Ho * Wo * K], "bias": [Ho, Wo, K]}``, one weight matrix from the whole image
  to the whole logit map: no windows and no sharing.
"""

from __future__ import annotations

from typing import Any, Literal, get_args

import jax
import jax.numpy as jnp
import numpy as np

from jaxconv._checks import check_choice, check_int, fail, is_int
from jaxconv.conv._conv import conv2d
from jaxconv.conv._local import local_conv2d

Params = dict[str, jax.Array]
"""``{"kernel": [KH, KW, 1, K] (HWIO), "bias": [K]}``, K the number of patterns (or a ``"local"`` or ``"dense"``
detector's dict, see the module's docstring)."""

Model = Literal["conv", "local", "dense"]
MODELS: tuple[str, ...] = get_args(Model)
WEIGHTS = {"conv": "kernel", "local": "kernels", "dense": "matrix"}
"""The key of each model's weights (the entry besides ``"bias"``)."""

Loss = Literal["hard_negative", "balanced", "bce", "mse"]
LOSSES: tuple[str, ...] = get_args(Loss)

HARD_NEGATIVES_PER_POSITIVE = 3


def init_params(
    key: jax.Array,
    kernel_shape: tuple[int, int],
    num_patterns: int = 1,
    *,
    model: str = "conv",
    image_shape: tuple[int, int] | None = None,
) -> Params:
    """Random weights scaled by their fan-in and a zero bias: a detector of ``model`` for ``num_patterns`` patterns.

    Every logit starts as a sum of ``F`` weights of std ``1 / sqrt(F)`` over its inputs, ``F`` its fan-in:
    ``KH * KW`` for a ``"conv"`` kernel and for each of a ``"local"`` detector's filters, ``H * W`` (the whole
    image) for a ``"dense"`` matrix — so each starts with logits of the same scale on the same images.

    Args:
      key: a PRNG key.
      kernel_shape: ``(KH, KW)``, the window of one output (``"dense"``: only its output map's size,
        ``Ho, Wo = H - KH + 1, W - KW + 1``).
      num_patterns: ``K >= 1``, the output channels.
      model: one of :data:`MODELS`.
      image_shape: ``(H, W)``, at least ``kernel_shape``; needed by ``"local"`` and ``"dense"``.

    Returns:
      float32 ``{"kernel": [KH, KW, 1, K], "bias": [K]}`` (``"conv"``), ``{"kernels": [Ho, Wo, KH, KW, 1, K],
      "bias": [Ho, Wo, K]}`` (``"local"``) or ``{"matrix": [H * W, Ho * Wo * K], "bias": [Ho, Wo, K]}``
      (``"dense"``).

    Raises:
      ValueError: ``kernel_shape`` is not a pair of ints ``>= 1``; ``num_patterns < 1``; an unknown ``model``;
        ``image_shape`` missing or smaller than the kernel for ``"local"`` or ``"dense"``.
      TypeError: ``num_patterns`` is not an int.

    Examples:
      >>> import jax
      >>> from jaxconv import init_params
      >>> params = init_params(jax.random.key(0), (2, 3))
      >>> params["kernel"].shape, params["bias"].tolist()
      ((2, 3, 1, 1), [0.0])
      >>> local = init_params(jax.random.key(0), (2, 3), model="local", image_shape=(5, 6))
      >>> local["kernels"].shape, local["bias"].shape
      ((4, 4, 2, 3, 1, 1), (4, 4, 1))
      >>> init_params(jax.random.key(0), (2, 3), model="dense", image_shape=(5, 6))["matrix"].shape
      (30, 16)
    """
    kh, kw = check_kernel_shape(kernel_shape)
    k = check_int("init_params", "num_patterns", num_patterns, low=1)
    check_choice("init_params", "model", model, MODELS)
    if model == "conv":
        kernel = jax.random.normal(key, (kh, kw, 1, k), jnp.float32) / np.sqrt(kh * kw)
        return {"kernel": kernel, "bias": jnp.zeros((k,), jnp.float32)}
    if not (
        isinstance(image_shape, (tuple, list))
        and len(image_shape) == 2
        and all(is_int(v) and v >= d for v, d in zip(image_shape, (kh, kw), strict=True))
    ):
        raise fail("init_params", "image_shape", f"a pair (H, W) of ints >= the kernel's {(kh, kw)}", image_shape)
    h, w = int(image_shape[0]), int(image_shape[1])
    ho, wo = h - kh + 1, w - kw + 1
    bias = jnp.zeros((ho, wo, k), jnp.float32)
    if model == "local":
        return {"kernels": jax.random.normal(key, (ho, wo, kh, kw, 1, k), jnp.float32) / np.sqrt(kh * kw), "bias": bias}
    return {"matrix": jax.random.normal(key, (h * w, ho * wo * k), jnp.float32) / np.sqrt(h * w), "bias": bias}


def model_of(params: Any) -> str:
    """Which of :data:`MODELS` a params dict is, from its keys (see the module's docstring).

    Raises:
      TypeError: ``params`` is not a dict of ``"bias"`` and one of ``"kernel"``, ``"kernels"``, ``"matrix"``.

    Examples:
      >>> from jaxconv.lab._detector import model_of
      >>> model_of({"kernel": 0, "bias": 0}), model_of({"matrix": 0, "bias": 0})
      ('conv', 'dense')
    """
    if isinstance(params, dict) and len(params) == 2 and "bias" in params:
        for model, weights in WEIGHTS.items():
            if weights in params:
                return model
    got = sorted(params) if isinstance(params, dict) else type(params).__name__
    raise TypeError(
        f"`params` must be a dict with keys 'bias' and one of 'kernel' (conv), 'kernels' (local), 'matrix' (dense); "
        f"got {got}"
    )


def window_shape(params: Params, image_shape: tuple[int, int]) -> tuple[int, int]:
    """``(KH, KW)`` such that ``params``'s logit map on ``[H, W]`` images is ``[H - KH + 1, W - KW + 1]``: its
    kernel's shape (``"conv"``, ``"local"``), or what its output map leaves of the image (``"dense"``).

    Examples:
      >>> import jax
      >>> from jaxconv import init_params
      >>> from jaxconv.lab._detector import window_shape
      >>> window_shape(init_params(jax.random.key(0), (2, 3), model="dense", image_shape=(5, 6)), (5, 6))
      (2, 3)
    """
    model = model_of(params)
    if model == "conv":
        return tuple(params["kernel"].shape[:2])  # type: ignore[return-value]
    if model == "local":
        return tuple(params["kernels"].shape[2:4])  # type: ignore[return-value]
    ho, wo = params["bias"].shape[:2]
    return image_shape[0] - ho + 1, image_shape[1] - wo + 1


def check_kernel_shape(
    kernel_shape: Any, pattern_shape: tuple[int, int] | None = None, fn: str = "init_params"
) -> tuple[int, int]:
    """Returns ``kernel_shape`` as ``(KH, KW)``; raises ``ValueError`` naming it (as an argument of ``fn``) if it
    is not allowed.

    A kernel must be a pair of ints ``>= 1`` and, when ``pattern_shape`` is given, at least that big.
    """
    ok = (
        isinstance(kernel_shape, (tuple, list))
        and len(kernel_shape) == 2
        and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in kernel_shape)
    )
    if not ok:
        raise fail(fn, "kernel_shape", "a pair (KH, KW) of ints >= 1", kernel_shape)
    kh, kw = int(kernel_shape[0]), int(kernel_shape[1])
    if pattern_shape is not None and (kh < pattern_shape[0] or kw < pattern_shape[1]):
        raise fail(fn, "kernel_shape", f"at least the pattern's shape {pattern_shape}", (kh, kw))
    return kh, kw


def logit_map(params: Params, images: jax.typing.ArrayLike) -> jax.Array:
    """The detector's logits over VALID positions: ``conv2d(images, kernel) + bias`` for a ``"conv"`` detector,
    ``local_conv2d(images, kernels) + bias`` for a ``"local"`` one, ``images @ matrix + bias`` for a ``"dense"`` one.

    Args:
      params: a detector (:func:`init_params`; :func:`model_of` tells which).
      images: ``[B, H, W, 1]``.

    Returns:
      ``[B, H - KH + 1, W - KW + 1]`` for K = 1, ``[B, H - KH + 1, W - KW + 1, K]`` for K > 1; a detection is a
      logit ``> 0``.

    Raises:
      TypeError: ``params`` is none of the detectors.
      ValueError: shapes that ``conv2d`` or ``local_conv2d`` reject, or images that are not ``[B, H, W, 1]`` with
        ``H * W`` a ``"dense"`` matrix's rows (the message names the argument).

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxconv import logit_map
      >>> params = {"kernel": jnp.array([[1.0, -1.0]]).reshape(1, 2, 1, 1), "bias": jnp.array([-0.5])}
      >>> logit_map(params, jnp.array([[1.0, 0.0, 1.0]]).reshape(1, 1, 3, 1))
      Array([[[ 0.5, -1.5]]], dtype=float32)
      >>> dense = {"matrix": jnp.array([[1.0, 0.0], [0.0, 1.0], [0.0, -1.0]]), "bias": jnp.zeros((1, 2, 1))}
      >>> logit_map(dense, jnp.array([[1.0, 0.0, 1.0]]).reshape(1, 1, 3, 1))
      Array([[[ 1., -1.]]], dtype=float32)
    """
    model = model_of(params)
    if model == "conv":
        logits = conv2d(images, params["kernel"], params["bias"])
    elif model == "local":
        logits = local_conv2d(images, params["kernels"], params["bias"])
    else:
        images = jnp.asarray(images)
        matrix, bias = params["matrix"], params["bias"]
        if images.ndim != 4 or images.shape[3] != 1 or images.shape[1] * images.shape[2] != matrix.shape[0]:
            raise fail(
                "logit_map",
                "images",
                f"[B, H, W, 1] with H * W = {matrix.shape[0]} (the matrix's rows)",
                f"shape {images.shape}",
            )
        logits = (images.reshape(images.shape[0], -1) @ matrix).reshape(-1, *bias.shape) + bias[None]
    return logits[..., 0] if logits.shape[-1] == 1 else logits


def crop_targets(
    targets: jax.Array, pattern_shape: tuple[int, int], kernel_shape: tuple[int, int], *, per_pattern: bool = False
) -> jax.Array:
    """Targets ``[..., Ho, Wo]`` (pattern top-left corners) re-indexed to a possibly larger kernel's outputs.

    A ``KH x KW`` kernel's output ``(i, j)`` is responsible for the pattern whose top-left corner is at
    ``(i + (KH - PH) // 2, j + (KW - PW) // 2)`` (the pattern centred in the kernel); occurrences the kernel
    cannot see whole are dropped.

    Args:
      targets: ``[..., H - PH + 1, W - PW + 1]``.
      pattern_shape: ``(PH, PW)``.
      kernel_shape: ``(KH, KW)``, at least ``(PH, PW)``.
      per_pattern: the targets are ``[..., Ho, Wo, K]`` (one map per pattern, K > 1), cropped alike.

    Returns:
      ``[..., H - KH + 1, W - KW + 1]`` (``[..., H - KH + 1, W - KW + 1, K]`` with ``per_pattern``).

    Raises:
      ValueError: the kernel is smaller than the pattern.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxconv.lab._detector import crop_targets
      >>> crop_targets(jnp.eye(4), (1, 1), (3, 3))
      Array([[1., 0.],
             [0., 1.]], dtype=float32)
    """
    kh, kw = check_kernel_shape(kernel_shape, pattern_shape)
    dh, dw = kh - pattern_shape[0], kw - pattern_shape[1]
    if dh == dw == 0:
        return targets
    last = 1 if per_pattern else 0
    ho, wo = targets.shape[-2 - last] - dh, targets.shape[-1 - last] - dw
    window = (slice(dh // 2, dh // 2 + ho), slice(dw // 2, dw // 2 + wo))
    index = (Ellipsis,) + window + (slice(None),) * last
    return targets[index]


def detection_loss(
    logits: jax.typing.ArrayLike,
    targets: jax.typing.ArrayLike,
    *,
    loss: str = "hard_negative",
    per_pattern: bool = False,
) -> jax.Array:
    """Binary cross-entropy of a logit map against a 0/1 target map, with the class imbalance handled.

    Positives are a fraction of a percent of positions, so plain BCE (``"bce"``, the mean over all
    positions) is dominated by easy negatives: it drives the bias down first and, at a modest step budget,
    ends with recall 0. ``"balanced"`` weighs the classes equally —
    ``0.5 * (mean_pos softplus(-z) + mean_neg softplus(z))`` — but then each positive outweighs a near miss
    (the pattern with one pixel wrong) hundreds of times, and the threshold settles among the near misses
    (false alarms) until the kernel's scale has grown a lot. ``"hard_negative"`` (the default, SSD-style
    hard-negative mining) keeps the positives' mean but averages the negatives' loss over only the
    ``3 * P`` largest (``P`` positives in the batch, at least 1): the near misses, which decide the threshold.
    ``"mse"`` is not a detection loss but least-squares regression of the logit map onto the 0/1 target map,
    ``mean((z - t)^2)`` (its natural threshold is 0.5, not 0): the loss whose optimum has a closed form
    (:func:`jaxconv.least_squares_kernel`).

    With ``per_pattern``, the last axis indexes K patterns, and the loss is the mean over ``k`` of each
    pattern's loss on ``logits[..., k]`` against ``targets[..., k]``: each pattern's negatives include the
    other patterns' positions, so a kernel that fires on another pattern is penalised.

    Args:
      logits: ``[...]`` (``[..., K]`` with ``per_pattern``).
      targets: same shape, 0 or 1.
      loss: one of :data:`LOSSES`.
      per_pattern: average the loss over the last axis' K patterns, each taken alone.

    Returns:
      A scalar.

    Raises:
      ValueError: an unknown ``loss`` or mismatched shapes.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxconv import detection_loss
      >>> z = jnp.array([2.0, 1.0, -2.0, -2.0, -2.0, -2.0, -3.0])
      >>> t = jnp.array([1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0])
      >>> [round(float(detection_loss(z, t, loss=name)), 4) for name in ("hard_negative", "balanced", "bce")]
      [0.3247, 0.2193, 0.2852]
      >>> two = jnp.stack([z, -z], axis=-1), jnp.stack([t, 1 - t], axis=-1)
      >>> bool(detection_loss(*two, per_pattern=True) == (detection_loss(z, t) + detection_loss(-z, 1 - t)) / 2)
      True
    """
    if loss not in LOSSES:
        raise ValueError(f"detection_loss: `loss` must be one of {LOSSES}; got {loss!r}")
    logits = jnp.asarray(logits)
    targets = jnp.asarray(targets, logits.dtype)
    if logits.shape != targets.shape:
        raise ValueError(f"detection_loss: `targets` must have the logits' shape {logits.shape}; got {targets.shape}")
    if per_pattern:
        if logits.ndim < 1:
            raise ValueError("`logits` must have a last axis of K patterns with `per_pattern`; got a scalar")
        return jnp.mean(jax.vmap(lambda z, t: _one_loss(z, t, loss), in_axes=(-1, -1))(logits, targets))
    return _one_loss(logits, targets, loss)


def _one_loss(logits: jax.Array, targets: jax.Array, loss: str) -> jax.Array:
    if loss == "mse":
        return jnp.mean((logits - targets) ** 2)
    on, off = jax.nn.softplus(-logits), jax.nn.softplus(logits)
    if loss == "bce":
        return jnp.mean(targets * on + (1 - targets) * off)
    positives = jnp.sum(targets)
    positive_term = jnp.sum(targets * on) / jnp.maximum(positives, 1)
    if loss == "balanced":
        return 0.5 * (positive_term + jnp.sum((1 - targets) * off) / jnp.maximum(jnp.sum(1 - targets), 1))
    negatives = ((1 - targets) * off).reshape(-1)
    keep = jnp.minimum(jnp.maximum(HARD_NEGATIVES_PER_POSITIVE * positives, 1), negatives.size)
    return 0.5 * (positive_term + sum_of_largest(negatives, keep) / keep)


def sum_of_largest(values: jax.Array, k: jax.Array) -> jax.Array:
    """The sum of the ``k`` largest entries of ``values``, ``k`` traced, without a sort.

    A bisection on the threshold (64 halvings: down to adjacent float32 values) finds ``t`` with fewer than
    ``k`` entries above it; those are summed, and the remaining ``k - count`` are taken from the entries tied
    at the threshold, each weighted equally — the same value as a sort's, and the symmetric choice of
    gradient among tied entries. A full sort of every position in a batch costs far more than the rest of a
    training step; this is ``64`` cheap passes.

    Args:
      values: ``[N]`` float, ``>= 0``.
      k: ``[]`` number of entries, ``1 <= k <= N``.

    Returns:
      A scalar.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxconv.lab._detector import sum_of_largest
      >>> float(sum_of_largest(jnp.array([0.5, 3.0, 1.0, 3.0, 2.0]), jnp.array(3.0)))
      8.0
    """
    k = jnp.asarray(k, values.dtype)
    fixed = jax.lax.stop_gradient(values)

    def halve(_: Any, bounds: tuple[jax.Array, jax.Array]) -> tuple[jax.Array, jax.Array]:
        low, high = bounds  # invariant: count(> low) >= k > count(> high)
        middle = 0.5 * (low + high)
        enough = jnp.sum(fixed > middle) >= k
        return jnp.where(enough, middle, low), jnp.where(enough, high, middle)

    start = (jnp.min(fixed) - 1, jnp.max(fixed))
    low, high = jax.lax.fori_loop(0, 64, halve, start)
    above = fixed > high
    tied = (fixed > low) & ~above
    share = (k - jnp.sum(above)) / jnp.maximum(jnp.sum(tied), 1)
    return jnp.sum(jnp.where(above, values, 0)) + share * jnp.sum(jnp.where(tied, values, 0))


__all__ = [
    "Params",
    "Model",
    "MODELS",
    "WEIGHTS",
    "model_of",
    "window_shape",
    "LOSSES",
    "HARD_NEGATIVES_PER_POSITIVE",
    "init_params",
    "check_kernel_shape",
    "logit_map",
    "crop_targets",
    "detection_loss",
    "sum_of_largest",
]

"""Judging a detector: counts at logit > 0, average precision, kernel cosine, and the optimum to beat.

:func:`evaluate` scores any ``{"kernel", "bias"}`` detector on held-out images: they come from PRNG stream
``"held_out"`` (:mod:`jaxconv.lab._streams`), which training never draws from. :func:`matched_filter` is the
optimal linear detector for a task, in the same format, so every learned detector can be shown beside it.
"""

from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxconv._checks import check_int
from jaxconv.lab._data import PlantedPatternTask, TaskValues
from jaxconv.lab._detector import (
    WEIGHTS,
    Params,
    check_kernel_shape,
    crop_targets,
    logit_map,
    model_of,
    window_shape,
)
from jaxconv.lab._streams import stream

_EVAL_CHUNK = 250


def average_precision(scores: jax.typing.ArrayLike, labels: jax.typing.ArrayLike) -> float:
    """Threshold-free average precision: ``sum_k (R_k - R_{k-1}) * P_k`` over the distinct score thresholds.

    Tied scores enter together (as scikit-learn's ``average_precision_score``), so a detector that cannot
    rank a positive above a tied negative gets no credit for it.

    Args:
      scores: ``[...]`` real scores, higher = more likely positive.
      labels: same shape, 0 or 1.

    Returns:
      The AP in ``[0, 1]``; ``nan`` when there are no positives.

    Raises:
      ValueError: mismatched shapes or labels other than 0/1.

    Examples:
      >>> from jaxconv.lab import average_precision
      >>> average_precision([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0])
      0.8333333333333333
      >>> average_precision([1.0, 1.0, 0.0], [1, 0, 0])
      0.5
    """
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    y = np.asarray(labels, dtype=np.float64).reshape(-1)
    if s.shape != y.shape:
        raise ValueError(f"average_precision: `labels` must have the scores' size {s.size}; got {y.size}")
    if not np.all((y == 0) | (y == 1)):
        raise ValueError("`labels` must be 0 or 1")
    positives = y.sum()
    if positives == 0:
        return math.nan
    order = np.argsort(-s, kind="stable")
    s, y = s[order], y[order]
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # last index of each group of tied scores
    tp = np.cumsum(y)[last]
    fp = (last + 1) - tp
    precision, recall = tp / (tp + fp), tp / positives
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def kernel_cosine(kernel: jax.typing.ArrayLike, pattern: jax.typing.ArrayLike) -> float:
    """Cosine between the mean-subtracted kernel and the mean-subtracted pattern (1.0 = the pattern up to scale
    and offset); for a constant pattern (a solid block of 1s), the plain cosine of the two.

    For a kernel larger than the pattern, the best placement: at each offset the kernel's window is
    mean-subtracted, its weights outside the window are kept as they are (ideally 0), and the largest cosine wins.

    Args:
      kernel: ``[KH, KW]`` or ``[KH, KW, 1, 1]``.
      pattern: ``[PH, PW]`` with ``PH <= KH``, ``PW <= KW``, not all zeros.

    Returns:
      A float in ``[-1, 1]`` (0.0 for a constant kernel against a non-constant pattern).

    Raises:
      ValueError: bad shapes or an all-zero pattern.

    Examples:
      >>> from jaxconv.lab import kernel_cosine
      >>> kernel_cosine([[3.0, 3.0, -1.0], [3.0, -1.0, -1.0]], [[1, 1, 0], [1, 0, 0]])
      1.0
      >>> round(kernel_cosine([[0, 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0]], [[1, 0], [0, 1]]), 6)
      1.0
    """
    return float(np.clip(_placement_cosines(kernel, pattern).max(), -1.0, 1.0))


def _placement_cosines(kernel: Any, pattern: Any) -> np.ndarray:
    """``[KH - PH + 1, KW - PW + 1]``: :func:`kernel_cosine` with the pattern at each offset in the kernel."""
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim == 4 and k.shape[2:] == (1, 1):
        k = k[:, :, 0, 0]
    p = np.asarray(pattern, dtype=np.float64)
    if k.ndim != 2 or p.ndim != 2:
        raise ValueError(f"kernel_placement: `kernel` and `pattern` must be 2-D; got shapes {k.shape} and {p.shape}")
    if p.shape[0] > k.shape[0] or p.shape[1] > k.shape[1]:
        raise ValueError(f"kernel_placement: `kernel` must be at least the pattern's shape {p.shape}; got {k.shape}")
    pc = p - p.mean()
    if not np.any(p):
        raise ValueError("`pattern` must not be all zeros")
    centre = bool(np.any(pc))  # a constant pattern (a solid block of 1s) is compared without centring
    pc = pc if centre else p
    ph, pw = p.shape
    cosines = np.zeros((k.shape[0] - ph + 1, k.shape[1] - pw + 1))
    for a in range(cosines.shape[0]):
        for b in range(cosines.shape[1]):
            kc = k.copy()
            if centre:
                kc[a : a + ph, b : b + pw] -= kc[a : a + ph, b : b + pw].mean()
            norm = np.linalg.norm(kc)
            if norm > 0:
                cosines[a, b] = float(np.sum(kc[a : a + ph, b : b + pw] * pc) / (norm * np.linalg.norm(pc)))
    return cosines


def kernel_placement(kernel: jax.typing.ArrayLike, pattern: jax.typing.ArrayLike) -> dict[str, Any]:
    """Where a kernel larger than the pattern holds it, and how much of the kernel lies outside that window.

    The best placement is the offset with the largest :func:`kernel_cosine`; ``outside_energy`` is the share
    of the kernel's energy ``sum k^2`` outside the ``PH x PW`` window there (0: the kernel localises on the
    pattern; a random kernel has about ``1 - PH PW / (KH KW)``), and ``outside_max_ratio`` is
    ``max |k outside| / max |k inside|``.

    Args:
      kernel: ``[KH, KW]`` or ``[KH, KW, 1, 1]``.
      pattern: ``[PH, PW]``, ``PH <= KH``, ``PW <= KW``, non-constant.

    Returns:
      ``{"offset": (row, col), "cosine": float, "outside_energy": float, "outside_max_ratio": float}``.

    Raises:
      ValueError: bad shapes or a constant pattern.

    Examples:
      >>> from jaxconv.lab._metrics import kernel_placement
      >>> kernel = [[0, 0, 0, 0], [0, 2, -2, 0.5], [0, -2, 2, 0]]
      >>> p = kernel_placement(kernel, [[1, 0], [0, 1]])
      >>> p["offset"], round(p["cosine"], 3), round(p["outside_energy"], 4), p["outside_max_ratio"]
      ((1, 1), 0.992, 0.0154, 0.25)
    """
    cosines = _placement_cosines(kernel, pattern)
    a, b = (int(v) for v in np.unravel_index(np.argmax(cosines), cosines.shape))
    k = np.asarray(kernel, dtype=np.float64).reshape(np.shape(kernel)[:2])
    ph, pw = np.shape(pattern)
    inside = np.zeros(k.shape, bool)
    inside[a : a + ph, b : b + pw] = True
    total = float(np.sum(k**2))
    top = float(np.abs(k[inside]).max())
    return {
        "offset": (a, b),
        "cosine": float(np.clip(cosines[a, b], -1.0, 1.0)),
        "outside_energy": float(np.sum(k[~inside] ** 2)) / total if total > 0 else 0.0,
        "outside_max_ratio": float(np.abs(k[~inside]).max(initial=0.0)) / top if top > 0 else 0.0,
    }


def matched_filter(task: PlantedPatternTask, kernel_shape: tuple[int, int] | None = None) -> Params:
    """The optimal linear detector for ``task``, in the learned detector's format.

    Binary background: the ±1 template ``2p - 1`` with bias ``0.5 - sum(p)`` — logit ``+0.5`` on an exact
    match and ``<= -0.5`` anywhere else, so it finds every occurrence with F1 = 1. Gaussian white noise: the
    pattern itself, scaled to the log-likelihood ratio, ``kernel = A p / s^2`` with bias
    ``-A^2 |p|^2 / (2 s^2) + log(pi / (1 - pi))`` (``pi``: the prior share of positive positions), so logit > 0
    is the MAP decision at each position taken alone.

    It is a ``"conv"`` detector: the ``"local"`` and ``"dense"`` detectors (:data:`~jaxconv.lab._detector.MODELS`)
    are compared with it by their :func:`evaluate` scores only (held-out F1 and AP), not weight by weight — the
    kernel cosine, :func:`worst_case` and the closed-form theory (:mod:`jaxconv.theory`) are about one shared
    kernel and say nothing of them.

    With K > 1 patterns: each pattern's own matched filter, side by side (kernel ``k`` has zeros on pattern
    ``k``'s padding, so on a binary background it fires on exactly the exact occurrences of pattern ``k``).
    Each is optimal for its pattern against the background alone — not against the *other* patterns, which
    it may fire on (a ring holds a hedge's ones).

    Args:
      task: the :class:`PlantedPatternTask`.
      kernel_shape: ``(KH, KW)`` to embed the template in (centred, zeros around), as a larger learned
        kernel would be; default the (common) pattern shape.

    Returns:
      ``{"kernel": [KH, KW, 1, K], "bias": [K]}`` float32.

    Raises:
      TypeError: ``task`` is not a :class:`PlantedPatternTask`.
      ValueError: ``kernel_shape`` smaller than the pattern.

    Examples:
      >>> import jaxconv
      >>> mf = jaxconv.matched_filter(jaxconv.PlantedPatternTask("seed"))
      >>> mf["kernel"][:, :, 0, 0], mf["bias"]
      (Array([[ 1.,  1., -1.],
             [ 1., -1., -1.]], dtype=float32), Array([-2.5], dtype=float32))
      >>> mf = jaxconv.matched_filter(jaxconv.PlantedPatternTask(patterns=("vedge", "hedge")))
      >>> mf["kernel"][:, :, 0, 1].tolist(), mf["bias"].tolist()
      ([[1.0, 1.0, 1.0], [-1.0, -1.0, -1.0], [0.0, 0.0, 0.0]], [-2.5, -2.5])
    """
    if not isinstance(task, PlantedPatternTask):
        raise TypeError(f"matched_filter: `task` must be a PlantedPatternTask; got {type(task).__name__}")
    ph, pw = task.pattern_shape
    kh, kw = check_kernel_shape((ph, pw) if kernel_shape is None else kernel_shape, (ph, pw))
    kernel = np.zeros((kh, kw, 1, task.num_patterns), np.float64)
    biases = []
    for k, (p, mask) in enumerate(zip(task.templates.astype(np.float64), task.masks, strict=True)):
        if task.background == "binary":
            template, bias = np.where(mask, 2 * p - 1, 0.0), 0.5 - p.sum()
        else:
            ho, wo = task.output_shape
            prior = (sum(task.instances) / 2) / (ho * wo)
            prior = min(max(prior, 1e-9), 1 - 1e-9)
            var = task.noise_std**2
            template = task.amplitude * p / var
            bias = -(task.amplitude**2) * np.sum(p * p) / (2 * var) + math.log(prior / (1 - prior))
        a, b = (kh - ph) // 2, (kw - pw) // 2
        kernel[a : a + ph, b : b + pw, 0, k] = template
        biases.append(bias)
    return {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.asarray(biases, jnp.float32)}


def worst_case(params: Params, pattern: jax.typing.ArrayLike) -> dict[str, Any]:
    """A binary-background detector's logits at its worst over **every** 0/1 window, in closed form.

    With the pattern centred in the kernel (as :func:`~jaxconv.lab._detector.crop_targets` places it), weights
    ``w_in`` over the pattern and ``w_out`` around it: the smallest logit of a window that holds the pattern is
    ``w_in . p + sum(min(w_out, 0)) + b``; the largest of one that does not is
    ``max_{x != p} w_in . x + sum(max(w_out, 0)) + b``, where the best ``x`` sets the pixels of positive weight
    — or, if that is ``p`` itself, flips the pattern's pixel of smallest ``|w_in|``. So the detector finds
    every occurrence in every binary image, with no false alarm, iff the first is ``> 0`` and the second
    ``<= 0``: a certificate, where a held-out F1 is a sample. For a ``"conv"`` detector only (one kernel is
    checked; a ``"local"`` or ``"dense"`` one raises ``TypeError``).

    Args:
      params: ``{"kernel": [KH, KW, 1, 1], "bias": [1]}``.
      pattern: ``[PH, PW]`` of 0/1, ``PH <= KH``, ``PW <= KW``.

    Returns:
      ``{"min_positive": float, "max_negative": float, "perfect": bool}``.

    Raises:
      ValueError: bad shapes or a pattern that is not 0/1.

    Examples:
      >>> import jaxconv
      >>> from jaxconv.lab._metrics import worst_case
      >>> task = jaxconv.PlantedPatternTask("seed")
      >>> worst_case(jaxconv.matched_filter(task), task.pattern_array)
      {'min_positive': 0.5, 'max_negative': -0.5, 'perfect': True}
      >>> worst_case(jaxconv.matched_filter(task, (3, 3)), task.pattern_array)["perfect"]
      True
    """
    params = _check_params(params, 1)
    w = np.asarray(params["kernel"], np.float64)[:, :, 0, 0]
    b = float(params["bias"][0])
    p = np.asarray(pattern, np.float64)
    if p.ndim != 2 or not np.all((p == 0) | (p == 1)):
        raise ValueError(f"worst_case: `pattern` must be a 2-D array of 0s and 1s; got {p.tolist()}")
    kh, kw = check_kernel_shape(w.shape, p.shape)
    a, c = (kh - p.shape[0]) // 2, (kw - p.shape[1]) // 2
    inside = np.zeros(w.shape, bool)
    inside[a : a + p.shape[0], c : c + p.shape[1]] = True
    w_in, w_out = w[inside].reshape(p.shape), w[~inside]
    exact = float(np.sum(w_in * p))
    best = (w_in > 0).astype(np.float64)
    other = float(np.sum(w_in * best)) if np.any(best != p) else exact - float(np.abs(w_in).min())
    low = exact + float(np.minimum(w_out, 0).sum()) + b
    high = other + float(np.maximum(w_out, 0).sum()) + b
    return {"min_positive": low, "max_negative": high, "perfect": low > 0 >= high}


def _scores(params: Params, task: PlantedPatternTask, key: jax.Array, num_images: int) -> tuple[jax.Array, ...]:
    return _skeleton_scores(params, task.skeleton(), key, num_images, task.values())


@functools.partial(jax.jit, static_argnames=("task", "num_images"))
def _skeleton_scores(
    params: Params, task: PlantedPatternTask, key: jax.Array, num_images: int, values: TaskValues
) -> tuple[jax.Array, ...]:
    batch = task.sample_with(key, num_images, values)
    window = window_shape(params, task.image_shape)
    targets = crop_targets(batch.targets, task.pattern_shape, window, per_pattern=task.num_patterns > 1)
    return batch.images, logit_map(params, batch.images), targets


def held_out_key(seed: int, chunk: int) -> jax.Array:
    """The key of held-out chunk ``chunk`` (of ``250`` images) for ``evaluate(..., seed=seed)``."""
    return jax.random.fold_in(stream(seed, "held_out"), chunk)


def held_out_scores(
    params: Params, task: PlantedPatternTask, *, num_images: int = 6, seed: int = 0, chunk: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The first ``num_images`` (``<= 250``) images of held-out chunk ``chunk`` that :func:`evaluate` scores (it
    scores chunks ``0, 1, ...`` of 250 images each), with their logits.

    Returns:
      ``(images [N, H, W, 1], logits [N, Ho', Wo'], targets [N, Ho', Wo'])`` as NumPy arrays (with a last axis
      of K for K > 1 patterns), targets re-indexed to the kernel's outputs.
    """
    if not 1 <= num_images <= _EVAL_CHUNK:
        raise ValueError(f"held_out_scores: `num_images` must be in [1, {_EVAL_CHUNK}]; got {num_images!r}")
    params = _check_params(params, task.num_patterns, task)
    images, logits, targets = _scores(params, task, held_out_key(seed, chunk), _EVAL_CHUNK)
    return tuple(np.asarray(x[:num_images]) for x in (images, logits, targets))  # type: ignore[return-value]


def _check_params(params: Any, k: int, task: PlantedPatternTask | None = None) -> Params:
    """``params`` as float32 arrays, checked to be a detector (:func:`~jaxconv.lab._detector.model_of`; without
    ``task``, only ``"conv"``) with one kernel and bias for each of ``k`` patterns, of ``task``'s images."""
    try:
        model = model_of(params)
    except TypeError as err:
        raise TypeError(f"evaluate: {err}") from None
    if model != "conv" and task is None:
        raise TypeError(f"`params` must be a conv detector (a 'kernel' and a 'bias'); got a {model} detector")
    params = {name: jnp.asarray(value, jnp.float32) for name, value in params.items()}
    bias = params["bias"]
    if model == "conv":
        kernel = params["kernel"]
        if kernel.ndim != 4 or kernel.shape[2:] != (1, k) or bias.shape != (k,):
            words = "[KH, KW, 1, 1] and bias [1]" if k == 1 else f"[KH, KW, 1, {k}] and bias [{k}] (one per pattern)"
            raise ValueError(f"evaluate: `params` must hold kernel {words}; got {kernel.shape} and {bias.shape}")
        return params
    assert task is not None
    (h, w), weights = task.image_shape, params[WEIGHTS[model]]
    want: tuple[int, ...] | None = None
    if model == "local" and weights.ndim == 6:
        kh, kw = weights.shape[2:4]
        ho, wo = h - kh + 1, w - kw + 1
        want = (ho, wo, kh, kw, 1, k)
    elif model == "dense" and bias.ndim == 3:
        ho, wo = bias.shape[:2]
        want = (h * w, ho * wo * k)
    if want is None or weights.shape != want or bias.shape != (ho, wo, k) or min(ho, wo, h - ho + 1, w - wo + 1) < 1:
        raise ValueError(
            f"evaluate: `params` must be a {model} detector of the task's {h}x{w} images for {k} pattern(s) "
            f"(see init_params); got {WEIGHTS[model]} {weights.shape} and bias {bias.shape}"
        )
    return params


def evaluate(params: Params, task: PlantedPatternTask, *, num_images: int = 1000, seed: int = 0) -> dict[str, Any]:
    """Scores a detector on ``num_images`` held-out images of ``task``.

    Counts are taken at the decision rule (logit > 0) over every VALID output position; an empty
    denominator counts as 1.0 (nothing to get wrong), except F1 = ``2TP / (2TP + FP + FN)``. With K > 1
    patterns, kernel ``k`` is scored against pattern ``k``'s targets (the other patterns' copies are among its
    negatives), and a confusion matrix says which kernel fires on which pattern.

    Args:
      params: ``{"kernel": [KH, KW, 1, K], "bias": [K]}``, ``KH x KW`` at least the (common) pattern shape; or a
        ``"local"`` or ``"dense"`` detector of the task's images (:func:`~jaxconv.lab._detector.init_params`).
      task: the :class:`PlantedPatternTask`.
      num_images: ``>= 1`` held-out images (drawn in chunks of 250: the first images do not depend on
        ``num_images``; the same images for every K).
      seed: picks the held-out set; images come from a stream training never uses.

    Returns:
      A dict: ``precision``, ``recall``, ``f1``, ``average_precision`` (over all positions, threshold-free),
      ``kernel_cosine`` (a conv detector's; ``None`` for the others, which have no one kernel), and the counts
      ``tp``, ``fp``, ``fn``, ``positions``, ``num_images``. For K > 1 each
      of the first eight is a list over the K kernels (``kernel_cosine`` against the padded pattern), and
      ``confusion`` ``[K, K + 1]`` is added: row ``k``, column ``j < K`` is the share of pattern ``j``'s target
      positions at which kernel ``k`` fires (``nan`` if pattern ``j`` has none), column ``K`` the share of
      positions holding no pattern at which it fires.

    Raises:
      TypeError: ``params`` or ``task`` of the wrong type.
      ValueError: bad shapes, ``num_images < 1``.

    Examples:
      >>> import jaxconv
      >>> task = jaxconv.PlantedPatternTask("seed", image_shape=(12, 12))
      >>> m = jaxconv.evaluate(jaxconv.matched_filter(task), task, num_images=20)
      >>> m["f1"], m["average_precision"], m["kernel_cosine"]
      (1.0, 1.0, 1.0)
      >>> task = jaxconv.PlantedPatternTask(patterns=("hedge", "ring"), image_shape=12, instances=1)
      >>> m = jaxconv.evaluate(jaxconv.matched_filter(task), task, num_images=20)
      >>> m["f1"], [[round(v, 2) for v in row] for row in m["confusion"]]
      ([1.0, 1.0], [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    """
    z, t, params = _held_out(params, task, num_images, seed)
    k = task.num_patterns
    kernel = params.get("kernel")
    if k == 1:
        return {**_detection(z, t, kernel, task.pattern_array), "num_images": num_images}
    each = [_detection(z[..., i], t[..., i], kernel, task.templates[i], i) for i in range(k)]
    out: dict[str, Any] = {name: [e[name] for e in each] for name in each[0]}
    fired, truth = z > 0, t > 0.5
    confusion = np.full((k, k + 1), math.nan)
    for i in range(k):
        for j in range(k):
            if truth[..., j].any():
                confusion[i, j] = fired[..., i][truth[..., j]].mean()
        confusion[i, k] = fired[..., i][~truth.any(-1)].mean()
    return {**out, "positions": int(t[..., 0].size), "confusion": confusion.tolist(), "num_images": num_images}


def _held_out(params: Any, task: Any, num_images: Any, seed: Any) -> tuple[np.ndarray, np.ndarray, Params]:
    """:func:`evaluate`'s checks, then its logits and targets on the held-out images, and the checked params."""
    if not isinstance(task, PlantedPatternTask):
        raise TypeError(f"evaluate: `task` must be a PlantedPatternTask; got {type(task).__name__}")
    params = _check_params(params, task.num_patterns, task)
    check_kernel_shape(window_shape(params, task.image_shape), task.pattern_shape, "evaluate")
    num_images = check_int("evaluate", "num_images", num_images, low=1)
    seed = check_int("evaluate", "seed", seed, low=0)
    scores, labels = [], []
    for chunk in range(-(-num_images // _EVAL_CHUNK)):
        _, chunk_scores, chunk_labels = _scores(params, task, held_out_key(seed, chunk), _EVAL_CHUNK)
        keep = min(_EVAL_CHUNK, num_images - chunk * _EVAL_CHUNK)
        scores.append(np.asarray(chunk_scores[:keep]))
        labels.append(np.asarray(chunk_labels[:keep]))
    return np.concatenate(scores), np.concatenate(labels), params


def position_scores(
    params: Params, task: PlantedPatternTask, *, num_images: int = 1000, seed: int = 0
) -> dict[str, np.ndarray]:
    """:func:`evaluate`'s counts at each output position, over the same held-out images: where a detector works.

    Args:
      params: a detector, as for :func:`evaluate`.
      task: the :class:`PlantedPatternTask`.
      num_images: ``>= 1`` held-out images (the first ``num_images`` that :func:`evaluate` scores).
      seed: picks the held-out set.

    Returns:
      ``{"tp", "fp", "fn": int64 [Ho, Wo], "f1": float64 [Ho, Wo]}`` (``[Ho, Wo, K]`` for K > 1), summed over the
      images; ``f1`` is ``2TP / (2TP + FP + FN)``, ``nan`` where that is ``0 / 0`` (no pattern, no detection).
      Summing the counts over every position gives :func:`evaluate`'s.

    Raises:
      As :func:`evaluate`.

    Examples:
      >>> import jaxconv
      >>> from jaxconv.lab import position_scores
      >>> task = jaxconv.PlantedPatternTask("seed", image_shape=(8, 8))
      >>> maps = position_scores(jaxconv.matched_filter(task), task, num_images=20)
      >>> maps["f1"].shape, int(maps["fp"].sum() + maps["fn"].sum()), int(maps["tp"].sum()) > 0
      ((7, 6), 0, True)
    """
    z, t, _ = _held_out(params, task, num_images, seed)
    detected, positive = z > 0, t > 0.5
    tp, fp, fn = ((a & b).sum(axis=0) for a, b in [(detected, positive), (detected, ~positive), (~detected, positive)])
    with np.errstate(invalid="ignore"):
        f1 = 2 * tp / (2 * tp + fp + fn)
    return {"tp": tp, "fp": fp, "fn": fn, "f1": f1}


def _detection(
    z: np.ndarray, t: np.ndarray, kernel: jax.Array | None, pattern: np.ndarray, k: int = 0
) -> dict[str, Any]:
    """One kernel's counts at logit > 0, precision, recall, F1, AP and kernel cosine (logits ``z``, targets ``t``;
    ``kernel[..., k]`` of a conv detector, ``None`` for the others)."""
    detected, positive = z > 0, t > 0.5
    tp = int(np.sum(detected & positive))
    fp = int(np.sum(detected & ~positive))
    fn = int(np.sum(~detected & positive))
    return {
        "precision": tp / (tp + fp) if tp + fp else 1.0,
        "recall": tp / (tp + fn) if tp + fn else 1.0,
        "f1": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        "average_precision": average_precision(z, t),
        "kernel_cosine": None if kernel is None else kernel_cosine(kernel[..., k : k + 1], pattern),
        "tp": tp,
        "fp": fp,
        "fn": fn,
        "positions": int(t.size),
    }


__all__ = [
    "average_precision",
    "kernel_cosine",
    "kernel_placement",
    "matched_filter",
    "evaluate",
    "position_scores",
    "held_out_key",
    "held_out_scores",
    "worst_case",
]

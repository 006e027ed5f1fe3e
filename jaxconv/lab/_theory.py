"""What the matched filter can do in white Gaussian noise, in closed form: d', the ROC, AP and F1 to beat; and in
coloured noise (a photograph's background), the whitened matched filter from a measured autocovariance.

The model (the textbook one): the matched filter's score ``s = <p, x>`` at a window holding the planted pattern is
``N(A |p|^2, s^2 |p|^2)`` and at any other window ``N(0, s^2 |p|^2)``. Divided by ``s |p|``, the two are
``N(d', 1)`` and ``N(0, 1)`` with ``d' = A |p| / s``. It ignores the windows that partly overlap a planted copy
(their mean is ``A <p, shifted p>``, not 0) and the correlation between neighbouring windows, so on a real
:class:`PlantedPatternTask` it is an upper bound that is close when the pattern's shifted copies overlap little.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtr, ndtri

from jaxconv._checks import check_number, fail
from jaxconv.lab._data import PlantedPatternTask


def _check_task(task: Any, fn: str) -> PlantedPatternTask:
    if not isinstance(task, PlantedPatternTask):
        raise fail(fn, "task", "a PlantedPatternTask", type(task).__name__, TypeError)
    if task.background != "gaussian":
        raise fail(fn, "task", "a task with a gaussian background", task.background)
    return task


def d_prime(task: PlantedPatternTask) -> float:
    """The matched filter's detectability ``d' = A |p| / s`` on a gaussian-background task.

    Args:
      task: a :class:`PlantedPatternTask` with ``background="gaussian"``.

    Returns:
      ``d'`` (the distance between the two score distributions in units of their std).

    Raises:
      TypeError: ``task`` is not a :class:`PlantedPatternTask`.
      ValueError: its background is not gaussian.

    Examples:
      >>> import jaxconv
      >>> from jaxconv.lab._theory import d_prime
      >>> d_prime(jaxconv.PlantedPatternTask([[1, 1], [1, 0]], background="gaussian", amplitude=2.0))
      3.4641016151377544
    """
    task = _check_task(task, "d_prime")
    return task.amplitude * float(np.linalg.norm(task.pattern_array.astype(np.float64))) / task.noise_std


def snr_db(task: PlantedPatternTask) -> float:
    """The task's signal-to-noise ratio in dB: ``10 log10(A^2 |p|^2 / s^2) = 20 log10(d')``.

    The pattern's energy ``A^2 |p|^2`` over the noise variance per pixel ``s^2`` — the matched filter's output SNR.

    Examples:
      >>> import jaxconv
      >>> from jaxconv.lab._theory import snr_db
      >>> round(snr_db(jaxconv.PlantedPatternTask([[1, 0]], background="gaussian", amplitude=10.0)), 6)
      20.0
    """
    return 20.0 * math.log10(d_prime(task))


def amplitude_for_snr_db(task: PlantedPatternTask, snr: float) -> float:
    """The amplitude ``A`` that gives ``task`` (its pattern and noise std) an SNR of ``snr`` dB.

    Examples:
      >>> import jaxconv
      >>> from jaxconv.lab._theory import amplitude_for_snr_db
      >>> amplitude_for_snr_db(jaxconv.PlantedPatternTask([[1, 0]], background="gaussian"), 20.0)
      10.0
    """
    task = _check_task(task, "amplitude_for_snr_db")
    snr = check_number("amplitude_for_snr_db", "snr", snr, allowed="a finite number (dB)")
    norm = float(np.linalg.norm(task.pattern_array.astype(np.float64)))
    return 10 ** (snr / 20) * task.noise_std / norm


def positive_prevalence(task: PlantedPatternTask) -> float:
    """The expected share of output positions that hold a planted copy: ``mean(instances) / (Ho * Wo)``.

    Examples:
      >>> import jaxconv
      >>> from jaxconv.lab._theory import positive_prevalence
      >>> positive_prevalence(jaxconv.PlantedPatternTask([[1, 0]], image_shape=(4, 5), instances=(1, 3)))
      0.125
    """
    if not isinstance(task, PlantedPatternTask):
        raise TypeError(f"positive_prevalence: `task` must be a PlantedPatternTask; got {type(task).__name__}")
    ho, wo = task.output_shape
    return (sum(task.instances) / 2) / (ho * wo)


def theoretical_roc(d: float, fpr: jax.typing.ArrayLike) -> jax.Array:
    """The matched filter's ROC in white noise: ``TPR = Q(Q^-1(FPR) - d')`` with ``Q(x) = 1 - Phi(x)``.

    Args:
      d: ``d' >= 0``.
      fpr: ``[...]`` false-positive rates in ``[0, 1]``.

    Returns:
      ``[...]`` true-positive rates (float32).

    Raises:
      ValueError: ``d`` negative or not finite, or an ``fpr`` outside ``[0, 1]``.

    Examples:
      >>> from jaxconv.lab._theory import theoretical_roc
      >>> [round(v, 4) for v in theoretical_roc(0.0, [0.1, 0.5]).tolist()]
      [0.1, 0.5]
      >>> [round(v, 4) for v in theoretical_roc(2.0, [0.0227501, 0.5]).tolist()]
      [0.5, 0.9772]
    """
    d = check_number("theoretical_roc", "d", d, allowed="a finite number >= 0", ok=lambda v: v >= 0)
    fpr = jnp.asarray(fpr, jnp.float32)
    if not bool(jnp.all((fpr >= 0) & (fpr <= 1))):
        raise ValueError("`fpr` must be in [0, 1]")
    # Q(Q^-1(f) - d) = Phi(d - Q^-1(f)) = Phi(d + Phi^-1(f)).
    return ndtr(d + ndtri(fpr))


def _q(x: np.ndarray) -> np.ndarray:
    return 0.5 * np.vectorize(math.erfc)(x / math.sqrt(2.0))


def theoretical_detection(d: float, prevalence: float, *, grid: int = 4001) -> dict[str, float]:
    """The matched filter's AP (from its ROC) and its F1 at the MAP threshold, with positives at ``prevalence``.

    With scores ``N(d', 1)`` (positives, share ``pi``) and ``N(0, 1)`` (negatives), a threshold ``t`` has recall
    ``R = Q(t - d')``, false-positive rate ``F = Q(t)`` and precision ``pi R / (pi R + (1 - pi) F)``; AP is
    ``integral of precision dR`` (numerically, over ``grid`` thresholds in double precision). The MAP threshold
    (the matched filter's logit > 0) is ``t* = d'/2 + log((1 - pi) / pi) / d'``, and F1 there is
    ``2 pi R / (pi R + (1 - pi) F + pi)`` in expectation.

    Args:
      d: ``d' >= 0``.
      prevalence: ``pi``, the share of positive positions, in ``(0, 1)``.
      grid: thresholds for the AP integral, ``>= 101``.

    Returns:
      ``{"average_precision", "f1", "threshold", "recall", "fpr", "precision"}`` (the last four at the MAP
      threshold; for ``d' = 0`` the threshold is ``inf`` and nothing is detected).

    Raises:
      ValueError: a value out of range (the message names it).
      TypeError: an argument of the wrong type.

    Examples:
      >>> from jaxconv.lab._theory import theoretical_detection
      >>> r = theoretical_detection(0.0, 0.25)
      >>> round(r["average_precision"], 3), r["f1"]
      (0.25, 0.0)
      >>> r = theoretical_detection(4.0, 0.01)
      >>> round(r["average_precision"], 4), round(r["f1"], 4)
      (0.9215, 0.8522)
    """
    d = check_number("theoretical_detection", "d", d, allowed="a finite number >= 0", ok=lambda v: v >= 0)
    pi = check_number(
        "theoretical_detection", "prevalence", prevalence, allowed="a number in (0, 1)", ok=lambda v: 0 < v < 1
    )
    if isinstance(grid, bool) or not isinstance(grid, (int, np.integer)) or grid < 101:
        raise ValueError(f"theoretical_detection: `grid` must be an int >= 101; got {grid!r}")
    # Thresholds from far above both means to far below: recall runs 0 -> 1.
    t = np.linspace(d + 12.0, -12.0, int(grid))
    recall, fpr = _q(t - d), _q(t)
    denominator = pi * recall + (1 - pi) * fpr
    precision = np.where(denominator > 0, pi * recall / np.where(denominator > 0, denominator, 1.0), 1.0)
    # Trapezoid in recall: precision is smooth in t, so this converges quickly.
    ap = float(np.sum(np.diff(recall) * 0.5 * (precision[1:] + precision[:-1])))
    if d == 0:
        return {"average_precision": ap, "f1": 0.0, "threshold": math.inf, "recall": 0.0, "fpr": 0.0, "precision": 1.0}
    t_map = d / 2 + math.log((1 - pi) / pi) / d
    r_map, f_map = float(_q(np.array(t_map - d))), float(_q(np.array(t_map)))
    p_den = pi * r_map + (1 - pi) * f_map
    return {
        "average_precision": ap,
        "f1": 2 * pi * r_map / (p_den + pi),
        "threshold": t_map,
        "recall": r_map,
        "fpr": f_map,
        "precision": pi * r_map / p_den if p_den > 0 else 1.0,
    }


def _images(fn: str, images: Any) -> np.ndarray:
    x = np.asarray(images, dtype=np.float64)
    if x.ndim == 4 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim != 3 or min(x.shape) < 1 or not np.all(np.isfinite(x)):
        raise fail(fn, "images", "a finite array [N, H, W] (or [N, H, W, 1]) with N, H, W >= 1", f"shape {x.shape}")
    return x


def autocovariance(images: jax.typing.ArrayLike, shape: tuple[int, int]) -> np.ndarray:
    """The images' measured autocovariance at lags ``|dy| < KH``, ``|dx| < KW``: the inverse Fourier transform
    of their power spectrum (each image zero-padded to twice its size, so the transform's circular correlation is
    the plain one).

    ``R[KH - 1 + dy, KW - 1 + dx]`` is the mean, over the images and every pixel pair ``(i, j), (i + dy, j + dx)``
    inside them, of ``(x[i, j] - m)(x[i + dy, j + dx] - m)``, ``m`` the mean over all pixels (so each image's own
    brightness counts as variance, as it does in a window that a detector sees).

    Args:
      images: ``[N, H, W]`` (or ``[N, H, W, 1]``) backgrounds, finite.
      shape: ``(KH, KW)``, the window the covariance is for, ``1 <= KH <= H``, ``1 <= KW <= W``.

    Returns:
      ``[2KH - 1, 2KW - 1]`` float64, symmetric about its centre (lag 0, the variance).

    Raises:
      ValueError: bad shapes or non-finite images.

    Examples:
      >>> import numpy as np
      >>> from jaxconv.lab._theory import autocovariance
      >>> r = autocovariance(np.random.default_rng(0).normal(size=(50, 32, 32)), (2, 2))
      >>> r.shape, round(float(r[1, 1]), 1), bool(np.abs(r[0]).max() < 0.05)
      ((3, 3), 1.0, True)
    """
    x = _images("autocovariance", images)
    n, h, w = x.shape
    if (
        not isinstance(shape, (tuple, list))
        or len(shape) != 2
        or not all(isinstance(v, (int, np.integer)) and 1 <= v <= s for v, s in zip(shape, (h, w), strict=True))
    ):
        raise fail("autocovariance", "shape", f"a pair (KH, KW) with 1 <= KH <= {h}, 1 <= KW <= {w}", shape)
    kh, kw = int(shape[0]), int(shape[1])
    spectrum = np.abs(np.fft.rfft2(x - x.mean(), s=(2 * h, 2 * w))) ** 2
    correlation = np.fft.irfft2(spectrum.sum(0), s=(2 * h, 2 * w))
    dy, dx = np.arange(-kh + 1, kh)[:, None], np.arange(-kw + 1, kw)[None, :]
    pairs = n * (h - np.abs(dy)) * (w - np.abs(dx))
    return correlation[dy % (2 * h), dx % (2 * w)] / pairs


def _window_covariance(fn: str, autocov: Any, shape: tuple[int, int]) -> np.ndarray:
    """``[KH*KW, KH*KW]``: the covariance of a ``KH x KW`` window's pixels (row-major) from an autocovariance."""
    r = np.asarray(autocov, dtype=np.float64)
    kh, kw = shape
    if r.ndim != 2 or r.shape[0] < 2 * kh - 1 or r.shape[1] < 2 * kw - 1 or r.shape[0] % 2 == 0 or r.shape[1] % 2 == 0:
        raise fail(fn, "autocovariance", f"an odd-sized 2-D array of at least {(2 * kh - 1, 2 * kw - 1)}", r.shape)
    ch, cw = r.shape[0] // 2, r.shape[1] // 2
    a, b = np.divmod(np.arange(kh * kw), kw)
    return r[ch + a[None, :] - a[:, None], cw + b[None, :] - b[:, None]]


def whitened_matched_filter(pattern: jax.typing.ArrayLike, autocov: jax.typing.ArrayLike) -> np.ndarray:
    """The optimal linear detector of ``pattern`` added to Gaussian noise of autocovariance ``autocov``:
    ``w = S^-1 p``, ``S`` the covariance of a pattern-sized window (``S[u, v] = R[v - u]``).

    It maximises the detection SNR ``(w . p) / sqrt(w' S w)`` (Cauchy-Schwarz in the ``S`` inner product), to
    ``sqrt(p' S^-1 p)``; in white noise (``S = s^2 I``) it is the matched filter ``p / s^2``.

    Args:
      pattern: ``[PH, PW]``.
      autocov: ``[2A - 1, 2B - 1]`` with ``A >= PH``, ``B >= PW``, lag 0 at the centre (as :func:`autocovariance`).

    Returns:
      ``[PH, PW]`` float64 kernel (scaled as the log-likelihood ratio for amplitude 1).

    Raises:
      ValueError: bad shapes, or a singular window covariance.

    Examples:
      >>> import numpy as np
      >>> from jaxconv.lab._theory import whitened_matched_filter
      >>> white = np.zeros((3, 3)); white[1, 1] = 4.0
      >>> whitened_matched_filter([[1.0, 0.0], [0.0, 2.0]], white).tolist()
      [[0.25, 0.0], [0.0, 0.5]]
    """
    p = np.asarray(pattern, dtype=np.float64)
    if p.ndim != 2 or p.size == 0:
        raise fail("whitened_matched_filter", "pattern", "a non-empty 2-D array", f"shape {p.shape}")
    cov = _window_covariance("whitened_matched_filter", autocov, p.shape)
    try:
        return np.linalg.solve(cov, p.reshape(-1)).reshape(p.shape)
    except np.linalg.LinAlgError as err:
        raise fail("whitened_matched_filter", "autocov", "positive definite over the window", "singular") from err


def linear_snr(kernel: jax.typing.ArrayLike, pattern: jax.typing.ArrayLike, autocov: jax.typing.ArrayLike) -> float:
    """A linear detector's SNR (its d'): ``(w . p) / sqrt(w' S w)`` for ``pattern`` added to Gaussian noise of
    autocovariance ``autocov`` (``S`` as in :func:`whitened_matched_filter`), where ``w`` is ``kernel``.

    Args:
      kernel: ``[PH, PW]`` (or ``[PH, PW, 1, 1]``), not all zeros.
      pattern: ``[PH, PW]``.
      autocov: as in :func:`whitened_matched_filter`.

    Returns:
      The d' (the distance between the score's means with and without the pattern, in units of its std).

    Raises:
      ValueError: bad shapes or a zero kernel.

    Examples:
      >>> import numpy as np
      >>> from jaxconv.lab._theory import linear_snr
      >>> white = np.zeros((3, 3)); white[1, 1] = 4.0
      >>> linear_snr([[1.0, 1.0], [1.0, 1.0]], [[1.0, 1.0], [1.0, 1.0]], white)
      1.0
    """
    w = np.asarray(kernel, dtype=np.float64)
    if w.ndim == 4 and w.shape[2:] == (1, 1):
        w = w[:, :, 0, 0]
    p = np.asarray(pattern, dtype=np.float64)
    if w.shape != p.shape or p.ndim != 2 or not np.any(w):
        raise fail("linear_snr", "kernel", f"a non-zero array of the pattern's shape {p.shape}", f"shape {w.shape}")
    cov = _window_covariance("linear_snr", autocov, p.shape)
    w = w.reshape(-1)
    return float(w @ p.reshape(-1) / math.sqrt(w @ cov @ w))


def spectrum_slope(images: jax.typing.ArrayLike, *, low: float = 0.02, high: float = 0.25) -> float:
    """The exponent ``a`` of a power-law fit ``P(f) ~ f^-a`` to the images' power spectrum (natural images: about 2).

    The mean periodogram of the mean-subtracted images, fitted by least squares in log-log over every frequency
    with ``low <= |f| <= high`` (cycles per pixel).

    Args:
      images: ``[N, H, W]`` (or ``[N, H, W, 1]``).
      low: the lowest frequency of the fit, ``> 0``.
      high: the highest, ``low < high <= 0.5``.

    Returns:
      ``a``.

    Raises:
      ValueError: bad shapes or an empty frequency band.

    Examples:
      >>> import numpy as np
      >>> from jaxconv.lab._theory import spectrum_slope
      >>> round(spectrum_slope(np.random.default_rng(0).normal(size=(20, 64, 64))), 1)
      0.0
    """
    x = _images("spectrum_slope", images)
    if not (isinstance(low, (int, float)) and isinstance(high, (int, float)) and 0 < low < high <= 0.5):
        raise fail("spectrum_slope", "low", "0 < low < high <= 0.5", (low, high))
    power = (np.abs(np.fft.fft2(x - x.mean(axis=(1, 2), keepdims=True))) ** 2).mean(0)
    fy, fx = np.fft.fftfreq(x.shape[1])[:, None], np.fft.fftfreq(x.shape[2])[None, :]
    f = np.hypot(fy, fx)
    band = (f >= low) & (f <= high)
    if band.sum() < 2:
        raise fail("spectrum_slope", "low", f"a band holding frequencies of a {x.shape[1:]} image", (low, high))
    slope = np.polyfit(np.log(f[band]), np.log(power[band]), 1)[0]
    return float(-slope)


__all__ = [
    "autocovariance",
    "whitened_matched_filter",
    "linear_snr",
    "spectrum_slope",
    "d_prime",
    "snr_db",
    "amplitude_for_snr_db",
    "positive_prevalence",
    "theoretical_roc",
    "theoretical_detection",
]

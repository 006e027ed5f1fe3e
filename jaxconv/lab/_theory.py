"""What the matched filter can do in white Gaussian noise, in closed form: d', the ROC, AP and F1 to beat.

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


__all__ = [
    "d_prime",
    "snr_db",
    "amplitude_for_snr_db",
    "positive_prevalence",
    "theoretical_roc",
    "theoretical_detection",
]

"""The matched filter's theory against Monte-Carlo draws of its two score distributions and against a real task."""

import math

import numpy as np
import pytest

import jaxconv
from jaxconv.lab import _theory


@pytest.mark.parametrize("d, prevalence", [(2.0, 0.05), (3.0, 0.01)])
def test_theory_matches_monte_carlo(d, prevalence):
    rng = np.random.default_rng(0)
    n = 400_000
    labels = rng.random(n) < prevalence
    scores = rng.standard_normal(n) + d * labels
    theory = _theory.theoretical_detection(d, prevalence)
    assert jaxconv.lab.average_precision(scores, labels) == pytest.approx(theory["average_precision"], abs=0.015)
    detected = scores > theory["threshold"]
    tp, fp, fn = np.sum(detected & labels), np.sum(detected & ~labels), np.sum(~detected & labels)
    assert 2 * tp / (2 * tp + fp + fn) == pytest.approx(theory["f1"], abs=0.015)
    # The ROC at a few thresholds.
    for t in (0.5, 1.5, 2.5):
        fpr, tpr = np.mean(scores[~labels] > t), np.mean(scores[labels] > t)
        assert float(_theory.theoretical_roc(d, fpr)) == pytest.approx(tpr, abs=0.025)  # ~3 std at 4000 positives


def test_theory_closed_forms():
    # d' = 0: the ROC is the diagonal and AP the prevalence; large d': both reach 1.
    assert np.allclose(_theory.theoretical_roc(0.0, np.linspace(0, 1, 11)), np.linspace(0, 1, 11), atol=1e-6)
    assert _theory.theoretical_detection(0.0, 0.3)["average_precision"] == pytest.approx(0.3, abs=1e-6)
    best = _theory.theoretical_detection(12.0, 0.01)
    assert best["average_precision"] == pytest.approx(1.0, abs=1e-6) and best["f1"] == pytest.approx(1.0, abs=1e-6)
    # The MAP threshold is where the two weighted densities cross.
    d, pi = 2.5, 0.02
    t = _theory.theoretical_detection(d, pi)["threshold"]
    assert pi * math.exp(-((t - d) ** 2) / 2) == pytest.approx((1 - pi) * math.exp(-(t**2) / 2), rel=1e-9)


def test_theory_bounds_the_matched_filter_on_a_task():
    task = jaxconv.PlantedPatternTask("seed", background="gaussian", amplitude=2.45)
    assert _theory.snr_db(task) == pytest.approx(20 * math.log10(2.45 * math.sqrt(3)))
    theory = _theory.theoretical_detection(_theory.d_prime(task), _theory.positive_prevalence(task))
    mf = jaxconv.evaluate(jaxconv.matched_filter(task), task, num_images=250)
    # Partial overlaps only add false alarms: the theory is an upper bound, and close.
    assert theory["average_precision"] - 0.08 < mf["average_precision"] < theory["average_precision"] + 0.02
    assert _theory.amplitude_for_snr_db(task, _theory.snr_db(task)) == pytest.approx(2.45)


def test_theory_errors():
    with pytest.raises(ValueError, match="`d`"):
        _theory.theoretical_roc(-1.0, 0.1)
    with pytest.raises(ValueError, match="`fpr`"):
        _theory.theoretical_roc(1.0, 1.5)
    with pytest.raises(ValueError, match="`prevalence`"):
        _theory.theoretical_detection(1.0, 0.0)
    with pytest.raises(TypeError, match="`d`"):
        _theory.theoretical_detection("1", 0.1)
    with pytest.raises(ValueError, match="`grid`"):
        _theory.theoretical_detection(1.0, 0.1, grid=3)
    with pytest.raises(ValueError, match="`task`"):
        _theory.d_prime(jaxconv.PlantedPatternTask("seed"))
    with pytest.raises(TypeError, match="`task`"):
        _theory.positive_prevalence("seed")

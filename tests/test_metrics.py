"""evaluate, average precision, kernel cosine and the matched filter, against hand-made cases."""

import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv
from jaxconv.lab import PlantedPatternTask, average_precision, evaluate, kernel_cosine, matched_filter


def detector(kernel, bias):
    k = jnp.asarray(kernel, jnp.float32)
    return {"kernel": k[:, :, None, None], "bias": jnp.asarray([bias], jnp.float32)}


def test_average_precision_hand_cases():
    assert average_precision([3, 2, 1], [1, 1, 0]) == 1.0
    # ranks: P@1 = 1, P@3 = 2/3 -> (1 + 2/3) / 2
    assert average_precision([0.9, 0.8, 0.7, 0.1], [1, 0, 1, 0]) == pytest.approx(5 / 6, abs=1e-12)
    # all tied: AP is the positive rate
    assert average_precision([1, 1, 1, 1], [1, 0, 0, 0]) == pytest.approx(0.25, abs=1e-12)
    assert np.isnan(average_precision([1, 2], [0, 0]))
    with pytest.raises(ValueError, match="`labels`"):
        average_precision([1, 2], [0, 2])


def test_kernel_cosine_hand_cases():
    pattern = [[1, 1, 0], [1, 0, 0]]
    assert kernel_cosine([[5, 5, 1], [5, 1, 1]], pattern) == pytest.approx(1.0, abs=1e-12)  # scale and offset
    assert kernel_cosine([[-1, -1, 1], [-1, 1, 1]], pattern) == pytest.approx(-1.0, abs=1e-12)
    assert kernel_cosine([[1, 0, 0], [1, 0, 0]], pattern) == pytest.approx(1 / np.sqrt(2), abs=1e-12)
    bigger = np.zeros((4, 5))
    bigger[2:4, 1:4] = [[1, 1, -1], [1, -1, -1]]  # off-centre placement is found
    assert kernel_cosine(bigger, pattern) == pytest.approx(1.0, abs=1e-12)
    bigger[0, 0] = 1.0  # weight outside the pattern's footprint lowers it
    assert kernel_cosine(bigger, pattern) < 0.95
    with pytest.raises(ValueError, match="`kernel`"):
        kernel_cosine([[1, 0]], pattern)


@pytest.mark.parametrize("name", list(jaxconv.lab.PATTERNS))
def test_matched_filter_is_perfect_on_binary_tasks(name):
    task = PlantedPatternTask(name, image_shape=(16, 16))
    m = evaluate(matched_filter(task), task, num_images=100)
    assert (m["f1"], m["precision"], m["recall"], m["average_precision"]) == (1.0, 1.0, 1.0, 1.0)
    assert m["kernel_cosine"] == pytest.approx(1.0, abs=1e-6)
    assert m["fp"] == m["fn"] == 0 and m["tp"] > 0


def test_evaluate_hand_made_detectors():
    task = PlantedPatternTask("seed", image_shape=(10, 10))
    always = evaluate(detector(np.zeros((2, 3)), 1.0), task, num_images=40)
    never = evaluate(detector(np.zeros((2, 3)), -1.0), task, num_images=40)
    positives = always["tp"]
    assert always["fn"] == 0 and always["fp"] == always["positions"] - positives
    assert always["recall"] == 1.0 and always["precision"] == pytest.approx(positives / always["positions"])
    assert never["tp"] == never["fp"] == 0 and never["fn"] == positives
    assert (never["recall"], never["f1"]) == (0.0, 0.0)
    assert always["average_precision"] == pytest.approx(positives / always["positions"])  # all tied
    # a larger kernel with the template centred scores the same positions (edge occurrences dropped)
    big = evaluate(matched_filter(task, (4, 5)), task, num_images=40)
    assert big["f1"] == 1.0 and big["positions"] == 40 * 7 * 6


def test_evaluate_is_held_out_and_reproducible():
    task = PlantedPatternTask("seed", image_shape=(10, 10))
    a = evaluate(matched_filter(task), task, num_images=300, seed=4)
    b = evaluate(matched_filter(task), task, num_images=300, seed=4)
    c = evaluate(matched_filter(task), task, num_images=300, seed=5)
    assert a == b and a["tp"] != c["tp"]


def test_gaussian_matched_filter_is_the_pattern():
    task = PlantedPatternTask("seed", background="gaussian", amplitude=2.0, noise_std=0.5, image_shape=12)
    mf = matched_filter(task)
    np.testing.assert_allclose(np.asarray(mf["kernel"])[:, :, 0, 0], 8.0 * task.pattern_array, rtol=1e-6)
    ho, wo = task.output_shape
    prior = 2 / (ho * wo)
    np.testing.assert_allclose(float(mf["bias"][0]), -4 * 3 / (2 * 0.25) + np.log(prior / (1 - prior)), rtol=1e-5)
    m = evaluate(mf, task, num_images=100)
    assert m["average_precision"] > 0.99  # an easy SNR


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda t: evaluate({"kernel": jnp.zeros((2, 3, 1, 1))}, t), TypeError, "`params`"),
        (lambda t: evaluate(detector(np.zeros((2, 3)), 0.0), t, num_images=0), ValueError, "`num_images`"),
        (lambda t: evaluate(detector(np.zeros((1, 3)), 0.0), t), ValueError, "`kernel_shape`"),
        (lambda t: evaluate(detector(np.zeros((2, 3)), 0.0), "seed"), TypeError, "`task`"),
        (lambda t: matched_filter("seed"), TypeError, "`task`"),
    ],
)
def test_bad_arguments(call, error, words):
    with pytest.raises(error, match=words):
        call(PlantedPatternTask("seed", image_shape=8))


def test_kernel_placement_finds_the_window_and_the_energy_outside():
    from jaxconv.lab._metrics import kernel_placement

    task = jaxconv.PlantedPatternTask("seed")
    mf = jaxconv.matched_filter(task, kernel_shape=(5, 5))["kernel"]
    placement = kernel_placement(mf, task.pattern_array)
    assert placement["offset"] == (1, 1) and placement["cosine"] == pytest.approx(1.0)
    assert placement["outside_energy"] == 0.0 and placement["outside_max_ratio"] == 0.0
    assert placement["cosine"] == pytest.approx(jaxconv.lab.kernel_cosine(mf, task.pattern_array))
    random = np.random.default_rng(0).standard_normal((40, 40))
    assert kernel_placement(random, task.pattern_array)["outside_energy"] == pytest.approx(1 - 6 / 1600, abs=0.01)
    with pytest.raises(ValueError, match="`kernel`"):
        kernel_placement(np.ones((1, 3)), task.pattern_array)


def test_worst_case_matches_a_brute_force_over_every_binary_window():
    import itertools

    from jaxconv.lab._metrics import worst_case

    rng = np.random.default_rng(8)
    for trial in range(30):
        ph, pw = [(1, 2), (2, 2), (2, 3), (3, 3)][trial % 4]
        kh, kw = (ph, pw) if trial % 3 else (ph + 1, pw + 1)
        pattern = (rng.random((ph, pw)) < 0.5).astype(np.float64)
        pattern.flat[0] = 1
        kernel = rng.normal(size=(kh, kw))
        if trial % 2:  # near the matched filter, so that both outcomes occur
            kernel[:] = rng.normal(scale=0.3, size=(kh, kw))
            kernel[(kh - ph) // 2 : (kh - ph) // 2 + ph, (kw - pw) // 2 : (kw - pw) // 2 + pw] += 2 * pattern - 1
        bias = -(pattern.sum() - 0.5) + rng.normal(scale=0.5)
        params = {"kernel": kernel[:, :, None, None].astype(np.float32), "bias": np.float32([bias])}
        k32, b32 = params["kernel"][:, :, 0, 0].astype(np.float64), float(params["bias"][0])
        a, c = (kh - ph) // 2, (kw - pw) // 2
        positives, negatives = [], []
        for bits in itertools.product((0.0, 1.0), repeat=kh * kw):
            x = np.array(bits).reshape(kh, kw)
            (positives if np.array_equal(x[a : a + ph, c : c + pw], pattern) else negatives).append(
                float(np.sum(x * k32)) + b32
            )
        got = worst_case(params, pattern)
        assert got["min_positive"] == pytest.approx(min(positives), abs=1e-9)
        assert got["max_negative"] == pytest.approx(max(negatives), abs=1e-9)
        assert got["perfect"] == (min(positives) > 0 >= max(negatives))

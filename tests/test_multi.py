"""K >= 1 patterns in the one lab: the task with ``patterns=``, its targets, the K-output detector and loss,
training through ``fit`` (with checkpoints, resume and devices), and the confusion matrix."""

import sys
import typing

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _multidevice import Checks, run_on_cpu_devices

import jaxconv
from jaxconv.lab._data import plant_near_misses

NOISELESS = jaxconv.PlantedPatternTask(
    patterns=("hedge", "vedge", "ring"),
    image_shape=14,
    instances=(1, 2),
    background="gaussian",
    noise_std=1e-6,
    amplitude=5.0,
)


def _exact_occurrences(image, pattern, output_shape):
    """Plain-NumPy reference: 1 where ``pattern`` (its own shape, no padding) sits exactly at each window."""
    ph, pw = pattern.shape
    out = np.zeros(output_shape)
    for i in range(output_shape[0]):
        for j in range(output_shape[1]):
            out[i, j] = np.array_equal(image[i : i + ph, j : j + pw], pattern)
    return out


def test_one_pattern_either_way_is_the_same_task():
    one = jaxconv.PlantedPatternTask(patterns=("seed",), image_shape=9)
    assert one == jaxconv.PlantedPatternTask("seed", image_shape=9) == jaxconv.PlantedPatternTask(image_shape=9)
    assert "patterns" not in one.to_dict() and one.num_patterns == 1
    three = jaxconv.PlantedPatternTask(patterns=("hedge", [[1, 0], [1, 1]], "ring"), image_shape=12, instances=1)
    assert three.pattern is None and three.pattern_shape == (3, 3) and three.num_patterns == 3
    assert jaxconv.PlantedPatternTask(**three.to_dict()) == three and "pattern" not in three.to_dict()
    np.testing.assert_array_equal(three.templates[1], [[1, 0, 0], [1, 1, 0], [0, 0, 0]])
    assert three.masks.sum((1, 2)).tolist() == [6, 4, 9]
    # The skeleton keeps each pattern's shape (and so its padding), not its contents.
    other = jaxconv.PlantedPatternTask(patterns=("vedge", [[0, 1], [1, 0]], "tee"), image_shape=12, instances=1)
    assert other.skeleton() != three.skeleton()
    assert (
        jaxconv.PlantedPatternTask(patterns=("seed", [[0, 1], [1, 1]], "tee"), image_shape=12, instances=1).skeleton()
        == three.skeleton()
    )


def test_gaussian_sample_plants_each_pattern_where_its_targets_say():
    images, targets, positions = NOISELESS.sample(jax.random.key(2), 4)
    assert images.shape == (4, 14, 14, 1) and targets.shape == (4, 12, 12, 3) and positions.shape == (4, 6, 2)
    counts = np.asarray(targets.sum((1, 2)))
    assert np.all((counts >= 1) & (counts <= 2))
    rebuilt = np.zeros(images.shape[:3])
    for n, i, j, k in np.argwhere(np.asarray(targets) > 0):
        rebuilt[n, i : i + 3, j : j + 3] += NOISELESS.amplitude * NOISELESS.templates[k]
    np.testing.assert_allclose(np.asarray(images)[..., 0], rebuilt, atol=1e-4)
    # Slot s of `positions` holds a copy of pattern s // max: the targets are exactly those corners.
    for n in range(4):
        for s, (i, j) in enumerate(np.asarray(positions[n])):
            if i >= 0:
                assert targets[n, i, j, s // 2] == 1


@pytest.mark.parametrize("near_misses", [0, 2])
def test_binary_targets_are_every_exact_occurrence_of_each_unpadded_pattern(near_misses):
    # A 2x3 and a 3x2 pattern share a 3x3 window: the padding row/column is not part of either, so an
    # occurrence counts whatever the background holds there (a padded-pattern match would miss most).
    task = jaxconv.PlantedPatternTask(patterns=("hedge", "vedge"), image_shape=11, instances=(1, 2), density=0.5)
    batch = task.sample(jax.random.key(5), 6)
    if near_misses:
        batch = plant_near_misses(task, jax.random.key(6), batch, near_misses, task.values())
    images, targets = np.asarray(batch.images)[..., 0], np.asarray(batch.targets)
    padded_hits = 0
    for n in range(6):
        for k, name in enumerate(("hedge", "vedge")):
            pattern = np.asarray(jaxconv.lab.PATTERNS[name])
            expected = _exact_occurrences(images[n], pattern, task.output_shape)
            np.testing.assert_array_equal(targets[n, :, :, k], expected)
            padded_hits += _exact_occurrences(images[n], task.templates[k], task.output_shape).sum()
        for s, (i, j) in enumerate(np.asarray(batch.positions[n])):
            if i >= 0 and not near_misses:  # near misses may land on a planted copy in so small an image
                assert targets[n, i, j, s // 2] == 1
    assert targets.sum() > padded_hits  # the padding would have hidden occurrences


def test_near_misses_of_each_pattern_flip_one_of_its_own_pixels_and_leave_the_padding():
    # On an all-ones background, a hedge near miss (2x3, one pixel flipped) writes 2 or 4 zeros and a vedge near
    # miss 2 or 4: at most 8 zeros per image, however they overlap. Pasting the padded 3x3 window instead would
    # also write the padding's zeros (3 more for each).
    task = jaxconv.PlantedPatternTask(patterns=("hedge", "vedge"), image_shape=16, instances=0, density=1.0)
    full = task.sample(jax.random.key(0), 16)
    more = plant_near_misses(task, jax.random.key(1), full, 1, task.values())
    zeros = np.asarray(1 - more.images).sum((1, 2, 3))
    assert np.all((zeros >= 2) & (zeros <= 8)), zeros
    assert np.asarray(more.targets).sum() == 0  # a near miss is not an occurrence of either pattern


def test_loss_is_the_mean_of_per_pattern_detection_losses_under_jit():
    z = jax.random.normal(jax.random.key(0), (2, 5, 5, 3))
    t = (jax.random.uniform(jax.random.key(1), (2, 5, 5, 3)) < 0.1).astype(jnp.float32)
    for loss in typing.get_args(jaxconv.lab.Loss):
        expected = np.mean([jaxconv.detection_loss(z[..., k], t[..., k], loss=loss) for k in range(3)])
        got = jax.jit(lambda a, b, loss=loss: jaxconv.detection_loss(a, b, loss=loss, per_pattern=True))(z, t)
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    np.testing.assert_allclose(
        jaxconv.detection_loss(z, t, loss="mse"), np.mean((np.asarray(z) - np.asarray(t)) ** 2), rtol=1e-6
    )


def test_logits_are_the_k_output_convolution():
    params = {"kernel": jax.random.normal(jax.random.key(2), (3, 3, 1, 4)), "bias": jnp.arange(4.0)}
    x = jax.random.normal(jax.random.key(3), (2, 7, 8, 1))
    reference = jax.lax.conv_general_dilated(
        x, params["kernel"], (1, 1), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
    )
    reference = reference + params["bias"].reshape(1, 1, 1, 4)
    np.testing.assert_allclose(jaxconv.logit_map(params, x), reference, rtol=1e-5, atol=1e-5)
    one = {"kernel": params["kernel"][..., :1], "bias": params["bias"][:1]}
    np.testing.assert_allclose(jaxconv.logit_map(one, x), reference[..., 0], rtol=1e-5, atol=1e-5)
    init = jaxconv.init_params(jax.random.key(0), (2, 3), 5)
    assert init["kernel"].shape == (2, 3, 1, 5) and init["bias"].shape == (5,)


def test_matched_filters_side_by_side_find_every_binary_occurrence():
    task = jaxconv.PlantedPatternTask(patterns=("hedge", "vedge", "cross"), image_shape=14, instances=1)
    m = jaxconv.evaluate(jaxconv.matched_filter(task), task, num_images=30)
    assert m["f1"] == [1.0, 1.0, 1.0] and m["fp"] == [0, 0, 0] and m["num_images"] == 30
    assert set(m) == {
        "precision",
        "recall",
        "f1",
        "average_precision",
        "kernel_cosine",
        "tp",
        "fp",
        "fn",
        "positions",
        "confusion",
        "num_images",
    }
    assert np.asarray(m["confusion"]).shape == (3, 4)


@pytest.mark.slow  # a K = 3 training run to the end
def test_learned_kernels_specialise_and_beat_the_per_pattern_matched_filters_on_confusion():
    task = jaxconv.PlantedPatternTask(
        patterns=("hedge", "ring"), image_shape=14, instances=(1, 2), background="gaussian", amplitude=4.0
    )
    fitted = jaxconv.fit(task, steps=200, batch_size=8, loss="hard_negative", steps_per_dispatch=200, eval_images=100)
    learned, mf = fitted.metrics, jaxconv.evaluate(jaxconv.matched_filter(task), task, num_images=100)
    confusion = np.asarray(learned["confusion"])
    assert fitted.params["kernel"].shape == (3, 3, 1, 2)
    assert confusion[0, 0] > 0.5 and confusion[1, 1] > 0.8
    # The hedge's matched filter fires on rings (a ring's top row is a hedge); the learned hedge kernel does not.
    assert mf["confusion"][0][1] > 0.5 and confusion[0, 1] < 0.1
    assert min(learned["f1"]) > 0.5 and learned["f1"][0] > mf["f1"][0]


def test_errors():
    with pytest.raises(ValueError, match="`patterns`"):
        jaxconv.PlantedPatternTask("hedge", patterns=("ring",))
    with pytest.raises(TypeError, match="`patterns`"):
        jaxconv.PlantedPatternTask(patterns="hedge")
    with pytest.raises(ValueError, match="`patterns`"):
        jaxconv.PlantedPatternTask(patterns=())
    with pytest.raises(ValueError, match="`patterns`"):
        jaxconv.PlantedPatternTask(patterns=("hedge", "nope"))
    with pytest.raises(ValueError, match="`patterns`"):
        jaxconv.PlantedPatternTask(patterns=("hedge", [[0.5, 1]]))
    with pytest.raises(ValueError, match="`instances`"):
        jaxconv.PlantedPatternTask(patterns=("hedge", "ring"), image_shape=8, instances=2)
    with pytest.raises(ValueError, match="`pattern_array`|templates"):
        _ = jaxconv.PlantedPatternTask(patterns=("hedge", "ring")).pattern_array
    task = jaxconv.PlantedPatternTask(patterns=("hedge", "ring"), image_shape=10, instances=1)
    with pytest.raises(ValueError, match="`params`"):
        jaxconv.evaluate(jaxconv.matched_filter(jaxconv.PlantedPatternTask("ring")), task)
    with pytest.raises(ValueError, match="`targets`"):
        jaxconv.detection_loss(jnp.zeros((2, 3)), jnp.zeros((3, 2)), per_pattern=True)
    with pytest.raises(TypeError, match="`num_patterns`"):
        jaxconv.init_params(jax.random.key(0), (2, 2), 1.0)


def test_fixed_data_trains_full_batch():
    config = jaxconv.TrainConfig(jaxconv.PlantedPatternTask("seed", image_shape=8), loss="mse", learning_rate=0.01)
    batch = config.task.sample(jax.random.key(0), 3)
    start = jaxconv.lab.init_state(config)
    state, losses = jaxconv.lab.train_steps(config, start, 2, data=(batch.images, batch.targets))
    by_hand = jaxconv.lab._train.batch_loss(start.params, config.step, batch.images, batch.targets)
    np.testing.assert_allclose(losses[0], by_hand, rtol=1e-6)
    with pytest.raises(ValueError, match="`data`"):
        jaxconv.lab.train_steps(config, state, 1, data=(batch.images, batch.targets[:, :-1]))


# --- A K = 3 run through fit: checkpoints, resume, devices (in a child with 4 CPU devices) ---------------------

K3 = dict(patterns=("hedge", "vedge", "cross"), image_shape=12, instances=(0, 1))
K3_FIT = dict(steps=40, batch_size=8, steps_per_dispatch=10, eval_images=0)
RTOL = ATOL = 2e-5  # another device count sums the gradient in another order (as tests/test_data_parallel.py)


def _child() -> int:
    import tempfile

    jax.config.update("jax_numpy_rank_promotion", "raise")
    assert jax.device_count() == 4, jax.devices()
    check = Checks()
    for background in ("binary", "gaussian"):
        task = jaxconv.PlantedPatternTask(**K3, background=background, amplitude=3.0)
        whole = jaxconv.fit(task, **K3_FIT)

        def resumes_bit_identically(task=task, whole=whole):
            folder = tempfile.mkdtemp()
            first = jaxconv.fit(task, **{**K3_FIT, "steps": 20}, checkpoint_dir=folder, checkpoint_every=10)
            assert first.params["kernel"].shape == (3, 3, 1, 3)
            restored = jaxconv.restore_latest(folder, first.config)
            assert restored is not None and restored.state.step == 20
            assert jaxconv.TrainConfig.from_dict(first.config.to_dict()) == first.config
            resumed = jaxconv.fit(task, **K3_FIT, checkpoint_dir=folder, checkpoint_every=10, resume=True)
            assert resumed.resumed_from == 20
            chex.assert_trees_all_equal(resumed.params, whole.params)
            assert resumed.history == whole.history

        def four_devices_match_one_and_resume(task=task, whole=whole):
            folder = tempfile.mkdtemp()
            jaxconv.fit(task, **{**K3_FIT, "steps": 20}, devices=4, checkpoint_dir=folder, checkpoint_every=10)
            resumed = jaxconv.fit(task, **K3_FIT, devices=4, checkpoint_dir=folder, resume=True)
            assert resumed.resumed_from == 20
            for name in ("kernel", "bias"):
                np.testing.assert_allclose(resumed.params[name], whole.params[name], rtol=RTOL, atol=ATOL)
            straight = jaxconv.fit(task, **K3_FIT, devices=4)
            chex.assert_trees_all_equal(straight.params, resumed.params)

        check(f"{background}: K=3 fit resumes from its checkpoint bit-identically", resumes_bit_identically)
        if background == "gaussian":  # one background on devices (the sharded draw adds its noise there)
            check(f"{background}: K=3 fit on 4 devices equals 1 device, and resumes", four_devices_match_one_and_resume)
    auto = jaxconv.fit(jaxconv.PlantedPatternTask(**K3), batch_size=8, eval_images=50)
    check("binary K=3 steps='auto' separates the validation draw", lambda: _separated(auto))
    return 1 if check.failures else 0


def _separated(result):
    assert result.validation["errors"] == 0 and len(result.validation["bias_shift"]) == 3, result.validation
    assert result.metrics["f1"] == [1.0, 1.0, 1.0], result.metrics


@pytest.mark.slow  # a 4-device subprocess and resumes; the fast tier keeps K = 3 sampling, loss and full-batch training
def test_k3_fit_checkpoints_resumes_and_runs_on_devices():
    result = run_on_cpu_devices([__file__], devices=4)
    assert result.returncode == 0 and "FAIL" not in result.stdout, result.stdout + result.stderr
    assert result.stdout.count("ok ") == 4, result.stdout


if __name__ == "__main__":
    sys.exit(_child())

"""K kernels at once: the multi-pattern task, the K-output loss, training, and the confusion matrix."""

import typing

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv
from jaxconv.lab._multi import (
    MultiPatternTask,
    multi_detection_loss,
    multi_evaluate,
    multi_fit,
    multi_logits,
    multi_matched_filter,
)

TASK = MultiPatternTask(("hedge", "vedge"), image_shape=12, instances=(1, 2), channels=2, amplitude=5.0)


def test_sample_plants_each_pattern_where_its_targets_say():
    images, targets, positions = TASK.sample(jax.random.key(1), 6)
    assert images.shape == (6, 12, 12, 2) and targets.shape == (6, 10, 10, 2) and positions.shape == (6, 4, 2)
    counts = np.asarray(targets.sum((1, 2)))
    assert np.all((counts >= 1) & (counts <= 2))
    # Noise-free check: subtract nothing, but the planted template's mean shows up exactly where targets are.
    noiseless = MultiPatternTask(("hedge", "vedge"), image_shape=12, instances=(1, 2), channels=2, noise_std=1e-6)
    images, targets, _ = noiseless.sample(jax.random.key(2), 3)
    templates = noiseless.templates  # [3, 3, 2, 2]
    rebuilt = np.zeros(images.shape)
    for n, i, j, k in np.argwhere(np.asarray(targets) > 0):
        rebuilt[n, i : i + 3, j : j + 3, :] += noiseless.amplitude * templates[..., k]
    np.testing.assert_allclose(np.asarray(images), rebuilt, atol=1e-4)
    assert noiseless.to_dict()["patterns"][0] == [[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    assert MultiPatternTask(**noiseless.to_dict()) == noiseless


def test_loss_is_the_mean_of_per_channel_detection_losses_under_jit():
    z = jax.random.normal(jax.random.key(0), (2, 5, 5, 3))
    t = (jax.random.uniform(jax.random.key(1), (2, 5, 5, 3)) < 0.1).astype(jnp.float32)
    for loss in typing.get_args(jaxconv.lab.Loss):
        expected = np.mean([jaxconv.detection_loss(z[..., k], t[..., k], loss=loss) for k in range(3)])
        got = jax.jit(lambda a, b, loss=loss: multi_detection_loss(a, b, loss=loss))(z, t)
        np.testing.assert_allclose(got, expected, rtol=1e-6)
    params = {"kernel": jax.random.normal(jax.random.key(2), (3, 3, 2, 4)), "bias": jnp.arange(4.0)}
    x = jax.random.normal(jax.random.key(3), (2, 7, 8, 2))
    reference = jax.lax.conv_general_dilated(x, params["kernel"], (1, 1), "VALID",
                                             dimension_numbers=("NHWC", "HWIO", "NHWC"))  # fmt: skip
    reference = reference + params["bias"].reshape(1, 1, 1, 4)
    np.testing.assert_allclose(multi_logits(params, x), reference, rtol=1e-5, atol=1e-5)


def test_learned_kernels_specialise_and_beat_the_per_pattern_matched_filters_on_confusion():
    task = MultiPatternTask(("hedge", "ring"), image_shape=14, instances=(1, 2), amplitude=4.0)
    learned = multi_evaluate(multi_fit(task, steps=200, batch_size=8).params, task, num_images=100)
    mf = multi_evaluate(multi_matched_filter(task), task, num_images=100)
    confusion = np.asarray(learned["confusion"])
    assert confusion[0, 0] > 0.5 and confusion[1, 1] > 0.8
    # The hedge's matched filter fires on rings (a ring's top row is a hedge); the learned hedge kernel does not.
    assert mf["confusion"][0][1] > 0.5 and confusion[0, 1] < 0.1
    assert min(learned["f1"]) > 0.5 and learned["f1"][0] > mf["f1"][0]


def test_multi_errors():
    with pytest.raises(TypeError, match="`patterns`"):
        MultiPatternTask("hedge")
    with pytest.raises(ValueError, match="`pattern`"):
        MultiPatternTask(("hedge", "nope"))
    with pytest.raises(ValueError, match="`channels`"):
        MultiPatternTask(channels=0)
    with pytest.raises(ValueError, match="`instances`"):
        MultiPatternTask(image_shape=8, instances=3)
    with pytest.raises(TypeError, match="`task`"):
        multi_fit(jaxconv.PlantedPatternTask())
    with pytest.raises(ValueError, match="`steps`"):
        multi_fit(TASK, steps=0)
    with pytest.raises(ValueError, match="`params`"):
        multi_evaluate(multi_matched_filter(MultiPatternTask()), TASK)
    with pytest.raises(ValueError, match="`targets`"):
        multi_detection_loss(jnp.zeros((2, 3)), jnp.zeros((3, 2)))

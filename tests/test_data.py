"""PlantedPatternTask: validation, reproducibility, and targets against a brute-force NumPy search."""

import jax
import numpy as np
import pytest

import jaxconv
from jaxconv import PlantedPatternTask


def brute_force_matches(image: np.ndarray, pattern: np.ndarray) -> np.ndarray:
    ph, pw = pattern.shape
    ho, wo = image.shape[0] - ph + 1, image.shape[1] - pw + 1
    out = np.zeros((ho, wo), np.float32)
    for i in range(ho):
        for j in range(wo):
            out[i, j] = np.array_equal(image[i : i + ph, j : j + pw], pattern)
    return out


@pytest.mark.parametrize("name", ["seed", "cross", "vedge"])
def test_binary_targets_are_every_exact_occurrence(name):
    task = PlantedPatternTask(name, image_shape=(14, 13), instances=(0, 3))
    batch = jax.jit(task.sample, static_argnums=1)(jax.random.key(7), 16)
    pattern = task.pattern_array
    accidental = 0
    for n in range(16):
        image = np.asarray(batch.images[n, :, :, 0])
        assert set(np.unique(image)) <= {0.0, 1.0}
        expected = brute_force_matches(image, pattern)
        np.testing.assert_array_equal(np.asarray(batch.targets[n]), expected)
        planted = [tuple(p) for p in np.asarray(batch.positions[n]) if p[0] >= 0]
        for i, j in planted:  # every planted copy is there, intact
            assert expected[i, j] == 1
        accidental += int(expected.sum()) - len(planted)
    if name == "seed":  # density 0.3: the seed pattern also occurs by chance
        assert accidental > 0


def test_gaussian_targets_are_the_planted_positions():
    task = PlantedPatternTask("seed", image_shape=(10, 11), background="gaussian", amplitude=5.0, noise_std=0.5)
    batch = task.sample(jax.random.key(1), 8)
    for n in range(8):
        expected = np.zeros(task.output_shape, np.float32)
        for i, j in np.asarray(batch.positions[n]):
            if i >= 0:
                expected[i, j] = 1
        np.testing.assert_array_equal(np.asarray(batch.targets[n]), expected)


def test_instances_never_overlap_and_count_is_in_range():
    task = PlantedPatternTask("corner", image_shape=(12, 12), instances=(2, 4), density=0.0)
    batch = task.sample(jax.random.key(3), 64)
    counts = set()
    for n in range(64):
        planted = [tuple(p) for p in np.asarray(batch.positions[n]) if p[0] >= 0]
        counts.add(len(planted))
        for a in range(len(planted)):
            for b in range(a + 1, len(planted)):
                (i1, j1), (i2, j2) = planted[a], planted[b]
                assert abs(i1 - i2) >= 3 or abs(j1 - j2) >= 3, (planted[a], planted[b])
        # on an empty background the image is exactly the pasted copies
        assert float(batch.images[n].sum()) == len(planted) * float(task.pattern_array.sum())
    assert counts == {2, 3, 4}


def test_same_key_reproduces_and_different_keys_differ():
    task = PlantedPatternTask("seed", image_shape=(9, 9))
    a, b = task.sample(jax.random.key(5), 4), task.sample(jax.random.key(5), 4)
    c = task.sample(jax.random.key(6), 4)
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not np.array_equal(np.asarray(a.images), np.asarray(c.images))


def test_vmappable_over_keys():
    task = PlantedPatternTask("seed", image_shape=(8, 8))
    keys = jax.random.split(jax.random.key(0), 3)
    images = jax.vmap(lambda k: task.sample(k, 2).images)(keys)
    assert images.shape == (3, 2, 8, 8, 1)
    np.testing.assert_array_equal(np.asarray(images[1]), np.asarray(task.sample(keys[1], 2).images))


def test_task_is_hashable_and_round_trips():
    task = PlantedPatternTask(np.array([[1, 0], [0, 1]]), image_shape=10, instances=2)
    assert task == PlantedPatternTask(((1, 0), (0, 1)), image_shape=(10, 10), instances=(2, 2))
    assert hash(task) == hash(PlantedPatternTask(**task.to_dict()))
    assert PlantedPatternTask("seed").pattern == ((1.0, 1.0, 0.0), (1.0, 0.0, 0.0))
    assert "seed" in jaxconv.lab.PATTERNS


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"pattern": "nope"}, ValueError, "`pattern`"),
        ({"pattern": [[0, 0], [0, 0]]}, ValueError, "non-constant"),
        ({"pattern": [[1, 1], [1, 1]], "background": "gaussian"}, ValueError, "non-constant"),
        ({"pattern": [[]]}, ValueError, "non-empty"),
        ({"pattern": [1, 0, 1]}, ValueError, "2-D"),
        ({"pattern": [[2, 0]]}, ValueError, "0s and 1s"),
        ({"pattern": [[1, "a"]]}, TypeError, "`pattern`"),
        ({"image_shape": (1, 8)}, ValueError, "`image_shape`"),
        ({"image_shape": 2.5}, TypeError, "`image_shape`"),
        ({"instances": (3, 1)}, ValueError, "min <= max"),
        ({"instances": -1}, ValueError, "`instances`"),
        ({"image_shape": 6, "instances": 9}, ValueError, "at most"),
        ({"background": "pink"}, ValueError, "`background`"),
        ({"density": 1.5}, ValueError, "`density`"),
        ({"noise_std": -1.0, "background": "gaussian"}, ValueError, "`noise_std`"),
        ({"amplitude": float("nan")}, ValueError, "`amplitude`"),
    ],
)
def test_invalid_tasks_raise_naming_the_argument(kwargs, error, words):
    with pytest.raises(error, match=words):
        PlantedPatternTask(**kwargs)


def test_gaussian_allows_real_patterns_and_bad_batch_size_raises():
    task = PlantedPatternTask([[0.5, -1.0]], background="gaussian", image_shape=6)
    assert task.sample(jax.random.key(0), 1).images.shape == (1, 6, 6, 1)
    with pytest.raises(ValueError, match="`batch_size`"):
        task.sample(jax.random.key(0), 0)


def test_near_misses_are_one_pixel_flips_and_targets_stay_exact():
    from jaxconv.lab._data import plant_near_misses

    pattern = np.array([[1, 0, 1], [0, 1, 1]], np.float32)
    task = PlantedPatternTask(pattern, image_shape=(20, 20), instances=1, density=0.25)
    batch = task.sample(jax.random.key(2), 6)
    more = plant_near_misses(task, jax.random.key(3), batch, 1, task.values())
    before, after = np.asarray(batch.images[..., 0]), np.asarray(more.images[..., 0])
    pasted = 0
    for n in range(6):
        np.testing.assert_array_equal(np.asarray(more.targets[n]), brute_force_matches(after[n], pattern))
        i, j = np.asarray(batch.positions[n, 0])  # 20x20 has room: the planted copy is untouched
        np.testing.assert_array_equal(after[n, i : i + 2, j : j + 3], pattern)
        # the one pasted window differs from the pattern in exactly one pixel and holds every changed pixel
        changed = np.argwhere(before[n] != after[n])
        windows = [
            (a, b)
            for a in range(19)
            for b in range(18)
            if np.sum(after[n, a : a + 2, b : b + 3] != pattern) == 1
            and all(a <= r < a + 2 and b <= c < b + 3 for r, c in changed)
        ]
        assert windows, n
        pasted += len(changed) > 0
    assert pasted >= 3  # the background rarely already holds the near miss
    gaussian = PlantedPatternTask(pattern, background="gaussian")
    with pytest.raises(ValueError, match="binary background"):
        plant_near_misses(gaussian, jax.random.key(0), gaussian.sample(jax.random.key(0), 1), 1, gaussian.values())


def test_skeleton_shares_structure_and_values_reproduce_the_task():
    a = PlantedPatternTask([[1, 0, 1], [0, 1, 1]], image_shape=11, density=0.2)
    b = PlantedPatternTask([[0, 0, 1], [1, 1, 1]], image_shape=11, density=0.45)
    assert a.skeleton() == b.skeleton() and hash(a.skeleton()) == hash(b.skeleton())
    assert a.skeleton() != PlantedPatternTask([[1, 0], [0, 1]], image_shape=11).skeleton()
    key = jax.random.key(4)
    direct, via = a.sample(key, 3), jax.jit(lambda v: a.skeleton().sample_with(key, 3, v))(a.values())
    for x, y in zip(direct, via, strict=True):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_an_all_ones_pattern_is_a_solid_block_on_a_binary_background():
    task = PlantedPatternTask([[1, 1], [1, 1]], image_shape=10, density=0.3)
    batch = task.sample(jax.random.key(0), 4)
    for n in range(4):
        image = np.asarray(batch.images[n, :, :, 0])
        np.testing.assert_array_equal(np.asarray(batch.targets[n]), brute_force_matches(image, task.pattern_array))
    assert jaxconv.lab.kernel_cosine(2 * np.ones((2, 2)), task.pattern_array) == pytest.approx(1.0)
    assert jaxconv.evaluate(jaxconv.matched_filter(task), task, num_images=20)["f1"] == 1.0

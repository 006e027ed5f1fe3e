"""least_squares_kernel: the exact least-squares kernel from the patch matrix."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv


def _mse(params, images, targets):
    return float(jnp.mean((jaxconv.logit_map(params, images[..., None]) - targets) ** 2))


def _problem(seed=0, n=5, size=9, kernel_shape=(3, 2)):
    task = jaxconv.PlantedPatternTask("seed", image_shape=(size, size))
    batch = task.sample(jax.random.key(seed), n)
    images = batch.images[..., 0]
    out = (n, size - kernel_shape[0] + 1, size - kernel_shape[1] + 1)
    targets = jax.random.uniform(jax.random.key(seed + 100), out)  # any regression target
    return images, targets


def test_matches_numpy_lstsq():
    images, targets = _problem()
    params = jaxconv.lab.least_squares_kernel(images, targets, (3, 2))
    x = np.asarray(images, np.float64)
    rows = [x[n, i : i + 3, j : j + 2].ravel() for n in range(x.shape[0]) for i in range(7) for j in range(8)]
    design = np.concatenate([np.array(rows), np.ones((len(rows), 1))], axis=1)
    expected = np.linalg.lstsq(design, np.asarray(targets, np.float64).ravel(), rcond=None)[0]
    np.testing.assert_allclose(np.asarray(params["kernel"]).ravel(), expected[:-1], atol=1e-4)
    np.testing.assert_allclose(np.asarray(params["bias"]), expected[-1:], atol=1e-4)
    assert params["kernel"].shape == (3, 2, 1, 1) and params["bias"].shape == (1,)


def test_no_perturbation_does_better():
    images, targets = _problem(seed=1)
    params = jaxconv.lab.least_squares_kernel(images, targets, (3, 2))
    best = _mse(params, images, targets)
    keys = jax.random.split(jax.random.key(2), 20)
    for key, scale in zip(keys, [1e-2, 1e-1] * 10, strict=True):
        k1, k2 = jax.random.split(key)
        other = {
            "kernel": params["kernel"] + scale * jax.random.normal(k1, params["kernel"].shape),
            "bias": params["bias"] + scale * jax.random.normal(k2, (1,)),
        }
        assert best <= _mse(other, images, targets) + 1e-7


def test_accepts_channel_axis_and_checks_shapes():
    images, targets = _problem()
    a = jaxconv.lab.least_squares_kernel(images, targets, (3, 2))
    b = jaxconv.lab.least_squares_kernel(images[..., None], targets, (3, 2))
    np.testing.assert_allclose(a["kernel"], b["kernel"])
    with pytest.raises(ValueError, match="targets"):
        jaxconv.lab.least_squares_kernel(images, targets[:, 1:], (3, 2))
    with pytest.raises(ValueError, match="images"):
        jaxconv.lab.least_squares_kernel(images[0], targets, (3, 2))

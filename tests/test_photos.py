"""The photo background (crops of photographs, brightness/contrast changes, planted copies), the whitening theory
against closed forms and NumPy loops, and the bundled photographs."""

import dataclasses
import subprocess
import sys

import jax
import numpy as np
import pytest

import jaxconv
from jaxconv import theory


def photo_task(photos, **kw):
    base = dict(image_shape=(7, 9), instances=(1, 2), background="photo", photos=photos, amplitude=0.5,
                noise_std=1e-6, contrast=(0.5, 2.0), brightness=(-1.0, 1.0))  # fmt: skip
    return jaxconv.PlantedPatternTask("corner", **{**base, **kw})


def test_photo_background_is_a_crop_under_gain_and_offset_with_copies_where_targets_say():
    rng = np.random.default_rng(0)
    photos = rng.random((3, 12, 15)).astype(np.float32)
    task = photo_task(photos)
    key = jax.random.key(1)
    images, targets, positions = task.sample(key, 16)
    again = task.sample(key, 16)
    assert np.array_equal(images, again.images) and np.array_equal(targets, again.targets)  # deterministic
    p, (h, w) = task.pattern_array, task.image_shape
    windows = np.lib.stride_tricks.sliding_window_view(photos, (h, w), axis=(1, 2)).reshape(-1, h, w)
    gains = []
    drawn = (np.asarray(images[..., 0]), np.asarray(targets), np.asarray(positions))
    for image, target, place in zip(*drawn, strict=True):
        planted = np.zeros((h, w))
        for i, j in place[place[:, 0] >= 0]:
            planted[i : i + 3, j : j + 3] += p
        assert sorted(map(tuple, np.argwhere(target))) == sorted(map(tuple, place[place[:, 0] >= 0]))
        # image = g * (crop + A * copies) + b: fit g, b against every crop of every photograph; one fits exactly.
        scene = windows + 0.5 * planted
        x = np.stack([scene.reshape(len(scene), -1), np.ones((len(scene), h * w))], -1)
        fits = [np.linalg.lstsq(a, image.reshape(-1), rcond=None) for a in x]
        best = int(np.argmin([np.abs(a @ f[0] - image.reshape(-1)).max() for a, f in zip(x, fits, strict=True)]))
        g, b = fits[best][0]
        np.testing.assert_allclose(x[best] @ fits[best][0], image.reshape(-1), atol=1e-4)
        assert 0.5 - 1e-4 <= g <= 2.0 + 1e-4 and -1 - 1e-4 <= b <= 1 + 1e-4
        gains.append(g)
    assert np.std(gains) > 0.1  # the gain does vary


def test_photo_task_holds_photos_by_value_and_skeleton_shares_compiles():
    photos = np.random.default_rng(0).random((2, 10, 10))
    a, b = photo_task(photos), photo_task(photos.copy())
    assert a == b and hash(a) == hash(b) and a != photo_task(photos + 0.1)
    assert a.skeleton() == photo_task(photos + 0.1, amplitude=2.0).skeleton()
    assert a.to_dict()["photos"] == {"shape": [2, 10, 10], "sha256": a.photos.digest}
    assert "photos" not in jaxconv.PlantedPatternTask("seed").to_dict()
    held = dataclasses.replace(a, photos=photos[:1])
    assert held.photos.shape == (1, 10, 10) and held.contrast == a.contrast
    with pytest.raises(ValueError, match="`photos` must be at least the image shape"):
        photo_task(photos[:, :5])
    with pytest.raises(TypeError, match="`photos` must be an array"):
        photo_task(None)
    with pytest.raises(ValueError, match="`contrast` must be"):
        photo_task(photos, contrast=(2.0, 1.0))
    with pytest.raises(ValueError, match="`photos` must be None unless background is 'photo'"):
        jaxconv.PlantedPatternTask("seed", photos=photos)


def test_autocovariance_equals_a_numpy_loop():
    x = np.random.default_rng(2).normal(size=(3, 6, 7)).cumsum(1)  # correlated along rows
    r = theory.autocovariance(x, (3, 2))
    c = x - x.mean()
    for dy in range(-2, 3):
        for dx in range(-1, 2):
            total, count = 0.0, 0
            for n in range(3):
                for i in range(6):
                    for j in range(7):
                        if 0 <= i + dy < 6 and 0 <= j + dx < 7:
                            total += c[n, i, j] * c[n, i + dy, j + dx]
                            count += 1
            np.testing.assert_allclose(r[2 + dy, 1 + dx], total / count, rtol=1e-10)


def test_whitened_matched_filter_closed_form_for_separable_exponential_covariance():
    # R(dy, dx) = rho^|dy| rho^|dx|: S = T (x) T with T the AR(1) Toeplitz matrix, whose inverse is tridiagonal.
    rho, n = 0.7, 3
    lags = np.arange(-(n - 1), n)
    autocov = np.outer(rho ** np.abs(lags), rho ** np.abs(lags))
    t_inv = (np.diag([1.0, 1 + rho**2, 1.0]) - rho * (np.eye(n, k=1) + np.eye(n, k=-1))) / (1 - rho**2)
    p = np.random.default_rng(3).random((n, n))
    w = theory.whitened_matched_filter(p, autocov)
    np.testing.assert_allclose(w, t_inv @ p @ t_inv.T, rtol=1e-10)
    best = theory.linear_snr(w, p, autocov)
    np.testing.assert_allclose(best, np.sqrt(np.sum(p * (t_inv @ p @ t_inv.T))), rtol=1e-10)
    for k in np.random.default_rng(4).normal(size=(20, n, n)):  # nothing beats it (Cauchy-Schwarz)
        assert theory.linear_snr(k, p, autocov) <= best + 1e-12


def test_spectrum_slope_of_a_power_law_with_random_phases():
    rng = np.random.default_rng(5)
    f = np.hypot(np.fft.fftfreq(64)[:, None], np.fft.fftfreq(64)[None, :])
    amplitude = np.where(f > 0, f, 1.0) ** -1.0  # power f^-2
    images = np.fft.ifft2(amplitude * np.exp(2j * np.pi * rng.random((4, 64, 64)))).real
    assert abs(theory.spectrum_slope(images) - 2.0) < 0.1


def test_bundled_photos_are_read_from_the_installed_packages():
    pytest.importorskip("skimage")
    pytest.importorskip("sklearn")
    from jaxconv.evidence import bundled_photos

    photos = bundled_photos(["camera", "flower", "brick"], (64, 80))
    assert photos.shape == (3, 64, 80) and photos.dtype == np.float32
    assert 0 <= photos.min() and photos.max() <= 1 and all(p.std() > 0.01 for p in photos)
    with pytest.raises(ValueError, match="`names` must be names from"):
        bundled_photos(["no_such_photo"], (8, 8))


def test_the_package_loads_no_image_library_until_a_photograph_is_read():
    code = (
        "import sys, jaxconv, jaxconv.lab, jaxconv.theory, jaxconv.evidence; "
        "print([m for m in ('skimage', 'sklearn') if m in sys.modules])"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"

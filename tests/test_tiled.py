"""``tiled_response`` against ``conv2d`` on the whole image."""

from __future__ import annotations

import os

import jax
import numpy as np
import pytest

import jaxconv
import jaxconv.lab._tiled

RTOL = ATOL = 1e-5  # float32, a 3x4 kernel: at most 12 products per output


def _params(rng, kh=3, kw=4):
    return {
        "kernel": rng.normal(size=(kh, kw, 1, 1)).astype(np.float32),
        "bias": np.array([0.25], np.float32),
    }


def _reference(image, params):
    return np.asarray(jaxconv.conv2d(image, params["kernel"][:, :, 0, 0], params["bias"]))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_npy_on_disk_in_uneven_tiles_equals_whole_image(tmp_path, rng, monkeypatch):
    image = rng.normal(size=(37, 29)).astype(np.float32)
    np.save(tmp_path / "image.npy", image)
    params = _params(rng)
    seen = []
    conv = jaxconv.lab._tiled.conv2d

    def recording_conv2d(x, *args, **kwargs):
        if not isinstance(x, jax.core.Tracer):  # the shape check traces conv2d once, on no data
            seen.append(x.shape)
        return conv(x, *args, **kwargs)

    monkeypatch.setattr(jaxconv.lab._tiled, "conv2d", recording_conv2d)
    result = jaxconv.lab.tiled_response(tmp_path / "image.npy", params, tile=(8, 10), progress=False)
    np.testing.assert_allclose(result.logits, _reference(image, params), rtol=RTOL, atol=ATOL)
    assert result.logits.shape == (35, 26)
    # Every tile is (8 + 2) x (10 + 3), with 5 x 3 tiles; the whole image never went to the device in one piece.
    assert set(seen) == {(10, 13)} and len(seen) == 15
    assert result.seconds > 0 and result.megapixels_per_second > 0


def test_written_to_out_atomically(tmp_path, rng):
    image = rng.integers(0, 255, size=(20, 17), dtype=np.uint8)  # promoted to the kernel's float32
    params = _params(rng, 2, 2)
    out = tmp_path / "logits.npy"
    result = jaxconv.lab.tiled_response(image, params, tile=(6, 6), out=out, progress=False)
    assert isinstance(result.logits, np.memmap) and result.logits.dtype == np.float32
    np.testing.assert_allclose(np.load(out), _reference(image, params), rtol=RTOL, atol=1e-3)
    assert sorted(os.listdir(tmp_path)) == ["logits.npy"]


def test_failure_midway_leaves_no_half_written_file(tmp_path, rng, monkeypatch):
    image = rng.normal(size=(20, 20)).astype(np.float32)
    out = tmp_path / "logits.npy"
    np.save(out, np.zeros(3))
    calls = []

    def failing_conv2d(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("device lost")
        return jaxconv.conv2d(*args, **kwargs)

    monkeypatch.setattr(jaxconv.lab._tiled, "conv2d", failing_conv2d)
    with pytest.raises(RuntimeError, match="device lost"):
        jaxconv.lab.tiled_response(image, _params(rng), tile=(5, 5), out=out, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["logits.npy"]
    np.testing.assert_array_equal(np.load(out), np.zeros(3))


def test_tile_larger_than_image_and_progress_bar(rng, capsys):
    image = rng.normal(size=(9, 7)).astype(np.float32)
    params = _params(rng)
    result = jaxconv.lab.tiled_response(image, params, tile=(100, 100))
    np.testing.assert_allclose(result.logits, _reference(image, params), rtol=RTOL, atol=ATOL)
    assert "tiled_response" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("image", "params", "tile", "error", "argument"),
    [
        (np.zeros((4, 4, 1)), None, (2, 2), ValueError, "path_or_array"),
        (np.zeros((4, 4)), {"kernel": np.zeros((2, 2))}, (2, 2), TypeError, "params"),
        (np.zeros((4, 4)), {"kernel": np.zeros((2, 2)), "bias": np.zeros(1)}, (2, 2), ValueError, "params"),
        (np.zeros((4, 4)), {"kernel": np.zeros((2, 2, 1, 1)), "bias": np.zeros(2)}, (2, 2), ValueError, "params"),
        (np.zeros((4, 4)), {"kernel": np.zeros((5, 2, 1, 1)), "bias": np.zeros(1)}, (2, 2), ValueError, "params"),
        (np.zeros((4, 4)), None, (0, 2), ValueError, "tile"),
        (np.zeros((4, 4)), None, 3, ValueError, "tile"),
        (np.zeros((4, 4)), {"kernel": np.zeros((2, 2, 1, 1), int), "bias": np.zeros(1)}, (2, 2), TypeError, "kernel"),
    ],
)
def test_bad_input_names_the_argument(image, params, tile, error, argument):
    params = params or {"kernel": np.zeros((2, 2, 1, 1), np.float32), "bias": np.zeros(1, np.float32)}
    with pytest.raises(error, match=f"`{argument}`"):
        jaxconv.lab.tiled_response(image, params, tile=tile, progress=False)

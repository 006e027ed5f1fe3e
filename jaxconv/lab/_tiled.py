"""``tiled_response``: the VALID logit map of an image on disk, convolved tile by tile.

The image is memory-mapped and read one tile at a time — each input tile overlaps the next by the kernel's
``KH - 1`` rows / ``KW - 1`` columns, so the output tiles abut exactly — and only that tile is on the device.
Edge tiles are zero-filled to the full tile shape (their surplus output is cropped), so one compiled
convolution serves every tile. The next tile is read from disk while the device convolves the current one.
"""

from __future__ import annotations

import collections
import os
import tempfile
import time
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from jaxconv._checks import fail
from jaxconv.conv._conv import conv2d


class TiledResponse(NamedTuple):
    """What :func:`tiled_response` returns.

    Attributes:
      logits: ``[H - KH + 1, W - KW + 1]``, the logit map; a read-only memmap of ``out`` when one was given,
        else an in-memory NumPy array.
      seconds: wall time of the whole call (compilation, reading, convolving and writing).
      megapixels_per_second: the image's ``H * W / 1e6`` divided by ``seconds``.
    """

    logits: np.ndarray
    seconds: float
    megapixels_per_second: float


def _fail(argument: str, allowed: str, given: Any, error: type[Exception] = ValueError) -> Exception:
    return fail("tiled_response", argument, allowed, given, error)


def _open_image(path_or_array: Any) -> np.ndarray:
    if isinstance(path_or_array, (str, os.PathLike)):
        image = np.load(os.fspath(path_or_array), mmap_mode="r")
    elif isinstance(path_or_array, np.ndarray):
        image = path_or_array
    else:
        image = np.asarray(path_or_array)
    if image.ndim != 2:
        raise _fail("path_or_array", "a single-channel [H, W] image (or a .npy file of one)", f"shape {image.shape}")
    return image


def _check_params(params: Any) -> tuple[np.ndarray, np.ndarray]:
    if not isinstance(params, Mapping) or "kernel" not in params or "bias" not in params:
        raise _fail("params", 'a mapping {"kernel": [KH, KW, 1, 1], "bias": [1]}', repr(params), TypeError)
    kernel, bias = np.asarray(params["kernel"]), np.asarray(params["bias"])
    if kernel.ndim != 4 or kernel.shape[2:] != (1, 1) or min(kernel.shape[:2]) < 1:
        raise _fail("params", 'a "kernel" of shape [KH, KW, 1, 1] (HWIO, one channel in and out)', kernel.shape)
    if bias.shape != (1,):
        raise _fail("params", 'a "bias" of shape [1]', bias.shape)
    return kernel[:, :, 0, 0], bias


def _check_tile(tile: Any) -> tuple[int, int]:
    ok = (
        isinstance(tile, (tuple, list))
        and len(tile) == 2
        and all(isinstance(t, (int, np.integer)) and not isinstance(t, bool) and t >= 1 for t in tile)
    )
    if not ok:
        raise _fail("tile", "a pair (th, tw) of ints >= 1 (output rows and columns per tile)", repr(tile))
    return int(tile[0]), int(tile[1])


def _tiles(out_hw: tuple[int, int], tile: tuple[int, int]) -> Iterator[tuple[int, int]]:
    for i in range(0, out_hw[0], tile[0]):
        for j in range(0, out_hw[1], tile[1]):
            yield i, j


def tiled_response(
    path_or_array: str | os.PathLike[str] | np.ndarray,
    params: Mapping[str, Any],
    *,
    tile: tuple[int, int] = (1024, 1024),
    out: str | os.PathLike[str] | None = None,
    progress: bool = True,
) -> TiledResponse:
    """The VALID logit map ``conv2d(image, kernel) + bias`` of a large single-channel image, tile by tile.

    The image is memory-mapped (``np.load(..., mmap_mode="r")``) and each ``(th + KH - 1, tw + KW - 1)`` input
    tile — overlapping its neighbours by the kernel's extent less one — is copied to the device, convolved with
    :func:`jaxconv.conv2d` and its ``(th, tw)`` output tile copied back; the whole image is never on the
    device. The result equals ``conv2d(image, kernel) + bias`` on the whole image to float rounding. A
    progress bar (tqdm, on stderr) shows tiles done and megapixels per second.

    With ``out``, the logits are written into a ``.npy`` memmap: first to a temporary file in ``out``'s folder,
    then renamed onto ``out`` with ``os.replace``, so ``out`` is either absent/unchanged or complete, never
    half written.

    Args:
      path_or_array: a ``.npy`` file of an ``[H, W]`` image, or an ``[H, W]`` array (a ``np.memmap`` is read
        lazily, like a path). Bool and integer images are promoted to the kernel's dtype.
      params: ``{"kernel": [KH, KW, 1, 1] (HWIO), "bias": [1]}``, the lab's parameter format.
      tile: ``(th, tw)``, output rows and columns per tile (clipped to the output's size); device memory
        grows with ``(th + KH - 1) * (tw + KW - 1)``.
      out: optional path of a ``.npy`` file to write the logits to.
      progress: show the progress bar.

    Returns:
      A :class:`TiledResponse`: ``logits`` ``[H - KH + 1, W - KW + 1]`` (a read-only memmap of ``out`` when
      given), ``seconds`` and ``megapixels_per_second`` (image pixels / 1e6 / seconds, compile included).

    Raises:
      ValueError: the image is not 2-D; ``params`` has a kernel not ``[KH, KW, 1, 1]`` or a bias not ``[1]``;
        ``tile`` is not a pair of ints ``>= 1``; the kernel is larger than the image.
      TypeError: ``params`` is not a mapping with ``"kernel"`` and ``"bias"``, or a non-floating kernel.

    Examples:
      >>> import numpy as np
      >>> import jaxconv
      >>> image = np.arange(30.0, dtype=np.float32).reshape(5, 6)
      >>> params = {"kernel": np.ones((2, 2, 1, 1), np.float32), "bias": np.array([-1.0], np.float32)}
      >>> result = jaxconv.lab.tiled_response(image, params, tile=(2, 3), progress=False)
      >>> result.logits
      array([[ 13.,  17.,  21.,  25.,  29.],
             [ 37.,  41.,  45.,  49.,  53.],
             [ 61.,  65.,  69.,  73.,  77.],
             [ 85.,  89.,  93.,  97., 101.]], dtype=float32)
      >>> bool(np.allclose(result.logits, jaxconv.conv2d(image, params["kernel"][:, :, 0, 0], params["bias"])))
      True
    """
    start = time.perf_counter()
    image = _open_image(path_or_array)
    kernel, bias = _check_params(params)
    th, tw = _check_tile(tile)
    (h, w), (kh, kw) = image.shape, kernel.shape
    if kh > h or kw > w:
        raise _fail("params", f"a kernel no larger than the image {h}x{w}", f"kernel {kh}x{kw}")
    out_hw = (h - kh + 1, w - kw + 1)
    th, tw = min(th, out_hw[0]), min(tw, out_hw[1])
    in_tile = (th + kh - 1, tw + kw - 1)
    # conv2d's own checks (dtype of the kernel, ...) and the result dtype, without computing anything.
    result = jax.eval_shape(
        conv2d,
        jax.ShapeDtypeStruct(in_tile, image.dtype),
        jax.ShapeDtypeStruct(kernel.shape, kernel.dtype),
        jax.ShapeDtypeStruct(bias.shape, bias.dtype),
    )
    dtype = np.dtype(result.dtype)
    kernel_d, bias_d = jnp.asarray(kernel, dtype), jnp.asarray(bias, dtype)

    tmp_path = None
    if out is not None:
        folder = os.path.dirname(os.path.abspath(out))
        handle, tmp_path = tempfile.mkstemp(dir=folder, prefix=f".{os.path.basename(out)}.", suffix=".tmp")
        os.close(handle)
    try:
        if tmp_path is None:
            logits = np.empty(out_hw, dtype)
        else:
            logits = np.lib.format.open_memmap(tmp_path, mode="w+", dtype=dtype, shape=out_hw)
        positions = list(_tiles(out_hw, (th, tw)))
        pending: collections.deque[tuple[int, int, jax.Array]] = collections.deque()

        def collect() -> None:
            i, j, response = pending.popleft()
            rows, cols = min(th, out_hw[0] - i), min(tw, out_hw[1] - j)
            logits[i : i + rows, j : j + cols] = np.asarray(response)[:rows, :cols]

        megapixels = h * w / 1e6
        with tqdm(total=len(positions), unit="tile", desc="tiled_response", disable=not progress) as bar:
            for i, j in positions:
                block = np.zeros(in_tile, dtype)
                piece = image[i : i + in_tile[0], j : j + in_tile[1]]
                block[: piece.shape[0], : piece.shape[1]] = piece
                # Dispatch is asynchronous: the device convolves this tile while the host reads the next.
                pending.append((i, j, conv2d(jax.device_put(block), kernel_d, bias_d)))
                if len(pending) > 1:
                    collect()
                bar.update()
                bar.set_postfix_str(f"{megapixels * bar.n / len(positions) / (time.perf_counter() - start):.1f} MP/s")
            while pending:
                collect()
        if tmp_path is not None and out is not None:
            assert isinstance(logits, np.memmap)
            logits.flush()
            del logits
            os.replace(tmp_path, out)
            tmp_path = None
            logits = np.load(os.fspath(out), mmap_mode="r")
    finally:
        if tmp_path is not None and os.path.exists(tmp_path):
            os.remove(tmp_path)
    seconds = time.perf_counter() - start
    return TiledResponse(logits, seconds, h * w / 1e6 / seconds)


__all__ = ["TiledResponse", "tiled_response"]

"""Photographs that ship inside packages — scikit-learn's two sample images and the ones in scikit-image's wheel —
as grey arrays for the lab's photo background: read from the installed files, never downloaded.

scikit-image fetches some of its ``skimage.data`` images on first use (through pooch); only the files its wheel
holds are offered here, read from the package's folder directly, so nothing reaches the network. Both libraries
are optional (the ``interop`` and ``images`` extras) and imported only when a photograph is loaded.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np

from jaxconv._checks import fail

SKLEARN_PHOTOS = ("china", "flower")
"""scikit-learn's ``load_sample_images`` (427x640 colour)."""


def _skimage_files() -> dict[str, str]:
    """``{name: path}`` of the PNG and JPEG images inside the installed scikit-image wheel."""
    import skimage  # noqa: PLC0415 (the images extra)

    folder = os.path.join(os.path.dirname(skimage.__file__), "data")
    names = sorted(os.listdir(folder))
    return {os.path.splitext(n)[0]: os.path.join(folder, n) for n in names if n.endswith((".png", ".jpg"))}


def bundled_photos(names: Sequence[str], shape: tuple[int, int]) -> np.ndarray:
    """Grey ``[N, H, W]`` float32 photographs in ``[0, 1]``: the centre ``H x W`` of each named one.

    Args:
      names: photographs by name: ``"china"``, ``"flower"`` (scikit-learn) or the stem of an image in scikit-image's
        wheel (``"camera"``, ``"astronaut"``, ``"coffee"``, ``"brick"``, ``"grass"``, ``"gravel"``, ...).
      shape: ``(H, W)``, at most each photograph's size.

    Returns:
      ``[N, H, W]`` float32 (colour made grey by ITU-R 601 luma, scikit-image's ``rgb2gray``).

    Raises:
      ValueError: an unknown name (the message lists the bundled ones), or a photograph smaller than ``shape``.
      ImportError: scikit-image (or, for the sample images, scikit-learn) is not installed.

    Examples:
      >>> from jaxconv.evidence import bundled_photos
      >>> photos = bundled_photos(["camera", "china"], (256, 320))
      >>> photos.shape, photos.dtype, 0.0 <= float(photos.min()) < float(photos.max()) <= 1.0
      ((2, 256, 320), dtype('float32'), True)
    """
    from skimage import color, io, util  # noqa: PLC0415 (the images extra)

    files = _skimage_files()
    if isinstance(names, str) or not names:
        raise fail("bundled_photos", "names", "a non-empty sequence of photograph names", names, TypeError)
    h, w = shape
    out = []
    for name in names:
        if name in SKLEARN_PHOTOS:
            from sklearn.datasets import load_sample_image  # noqa: PLC0415 (the interop extra)

            image = load_sample_image(f"{name}.jpg")
        elif name in files:
            image = io.imread(files[name])
        else:
            raise fail("bundled_photos", "names", f"names from {SKLEARN_PHOTOS + tuple(files)}", name)
        if image.ndim == 3:
            image = color.rgb2gray(image[..., :3])
        image = util.img_as_float(image)
        if image.shape[0] < h or image.shape[1] < w:
            raise fail("bundled_photos", "shape", f"at most {name}'s size {image.shape[:2]}", shape)
        top, left = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
        out.append(image[top : top + h, left : left + w])
    return np.stack(out).astype(np.float32)


__all__ = ["SKLEARN_PHOTOS", "bundled_photos"]

"""The exact least-squares kernel: a convolution is linear in its kernel, so a regression target has a closed form."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from jaxconv.lab._anatomy import patches

Params = dict[str, jax.Array]


def least_squares_kernel(
    images: jax.typing.ArrayLike, targets: jax.typing.ArrayLike, kernel_shape: tuple[int, int]
) -> Params:
    """The kernel and bias minimising ``sum (conv2d(images, kernel) + bias - targets)^2`` over VALID positions.

    The response is ``<patches[n, i, j], kernel> + bias``, so stacking :func:`jaxconv.lab.patches` of every image
    into a ``[N * Ho * Wo, KH * KW]`` matrix, plus a column of ones for the bias, turns the fit into an ordinary
    least-squares problem, solved exactly with ``jnp.linalg.lstsq`` (the minimum-norm solution if it is
    rank-deficient). Gradient descent on the same mean squared error converges to it.

    Args:
      images: ``[N, H, W]`` or ``[N, H, W, 1]``.
      targets: ``[N, H - KH + 1, W - KW + 1]``, the wanted response at each VALID position.
      kernel_shape: ``(KH, KW)``.

    Returns:
      ``{"kernel": [KH, KW, 1, 1], "bias": [1]}`` float32, the format of :func:`jaxconv.logit_map`.

    Raises:
      ValueError: images or targets of the wrong shape.

    Examples:
      >>> import jax
      >>> import jax.numpy as jnp
      >>> import jaxconv
      >>> images = jax.random.normal(jax.random.key(0), (4, 6, 6))
      >>> true = jnp.array([[1.0, -2.0], [0.5, 3.0]])
      >>> targets = jax.vmap(lambda im: jaxconv.conv2d(im, true))(images) + 0.25
      >>> params = jaxconv.lab.least_squares_kernel(images, targets, (2, 2))
      >>> jnp.round(params["kernel"][:, :, 0, 0], 4), jnp.round(params["bias"], 4)
      (Array([[ 1. , -2. ],
             [ 0.5,  3. ]], dtype=float32), Array([0.25], dtype=float32))
    """
    images = jnp.asarray(images)
    if images.ndim == 4 and images.shape[-1] == 1:
        images = images[..., 0]
    if images.ndim != 3:
        raise ValueError(f"least_squares_kernel: `images` must be [N, H, W] or [N, H, W, 1]; got shape {images.shape}")
    kh, kw = kernel_shape
    n, h, w = images.shape
    targets = jnp.asarray(targets)
    want = (n, h - kh + 1, w - kw + 1)
    if targets.shape != want:
        raise ValueError(
            f"least_squares_kernel: `targets` must be {list(want)} (one value per VALID position); got {targets.shape}"
        )
    windows: Any = jax.vmap(lambda image: patches(image, (kh, kw)))(images.astype(jnp.float32))
    design = windows.reshape(-1, kh * kw)
    design = jnp.concatenate([design, jnp.ones((design.shape[0], 1), design.dtype)], axis=1)
    solution = jnp.linalg.lstsq(design, targets.reshape(-1).astype(jnp.float32))[0]
    return {"kernel": solution[:-1].reshape(kh, kw, 1, 1), "bias": solution[-1:]}


__all__ = ["least_squares_kernel"]

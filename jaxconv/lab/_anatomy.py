"""The two properties that make convolution work, measured: translation equivariance and weight tying.

- :func:`shift_error` — shift the image, and the response shifts with it: exactly with circular padding, and
  up to a boundary band with the other padding modes.
- :func:`kernel_gradient_sources` — each kernel weight's gradient is a sum of contributions from every output
  position, because the same weights are used at every position.

And what a learned kernel has become: :func:`kernel_spectrum` reads its preferred orientation and spatial
frequency, and how selective it is for orientation, off its 2-D power spectrum.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from jaxconv._checks import check_int, fail
from jaxconv.conv._conv import conv2d
from jaxconv.conv._spec import make_spec


def _plain_spec(image_shape: tuple[int, ...], kernel_shape: tuple[int, ...], options: dict[str, Any], who: str):
    if len(image_shape) != 2 or len(kernel_shape) != 2:
        raise ValueError(
            f"{who}: `image` and `kernel` must be plain 2-D arrays [H, W] and [KH, KW]; "
            f"got shapes {image_shape} and {kernel_shape}"
        )
    allowed = {"padding", "padding_mode", "dilation", "strategy", "precision"}
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"{who}: conv options must be among {sorted(allowed)} (stride 1); got {sorted(unknown)}")
    return make_spec(
        (1, *image_shape, 1),
        (*kernel_shape, 1, 1),
        stride=1,
        padding=options.get("padding", "VALID"),
        dilation=options.get("dilation", 1),
        groups=1,
        padding_mode=options.get("padding_mode", "zeros"),
        strategy=options.get("strategy", "auto"),
        precision=options.get("precision"),
    )


def shift_error(
    image: jax.typing.ArrayLike, kernel: jax.typing.ArrayLike, shift: tuple[int, int], **conv_options: Any
) -> tuple[jax.Array, np.ndarray]:
    """How far the response to a circularly shifted image is from the shifted response.

    ``error = |conv2d(roll(image, shift)) - roll(conv2d(image), shift)|``, elementwise, for a stride-1
    convolution whose output has the image's size (``"SAME"``-like padding). Also returns the *interior*:
    the output positions whose window, in the image and in its shifted copy, touches neither the padding nor
    the seam where ``roll`` wraps around. Equivariance promises ``error == 0`` on the interior in every
    padding mode, and everywhere with ``padding_mode="circular"``.

    Args:
      image: ``[H, W]``.
      kernel: ``[KH, KW]``.
      shift: ``(dy, dx)``, any integers (taken modulo the image size).
      **conv_options: ``padding`` (default ``"SAME"``), ``padding_mode``, ``dilation``, ``strategy``,
        ``precision`` for :func:`jaxconv.conv2d`; the stride is 1.

    Returns:
      ``(error [H, W], interior [H, W] bool)``.

    Raises:
      ValueError: non-2-D inputs, unknown options, or padding that does not keep the image's size.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jaxconv
      >>> image = jnp.arange(36.0).reshape(6, 6) % 7
      >>> error, interior = jaxconv.lab.shift_error(image, jnp.ones((3, 3)), (1, 2), padding_mode="circular")
      >>> float(error.max())
      0.0
      >>> error, interior = jaxconv.lab.shift_error(image, jnp.ones((3, 3)), (1, 2), padding_mode="zeros")
      >>> float(error[interior].max()), bool(error.max() > 0)
      (0.0, True)
    """
    image, kernel = jnp.asarray(image), jnp.asarray(kernel)
    conv_options = {"padding": "SAME", **conv_options}
    spec = _plain_spec(image.shape, kernel.shape, conv_options, "shift_error")
    if spec.out_hw != image.shape:
        raise ValueError(
            f"shift_error: `padding` must keep the image's size {image.shape} (e.g. 'SAME'); "
            f"got {conv_options['padding']!r}, output {spec.out_hw}"
        )
    dy, dx = shift
    response = conv2d(image, kernel, **conv_options)
    shifted = conv2d(jnp.roll(image, (dy, dx), axis=(0, 1)), kernel, **conv_options)
    error = jnp.abs(shifted - jnp.roll(response, (dy, dx), axis=(0, 1)))

    # Output p's window covers rows [p - lo, p - lo + extent) of the shifted image. If that range lies inside
    # the image and on one side of the seam at row s (where roll wraps), it holds the same pixels, in the same
    # order, as the window of output (p - s) mod H in the unshifted image — so the two responses are equal.
    interior = np.ones(image.shape, bool)
    for axis, (size, (lo, _), extent, s) in enumerate(
        zip(image.shape, spec.padding, spec.extent, (dy % image.shape[0], dx % image.shape[1]), strict=True)
    ):
        start = np.arange(size) - lo
        keep = (start >= 0) & (start + extent <= size) & ((start >= s) | (start + extent <= s))
        interior &= keep[:, None] if axis == 0 else keep[None, :]
    return error, interior


def patches(image: jax.typing.ArrayLike, kernel_shape: tuple[int, int], **conv_options: Any) -> jax.Array:
    """The neighbourhood under the kernel at every output position: ``patches[i, j] = d r[i, j] / d kernel``.

    A convolution's response is linear in its kernel, ``r[i, j] = <patches[i, j], kernel>``, so the patches are
    exactly the Jacobian of :func:`jaxconv.conv2d` with respect to the kernel — computed here by forward-mode
    autodiff (``KH * KW`` JVPs), not by a second implementation of the sliding window.

    Args:
      image: ``[H, W]``.
      kernel_shape: ``(KH, KW)``.
      **conv_options: ``padding``, ``padding_mode``, ``dilation``, ``strategy``, ``precision`` for
        :func:`jaxconv.conv2d` (stride 1).

    Returns:
      ``[Ho, Wo, KH, KW]`` in the image's floating dtype (float32 for bool/integer images).

    Raises:
      ValueError: a non-2-D image, a bad ``kernel_shape`` or unknown options.

    Examples:
      >>> import jax.numpy as jnp
      >>> import jaxconv
      >>> image = jnp.arange(12.0).reshape(3, 4)
      >>> p = jaxconv.lab.patches(image, (2, 2))
      >>> p.shape
      (2, 3, 2, 2)
      >>> p[1, 2]
      Array([[ 6.,  7.],
             [10., 11.]], dtype=float32)
    """
    image = jnp.asarray(image)
    if (
        not isinstance(kernel_shape, (tuple, list))
        or len(kernel_shape) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in kernel_shape)
    ):
        raise ValueError(f"patches: `kernel_shape` must be a pair (KH, KW) of ints >= 1; got {kernel_shape!r}")
    _plain_spec(image.shape, tuple(kernel_shape), conv_options, "patches")
    dtype = image.dtype if jnp.issubdtype(image.dtype, jnp.floating) else jnp.float32
    kernel = jnp.zeros(tuple(kernel_shape), dtype)
    return jax.jacfwd(lambda k: conv2d(image, k, **conv_options))(kernel)


def kernel_gradient_sources(
    image: jax.typing.ArrayLike,
    kernel: jax.typing.ArrayLike,
    output_grad: jax.typing.ArrayLike,
    **conv_options: Any,
) -> jax.Array:
    """Each output position's contribution to the gradient of the (shared) kernel.

    For a loss ``L`` of the response ``r = conv2d(image, kernel)``,
    ``dL/dkernel = sum_{i,j} dL/dr[i,j] * dr[i,j]/dkernel = sum_{i,j} dL/dr[i,j] * patches[i,j]``: the gradient
    is a sum over *every* output position, because every position uses the same weights. This returns the
    summands, so that ``sources.sum((0, 1))`` is ``jax.grad`` of the loss. An untied (locally connected or
    dense) layer would get only one of them per weight.

    Args:
      image: ``[H, W]``.
      kernel: ``[KH, KW]`` (the response is linear in it, so only its shape and dtype matter).
      output_grad: ``dL/dr``, ``[Ho, Wo]``.
      **conv_options: ``padding``, ``padding_mode``, ``dilation``, ``strategy``, ``precision`` for
        :func:`jaxconv.conv2d` (stride 1).

    Returns:
      ``[Ho, Wo, KH, KW]``: ``sources[i, j]`` is position ``(i, j)``'s share of ``dL/dkernel``.

    Raises:
      ValueError: non-2-D inputs, unknown options, or ``output_grad`` of the wrong shape.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> import jaxconv
      >>> image = jnp.arange(16.0).reshape(4, 4)
      >>> kernel = jnp.ones((2, 2))
      >>> sources = jaxconv.lab.kernel_gradient_sources(image, kernel, jnp.ones((3, 3)))
      >>> sources.shape
      (3, 3, 2, 2)
      >>> sources[0, 0]  # position (0, 0) sees the top-left window
      Array([[0., 1.],
             [4., 5.]], dtype=float32)
      >>> bool(jnp.allclose(sources.sum((0, 1)), jax.grad(lambda k: jaxconv.conv2d(image, k).sum())(kernel)))
      True
    """
    kernel, output_grad = jnp.asarray(kernel), jnp.asarray(output_grad)
    image = jnp.asarray(image, jnp.result_type(kernel.dtype, jnp.asarray(image).dtype))
    spec = _plain_spec(jnp.shape(image), kernel.shape, conv_options, "kernel_gradient_sources")
    if output_grad.shape != spec.out_hw:
        raise ValueError(
            f"kernel_gradient_sources: `output_grad` must have the response's shape {spec.out_hw}; "
            f"got {output_grad.shape}"
        )
    return output_grad[:, :, None, None] * patches(image, (kernel.shape[0], kernel.shape[1]), **conv_options)


def kernel_spectrum(kernel: jax.typing.ArrayLike, *, size: int = 64) -> dict[str, float]:
    """A 2-D kernel's preferred orientation and spatial frequency, and its orientation selectivity, measured from
    its power spectrum ``P = |FFT(kernel - mean)|^2`` (zero-padded to ``size x size``).

    A frequency ``(fy, fx)`` (cycles per pixel, ``fy`` along rows, which run down) is a grating whose stripes
    run across its wave vector; its orientation is the wave vector's angle ``atan2(-fy, fx)`` in ``[0, 180)``
    degrees, counter-clockwise from the columns' axis (0: stripes run vertically, intensity varies along a row;
    90: stripes run horizontally). The peak of ``P`` gives ``orientation`` and ``frequency``; ``selectivity``
    is ``|sum P e^(2i theta)| / sum P`` over every frequency but 0 (1: all power at one orientation, 0: none
    preferred, as a round blob).

    Args:
      kernel: ``[KH, KW]`` (or ``[KH, KW, 1, 1]``), not constant.
      size: the FFT size, ``>= max(KH, KW)`` (finer frequency resolution for larger).

    Returns:
      ``{"orientation_deg", "frequency", "selectivity", "mean"}`` (``mean``: the kernel's mean weight, the part
      the spectrum leaves out: its response to brightness).

    Raises:
      ValueError: bad shapes, a constant kernel, a ``size`` below the kernel's.

    Examples:
      >>> import numpy as np
      >>> from jaxconv.lab import kernel_spectrum
      >>> stripes = np.cos(2 * np.pi * 0.25 * np.arange(8))[None, :].repeat(8, 0)  # varies along a row
      >>> d = kernel_spectrum(stripes)
      >>> round(d["orientation_deg"]), d["frequency"], round(d["selectivity"], 2)
      (0, 0.25, 0.84)
    """
    k = np.asarray(kernel, dtype=np.float64)
    if k.ndim == 4 and k.shape[2:] == (1, 1):
        k = k[:, :, 0, 0]
    if k.ndim != 2 or k.size == 0 or np.ptp(k) == 0:
        raise fail("kernel_spectrum", "kernel", "a non-constant 2-D array [KH, KW]", f"shape {k.shape}")
    size = check_int("kernel_spectrum", "size", size, low=max(k.shape))
    power = np.abs(np.fft.fft2(k - k.mean(), s=(size, size))) ** 2
    fy, fx = np.fft.fftfreq(size)[:, None], np.fft.fftfreq(size)[None, :]
    theta = np.arctan2(-fy, fx) % np.pi + np.zeros_like(power)
    power[0, 0] = 0.0
    peak = np.unravel_index(int(np.argmax(power)), power.shape)
    selectivity = abs(np.sum(power * np.exp(2j * theta))) / np.sum(power)
    return {
        "orientation_deg": float(np.degrees(theta[peak])) % 180.0,
        "frequency": float(np.hypot(fy[peak[0], 0], fx[0, peak[1]])),
        "selectivity": float(selectivity),
        "mean": float(k.mean()),
    }

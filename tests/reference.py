"""Independent references for conv2d: a plain NumPy loop, and lax.conv_general_dilated after jnp.pad."""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def enable_x64():
    """A with-block with float64 on: ``jax.enable_x64`` (jax >= 0.7) or ``jax.experimental.enable_x64`` before."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64 as legacy_enable_x64

    return legacy_enable_x64()


NUMPY_PAD_MODE = {"zeros": "constant", "reflect": "reflect", "replicate": "edge", "circular": "wrap"}


def numpy_conv2d(
    x, kernel, bias=None, *, stride=(1, 1), dilation=(1, 1), pads=((0, 0), (0, 0)), groups=1, mode="zeros"
):
    """Cross-correlation of NHWC ``x`` with HWIO ``kernel``, one output position at a time, in float64."""
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    xp = np.pad(x, ((0, 0), *pads, (0, 0)), mode=NUMPY_PAD_MODE[mode])
    n, hp, wp, c = xp.shape
    kh, kw, cg, o = kernel.shape
    (sh, sw), (dh, dw) = stride, dilation
    ho, wo = (hp - (kh - 1) * dh - 1) // sh + 1, (wp - (kw - 1) * dw - 1) // sw + 1
    og = o // groups
    out = np.zeros((n, ho, wo, o))
    for i in range(ho):
        for j in range(wo):
            for a in range(kh):
                for b in range(kw):
                    pixel = xp[:, i * sh + a * dh, j * sw + b * dw, :]  # [N, C]
                    for g in range(groups):
                        out[:, i, j, g * og : (g + 1) * og] += (
                            pixel[:, g * cg : (g + 1) * cg] @ kernel[a, b, :, g * og : (g + 1) * og]
                        )
    return out if bias is None else out + np.asarray(bias, np.float64)


def lax_conv2d(x, kernel, bias=None, *, stride=(1, 1), dilation=(1, 1), pads=((0, 0), (0, 0)), groups=1, mode="zeros"):
    """The same through ``jnp.pad`` and ``lax.conv_general_dilated`` (NHWC / HWIO)."""
    xp = jnp.pad(x, ((0, 0), *pads, (0, 0)), mode=NUMPY_PAD_MODE[mode])
    out = lax.conv_general_dilated(
        xp,
        kernel,
        window_strides=stride,
        padding="VALID",
        rhs_dilation=dilation,
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
        precision="highest",
    )
    return out if bias is None else out + bias.reshape(1, 1, 1, -1)

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


CONTRACTION_RTOL = {"float32": 1e-6, "bfloat16_3x": 1e-5, "tensorfloat32": 3e-3, "bfloat16": 2e-2}
"""The relative error (Frobenius norm of the error over the reference's) the suite allows a float32 dot or
convolution computed in each arithmetic: float32 keeps 23 mantissa bits, TF32 10, bfloat16 7 (three passes ~16)."""

ARITHMETIC = {("gpu", "default"): "tensorfloat32", ("gpu", "high"): "tensorfloat32", ("tpu", "default"): "bfloat16",
              ("tpu", "high"): "bfloat16_3x"}  # fmt: skip
"""XLA's arithmetic for a float32 contraction at a precision on a backend, where it is not float32 (a CPU: never)."""


def contraction_rtol(precision=None):
    """:data:`CONTRACTION_RTOL` of the arithmetic a float32 contraction at ``precision`` runs in on the default
    backend (``None``: ``jax_default_matmul_precision``, which tests/conftest.py sets to ``"highest"``)."""
    name = jax.config.jax_default_matmul_precision if precision is None else precision
    name = str(getattr(name, "name", name) or "default").lower()  # a lax.Precision, its name, or unset
    backend = jax.default_backend()
    if name in CONTRACTION_RTOL:  # an arithmetic named outright, e.g. "tensorfloat32"
        return CONTRACTION_RTOL["float32" if backend == "cpu" else name]
    return CONTRACTION_RTOL[ARITHMETIC.get((backend, name), "float32")]


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


def numpy_convnd(x, kernel, bias=None, *, stride, dilation, pads, groups=1, mode="zeros"):
    """Cross-correlation of channels-last ``x`` ``[N, *spatial, C]`` with ``kernel`` ``[*taps, C // G, O]``, one
    output position and tap at a time, in float64 (any number of spatial dims)."""
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    xp = np.pad(x, ((0, 0), *pads, (0, 0)), mode=NUMPY_PAD_MODE[mode])
    *taps, cg, o = kernel.shape
    out_sizes = [
        (p - (k - 1) * d - 1) // s + 1 for p, k, d, s in zip(xp.shape[1:-1], taps, dilation, stride, strict=True)
    ]
    og = o // groups
    out = np.zeros((x.shape[0], *out_sizes, o))
    for pos in np.ndindex(*out_sizes):
        for tap in np.ndindex(*taps):
            pixel = xp[
                (slice(None), *(i * s + a * d for i, s, a, d in zip(pos, stride, tap, dilation, strict=True)))
            ]  # [N, C]
            for g in range(groups):
                out[(slice(None), *pos, slice(g * og, (g + 1) * og))] += (
                    pixel[:, g * cg : (g + 1) * cg] @ kernel[(*tap, slice(None), slice(g * og, (g + 1) * og))]
                )
    return out if bias is None else out + np.asarray(bias, np.float64)


def torch_convnd(x, weight, bias=None, *, stride, dilation, pads, groups=1, mode="zeros", grad_out=None):
    """PyTorch's ``conv{1,2,3}d`` on channels-first ``x`` ``[N, C, *spatial]`` and ``weight`` ``[O, C // G, *taps]``
    in float64, padded first by ``F.pad`` in ``mode`` (``nn.ConvNd``'s ``padding_mode``; pads may be asymmetric).

    Returns the output, and with ``grad_out`` also the gradients of ``sum(out * grad_out)`` w.r.t. x and weight.
    """
    import torch  # noqa: PLC0415 (optional: the `bench` extra)

    fn = getattr(torch.nn.functional, f"conv{len(pads)}d")
    xt = torch.tensor(np.ascontiguousarray(x, np.float64), requires_grad=True)
    wt = torch.tensor(np.ascontiguousarray(weight, np.float64), requires_grad=True)
    bt = None if bias is None else torch.tensor(np.asarray(bias, np.float64))
    flat = [p for lo_hi in reversed(pads) for p in lo_hi]  # F.pad: last dim first
    torch_mode = {"zeros": "constant", "reflect": "reflect", "replicate": "replicate", "circular": "circular"}[mode]
    padded = torch.nn.functional.pad(xt, flat, mode=torch_mode) if any(flat) else xt
    out = fn(padded, wt, bt, stride=stride, dilation=dilation, groups=groups)
    if grad_out is None:
        return out.detach().numpy()
    out.backward(torch.tensor(np.ascontiguousarray(grad_out, np.float64)))
    return out.detach().numpy(), xt.grad.numpy(), wt.grad.numpy()


def numpy_conv2d_vjp(x, kernel, cotangent, *, stride=(1, 1), dilation=(1, 1), pads=((0, 0), (0, 0)), groups=1):
    """The gradients ``(dx, dkernel)`` of ``sum(numpy_conv2d(x, kernel) * cotangent)`` (zero padding), in float64.

    The same loop as :func:`numpy_conv2d`, each product's two factors swapped with the cotangent: every output
    position sends ``ct @ kernel.T`` back to the padded pixel its tap read, and ``pixel.T @ ct`` to the tap.
    """
    x, kernel, ct = (np.asarray(a, np.float64) for a in (x, kernel, cotangent))
    xp = np.pad(x, ((0, 0), *pads, (0, 0)))
    kh, kw, cg, o = kernel.shape
    (sh, sw), (dh, dw) = stride, dilation
    _, ho, wo, _ = ct.shape
    og = o // groups
    dxp, dk = np.zeros_like(xp), np.zeros_like(kernel)
    for i in range(ho):
        for j in range(wo):
            for a in range(kh):
                for b in range(kw):
                    r, s = i * sh + a * dh, j * sw + b * dw
                    for g in range(groups):
                        cin, cout = slice(g * cg, (g + 1) * cg), slice(g * og, (g + 1) * og)
                        dxp[:, r, s, cin] += ct[:, i, j, cout] @ kernel[a, b, :, cout].T
                        dk[a, b, :, cout] += xp[:, r, s, cin].T @ ct[:, i, j, cout]
    (top, bottom), (left, right) = pads
    h, w = x.shape[1:3]
    return dxp[:, top : top + h, left : left + w, :], dk


def torch_conv2d_vjp(x, kernel, cotangent, *, stride=(1, 1), dilation=(1, 1), pads=((0, 0), (0, 0)), groups=1):
    """``(out, dx, dkernel)`` from PyTorch in float64 (NHWC / HWIO in, out): explicit ``F.pad``, then ``F.conv2d``."""
    import torch
    import torch.nn.functional as F

    xt = torch.tensor(np.asarray(x, np.float64).transpose(0, 3, 1, 2).copy(), requires_grad=True)
    kt = torch.tensor(np.asarray(kernel, np.float64).transpose(3, 2, 0, 1).copy(), requires_grad=True)
    (top, bottom), (left, right) = pads
    out = F.conv2d(F.pad(xt, (left, right, top, bottom)), kt, stride=stride, dilation=dilation, groups=groups)
    out.backward(torch.tensor(np.asarray(cotangent, np.float64).transpose(0, 3, 1, 2).copy()))
    return (
        out.detach().permute(0, 2, 3, 1).numpy(),
        xt.grad.permute(0, 2, 3, 1).numpy(),
        kt.grad.permute(2, 3, 1, 0).numpy(),
    )


SPATIAL_LETTERS = {1: "W", 2: "HW", 3: "DHW"}
"""The spatial axis letters of a layout (``NC`` + letters, or ``N`` + letters + ``C``) for 1, 2 and 3 dims."""


def draw_geometry(rng, dims, *, max_stride):
    """A random small convolution geometry from ``rng`` (in this order of draws): ``groups`` in {1, 2}, channels
    ``c`` and ``o`` (1-2 per group), ``taps`` 1-3, ``stride`` 1 to ``max_stride``, ``dilation`` 1-2 per dim."""
    groups = int(rng.choice([1, 2]))
    c, o = groups * int(rng.integers(1, 3)), groups * int(rng.integers(1, 3))
    taps = [int(rng.integers(1, 4)) for _ in range(dims)]
    stride = [int(rng.integers(1, max_stride + 1)) for _ in range(dims)]
    dilation = [int(rng.integers(1, 3)) for _ in range(dims)]
    return groups, c, o, taps, stride, dilation


def numpy_local_convnd(x, kernel, *, stride, dilation, pads, lhs_dilation=None, mode="zeros", cotangent=None):
    """Locally connected cross-correlation of channels-last ``x`` ``[N, *spatial, C]`` with ``kernel``
    ``[*out, *taps, C, O]`` (a filter per output position), one output position and tap at a time, in float64.

    ``x`` is first dilated (``lhs_dilation - 1`` zeros between elements), then padded in ``mode`` (negative pads crop).
    With ``cotangent`` ``[N, *out, O]`` (``mode="zeros"`` only) also returns the gradients ``(dx, dkernel)`` of
    ``sum(out * cotangent)``: every output position sends ``ct @ k.T`` back to the pixel its tap read, and
    ``pixel.T @ ct`` to the tap, then back through the crop, the padding and the dilation.
    """
    x, kernel = np.asarray(x, np.float64), np.asarray(kernel, np.float64)
    dims = x.ndim - 2
    lhs_dilation = (1,) * dims if lhs_dilation is None else lhs_dilation
    sizes = [(s - 1) * d + 1 for s, d in zip(x.shape[1:-1], lhs_dilation, strict=True)]
    every = (slice(None), *(slice(None, None, d) for d in lhs_dilation), slice(None))
    xd = np.zeros((x.shape[0], *sizes, x.shape[-1]))
    xd[every] = x
    grow = ((0, 0), *((max(lo, 0), max(hi, 0)) for lo, hi in pads), (0, 0))
    xg = np.pad(xd, grow, mode=NUMPY_PAD_MODE[mode])
    crop = (
        slice(None),
        *(slice(max(-lo, 0), n - max(-hi, 0)) for (lo, hi), n in zip(pads, xg.shape[1:-1], strict=True)),
        slice(None),
    )
    xp = xg[crop]
    out_sizes, taps = kernel.shape[:dims], kernel.shape[dims:-2]
    expected = [
        (p - (k - 1) * d - 1) // s + 1 for p, k, d, s in zip(xp.shape[1:-1], taps, dilation, stride, strict=True)
    ]
    assert list(out_sizes) == expected, (out_sizes, expected)
    out = np.zeros((x.shape[0], *out_sizes, kernel.shape[-1]))
    reads = []
    for pos in np.ndindex(*out_sizes):
        for tap in np.ndindex(*taps):
            pixel = (slice(None), *(i * s + a * d for i, s, a, d in zip(pos, stride, tap, dilation, strict=True)))
            out[(slice(None), *pos)] += xp[pixel] @ kernel[(*pos, *tap)]
            reads.append((pos, tap, pixel))
    if cotangent is None:
        return out
    assert mode == "zeros"
    ct = np.asarray(cotangent, np.float64)
    dxp, dk = np.zeros_like(xp), np.zeros_like(kernel)
    for pos, tap, pixel in reads:
        dxp[pixel] += ct[(slice(None), *pos)] @ kernel[(*pos, *tap)].T
        dk[(*pos, *tap)] += xp[pixel].T @ ct[(slice(None), *pos)]
    dxg = np.zeros_like(xg)
    dxg[crop] = dxp
    unpad = (slice(None), *(slice(lo, lo + n) for (lo, _), n in zip(grow[1:-1], sizes, strict=True)), slice(None))
    return out, dxg[unpad][every], dk


def tiered(cases, fast, *, several=False):
    """``cases`` as pytest parameters, those at the indices in ``fast`` in the fast tier and the rest marked slow
    (run with ``--runslow``, as CI does): a property tested once at the sizes that exercise it, the sweep in CI.
    ``several``: each case is a tuple of several arguments' values."""
    import pytest

    def slow(case):
        return pytest.param(*(case if several else (case,)), marks=pytest.mark.slow)

    return [case if i in fast else slow(case) for i, case in enumerate(cases)]


def pairwise(names, a, b, c):
    """Every combination of three factors' values as pytest parameters of ``names`` (a comma-separated string, in the
    order a, b, c), the fast tier holding a pairwise covering subset — each pair of values of any two factors meets
    in some fast case, in ``len(a) * len(b)`` cases — and the other combinations marked slow (``--runslow``).

    Case ``(a[i], b[j], c[k])`` is fast where ``k == (i + j) % len(c)``: every ``(i, j)`` has its ``k``, and as ``j``
    (or ``i``) runs over at least ``len(c)`` consecutive values, every ``k`` meets every ``i`` (every ``j``). So
    ``c`` must be the shortest factor.
    """
    import itertools

    import pytest

    if len(c) > min(len(a), len(b)):
        raise ValueError(f"pairwise: the third factor must be the shortest; got lengths {len(a)}, {len(b)}, {len(c)}")
    cases = []
    for (i, x), (j, y), (k, z) in itertools.product(enumerate(a), enumerate(b), enumerate(c)):
        marks = () if k == (i + j) % len(c) else (pytest.mark.slow,)
        cases.append(pytest.param(x, y, z, marks=marks, id=f"{x}-{y}-{z}"))
    return pytest.mark.parametrize(names, cases)

"""A hypothesis fuzz of conv2d over valid and invalid argument combinations.

Valid combinations must match ``lax.conv_general_dilated`` (after NumPy padding for the non-zero padding
modes); invalid ones must raise ``ValueError`` or ``TypeError``; nothing else may ever happen. Whether a
combination is valid is decided here, independently, from the documented rules.

Fast profile (CI): 40 examples. Long profile, one command away:

    python -m pytest tests/test_conv_fuzz.py --hypothesis-profile=long -p no:xdist
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from hypothesis import event, given
from hypothesis import strategies as st
from jax import lax

from jaxconv import conv2d

_NP_MODE = {"reflect": "reflect", "replicate": "edge", "circular": "wrap"}

BAD = object()  # marks an argument drawn invalid on purpose


def _pair_or_bad(value: Any, low: int) -> tuple[int, int] | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        value = (value, value)
    if (
        isinstance(value, tuple)
        and len(value) == 2
        and all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        return value if min(value) >= low else None
    return None


def _pads(padding: Any, hw: tuple[int, int], extent: tuple[int, int], stride: tuple[int, int]) -> Any:
    if isinstance(padding, str):
        if padding == "VALID":
            return ((0, 0), (0, 0))
        if padding == "FULL":
            return ((extent[0] - 1,) * 2, (extent[1] - 1,) * 2)
        if padding == "SAME":
            out = []
            for size, e, s in zip(hw, extent, stride, strict=True):
                total = max((math.ceil(size / s) - 1) * s + e - size, 0)
                out.append((total // 2, total - total // 2))
            return tuple(out)
        return None
    pair = _pair_or_bad(padding, 0)
    if pair is not None:
        return ((pair[0], pair[0]), (pair[1], pair[1]))
    if (
        isinstance(padding, tuple)
        and len(padding) == 2
        and all(_pair_or_bad(p, 0) and isinstance(p, tuple) for p in padding)
    ):
        return padding
    if isinstance(padding, tuple) and len(padding) == 2 and all(isinstance(p, tuple) for p in padding):
        return None
    return None


VALID = {
    "layout": ["NHWC", "NHWC", "NCHW"],
    "groups": [1, 1, 1, 2],
    "cg_off": [False],
    "kh": [1, 1, 2, 3],
    "stride": [1, 1, 2, 3, (1, 2), (2, 1)],
    "dilation": [1, 1, 2, (1, 2), (2, 1)],
    "padding": ["VALID", "SAME", "FULL", "same", 0, 1, 2, (0, 1), (2, 0), ((1, 0), (0, 2))],
    "padding_mode": ["zeros", "zeros", "reflect", "replicate", "circular"],
    "strategy": ["auto", "window", "shift", "xla"],
    "x_dtype": ["float32", "float32", "int32", "bool"],
    "k_dtype": ["float32"],
    "bias": ["none", "ok"],
}
INVALID = {
    "layout": ["nhwc", "HWNC"],
    "groups": [0, -1, 1.0, 3],
    "cg_off": [True],
    "kh": [0],
    "stride": [0, (1, 0), "1", (1, 1, 1)],
    "dilation": [0, -1, (1.5, 1)],
    "padding": [-1, ((0, -1), (0, 0)), "HALF", 1.5],
    "padding_mode": ["mirror", "ZEROS"],
    "strategy": ["fast"],
    "x_dtype": ["complex64"],
    "k_dtype": ["int32"],
    "bias": ["wrong"],
}


@st.composite
def combos(draw: Any) -> dict[str, Any]:
    """Half the time every knob is drawn from its valid values, else one knob from its invalid ones (valid
    values can still combine into an invalid call: a kernel larger than the image, reflect padding too wide...)."""
    broken = draw(st.sampled_from([None] * len(VALID) + list(VALID)))
    c = {knob: draw(st.sampled_from(INVALID[knob] if knob == broken else VALID[knob])) for knob in VALID}
    c["rank"] = draw(st.sampled_from([4, 4, 4, 3, 2]))
    c["n"], c["h"], c["w"] = draw(st.sampled_from([1, 2])), draw(st.integers(1, 7)), draw(st.integers(1, 7))
    c["cin"] = draw(st.sampled_from([1, 2, 4]))
    c["o"] = draw(st.sampled_from([1, 2, 4]))
    g = c["groups"] if isinstance(c["groups"], int) and c["groups"] >= 1 else 1
    c["cg"] = max(c["cin"] // g, 1) + (1 if c.pop("cg_off") else 0)
    c["kw"] = draw(st.integers(1, 3))
    c["seed"] = draw(st.integers(0, 2**16))
    return c


def _arrays(c: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, Any]:
    rng = np.random.default_rng(c["seed"])
    if c["rank"] == 2:
        x_shape, k_shape = (c["h"], c["w"]), (c["kh"], c["kw"])
    else:
        nhwc = (c["n"], c["h"], c["w"], c["cin"])
        x_shape = nhwc if c["layout"] != "NCHW" else (c["n"], c["cin"], c["h"], c["w"])
        x_shape = x_shape if c["rank"] == 4 else x_shape[1:]
        hwio = (c["kh"], c["kw"], c["cg"], c["o"])
        k_shape = hwio if c["layout"] != "NCHW" else (c["o"], c["cg"], c["kh"], c["kw"])
    x = rng.uniform(-1, 1, x_shape)
    if c["x_dtype"] == "bool":
        x = x > 0
    elif c["x_dtype"] == "int32":
        x = np.round(x * 3)
    x = x.astype(c["x_dtype"])
    kernel = rng.uniform(-1, 1, k_shape).astype(np.float32)
    if c["k_dtype"] == "int32":
        kernel = np.round(kernel * 3).astype(np.int32)
    out_channels = 1 if c["rank"] == 2 else c["o"]
    bias = {"none": None, "ok": rng.uniform(-1, 1, (out_channels,)).astype(np.float32)}.get(c["bias"])
    if c["bias"] == "wrong":
        bias = np.ones((out_channels + 1,), np.float32)
    return x, kernel, bias


def expected(c: dict[str, Any], x: np.ndarray, kernel: np.ndarray, bias: Any) -> np.ndarray | None:
    """The reference output, or None when the documented rules make the combination invalid."""
    if c["layout"] not in ("NHWC", "NCHW") or c["k_dtype"] != "float32" or c["x_dtype"] == "complex64":
        return None
    if c["padding_mode"] not in ("zeros", "reflect", "replicate", "circular"):
        return None
    if c["strategy"] not in ("auto", "window", "shift", "xla"):
        return None
    stride, dilation = _pair_or_bad(c["stride"], 1), _pair_or_bad(c["dilation"], 1)
    groups = c["groups"]
    if stride is None or dilation is None or not isinstance(groups, int) or isinstance(groups, bool) or groups < 1:
        return None
    if c["rank"] == 2:
        x4, k4 = x[None, :, :, None], kernel[:, :, None, None]
        if groups != 1:
            return None
    else:
        x4 = x if c["rank"] == 4 else x[None]
        if c["layout"] == "NCHW":
            x4, k4 = x4.transpose(0, 2, 3, 1), kernel.transpose(2, 3, 1, 0)
        else:
            k4 = kernel
    _, h, w, cin = x4.shape
    kh, kw, cg, o = k4.shape
    if cin % groups or o % groups or cg != cin // groups or min(kh, kw) < 1:
        return None
    extent = ((kh - 1) * dilation[0] + 1, (kw - 1) * dilation[1] + 1)
    pads = _pads(c["padding"] if not isinstance(c["padding"], str) else c["padding"].upper(), (h, w), extent, stride)
    if pads is None or min(min(p) for p in pads) < 0:
        return None
    if c["padding_mode"] == "reflect" and (max(pads[0]) >= h or max(pads[1]) >= w):
        return None
    if extent[0] > h + sum(pads[0]) or extent[1] > w + sum(pads[1]):
        return None
    if bias is not None and bias.shape != (o,):
        return None
    xf = x4.astype(np.float32)
    if c["padding_mode"] != "zeros":
        xf = np.pad(xf, ((0, 0), *pads, (0, 0)), mode=_NP_MODE[c["padding_mode"]])
        pads = ((0, 0), (0, 0))
    out = np.asarray(
        lax.conv_general_dilated(
            xf, k4, stride, pads, rhs_dilation=dilation, dimension_numbers=("NHWC", "HWIO", "NHWC"),
            feature_group_count=groups, precision="highest",
        )
    )  # fmt: skip
    if bias is not None:
        out = out + bias
    if c["rank"] == 2:
        return out[0, :, :, 0]
    if c["layout"] == "NCHW":
        out = out.transpose(0, 3, 1, 2)
    return out if c["rank"] == 4 else out[0]


@given(combos())
def test_conv2d_matches_lax_or_raises_value_or_type_error(c):
    x, kernel, bias = _arrays(c)
    reference = expected(c, x, kernel, bias)
    event("valid" if reference is not None else "invalid")
    kwargs = {k: c[k] for k in ("stride", "padding", "dilation", "groups", "padding_mode", "layout", "strategy")}
    try:
        got = conv2d(x, kernel, bias, precision="highest", **kwargs)
    except (ValueError, TypeError) as err:
        assert reference is None, f"valid combination raised {type(err).__name__}: {err}"
        assert str(err).startswith("conv2d: "), err
        return
    assert reference is not None, f"invalid combination returned an array of shape {got.shape}"
    assert got.shape == reference.shape
    np.testing.assert_allclose(np.asarray(got), reference, rtol=1e-5, atol=1e-5)

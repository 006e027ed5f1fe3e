"""Every invalid call raises ValueError or TypeError at trace time, eagerly and under jit, naming the argument."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv

X = np.zeros((2, 8, 8, 4), np.float32)
K = np.zeros((3, 3, 4, 6), np.float32)

# (id, x, kernel, options, error, argument named in the message)
CASES = [
    ("x_rank1", np.zeros(8, np.float32), K, {}, ValueError, "x"),
    ("x_rank5", np.zeros((1, 2, 8, 8, 4), np.float32), K, {}, ValueError, "x"),
    ("kernel_rank2_for_rank4_x", X, np.zeros((3, 3), np.float32), {}, ValueError, "kernel"),
    ("kernel_rank4_for_rank2_x", np.zeros((8, 8), np.float32), K, {}, ValueError, "kernel"),
    ("kernel_rank3", X, np.zeros((3, 3, 4), np.float32), {}, ValueError, "kernel"),
    ("channel_mismatch", X, np.zeros((3, 3, 3, 6), np.float32), {}, ValueError, "kernel"),
    ("channel_mismatch_nchw", np.zeros((2, 4, 8, 8), np.float32), np.zeros((6, 3, 3, 3), np.float32),
     {"layout": "NCHW"}, ValueError, "kernel"),
    ("groups_not_dividing_c", X, np.zeros((3, 3, 1, 6), np.float32), {"groups": 3}, ValueError, "groups"),
    ("groups_not_dividing_o", X, np.zeros((3, 3, 2, 5), np.float32), {"groups": 2}, ValueError, "groups"),
    ("groups_zero", X, K, {"groups": 0}, ValueError, "groups"),
    ("groups_float", X, K, {"groups": 1.0}, TypeError, "groups"),
    ("stride_zero", X, K, {"stride": 0}, ValueError, "stride"),
    ("stride_negative_pair", X, K, {"stride": (1, -2)}, ValueError, "stride"),
    ("stride_length3", X, K, {"stride": (1, 1, 1)}, ValueError, "stride"),
    ("stride_float", X, K, {"stride": 1.5}, TypeError, "stride"),
    ("dilation_zero", X, K, {"dilation": 0}, ValueError, "dilation"),
    ("dilation_length1", X, K, {"dilation": (2,)}, ValueError, "dilation"),
    ("padding_unknown_string", X, K, {"padding": "HALF"}, ValueError, "padding"),
    ("padding_negative_int", X, K, {"padding": -1}, ValueError, "padding"),
    ("padding_negative_pair", X, K, {"padding": (1, -1)}, ValueError, "padding"),
    ("padding_negative_pairs", X, K, {"padding": ((0, -1), (0, 0))}, ValueError, "padding"),
    ("padding_length3", X, K, {"padding": (1, 2, 3)}, ValueError, "padding"),
    ("padding_float", X, K, {"padding": 1.0}, TypeError, "padding"),
    ("padding_mode_unknown", X, K, {"padding_mode": "mirror"}, ValueError, "padding_mode"),
    ("layout_unknown", X, K, {"layout": "NWHC"}, ValueError, "layout"),
    ("strategy_unknown", X, K, {"strategy": "winograd"}, ValueError, "strategy"),
    ("reflect_pad_equal_to_dim", X, K, {"padding": 8, "padding_mode": "reflect"}, ValueError, "padding"),
    ("reflect_pad_beyond_width", np.zeros((1, 9, 3, 4), np.float32), np.zeros((1, 1, 4, 6), np.float32),
     {"padding": ((0, 0), (0, 3)), "padding_mode": "reflect"}, ValueError, "padding"),
    ("kernel_larger_than_image", np.zeros((1, 2, 8, 4), np.float32), K, {}, ValueError, "kernel"),
    ("dilated_kernel_larger_than_padded", X, K, {"dilation": 5, "padding": 1}, ValueError, "kernel"),
    ("bias_wrong_shape", X, K, {"bias": np.zeros(4, np.float32)}, ValueError, "bias"),
    ("bias_wrong_rank", X, K, {"bias": np.zeros((1, 6), np.float32)}, ValueError, "bias"),
    ("kernel_integer", X, K.astype(np.int32), {}, TypeError, "kernel"),
    ("kernel_bool", X, K.astype(bool), {}, TypeError, "kernel"),
    ("x_complex", X.astype(np.complex64), K, {}, TypeError, "x"),
    ("precision_unhashable", X, K, {"precision": ["highest"]}, TypeError, "precision"),
]  # fmt: skip


def _call(x, kernel, options):
    options = dict(options)
    bias = options.pop("bias", None)
    return jaxconv.conv2d(x, kernel, bias, **options)


@pytest.mark.parametrize(("x", "kernel", "options", "error", "argument"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])  # fmt: skip
def test_bad_input_eager(x, kernel, options, error, argument):
    with pytest.raises(error, match=f"`{argument}`"):
        _call(x, kernel, options)


@pytest.mark.parametrize(("x", "kernel", "options", "error", "argument"),
                         [c[1:] for c in CASES], ids=[c[0] for c in CASES])  # fmt: skip
def test_bad_input_under_jit(x, kernel, options, error, argument):
    """Under jit the arrays are tracers; the error still comes at trace time and names the argument."""
    with pytest.raises(error, match=f"`{argument}`"):
        jax.jit(lambda x, kernel: _call(x, kernel, options))(x, kernel)


def test_messages_show_given_and_allowed():
    with pytest.raises(ValueError) as info:
        jaxconv.conv2d(X, K, padding_mode="mirror")
    message = str(info.value)
    assert "'mirror'" in message and "'reflect'" in message and "'circular'" in message
    with pytest.raises(ValueError) as info:
        jaxconv.conv2d(X, K, stride=(1, -2))
    assert "(1, -2)" in str(info.value) and ">= 1" in str(info.value)


def test_zero_size_output_is_an_error_not_a_clipped_slice():
    """dynamic_slice would clamp an oversized window silently; conv2d refuses before slicing."""
    for strategy in ("window", "shift", "direct", "xla", "fft"):
        with pytest.raises(ValueError, match="`kernel`"):
            jaxconv.conv2d(jnp.ones((4, 4)), jnp.ones((5, 1)), strategy=strategy)

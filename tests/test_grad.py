"""Gradients of conv2d: finite differences (check_grads, float64) and agreement with lax's autodiff (float32)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads
from reference import enable_x64, lax_conv2d, tiered

import jaxconv

CONFIGS = {
    "plain": dict(),
    "strided_dilated_same": dict(stride=(2, 1), dilation=(1, 2), padding="SAME"),
    "grouped_reflect": dict(groups=2, padding=((1, 0), (2, 1)), padding_mode="reflect"),
    "circular_full": dict(padding="FULL", padding_mode="circular", stride=2),
    "replicate": dict(padding=(2, 1), padding_mode="replicate", dilation=2),
}


def operands(dtype, config, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.standard_normal((2, 6, 7, 4)), dtype)
    kernel = jnp.asarray(rng.standard_normal((3, 2, 4 // CONFIGS[config].get("groups", 1), 4)), dtype)
    bias = jnp.asarray(rng.standard_normal((4,)), dtype)
    return x, kernel, bias


def reference_options(opts, kernel_hw=(3, 2), hw=(6, 7)):
    from test_conv import explicit_pads, pair

    stride, dilation = pair(opts.get("stride", 1)), pair(opts.get("dilation", 1))
    pads = explicit_pads(opts.get("padding", "VALID"), hw, kernel_hw, stride, dilation)
    return dict(stride=stride, dilation=dilation, pads=pads, groups=opts.get("groups", 1),
                mode=opts.get("padding_mode", "zeros"))  # fmt: skip


# Finite differences to second order are the suite's slowest checks: each of our strategies on two of the three
# configurations ("xla", lax's own autodiff with the padding split, is the reference of test_vjp's second order).
@pytest.mark.parametrize(
    ("strategy", "config"),
    tiered([("window", "strided_dilated_same"), ("shift", "strided_dilated_same"), ("shift", "grouped_reflect"),
            ("direct", "grouped_reflect"), ("direct", "circular_full"), ("window", "circular_full")],
           fast={0, 2, 4}, several=True),  # one configuration per strategy in the fast tier
)  # fmt: skip
def test_check_grads_second_order_float64(strategy, config):
    with enable_x64():
        x, kernel, bias = operands(jnp.float64, config)

        def f(x, kernel, bias):
            return jaxconv.conv2d(x, kernel, bias, strategy=strategy, **CONFIGS[config])

        check_grads(f, (x, kernel, bias), order=2, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("strategy", ["window", "shift", "direct", "xla", "auto"])
@pytest.mark.parametrize("config", sorted(CONFIGS))
def test_gradients_match_lax_float32(strategy, config):
    x, kernel, bias = operands(jnp.float32, config, seed=1)
    cotangent = jnp.asarray(np.random.default_rng(2).standard_normal(
        jaxconv.conv2d(x, kernel, bias, **CONFIGS[config]).shape), jnp.float32)  # fmt: skip

    def loss(fn):
        return lambda x, k, b: jnp.sum(fn(x, k, b) * cotangent)

    ours = jax.jit(jax.grad(loss(lambda x, k, b: jaxconv.conv2d(x, k, b, strategy=strategy, **CONFIGS[config])),
                            argnums=(0, 1, 2)))(x, kernel, bias)  # fmt: skip
    ref_opts = reference_options(CONFIGS[config])
    theirs = jax.grad(loss(lambda x, k, b: lax_conv2d(x, k, b, **ref_opts)), argnums=(0, 1, 2))(x, kernel, bias)
    for name, a, b in zip(("x", "kernel", "bias"), ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-4, err_msg=f"d/d{name}")

"""jaxconv inside Flax and Equinox models (the `interop` extra): the one-argument switch gives stock outputs and
gradients. Skipped where the extra is not installed."""

import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from reference import tiered

import jaxconv

CASES = [  # (kernel_size, strides, padding, input_dilation, kernel_dilation, groups, input shape NWC/NHWC/NDHWC)
    ((3,), 2, "SAME", 1, 1, 1, (2, 11, 4)),
    ((4,), 1, "CAUSAL", 1, 2, 2, (2, 9, 4)),
    ((3, 3), 1, "SAME", 1, 1, 1, (2, 9, 10, 3)),
    ((2, 3), (2, 1), ((3, 1), (4, 4)), 1, (1, 2), 1, (2, 9, 10, 4)),  # padding beyond the kernel's reach
    ((3, 3), 1, "CIRCULAR", 1, 1, 2, (1, 7, 8, 4)),
    ((3, 3), 1, ((-1, 2), (0, 1)), 2, 1, 1, (1, 6, 5, 2)),  # input dilation, negative padding
    ((2, 3, 2), (1, 2, 1), "SAME_LOWER", 1, 1, 1, (1, 5, 6, 4, 2)),
    ((3, 3, 3), 1, "VALID", 1, (2, 1, 1), 2, (1, 6, 5, 5, 2)),
]  # fmt: skip


@pytest.mark.parametrize("case", tiered(CASES, fast={3, 5}))  # beyond the reach; input dilation and negative padding
def test_nnx_conv_with_jaxconv_equals_stock(case):
    nnx = pytest.importorskip("flax.nnx")
    kernel_size, strides, padding, input_dilation, kernel_dilation, groups, shape = case
    options = dict(strides=strides, padding=padding, input_dilation=input_dilation, kernel_dilation=kernel_dilation,
                   feature_group_count=groups)  # fmt: skip
    stock = nnx.Conv(shape[-1], 6, kernel_size, rngs=nnx.Rngs(0), **options)
    ours = nnx.Conv(shape[-1], 6, kernel_size, rngs=nnx.Rngs(0), conv_general_dilated=jaxconv.conv_general_dilated,
                    **options)  # fmt: skip
    x = jax.random.normal(jax.random.key(1), shape)

    def loss(model, x):
        return jnp.sum(jnp.sin(model(x)))

    (value, grads), (want_value, want_grads) = (
        nnx.jit(nnx.value_and_grad(loss, argnums=(0, 1)))(m, x) for m in (ours, stock)
    )
    np.testing.assert_allclose(ours(x), stock(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(value, want_value, rtol=1e-5)
    for g, w in zip(jax.tree.leaves(grads), jax.tree.leaves(want_grads), strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("case", tiered(CASES[::2], fast={0}))
def test_linen_conv_with_jaxconv_equals_stock(case):
    nn = pytest.importorskip("flax.linen")
    kernel_size, strides, padding, input_dilation, kernel_dilation, groups, shape = case
    options = dict(strides=strides, padding=padding, input_dilation=input_dilation, kernel_dilation=kernel_dilation,
                   feature_group_count=groups)  # fmt: skip
    stock = nn.Conv(6, kernel_size, **options)
    ours = nn.Conv(6, kernel_size, conv_general_dilated_cls=lambda: jaxconv.conv_general_dilated, **options)
    x = jax.random.normal(jax.random.key(2), shape)
    params = stock.init(jax.random.key(3), x)

    def loss(module, params):
        return jnp.sum(jnp.sin(module.apply(params, x)))

    np.testing.assert_allclose(ours.apply(params, x), stock.apply(params, x), rtol=1e-5, atol=1e-5)
    for g, w in zip(jax.tree.leaves(jax.grad(lambda p: loss(ours, p))(params)),
                    jax.tree.leaves(jax.grad(lambda p: loss(stock, p))(params)), strict=True):  # fmt: skip
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4)


def test_linen_conv_local_works_with_it():
    """ConvLocal calls the hook inside eval_shape (for the output size), then runs its own local convolution."""
    nn = pytest.importorskip("flax.linen")
    x = jax.random.normal(jax.random.key(4), (2, 7, 6, 3))
    stock = nn.ConvLocal(4, (3, 3), strides=(2, 1), padding="SAME")
    ours = nn.ConvLocal(4, (3, 3), strides=(2, 1), padding="SAME",
                        conv_general_dilated_cls=lambda: jaxconv.conv_general_dilated)  # fmt: skip
    params = stock.init(jax.random.key(5), x)
    assert jax.tree.map(jnp.shape, ours.init(jax.random.key(5), x)) == jax.tree.map(jnp.shape, params)
    np.testing.assert_allclose(ours.apply(params, x), stock.apply(params, x), rtol=1e-6)


def test_equinox_module_using_conv2d_equals_eqx_conv2d():
    """docs/interop.md's ten-line Equinox module: its output equals eqx.nn.Conv2d's with the same weights."""
    eqx = pytest.importorskip("equinox")

    class Conv2d(eqx.Module):
        weight: jax.Array  # [O, C, KH, KW], as eqx.nn.Conv2d
        bias: jax.Array  # [O]
        padding: int = eqx.field(static=True)

        def __init__(self, c, o, k, *, padding=0, key):
            self.weight = jax.random.normal(key, (o, c, k, k)) / (c * k * k) ** 0.5
            self.bias = jnp.zeros(o)
            self.padding = padding

        def __call__(self, x):  # [C, H, W], unbatched as Equinox layers
            return jaxconv.conv2d(x, self.weight, self.bias, padding=self.padding, layout="NCHW")

    ours = Conv2d(3, 5, 3, padding=1, key=jax.random.key(6))
    stock = eqx.nn.Conv2d(3, 5, 3, padding=1, key=jax.random.key(7))
    stock = eqx.tree_at(lambda m: (m.weight, m.bias), stock, (ours.weight, ours.bias[:, None, None]))
    x = jax.random.normal(jax.random.key(8), (3, 8, 9))
    np.testing.assert_allclose(ours(x), stock(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(jax.vmap(ours)(x[None]), jax.vmap(stock)(x[None]), rtol=1e-5, atol=1e-5)


def test_interop_examples_run_as_written(capsys):
    """The README's one-argument switch and docs/interop.md's Flax and Equinox example run as printed there."""
    pytest.importorskip("flax")
    pytest.importorskip("equinox")
    root = pathlib.Path(__file__).parent.parent
    readme = (root / "README.md").read_text().split("## In the models you already have")[1].split("\n## ")[0]
    exec(compile(readme.split("```python\n")[1].split("```")[0], "README.md", "exec"), {})  # noqa: S102
    page = (root / "docs" / "interop.md").read_text()
    exec(compile(page.split("```python\n")[1].split("```")[0], "docs/interop.md", "exec"), {})  # noqa: S102
    assert capsys.readouterr().out.split("\n")[:2] == ["(8, 32, 32, 16)", "(8, 16, 32, 32)"]

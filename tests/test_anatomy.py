"""Translation equivariance and the per-position sources of the kernel gradient."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv

MODES = ("zeros", "reflect", "replicate", "circular")


def integer_case(seed, hw=(11, 9), kernel_hw=(3, 4)):
    rng = np.random.default_rng(seed)  # integer values: every sum is exact, so "equal" means bit-equal
    return (jnp.asarray(rng.integers(1, 5, hw), jnp.float32), jnp.asarray(rng.integers(-2, 3, kernel_hw), jnp.float32))


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("shift", [(0, 0), (2, 3), (-4, 1), (13, -10)])
@pytest.mark.parametrize("dilation", [1, (2, 1)])
def test_shift_error_vanishes_on_the_interior(mode, shift, dilation):
    image, kernel = integer_case(0)
    error, interior = jaxconv.lab.shift_error(image, kernel, shift, padding_mode=mode, dilation=dilation)
    assert error.shape == interior.shape == image.shape
    np.testing.assert_array_equal(np.asarray(error)[interior], 0.0)
    if mode == "circular":
        np.testing.assert_array_equal(error, 0.0)
    elif shift != (0, 0):
        assert float(error.max()) > 0  # outside the interior the boundary really does break equivariance


def test_interior_counts_by_hand():
    image, kernel = jnp.ones((10, 10)), jnp.ones((3, 1))  # SAME pads 1 row above and below
    # shift 0: window starts p-1 in [0, 7] -> rows 1..8; shift 3: starts 0 or 3..7 -> 6 rows; columns all 10.
    assert jaxconv.lab.shift_error(image, kernel, (0, 0))[1].sum() == 8 * 10
    assert jaxconv.lab.shift_error(image, kernel, (3, 0))[1].sum() == 6 * 10


def test_shift_error_rejects_bad_input():
    image, kernel = integer_case(1)
    with pytest.raises(ValueError, match="`padding`"):
        jaxconv.lab.shift_error(image, kernel, (1, 1), padding="VALID")
    with pytest.raises(ValueError, match="`image`"):
        jaxconv.lab.shift_error(image[None], kernel, (1, 1))
    with pytest.raises(ValueError, match="stride"):
        jaxconv.lab.shift_error(image, kernel, (1, 1), stride=2)


@pytest.mark.parametrize(("mode", "padding"), [("zeros", "VALID"), ("reflect", "SAME"), ("circular", 2)])
def test_gradient_sources_sum_to_the_gradient(mode, padding):
    image, kernel = integer_case(2)
    rng = np.random.default_rng(3)
    target = jnp.asarray(rng.standard_normal(jaxconv.conv2d(image, kernel, padding=padding).shape), jnp.float32)

    def loss(k):
        return 0.5 * jnp.sum((jaxconv.conv2d(image, k, padding=padding, padding_mode=mode) - target) ** 2)

    output_grad = jaxconv.conv2d(image, kernel, padding=padding, padding_mode=mode) - target
    sources = jaxconv.lab.kernel_gradient_sources(image, kernel, output_grad, padding=padding, padding_mode=mode)
    assert sources.shape == (*output_grad.shape, *kernel.shape)
    np.testing.assert_allclose(sources.sum((0, 1)), jax.grad(loss)(kernel), rtol=1e-5, atol=1e-3)
    # Position (i, j)'s share is its output gradient times the pixels under the kernel there (VALID case).
    if padding == "VALID":
        i, j = 4, 2
        window = image[i : i + kernel.shape[0], j : j + kernel.shape[1]]
        np.testing.assert_allclose(sources[i, j], output_grad[i, j] * window, rtol=1e-6)


def test_gradient_sources_rejects_wrong_output_grad():
    image, kernel = integer_case(4)
    with pytest.raises(ValueError, match="`output_grad`"):
        jaxconv.lab.kernel_gradient_sources(image, kernel, jnp.ones((3, 3)))


@pytest.mark.parametrize(("padding", "mode", "dilation"), [("VALID", "zeros", 1), ("SAME", "reflect", (1, 2))])
def test_patches_are_the_windows(padding, mode, dilation):
    """patches[i, j] equals the padded image's pixels under the (dilated) kernel at (i, j); <patches, k> = conv."""
    image, kernel = integer_case(5, hw=(7, 8), kernel_hw=(2, 3))
    p = jaxconv.lab.patches(image, (2, 3), padding=padding, padding_mode=mode, dilation=dilation)
    dh, dw = (dilation, dilation) if isinstance(dilation, int) else dilation
    if padding == "VALID":
        padded = np.asarray(image)
    else:
        eh, ew = 1 * dh + 1, 2 * dw + 1
        pads = ((eh - 1) // 2, eh - 1 - (eh - 1) // 2), ((ew - 1) // 2, ew - 1 - (ew - 1) // 2)
        padded = np.pad(np.asarray(image), pads, mode="reflect")
    for i, j in [(0, 0), (3, 2), (p.shape[0] - 1, p.shape[1] - 1)]:
        np.testing.assert_array_equal(p[i, j], padded[i : i + dh + 1 : dh, j : j + 2 * dw + 1 : dw])
    response = jaxconv.conv2d(image, kernel, padding=padding, padding_mode=mode, dilation=dilation)
    np.testing.assert_allclose(jnp.einsum("ijab,ab->ij", p, kernel), response, rtol=1e-6)


def test_patches_rejects_bad_kernel_shape():
    with pytest.raises(ValueError, match="`kernel_shape`"):
        jaxconv.lab.patches(jnp.ones((5, 5)), (0, 2))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernel_spectrum_reads_a_gabor_orientation_and_frequency(seed):
    rng = np.random.default_rng(seed)
    theta, f = rng.uniform(0, np.pi), rng.uniform(0.12, 0.35)
    y, x = np.mgrid[-7:8, -7:8].astype(np.float64)
    up = -y  # rows run down; orientation is counter-clockwise from the columns' axis
    gabor = np.exp(-(x**2 + y**2) / (2 * 3.5**2)) * np.cos(2 * np.pi * f * (x * np.cos(theta) + up * np.sin(theta)))
    d = jaxconv.lab.kernel_spectrum(gabor, size=128)
    gap = abs(d["orientation_deg"] - np.degrees(theta)) % 180
    assert min(gap, 180 - gap) < 3 and abs(d["frequency"] - f) < 0.02 and d["selectivity"] > 0.6
    blob = np.exp(-(x**2 + y**2) / 4) - 0.5 * np.exp(-(x**2 + y**2) / 16)  # round: no orientation preferred
    assert jaxconv.lab.kernel_spectrum(blob, size=128)["selectivity"] < 0.05

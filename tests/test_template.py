"""match_template against scikit-image (computed in float64) and OpenCV, on seeded random draws.

Images are 8-bit-like (multiples of 1/256, with constant rectangles), so that scikit-image's float64 sums are exact
and its flat windows exactly 0. A window is compared where float32 can resolve it: its variance, relative to its own
mean square plus the image's (both after centring by the image's mean), above the flatness tolerance; the error
allowed there is a few eps times the condition number ``1 / relative variance`` (the rounding of the window's
variance, relative to it). Windows below it must be
finite and in [-1, 1], and exactly flat ones 0.
"""

import numpy as np
import pytest

pytest.importorskip("skimage")
cv2 = pytest.importorskip("cv2")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
from jax.test_util import check_grads  # noqa: E402
from skimage.feature import match_template as skimage_match  # noqa: E402

import jaxconv  # noqa: E402
from jaxconv.conv._template import FLAT_TOLERANCE, TEMPLATE_MODES, box_sums  # noqa: E402
from tests.reference import enable_x64  # noqa: E402

EPS32 = float(np.finfo(np.float32).eps)


def draw(rng, colour, max_size=24):
    """An 8-bit-like image (a constant rectangle in half the draws), a template and the options."""
    height, width = (int(v) for v in rng.integers(2, max_size + 1, 2))
    h, w = int(rng.integers(1, height + 1)), int(rng.integers(1, width + 1))
    channels = (int(rng.integers(1, 4)),) if colour else ()
    image = np.round(rng.random((height, width, *channels)) * 255) / 256
    if rng.random() < 0.5:
        top, left = rng.integers(0, height), rng.integers(0, width)
        bottom, right = top + rng.integers(1, height + 1), left + rng.integers(1, width + 1)
        image[top:bottom, left:right] = rng.integers(256) / 256
    template = np.round(rng.random((h, w, *channels)) * 255) / 256
    options = dict(
        pad_input=bool(rng.random() < 0.5), mode=str(rng.choice(TEMPLATE_MODES)), constant_values=float(rng.integers(3))
    )
    return image, template, options


def skimage_reference(image, template, options):
    """scikit-image in float64; a colour result's aligned channel slice ([..., 0], or [..., C // 2] padded)."""
    out = skimage_match(image, template, **options)
    if template.ndim == 3:
        out = out[..., template.shape[-1] // 2 if options["pad_input"] else 0]
    return out


def resolution(image, template, options):
    """Per window, in float64: its spread (n * variance) relative to its centred sum of squares plus n times the
    image's centred mean square: what the flatness test compares with FLAT_TOLERANCE * eps."""
    h, w = template.shape[:2]
    x = image if image.ndim == 3 else image[..., None]
    if options["pad_input"]:
        fill = {"constant_values": options["constant_values"]} if options["mode"] == "constant" else {}
        x = np.pad(x, ((h // 2, (h - 1) // 2), (w // 2, (w - 1) // 2), (0, 0)), mode=options["mode"], **fill)
    x = x - x.mean()
    windows = np.lib.stride_tricks.sliding_window_view(x, (h, w, x.shape[-1]))[..., 0, :, :, :]
    n = windows[0, 0].size
    spread = windows.var(axis=(-3, -2, -1)) * n
    s2 = (windows**2).sum(axis=(-3, -2, -1))
    return spread / (s2 + n * np.mean(x**2))


def check_against_skimage(image, template, options, dtype, eps):
    got = np.asarray(jaxconv.match_template(image.astype(dtype), template.astype(dtype), **options))
    want = skimage_reference(image, template, options)
    assert got.shape == want.shape and got.dtype == dtype
    assert np.isfinite(got).all() and np.abs(got).max() <= 1
    relative = resolution(image, template, options)
    flat_template = np.ptp(template) == 0
    resolved = (relative > 4 * FLAT_TOLERANCE * eps) & (not flat_template)
    bound = 8 * eps + 2 * eps / np.where(resolved, relative, 1)
    np.testing.assert_array_less(np.abs(got - want)[resolved], bound[resolved])
    exactly_flat = (relative == 0) | flat_template
    assert (got[exactly_flat] == 0).all() and (want[exactly_flat] == 0).all()
    return resolved.mean()


@pytest.mark.parametrize("colour", [False, True])
def test_equals_skimage_on_random_draws_in_float32(colour):
    rng = np.random.default_rng(23 + colour)
    resolved = [check_against_skimage(*draw(rng, colour), np.float32, EPS32) for _ in range(6)]
    assert np.mean(resolved) > 0.5  # the comparison is not vacuous


@pytest.mark.slow
@pytest.mark.parametrize("colour", [False, True])
def test_equals_skimage_on_many_random_draws(colour):
    rng = np.random.default_rng(230 + colour)
    for _ in range(16):  # each draw is a new shape, a compile
        check_against_skimage(*draw(rng, colour, max_size=48), np.float32, EPS32)


def test_equals_skimage_in_float64():
    rng = np.random.default_rng(2323)
    with enable_x64():
        for colour in (False, True):
            check_against_skimage(*draw(rng, colour), np.float64, float(np.finfo(np.float64).eps))


def test_equals_opencv_on_grey_images_where_defined():
    """OpenCV's TM_CCOEFF_NORMED (float32 input; it sums in float32 and float64): within its own float32 error."""
    rng = np.random.default_rng(7)
    for _ in range(4):
        image, template, _ = draw(rng, colour=False)
        image32, template32 = image.astype(np.float32), template.astype(np.float32)
        valid = dict(pad_input=False, mode="constant", constant_values=0.0)
        got = np.asarray(jaxconv.match_template(image32, template32))
        want = cv2.matchTemplate(image32, template32, cv2.TM_CCOEFF_NORMED)
        resolved = resolution(image, template, valid) > 1e-3  # OpenCV's own flatness test is coarser
        if np.ptp(template) > 0:
            np.testing.assert_allclose(got[resolved], want[resolved], atol=2e-5)


def test_box_sums_equal_a_numpy_sliding_sum():
    rng = np.random.default_rng(8)
    values = rng.standard_normal((3, 70, 5))
    for size in (*rng.integers(1, 71, 6), 1, 64, 70):
        want = np.lib.stride_tricks.sliding_window_view(values, int(size), axis=1).sum(-1)
        np.testing.assert_allclose(box_sums(jnp.asarray(values, jnp.float32), int(size), axis=1), want, atol=2e-5)


def test_a_planted_template_scores_one_under_brightness_and_contrast():
    rng = np.random.default_rng(3)
    images = rng.random((2, 3, 20, 24)).astype(np.float32)
    template = rng.random((5, 7)).astype(np.float32)
    images[1, 2, 9:14, 4:11] = 3 * template + 0.5
    score = jaxconv.match_template(images, template)
    assert score.shape == (2, 3, 16, 18)
    assert float(score[1, 2, 9, 4]) == pytest.approx(1, abs=1e-5)
    assert float(score[1, 2, 9, 4]) == float(score.max())
    each = jnp.stack([jaxconv.match_template(images[i, j], template) for i in range(2) for j in range(3)])
    np.testing.assert_allclose(score.reshape(6, 16, 18), each, atol=1e-6)


def test_constant_template_and_constant_image_give_zero():
    rng = np.random.default_rng(4)
    image = rng.random((12, 12)).astype(np.float32)
    assert (jaxconv.match_template(image, jnp.full((3, 4), 0.3)) == 0).all()
    flat = jaxconv.match_template(jnp.full((2, 12, 12), 0.3), jnp.asarray(image[:4, :5]), pad_input=True, mode="edge")
    assert (flat == 0).all()


def test_gradients_are_finite_on_flat_windows_and_match_finite_differences():
    rng = np.random.default_rng(5)
    image = rng.random((10, 11)).astype(np.float32)
    image[:6, :7] = 0.25  # flat windows
    template = rng.random((3, 3)).astype(np.float32)

    def loss(x, t):
        return jnp.sum(jaxconv.match_template(x, t, pad_input=True, mode="reflect") ** 2)

    for g in jax.grad(loss, argnums=(0, 1))(image, template):
        assert np.isfinite(np.asarray(g)).all()
    with enable_x64():
        x, t = jnp.asarray(rng.random((7, 8))), jnp.asarray(rng.random((3, 2)))
        check_grads(lambda x, t: jaxconv.match_template(x, t, pad_input=True, mode="wrap"), (x, t), 1, ["rev"])


def test_jit_and_vmap_agree_and_do_not_retrace():
    rng = np.random.default_rng(6)
    images = jnp.asarray(rng.random((3, 9, 10, 2)), jnp.float32)
    template = jnp.asarray(rng.random((4, 3, 2)), jnp.float32)
    traces = []

    def f(x, t):
        traces.append(1)
        return jaxconv.match_template(x, t, pad_input=True, mode="symmetric")

    jitted = jax.jit(f)
    out = jitted(images, template)
    jitted(images + 1, template)
    assert len(traces) == 1
    np.testing.assert_allclose(jax.vmap(f, in_axes=(0, None))(images, template), out, atol=1e-6)
    np.testing.assert_allclose(f(images, template), out, atol=1e-6)


@pytest.mark.parametrize(
    "image, template, options, error, message",
    [
        (np.ones((8, 8)), np.ones(3), {}, ValueError, "`template` must be of rank 2"),
        (np.ones(8), np.ones((3, 3)), {}, ValueError, "`image` must be of rank >= 2"),
        (np.ones((8, 8, 3)), np.ones((3, 3, 2)), {}, ValueError, "the image's C = 3"),
        (np.ones((8, 8)), np.ones((9, 3)), {}, ValueError, "no larger than the image's (H, W) = (8, 8)"),
        (np.ones((8, 8)), np.ones((0, 3)), {}, ValueError, "non-empty"),
        (np.ones((8, 8)), np.ones((3, 3)), {"mode": "zeros"}, ValueError, "`mode` must be one of"),
        (np.ones((8, 8)), np.ones((3, 3)), {"pad_input": 1}, TypeError, "`pad_input` must be a bool"),
        (np.ones((8, 8)), np.ones((3, 3)), {"constant_values": "0"}, TypeError, "`constant_values` must be a number"),
        ("image", np.ones((3, 3)), {}, TypeError, "`image` must be an array"),
        (np.ones((8, 8), complex), np.ones((3, 3)), {}, TypeError, "`image` must be an array of bool, integer"),
    ],
)
def test_bad_input_is_a_clear_error(image, template, options, error, message):
    with pytest.raises(error, match="^match_template: .*" + message.replace("(", r"\(").replace(")", r"\)")):
        jaxconv.match_template(image, template, **options)

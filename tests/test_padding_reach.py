"""Padding beyond the kernel's reach ``(K - 1) * d`` on one side: values and both gradients, every strategy.

JAX transposes a convolution padded ``(lo, hi)`` w.r.t. its input into one padded ``(R - lo, R - hi + r)``; with
``lo > R`` that is negative low padding, which XLA:CPU computes wrongly (openxla/xla#48713). jaxconv keeps every
convolution it hands to XLA within the reach (``_strategies.xla_padding``); these tests hold it to a plain NumPy
loop and to PyTorch (float64, explicit ``F.pad`` then ``F.conv2d``), eager and under jit, and read the optimised
HLO for what XLA finally runs.
"""

import functools
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax
from reference import enable_x64, numpy_conv2d, numpy_conv2d_vjp, tiered, torch_conv2d_vjp

import jaxconv
from jaxconv.conv._spec import make_spec
from jaxconv.conv._strategies import lax_conv, xla_padding

STRATEGIES = ("window", "shift", "direct", "xla", "auto")
SWEEP_SEEDS = range(6)
try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False


def _draw(seed):
    """One random configuration: the height pads one side beyond the reach and the other within; width at random.

    Input channels per group by seed, on both sides of 8 (``auto``'s switch, ``direct``'s unrolling) and 16
    (XLA:CPU's YNNPACK path); output channels per group at random, on both sides of 8 (``direct``'s input gradient).
    """
    rng = np.random.default_rng(seed)
    while True:
        kh, kw = (int(v) for v in rng.integers(1, 4, 2))
        dh, dw = (int(v) for v in rng.integers(1, 3, 2))
        sh, sw = (int(v) for v in rng.integers(1, 3, 2))
        groups = int(rng.choice([1, 2]))
        cg = (1, 8, 9, 16, 17, 12)[seed % 6]
        og = int(rng.choice([1, 2, 8, 9, 17]))
        n, h, w = 2, int(rng.integers(3, 8)), int(rng.integers(3, 8))
        rh, rw = (kh - 1) * dh, (kw - 1) * dw
        beyond, within = int(rng.integers(rh + 1, rh + 4)), int(rng.integers(0, rh + 1))
        pads_h = (beyond, within) if rng.integers(2) else (within, beyond)
        pads_w = tuple(int(v) for v in rng.integers(0, rw + 4, 2))
        if h + sum(pads_h) > rh and w + sum(pads_w) > rw:
            break
    opts = dict(stride=(sh, sw), dilation=(dh, dw), pads=(pads_h, pads_w), groups=groups)
    x = rng.standard_normal((n, h, w, groups * cg))
    kernel = rng.standard_normal((kh, kw, cg, groups * og))
    cotangent = rng.standard_normal((n, *_out_hw(x.shape, kernel.shape, opts), groups * og))
    return x, kernel, cotangent, opts


def _out_hw(x_shape, kernel_shape, opts):
    """The output's ``(Ho, Wo)``: ``(H + top + bottom - (K - 1) * d - 1) // s + 1``, likewise for width."""
    return tuple(
        (size + lo + hi - (k - 1) * d - 1) // s + 1
        for size, k, (lo, hi), d, s in zip(
            x_shape[1:3], kernel_shape[:2], opts["pads"], opts["dilation"], opts["stride"], strict=True
        )
    )


@functools.cache
def _case(seed):
    """The configuration of ``seed`` and its NumPy (float64 loop) values and gradients."""
    x, kernel, cotangent, opts = _draw(seed)
    out = numpy_conv2d(x, kernel, **opts)
    dx, dk = numpy_conv2d_vjp(x, kernel, cotangent, **opts)
    return (x, kernel, cotangent, opts), (out, dx, dk)


def _conv(opts, strategy):
    def f(x, k):
        return jaxconv.conv2d(
            x, k, stride=opts["stride"], padding=opts["pads"], dilation=opts["dilation"], groups=opts["groups"],
            strategy=strategy,
        )  # fmt: skip

    return f


def _value_and_vjp(f):
    def run(x, k, ct):
        out, vjp = jax.vjp(f, x, k)
        return (out, *vjp(ct))

    return run


def conv_pads(hlo_text):
    """``[((lo, hi), ...), ...]``: the window padding, per spatial dimension, of every convolution in HLO text."""
    pads = []
    for line in hlo_text.splitlines():
        if " convolution(" not in line:
            continue
        window = re.search(r"window=\{([^}]*)\}", line).group(1)
        size = re.search(r"size=(\S+)", window).group(1)
        found = re.search(r"pad=(\S+)", window)
        sides = found.group(1).split("x") if found else ["0_0"] * len(size.split("x"))
        pads.append(tuple(tuple(int(v) for v in re.fullmatch(r"(-?\d+)_(-?\d+)", s).groups()) for s in sides))
    return pads


def wrongly_computed(pads):
    """The convolutions XLA:CPU computes wrongly (openxla/xla#48713): negative low and positive high padding."""
    return [p for p in pads if any(lo < 0 < hi for lo, hi in p)]


def _assert_close(actual, expected, what):
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1.0)
    np.testing.assert_allclose(np.asarray(actual), expected, rtol=1e-10, atol=1e-10 * scale, err_msg=what)


@pytest.mark.parametrize("strategy", STRATEGIES)
@pytest.mark.parametrize("seed", tiered(SWEEP_SEEDS, fast={0, 1}), ids=lambda s: f"seed{s}")
def test_beyond_reach_sweep(seed, strategy):
    (x, kernel, cotangent, opts), expected = _case(seed)
    with enable_x64():
        args = (jnp.asarray(x), jnp.asarray(kernel), jnp.asarray(cotangent))
        run = _value_and_vjp(_conv(opts, strategy))
        eager = run(*args)
        lowered = jax.jit(run).lower(*args)
        compiled = lowered.compile()
        jitted = compiled(*args)
    for mode, results in (("eager", eager), ("jit", jitted)):
        for name, actual, want in zip(("value", "dx", "dkernel"), results, expected, strict=True):
            _assert_close(actual, want, f"{mode} {name} vs NumPy, {opts}")
    # What jaxconv hands to XLA: no negative low padding, and with stride 1 no negative padding at all. (JAX's
    # kernel gradient crops the rows a stride leaves unread by negative *high* padding, which XLA computes right.)
    handed = conv_pads(lowered.as_text(dialect="hlo"))
    assert all(lo >= 0 for p in handed for lo, _ in p), handed
    if opts["stride"] == (1, 1):
        assert all(min(side) >= 0 for p in handed for side in p), handed
    # What XLA finally runs, after its own rewrites (#48715 folds crops into windows): nothing of #48713's form.
    assert not wrongly_computed(conv_pads(compiled.as_text())), conv_pads(compiled.as_text())


@pytest.mark.skipif(not HAVE_TORCH, reason="PyTorch not installed")
@pytest.mark.parametrize("seed", SWEEP_SEEDS, ids=lambda s: f"seed{s}")
def test_beyond_reach_numpy_reference_matches_torch(seed):
    """The sweep's NumPy reference is PyTorch's answer too, so jaxconv equal to one is equal to both."""
    (x, kernel, cotangent, opts), expected = _case(seed)
    for name, theirs, ours in zip(
        ("value", "dx", "dkernel"), torch_conv2d_vjp(x, kernel, cotangent, **opts), expected, strict=True
    ):
        _assert_close(theirs, ours, f"torch {name}, {opts}")


@pytest.mark.skipif(not HAVE_TORCH, reason="PyTorch not installed")
@pytest.mark.parametrize("strategy", ("xla", "auto", "direct"))
def test_beyond_reach_against_torch_directly(strategy):
    """jaxconv against PyTorch itself on one configuration with 12 channels (``auto`` → ``xla``), eager and jit."""
    rng = np.random.default_rng(2026)
    x, kernel = rng.standard_normal((2, 6, 7, 12)), rng.standard_normal((3, 2, 12, 3))
    opts = dict(stride=(1, 2), dilation=(2, 1), pads=((6, 1), (0, 3)), groups=1)
    cotangent = rng.standard_normal((2, *_out_hw(x.shape, kernel.shape, opts), 3))
    expected = torch_conv2d_vjp(x, kernel, cotangent, **opts)
    with enable_x64():
        run = _value_and_vjp(_conv(opts, strategy))
        args = (jnp.asarray(x), jnp.asarray(kernel), jnp.asarray(cotangent))
        for results in (run(*args), jax.jit(run)(*args)):
            for name, actual, want in zip(("value", "dx", "dkernel"), results, expected, strict=True):
                _assert_close(actual, want, f"{strategy} {name} vs torch")


def _issue_gradient_error(x, kernel, pads, strategy, jit):
    """Max |dx - NumPy's| / max |NumPy's| for ``sum(conv2d(x, kernel) * ct)`` in float32 (the issue's setting)."""
    f = _conv(dict(stride=(1, 1), pads=pads, dilation=(1, 1), groups=1), strategy)
    out = jax.eval_shape(f, x, kernel)
    ct = jax.random.normal(jax.random.key(2), out.shape)
    dx = (jax.jit(_value_and_vjp(f)) if jit else _value_and_vjp(f))(x, kernel, ct)[1]
    want, _ = numpy_conv2d_vjp(x, kernel, ct, pads=pads)
    return float(np.max(np.abs(np.asarray(dx, np.float64) - want)) / np.max(np.abs(want)))


@pytest.mark.parametrize("jit", (False, True), ids=("eager", "jit"))
@pytest.mark.parametrize("strategy", ("auto", "xla"))
def test_issue_reproducer_twelve_channels_auto(strategy, jit):
    """Issue 10's first reproducer: ``auto`` picks ``xla`` for 12 channels; the input gradient was ~1e19 and NaN."""
    x = jax.random.normal(jax.random.key(0), (2, 9, 10, 12))
    kernel = jax.random.normal(jax.random.key(1), (3, 3, 12, 1))
    assert _issue_gradient_error(x, kernel, ((3, 1), (4, 4)), strategy, jit) < 1e-5


@pytest.mark.parametrize("jit", (False, True), ids=("eager", "jit"))
def test_issue_reproducer_two_by_two_kernel(jit):
    """Issue 10's second reproducer: a 2x2 kernel padded ``((2, 1), (2, 0))``, ``xla``: the input gradient was off."""
    x = jax.random.normal(jax.random.key(3), (2, 7, 8, 3))
    kernel = jax.random.normal(jax.random.key(4), (2, 2, 3, 4))
    assert _issue_gradient_error(x, kernel, ((2, 1), (2, 0)), "xla", jit) < 1e-5


@pytest.mark.parametrize("seed", range(4), ids=lambda s: f"seed{s}")
def test_xla_padding_recombines_and_stays_within_reach(seed):
    """Crop, then pad, then the window give back the requested padding; the window is within ``[0, reach]``."""
    rng = np.random.default_rng(seed)
    for _ in range(50):
        extent = tuple(int(v) for v in rng.integers(1, 6, 2))
        padding = tuple(tuple(int(v) for v in rng.integers(-4, 9, 2)) for _ in range(2))
        plan = xla_padding(padding, extent)
        for axis, reach in enumerate(e - 1 for e in extent):
            for side in range(2):
                crop, pad, window = (part[axis][side] for part in plan)
                assert -crop + pad + window == padding[axis][side]
                assert 0 <= window <= reach and crop >= 0 and pad >= 0 and (crop == 0 or pad + window == 0)
        if all(0 <= p <= e - 1 for sides, e in zip(padding, extent, strict=True) for p in sides):
            assert plan.window == padding and plan.crop == plan.pad == ((0, 0), (0, 0))


@pytest.mark.parametrize("jit", (False, True), ids=("eager", "jit"))
def test_lax_conv_negative_padding_is_an_explicit_crop(jit):
    """Negative padding (a crop, as the lax drop-in will allow) with positive padding beyond the other side's reach.

    Values and both gradients equal the crop-then-pad NumPy reference, and under jit no convolution XLA runs has
    negative padding (the crop is a slice XLA does not fold into the window, openxla/xla#48715).
    """
    rng = np.random.default_rng(7)
    x, kernel = rng.standard_normal((2, 8, 9, 5)), rng.standard_normal((3, 2, 5, 4))
    padding = ((-2, 1), (3, -1))
    cropped = x[:, 2:, :-1, :]
    spec = make_spec(
        x.shape, kernel.shape, stride=1, padding=0, dilation=1, groups=1, padding_mode="zeros", strategy="xla",
        precision=None,
    )  # fmt: skip
    pads = ((0, 1), (3, 0))
    expected_out = numpy_conv2d(cropped, kernel, pads=pads)
    ct = rng.standard_normal(expected_out.shape)
    dcropped, expected_dk = numpy_conv2d_vjp(cropped, kernel, ct, pads=pads)
    expected_dx = np.zeros_like(x)
    expected_dx[:, 2:, :-1, :] = dcropped
    with enable_x64():
        run = _value_and_vjp(lambda x, k: lax_conv(x, k, spec, padding))
        args = (jnp.asarray(x), jnp.asarray(kernel), jnp.asarray(ct))
        if jit:
            compiled = jax.jit(run).lower(*args).compile()
            pads_seen = conv_pads(compiled.as_text())
            assert pads_seen and all(min(side) >= 0 for p in pads_seen for side in p), pads_seen
            results = compiled(*args)
        else:
            results = run(*args)
    for name, actual, want in zip(
        ("value", "dx", "dkernel"), results, (expected_out, expected_dx, expected_dk), strict=True
    ):
        _assert_close(actual, want, name)


def _program(f, *args):
    """The optimised HLO of ``jit(f)``, with names, metadata and debug tables stripped: what XLA runs."""
    text = jax.jit(f).lower(*args).compile().as_text()
    body = "\n".join(line for line in text.splitlines() if line.startswith(("%", "ENTRY", "  ", "}")))
    body = re.sub(r", (metadata|stack_frame_id|frontend_attributes|backend_config)=(\{[^}]*\}|\S+)", "", body)
    names: dict[str, str] = {}
    return re.sub(
        r"%?[A-Za-z_][\w\-]*\.\d+(\.\d+)*|%[\w\-]+", lambda m: names.setdefault(m.group(0), f"v{len(names)}"), body
    )


@pytest.mark.parametrize(
    "padding,stride,dilation",
    tiered(
        [(((2, 1), (0, 2)), 1, 1), (((2, 1), (0, 2)), 2, 1), ("SAME", 2, 1), (((4, 0), (1, 4)), 1, 2), (0, 2, 1)],
        fast={1},  # strided; the dilated and the string-padded cases with --runslow
        several=True,
    ),
)
def test_within_reach_program_is_lax_own(xla_cpu_threads, padding, stride, dilation):
    """Within the reach the workaround costs nothing: ``xla``'s value and both gradients compile to exactly the
    program of ``lax.conv_general_dilated`` with the same padding (on one XLA:CPU thread; on more, stride-1 forwards
    take the one-row-longer route, tested against lax in ``test_vjp.py``)."""
    xla_cpu_threads(1)
    x = jax.random.normal(jax.random.key(0), (2, 9, 10, 12))
    kernel = jax.random.normal(jax.random.key(1), (3, 3, 12, 4))

    def loss(conv):
        return jax.value_and_grad(lambda x, k: jnp.sum(jnp.sin(conv(x, k))), argnums=(0, 1))

    def ours(x, k):
        return jaxconv.conv2d(x, k, stride=stride, padding=padding, dilation=dilation, strategy="xla")

    def theirs(x, k):
        pads = ((padding, padding),) * 2 if isinstance(padding, int) else padding
        return lax.conv_general_dilated(
            x, k, (stride,) * 2, pads, rhs_dilation=(dilation,) * 2, dimension_numbers=("NHWC", "HWIO", "NHWC")
        )

    assert _program(loss(ours), x, kernel) == _program(loss(theirs), x, kernel)


def test_beyond_reach_program_differs_from_lax_own():
    """The check above can fail: beyond the reach, jaxconv's program is not lax's (whose gradient is wrong there)."""
    x = jax.random.normal(jax.random.key(0), (2, 9, 10, 12))
    kernel = jax.random.normal(jax.random.key(1), (3, 3, 12, 4))
    padding = ((3, 1), (4, 4))

    def loss(conv):
        return jax.value_and_grad(lambda x, k: jnp.sum(jnp.sin(conv(x, k))), argnums=(0, 1))

    ours = loss(lambda x, k: jaxconv.conv2d(x, k, padding=padding, strategy="xla"))
    theirs = loss(
        lambda x, k: lax.conv_general_dilated(x, k, (1, 1), padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))
    )
    assert _program(ours, x, kernel) != _program(theirs, x, kernel)
    assert wrongly_computed(conv_pads(jax.jit(theirs).lower(x, kernel).compile().as_text()))
    assert not wrongly_computed(conv_pads(jax.jit(ours).lower(x, kernel).compile().as_text()))


@pytest.mark.parametrize("strategy", ("xla", "direct"))
def test_second_order_beyond_reach(strategy):
    """Reverse over reverse (``d/dk |dL/dx|^2``) beyond the reach, stride 2: equal to ``window``'s, eager and jit.

    Not every convolution in this program has non-negative low padding: JAX transposes the transposes itself, and
    with ``xla`` one has negative low padding with kernel dilation, which XLA:CPU computes right (this test).
    """
    rng = np.random.default_rng(11)
    with enable_x64():
        x, kernel = jnp.asarray(rng.standard_normal((2, 7, 8, 12))), jnp.asarray(rng.standard_normal((3, 3, 12, 4)))
        opts = dict(stride=(2, 2), pads=((5, 0), (3, 5)), dilation=(1, 1), groups=1)

        def second(x, k, strategy):
            dx = jax.grad(lambda x, k: jnp.sum(jnp.sin(_conv(opts, strategy)(x, k))))
            return jax.grad(lambda k: jnp.sum(dx(x, k) ** 2))(k)

        want = np.asarray(second(x, kernel, "window"))
        for run in (second, jax.jit(second, static_argnums=2)):
            _assert_close(run(x, kernel, strategy), want, strategy)

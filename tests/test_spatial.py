"""``spatial_conv2d`` on 8 forced CPU devices against ``conv2d`` on one.

The checks run in a subprocess (``python tests/test_spatial.py``) because JAX fixes its device count at start-up;
it prints one line per case and the pytest side asserts that none failed.
"""

from __future__ import annotations

import functools
import sys

import pytest
from _multidevice import Checks, run_on_cpu_devices

RTOL = ATOL = 2e-5  # float32: a sum of at most a few dozen products of O(1) numbers, summed in another order


def _cases() -> list[tuple[str, dict]]:
    """(name, conv2d options and input shapes) for the forward comparisons."""
    cases = []
    paddings = ["VALID", "SAME", "FULL", 2, (1, 2), ((3, 0), (0, 2))]
    modes = ["zeros", "reflect", "replicate", "circular"]
    # Each padding with two modes, each mode with two or more paddings (the whole product cost a minute of compiles).
    for i, padding in enumerate(paddings):
        for mode in (modes[i % 4], modes[(i + 1) % 4]):
            cases.append((f"padding={padding!r} mode={mode}", dict(padding=padding, padding_mode=mode)))
    for stride, dilation, mode in [
        (2, 1, "zeros"),
        (3, 1, "circular"),
        ((2, 1), 2, "reflect"),
        (1, 3, "circular"),
        (1, (2, 1), "replicate"),
        (4, 2, "zeros"),
    ]:
        options = dict(padding="SAME", stride=stride, dilation=dilation, padding_mode=mode)
        cases.append((f"stride={stride} dilation={dilation} mode={mode}", options))
    # H=13 does not divide over 8 devices; H=5 leaves devices without rows, so halos span several devices.
    for rows in (13, 5):
        for mode in ("zeros", "circular", "reflect"):
            cases.append((f"H={rows} mode={mode}", dict(rows=rows, padding="SAME", padding_mode=mode)))
    cases.append(("H=5 FULL circular dilation=2", dict(rows=5, padding="FULL", padding_mode="circular", dilation=2)))
    cases.append(("groups=2 bias", dict(groups=2, bias=True, padding=1)))
    cases.append(("depthwise", dict(groups=4, out=4, padding="SAME", padding_mode="reflect")))
    cases.append(("NCHW rank 4", dict(layout="NCHW", padding="SAME", padding_mode="circular", stride=2)))
    cases.append(("NCHW rank 3", dict(layout="NCHW", rank=3, padding=1)))
    cases.append(("NHWC rank 3", dict(rank=3, padding="FULL", padding_mode="replicate")))
    cases.append(("plain [H, W]", dict(rank=2, bias=True, padding="SAME", padding_mode="circular")))
    cases.append(("strategy=window", dict(strategy="window", padding="SAME", padding_mode="reflect")))
    cases.append(("4-device mesh", dict(mesh_devices=4, padding="SAME", padding_mode="circular")))
    return cases


def _inputs(rng, case: dict):
    """(x, kernel, bias, conv2d options) for one case."""
    rows, rank, layout = case.get("rows", 16), case.get("rank", 4), case.get("layout", "NHWC")
    c, o, groups = 4, case.get("out", 6), case.get("groups", 1)
    x = rng.normal(size=(2, rows, 7, c)).astype("float32")
    kernel = rng.normal(size=(3, 2, c // groups, o)).astype("float32")
    if rank == 2:
        x, kernel = x[0, :, :, 0], kernel[:, :, 0, 0]
    elif rank == 3:
        x = x[0]
    if layout == "NCHW" and rank > 2:
        x = x.transpose(0, 3, 1, 2) if rank == 4 else x.transpose(2, 0, 1)
        kernel = kernel.transpose(3, 2, 0, 1)
    bias = rng.normal(size=(1 if rank == 2 else o,)).astype("float32") if case.get("bias") else None
    skip = {"rows", "rank", "out", "bias", "mesh_devices"}
    options = {k: v for k, v in case.items() if k not in skip}
    return x, kernel, bias, options


def _child() -> int:
    """Runs every check on this process's devices; prints ``ok``/``FAIL`` lines; returns the exit status."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh

    import jaxconv
    from jaxconv import conv2d, spatial_conv2d

    jax.config.update("jax_numpy_rank_promotion", "raise")  # as tests/conftest.py does in the parent
    assert jax.device_count() == 8, jax.devices()
    mesh8 = Mesh(np.array(jax.devices()), ("rows",))
    rng = np.random.default_rng(0)
    check = Checks()

    def forward(case):
        x, kernel, bias, options = _inputs(rng, case)
        mesh = mesh8 if "mesh_devices" not in case else Mesh(np.array(jax.devices()[: case["mesh_devices"]]), ("d",))
        out = spatial_conv2d(x, kernel, bias, mesh=mesh, **options)
        ref = conv2d(x, kernel, bias, **options)
        assert out.shape == ref.shape and out.dtype == ref.dtype, (out.shape, ref.shape, out.dtype, ref.dtype)
        np.testing.assert_allclose(out, ref, rtol=RTOL, atol=ATOL)

    for name, case in _cases():
        check(name, lambda case=case: forward(case))

    def gradient(options):
        x, kernel, bias, _ = _inputs(rng, dict(bias=True))

        def loss(conv):
            return lambda x, k, b: jnp.sum(jnp.sin(conv(x, k, b, **options)))

        sharded = jax.jit(jax.grad(loss(lambda *a, **o: spatial_conv2d(*a, mesh=mesh8, **o)), argnums=(0, 1, 2)))
        expected = jax.grad(loss(conv2d), argnums=(0, 1, 2))(x, kernel, bias)
        for got, want in zip(sharded(x, kernel, bias), expected, strict=True):
            np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)

    check("grad SAME circular", lambda: gradient(dict(padding="SAME", padding_mode="circular")))
    check(
        "grad reflect stride 2 dilation 2",
        lambda: gradient(dict(padding=2, padding_mode="reflect", stride=2, dilation=2)),
    )

    def gradient_beyond_reach():
        # Padding beyond the kernel's reach on one side only: JAX's own transpose of lax's convolution is wrong
        # there on CPU (issue 10); each shard's conv2d must not be.
        from reference import numpy_conv2d_vjp

        x, kernel, _, _ = _inputs(rng, {})
        pads = ((5, 1), (0, 3))
        ct = rng.normal(size=(2, 16 + 6 - 2, 7 + 3 - 1, 6)).astype("float32")
        want = numpy_conv2d_vjp(x, kernel, ct, pads=pads)
        for strategy in ("xla", "direct"):
            conv = functools.partial(spatial_conv2d, mesh=mesh8, padding=pads, strategy=strategy)
            got = jax.jit(lambda x, k, ct, conv=conv: jax.vjp(conv, x, k)[1](ct))(x, kernel, ct)
            for g, w in zip(got, want, strict=True):
                np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-4 * np.max(np.abs(w)))

    check("grad padding beyond the kernel's reach, xla and direct", gradient_beyond_reach)

    def output_sharded_over_rows():
        x, kernel, _, _ = _inputs(rng, {})
        out = spatial_conv2d(x, kernel, mesh=mesh8, padding="SAME")
        assert out.sharding.spec[1] == "rows", out.sharding
        assert {s.data.shape[1] for s in out.addressable_shards} == {2}, [s.data.shape for s in out.addressable_shards]

    check("output rows sharded", output_sharded_over_rows)

    def explicit_mesh():
        mesh = jax.make_mesh((8,), ("i",))  # Explicit axes, jax.make_mesh's default
        x, kernel, _, _ = _inputs(rng, {})
        odd, _, _, _ = _inputs(rng, dict(rows=13))

        def loss(conv):
            return lambda x: jnp.sum(conv(x, kernel, padding="SAME") ** 2)

        sharded = loss(lambda *a, **o: spatial_conv2d(*a, mesh=mesh, **o))
        for image in (x, odd):  # 16 rows divide over 8 devices, 13 do not
            want = jax.grad(loss(conv2d))(image)
            np.testing.assert_allclose(jax.grad(sharded)(image), want, rtol=1e-4, atol=1e-4)
            if hasattr(jax, "set_mesh"):  # jax >= 0.7 (Python 3.11+)
                with jax.set_mesh(mesh):
                    np.testing.assert_allclose(jax.jit(jax.grad(sharded))(image), want, rtol=1e-4, atol=1e-4)

    check("explicit-axes mesh, with and without jax.set_mesh, grad", explicit_mesh)

    def no_retrace():
        x, kernel, _, _ = _inputs(rng, {})
        spatial_conv2d(x, kernel, mesh=mesh8, padding="SAME")
        before = jaxconv.conv._spatial._sharded_nhwc_jit._cache_size()
        spatial_conv2d(x + 1, kernel, mesh=mesh8, padding="SAME")
        assert jaxconv.conv._spatial._sharded_nhwc_jit._cache_size() == before

    check("no retrace on a second call", no_retrace)

    def bad_mesh():
        x, kernel, _, _ = _inputs(rng, {})
        try:
            spatial_conv2d(x, kernel, mesh=jax.make_mesh((4, 2), ("a", "b")))
        except ValueError as err:
            assert "`mesh`" in str(err), err
        else:
            raise AssertionError("a 2-D mesh was accepted")

    check("2-D mesh is a ValueError naming mesh", bad_mesh)
    return 1 if check.failures else 0


@pytest.mark.slow  # an 8-device subprocess; the one-device tests below stay in the fast tier
def test_spatial_conv2d_on_8_devices_equals_conv2d():
    result = run_on_cpu_devices([__file__], devices=8)
    report = result.stdout + result.stderr
    assert result.returncode == 0 and "FAIL" not in result.stdout, report
    assert result.stdout.count("ok ") == len(_cases()) + 7, report


def test_bad_mesh_and_conv_arguments_on_one_device():
    import jax
    import numpy as np

    from jaxconv import spatial_conv2d

    mesh = jax.sharding.Mesh(jax.devices()[:1], ("rows",))
    x = np.ones((8, 8), np.float32)
    with pytest.raises(TypeError, match="`mesh`"):
        spatial_conv2d(x, np.ones((3, 3), np.float32), mesh="rows")
    with pytest.raises(ValueError, match="`padding_mode`"):
        spatial_conv2d(x, np.ones((3, 3), np.float32), mesh=mesh, padding_mode="wrap")
    with pytest.raises(ValueError, match="`kernel`"):
        spatial_conv2d(x, np.ones((9, 3), np.float32), mesh=mesh)


if __name__ == "__main__":
    sys.exit(_child())

"""``fit(devices=...)`` and ``jaxconv train --devices``: data parallel on 8 forced CPU devices equals one device.

The checks run in a subprocess (``python tests/test_data_parallel.py``) because JAX fixes its device count at
start-up; it prints one line per check and the pytest side asserts that none failed.
"""

from __future__ import annotations

import sys

import pytest
from _multidevice import Checks, run_on_cpu_devices

# 100 Adam steps; the 8-device gradient is the same batch mean summed in another order, so the params differ by
# float32 rounding, amplified a little by the optimizer (measured: ~5e-7 on a kernel of O(1) values).
RTOL = ATOL = 2e-5
CHECKS = 6


def _child() -> int:
    """Runs every check on this process's 8 devices; prints ``ok``/``FAIL`` lines; returns the exit status."""
    import os
    import tempfile

    import jax
    import numpy as np

    import jaxconv
    from jaxconv.cli import main
    from jaxconv.lab import _train
    from jaxconv.lab._fit import batch_mesh

    jax.config.update("jax_numpy_rank_promotion", "raise")  # as tests/conftest.py does in the parent
    assert jax.device_count() == 8, jax.devices()
    task = jaxconv.PlantedPatternTask("seed", image_shape=(12, 12))
    common = dict(steps=100, batch_size=16, steps_per_dispatch=50, eval_images=0, seed=3)
    check = Checks()

    def close(a, b, rtol=RTOL, atol=ATOL):
        for k in ("kernel", "bias"):
            np.testing.assert_allclose(np.asarray(a[k]), np.asarray(b[k]), rtol=rtol, atol=atol, err_msg=k)

    single = jaxconv.fit(task, **common)

    def one_vs_eight():
        one = jaxconv.fit(task, devices=1, **common)
        close(one.params, single.params, rtol=0, atol=0)  # a 1-device mesh computes exactly what no mesh does
        eight = jaxconv.fit(task, devices=8, **common)
        diff = max(np.abs(np.asarray(eight.params[k]) - np.asarray(single.params[k])).max() for k in ("kernel", "bias"))
        print(f"     devices=8 vs None: max |param difference| = {diff:.3g}")
        close(eight.params, single.params)
        assert eight.state.params["kernel"].sharding.mesh.size == 8
        four = jaxconv.fit(task, devices=jax.devices()[4:], **common)
        close(four.params, single.params)

    check("devices=1, 8 and a sequence of 4 give the params of one device", one_vs_eight)

    def batch_is_sharded_and_gradient_all_reduced():
        config = jaxconv.TrainConfig(task, batch_size=16)
        mesh = batch_mesh(8, 16)
        state = _train.replicate(jaxconv.lab.init_state(config), mesh)
        lowered = _train._train_steps.lower(config.step, state, 2, 2, mesh, config.task.values(), None, None)
        hlo = lowered.compile().as_text()
        assert "all-reduce" in hlo, "no all-reduce in the compiled step"
        # Each device's images: [B / D, H, W, 1] = [2, 12, 12, 1], and nowhere the whole [16, 12, 12, 1] batch.
        assert "f32[2,12,12,1]" in hlo and "f32[16,12,12,1]" not in hlo, "the batch is not sharded"

    check("the batch is sharded and the gradient all-reduced", batch_is_sharded_and_gradient_all_reduced)

    def resume_on_eight():
        with tempfile.TemporaryDirectory() as folder:
            options = dict(common, checkpoint_dir=folder, checkpoint_every=30, devices=8)
            jaxconv.fit(task, **dict(options, steps=60))
            resumed = jaxconv.fit(task, **dict(options, resume=True))
            straight = jaxconv.fit(task, **dict(common, devices=8))
            assert resumed.resumed_from == 60
            close(resumed.params, straight.params, rtol=0, atol=0)

    check("a resumed 8-device run equals an uninterrupted one bit for bit", resume_on_eight)

    def bad_devices():
        cases = [
            (dict(devices=8, batch_size=12), ValueError, "`batch_size`"),
            (dict(devices=9), ValueError, "`devices`"),
            (dict(devices=0), ValueError, "`devices`"),
            (dict(devices=[]), ValueError, "`devices`"),
            (dict(devices=[jax.devices()[0]] * 2), ValueError, "`devices`"),
            (dict(devices=["cpu:0"]), TypeError, "`devices`"),
            (dict(devices=2.0), TypeError, "`devices`"),
            (dict(devices=True), TypeError, "`devices`"),
        ]
        for kwargs, error, words in cases:
            try:
                jaxconv.fit(task, **{**common, "steps": 1, **kwargs})
            except error as err:
                assert words in str(err), (kwargs, err)
            else:
                raise AssertionError(f"{kwargs} was accepted")

    check("bad devices or an indivisible batch_size raise, naming the argument", bad_devices)

    def cli_devices():
        with tempfile.TemporaryDirectory() as folder:
            out = os.path.join(folder, "run")
            flags = ["train", "--steps", "100", "--batch-size", "16", "--image-size", "12", "--seed", "3",
                     "--steps-per-dispatch", "50", "--eval-images", "10", "--no-progress", "--no-figures"]  # fmt: skip
            assert main([*flags, "--devices", "8", "--out", out]) == 0
            with np.load(os.path.join(out, "final_params.npz")) as params:
                close(dict(params), single.params)

    check("jaxconv train --devices 8", cli_devices)

    def cli_bad_devices():
        import contextlib
        import io

        for flags, words in [
            (["--devices", "8", "--batch-size", "12"], "--batch-size"),
            (["--devices", "9"], "--devices"),
        ]:
            err = io.StringIO()
            with contextlib.redirect_stderr(err):
                try:
                    main(["train", "--no-progress", *flags, "--out", os.path.join(tempfile.gettempdir(), "never")])
                except SystemExit as exit_info:
                    assert exit_info.code == 2, exit_info.code
                else:
                    raise AssertionError(f"{flags} was accepted")
            message = err.getvalue()
            assert message.count("\n") == 1 and words in message and "Traceback" not in message, message

    check("jaxconv train: bad --devices and --batch-size exit 2 with one line", cli_bad_devices)
    return 1 if check.failures else 0


@pytest.mark.slow  # ~2 min of compiles; test_multi runs K = 3 on 4 devices (within 2e-5, resume exact) in the suite
def test_data_parallel_on_8_devices_equals_one():
    result = run_on_cpu_devices([__file__], devices=8)
    report = result.stdout + result.stderr
    assert result.returncode == 0 and "FAIL" not in result.stdout, report
    assert result.stdout.count("ok ") == CHECKS, report


def test_bad_devices_on_one_device():
    import jaxconv

    task = jaxconv.PlantedPatternTask("seed", image_shape=8)
    with pytest.raises(ValueError, match="`devices`"):
        jaxconv.fit(task, steps=1, batch_size=2, eval_images=0, devices=2)
    with pytest.raises(TypeError, match="`devices`"):
        jaxconv.fit(task, steps=1, batch_size=2, eval_images=0, devices="cpu")


if __name__ == "__main__":
    sys.exit(_child())

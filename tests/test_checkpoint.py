"""Checkpoints, resume and numerical faults: fit() in Python, and `jaxconv train` killed with SIGKILL."""

import json
import os
import signal
import subprocess
import sys
import time

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv
from jaxconv.cli import main
from jaxconv.lab import PlantedPatternTask, TrainConfig, _train, init_state, train_steps
from jaxconv.lab._checkpoint import (
    CheckpointError,
    CheckpointWarning,
    list_checkpoints,
    restore_latest,
    save_checkpoint,
)
from jaxconv.lab._fit import NonFiniteError

TASK = PlantedPatternTask("seed", image_shape=(10, 10))
FIT = {"steps": 60, "batch_size": 4, "steps_per_dispatch": 10, "eval_images": 0}


def test_save_restore_is_bitwise_and_keeps_the_last_k(tmp_path):
    config = TrainConfig(TASK, batch_size=4)
    state = init_state(config)
    losses = []
    for _ in range(4):
        state, chunk = train_steps(config, state, 5)
        losses.extend(np.asarray(chunk).tolist())
        save_checkpoint(str(tmp_path), state, config, np.asarray(losses, np.float32), keep=2)
    assert [step for step, _ in list_checkpoints(str(tmp_path))] == [20, 15]
    stale = tmp_path / ".ckpt-00000025.npz.tmp-123"
    stale.write_bytes(b"half-written")  # a kill mid-write leaves this: ignored, then cleaned up
    restored = restore_latest(str(tmp_path), config)
    chex.assert_trees_all_equal(restored.state.params, state.params)
    chex.assert_trees_all_equal(restored.state.opt_state, state.opt_state)
    assert int(restored.state.step) == 20
    np.testing.assert_array_equal(jax.random.key_data(restored.state.key), jax.random.key_data(state.key))
    np.testing.assert_array_equal(restored.losses, np.asarray(losses, np.float32))
    assert restore_latest(str(tmp_path / "empty"), config) is None
    save_checkpoint(str(tmp_path), state, config, np.asarray(losses, np.float32), keep=2)
    assert not stale.exists() and [step for step, _ in list_checkpoints(str(tmp_path))] == [20, 15]


def test_fit_resume_is_bit_identical(tmp_path):
    whole = jaxconv.fit(TASK, **FIT)
    folder = str(tmp_path / "ckpt")
    jaxconv.fit(TASK, **{**FIT, "steps": 30}, checkpoint_dir=folder, checkpoint_every=20)
    assert [step for step, _ in list_checkpoints(folder)] == [30, 20]
    resumed = jaxconv.fit(TASK, **FIT, checkpoint_dir=folder, checkpoint_every=20, resume=True)
    assert resumed.resumed_from == 30
    chex.assert_trees_all_equal(resumed.params, whole.params)
    assert resumed.history == whole.history


def test_corrupted_newest_checkpoint_falls_back_with_a_warning(tmp_path):
    folder = str(tmp_path)
    whole = jaxconv.fit(TASK, **FIT)
    jaxconv.fit(TASK, **{**FIT, "steps": 40}, checkpoint_dir=folder, checkpoint_every=20)
    newest = list_checkpoints(folder)[0][1]
    with open(newest, "r+b") as f:  # flip bytes in the middle: the zip still opens, the digest does not match
        f.seek(os.path.getsize(newest) // 2)
        f.write(b"\x00\x01\x02\x03")
    with pytest.warns(CheckpointWarning, match="ckpt-00000040.npz is unusable"):
        resumed = jaxconv.fit(TASK, **FIT, checkpoint_dir=folder, checkpoint_every=20, resume=True)
    assert resumed.resumed_from == 20
    chex.assert_trees_all_equal(resumed.params, whole.params)


def test_no_usable_checkpoint_and_other_config_are_refused(tmp_path):
    folder = str(tmp_path)
    jaxconv.fit(TASK, **{**FIT, "steps": 20}, checkpoint_dir=folder)
    with pytest.raises(CheckpointError, match=r"learning_rate: 0\.1 -> 0\.2.*task\.density: 0\.3 -> 0\.25"):
        jaxconv.fit(
            PlantedPatternTask("seed", image_shape=(10, 10), density=0.25),
            **FIT,
            learning_rate=0.2,
            checkpoint_dir=folder,
            resume=True,
        )
    with pytest.raises(CheckpointError, match=r"l1: 0\.0 -> 0\.5"):
        jaxconv.fit(TASK, **FIT, l1=0.5, checkpoint_dir=folder, resume=True)
    for _, path in list_checkpoints(folder):
        with open(path, "r+b") as f:
            f.truncate(100)
    with pytest.warns(CheckpointWarning), pytest.raises(CheckpointError, match="none of the 1 checkpoints"):
        jaxconv.fit(TASK, **FIT, checkpoint_dir=folder, resume=True)
    with pytest.raises(ValueError, match="`checkpoint_dir`"):
        jaxconv.fit(TASK, **FIT, resume=True)


# The poisoned steps below are traced with a monkeypatched batch_loss; each uses a batch size no other test
# uses, so their compiled versions never serve a clean test (and the clean ones never serve them).
POISONED_BATCH, ALL_NAN_BATCH = 3, 5


@pytest.fixture
def nan_when_corner_pixel_is_one(monkeypatch):
    """Poison the loss of every batch whose first pixel is 1 (about 30% of them), deterministically."""
    original = _train.batch_loss

    def poisoned(params, config, images, targets):
        assert config.batch_size == POISONED_BATCH
        return original(params, config, images, targets) * jnp.where(images[0, 0, 0, 0] > 0.5, jnp.nan, 1.0)

    monkeypatch.setattr(_train, "batch_loss", poisoned)


def test_nonfinite_steps_are_skipped_and_counted(nan_when_corner_pixel_is_one):
    config = TrainConfig(TASK, batch_size=POISONED_BATCH)
    state = init_state(config)
    new, losses = train_steps(config, state, 30)
    bad = ~np.isfinite(np.asarray(losses))
    assert 3 <= bad.sum() <= 27
    assert _train.nonfinite_steps(new)[1] == bad.sum()
    assert bool(jnp.all(jnp.isfinite(new.params["kernel"])))
    # a skipped step changes nothing but the counters: replaying with the bad steps' updates dropped agrees
    state_b = state
    for step in range(30):
        after, _ = train_steps(config, state_b, 1)
        state_b = after if not bad[step] else after._replace(params=state_b.params)
    chex.assert_trees_all_equal(new.params, state_b.params)


def test_too_many_nonfinite_steps_in_a_row_stop_the_run(monkeypatch, tmp_path):
    original = _train.batch_loss

    def poisoned(params, config, images, targets):
        assert config.batch_size == ALL_NAN_BATCH
        return original(params, config, images, targets) * jnp.nan

    monkeypatch.setattr(_train, "batch_loss", poisoned)
    with pytest.raises(NonFiniteError, match="the last 10 steps had a non-finite loss"):
        jaxconv.fit(TASK, steps=100, batch_size=ALL_NAN_BATCH, steps_per_dispatch=10, max_nonfinite=10, eval_images=0)


def test_debug_nans_flag_raises_at_the_first_nan(nan_when_corner_pixel_is_one, tmp_path):
    args = ["train", "--steps", "30", "--batch-size", str(POISONED_BATCH), "--image-size", "10", "--no-progress"]
    args += ["--no-figures"]
    with pytest.raises(FloatingPointError):
        main([*args, "--debug-nans", "--out", str(tmp_path / "a")])
    assert main([*args, "--eval-images", "20", "--out", str(tmp_path / "b")]) == 0  # without: skipped, counted


@pytest.mark.slow  # two CLI processes
def test_same_seed_same_result_twice(tmp_path):
    args = ["train", "--steps", "30", "--batch-size", "4", "--image-size", "10", "--eval-images", "20"]
    args += ["--no-progress", "--no-figures"]
    for name in ("a", "b"):
        assert main([*args, "--out", str(tmp_path / name)]) == 0
    with np.load(tmp_path / "a" / "final_params.npz") as a, np.load(tmp_path / "b" / "final_params.npz") as b:
        for key in ("kernel", "bias"):
            np.testing.assert_array_equal(a[key], b[key])
    for name in ("history.jsonl", "metrics.json"):
        first, second = (tmp_path / "a" / name).read_text(), (tmp_path / "b" / name).read_text()
        if name == "metrics.json":
            first, second = (json.loads(t) for t in (first, second))
            first.pop("timing"), second.pop("timing")
        assert first == second


CLI = [sys.executable, "-m", "jaxconv", "train", "--image-size", "10", "--batch-size", "4", "--steps", "3000"]
CLI += ["--checkpoint-every", "40", "--steps-per-dispatch", "20", "--eval-images", "20", "--no-figures"]
CLI += ["--no-progress", "--resume"]


def _env(tmp_path):
    """Subprocesses share a persistent compilation cache: only the first one compiles (same executables)."""
    return {
        **os.environ,
        "JAX_COMPILATION_CACHE_DIR": str(tmp_path / "jax-cache"),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
    }


def _run(out, env, **kwargs):
    return subprocess.run([*CLI, "--out", str(out)], capture_output=True, text=True, timeout=300, env=env, **kwargs)


def _arrays(out):
    with np.load(out / "final_params.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.mark.slow  # three CLI processes killed and resumed; test_fit_resume_is_bit_identical resumes in the fast tier
def test_sigkill_twice_then_resume_is_bit_identical(tmp_path):
    reference = tmp_path / "reference"  # uninterrupted, in this process: also "same seed, two processes"
    assert main([*CLI[3:], "--out", str(reference)]) == 0
    out, last = tmp_path / "killed", 0
    for _ in range(2):
        proc = subprocess.Popen(
            [*CLI, "--out", str(out)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=_env(tmp_path)
        )
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            steps = [s for s, _ in list_checkpoints(str(out / "checkpoints"))]
            if steps and steps[0] > last:
                break
            time.sleep(0.005)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        assert proc.returncode == -signal.SIGKILL
        assert not (out / "final_params.npz").exists()  # killed mid-run
        last = list_checkpoints(str(out / "checkpoints"))[0][0]
        assert last < 3000
    done = _run(out, _env(tmp_path), check=True)
    assert f"resumed from step {last}" in done.stderr
    for key, value in _arrays(reference).items():
        np.testing.assert_array_equal(_arrays(out)[key], value)
    assert (out / "history.jsonl").read_text() == (reference / "history.jsonl").read_text()
    # a truncated newest checkpoint: one warning line, fall back to the previous one, same answer
    newest = list_checkpoints(str(out / "checkpoints"))[0][1]
    with open(newest, "r+b") as f:
        f.truncate(os.path.getsize(newest) // 2)
    os.remove(out / "final_params.npz")
    done = _run(out, _env(tmp_path))
    assert done.returncode == 0, done.stderr
    warnings = [line for line in done.stderr.splitlines() if "warning" in line]
    assert len(warnings) == 1 and "is unusable" in warnings[0] and "Traceback" not in done.stderr
    for key, value in _arrays(reference).items():
        np.testing.assert_array_equal(_arrays(out)[key], value)

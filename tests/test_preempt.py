"""Preemption: SIGTERM/SIGINT write a checkpoint and exit 75; `--resume` with two processes (process 0 reads, every
process receives) continues bit for bit, also after SIGKILLs; a lost peer makes the others exit 69 in bounded time.

The two-process runs use loopback and gloo CPU collectives, as tests/test_multihost.py does. Every signal is sent
only after a checkpoint file shows that training is under way, so no sleep decides the outcome.
"""

from __future__ import annotations

import os
import random
import re
import signal
import subprocess
import sys
import time

import chex
import numpy as np
import pytest
from test_multihost import _free_port, _gloo_available

import jaxconv
from jaxconv.cli import main
from jaxconv.lab._checkpoint import list_checkpoints, restore_latest
from jaxconv.lab._preempt import EXIT_PEER_LOST, EXIT_PREEMPTED, Preempted

TASK = jaxconv.PlantedPatternTask("seed", image_shape=(10, 10))
FIT = {"steps": 60, "batch_size": 4, "steps_per_dispatch": 10, "eval_images": 0}

STEPS = 400
FLAGS = ["train", "--batch-size", "8", "--image-size", "12", "--seed", "3", "--steps-per-dispatch", "10",
         "--checkpoint-every", "20", "--eval-images", "10", "--no-progress", "--no-figures"]  # fmt: skip
WAIT_S = 240  # for any one event (a checkpoint to appear, a process to end): generous, for a loaded machine
PEER_TIMEOUT_S = 5
# The exit must follow the peer's death within the peer timeout; the slack covers process exit on a busy machine.
PEER_EXIT_SLACK_S = 10
RTOL = ATOL = 2e-5  # another device count sums the gradient in another order (tests/test_multihost.py's bound)

needs_gloo = pytest.mark.skipif(not _gloo_available(), reason="this jaxlib has no gloo CPU collectives")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_checkpoints_after_the_dispatch_and_resume_is_bit_identical(sig, tmp_path):
    whole = jaxconv.fit(TASK, **FIT)
    folder = str(tmp_path)
    previous = signal.getsignal(sig)

    def signal_at_30(state, losses):
        if int(state.step) == 30:
            os.kill(os.getpid(), sig)

    with pytest.raises(Preempted) as stopped:
        jaxconv.fit(TASK, **FIT, checkpoint_dir=folder, callback=signal_at_30)
    # the signal came after dispatch 30's check: the next dispatch (the one in flight) ends the run
    assert stopped.value.step == 40 and stopped.value.reason == sig.name
    assert [s for s, _ in list_checkpoints(folder)] == [40] and stopped.value.path == list_checkpoints(folder)[0][1]
    assert f"stopped by {sig.name} at step 40" in str(stopped.value)
    assert signal.getsignal(sig) == previous  # handlers restored
    resumed = jaxconv.fit(TASK, **FIT, checkpoint_dir=folder, resume=True)
    assert resumed.resumed_from == 40
    chex.assert_trees_all_equal(resumed.params, whole.params)
    assert resumed.history == whole.history


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """A persistent compilation cache that every process of this module's runs shares: only the first compiles."""
    return tmp_path_factory.mktemp("jax-cache")


def _start(cache, outs, extra):
    """Two processes of one run on loopback; process ``i`` gets ``--out outs[i]``."""
    address = f"127.0.0.1:{_free_port()}"
    multihost = ["--coordinator", address, "--num-processes", "2"]
    return [
        subprocess.Popen(
            [sys.executable, "-m", "jaxconv", *FLAGS, *extra, *multihost, "--process-id", str(i), "--out", str(out)],
            env={
                **os.environ,
                "JAX_PLATFORMS": "cpu",
                "JAX_NUM_CPU_DEVICES": "1",
                "JAX_COMPILATION_CACHE_DIR": str(cache),
                "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
                "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i, out in enumerate(outs)
    ]


def _wait_for_checkpoint_after(folder, step, processes):
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline:
        steps = [s for s, _ in list_checkpoints(str(folder))]
        if steps and steps[0] > step:
            return steps[0]
        assert all(p.poll() is None for p in processes), "a process ended early:\n" + _outputs(processes)
        time.sleep(0.01)
    raise AssertionError(f"no checkpoint after step {step} within {WAIT_S} s")


def _outputs(processes):
    texts = []
    for p in processes:
        if p.poll() is None:
            p.kill()
        texts.append(p.communicate(timeout=WAIT_S)[0])
    return "\n----\n".join(texts)


def _finish(processes):
    """Each process's ``(returncode, output)``; every process is killed if time runs out (never a hang)."""
    deadline = time.monotonic() + WAIT_S
    results = []
    try:
        for p in processes:
            out = p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0]
            results.append((p.returncode, out))
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.communicate()
    return results


def _run_ok(cache, outs, extra):
    results = _finish(_start(cache, outs, extra))
    assert all(code == 0 for code, _ in results), "\n----\n".join(out for _, out in results)
    return results


def _arrays(out):
    with np.load(out / "final_params.npz") as f:
        return {k: f[k] for k in f.files}


@pytest.mark.slow  # five 2-process launches; the fast tier keeps the one-process signal test above
@needs_gloo
def test_two_processes_killed_three_times_resume_bit_identical(tmp_path, cache):
    steps = ["--steps", str(STEPS)]
    reference = tmp_path / "reference"
    _run_ok(cache, [reference, tmp_path / "ref1"], steps)
    rng = random.Random(15)
    delays = [rng.uniform(0.0, 0.5) for _ in range(3)]  # after a new checkpoint appears: the kill lands anywhere
    out, last = tmp_path / "killed", 0
    for delay in delays:
        ranks = _start(cache, [out, tmp_path / "killed1"], [*steps, "--resume"])
        last = _wait_for_checkpoint_after(out / "checkpoints", last, ranks)
        time.sleep(delay)
        for p in ranks:
            p.send_signal(signal.SIGKILL)
        for p in ranks:
            p.communicate(timeout=WAIT_S)
            assert p.returncode == -signal.SIGKILL
        assert not (out / "final_params.npz").exists(), "the run ended before it was killed"
        last = list_checkpoints(str(out / "checkpoints"))[0][0]
    assert not (tmp_path / "killed1").exists(), "process 1 wrote its --out"  # it never needs the folder either
    results = _run_ok(cache, [out, tmp_path / "killed1"], [*steps, "--resume"])
    assert f"resumed from step {last}" in results[0][1]
    for key, value in _arrays(reference).items():
        np.testing.assert_array_equal(_arrays(out)[key], value, err_msg=key)
    assert (out / "history.jsonl").read_text() == (reference / "history.jsonl").read_text()
    print(f"killed at random moments after checkpoints; delays {[round(d, 3) for d in delays]} s; last {last}")


@pytest.mark.slow  # two processes over gloo, then a resume
@needs_gloo
def test_sigterm_to_one_process_stops_both_then_resume_on_one_process(tmp_path, cache):
    two, other = tmp_path / "two", tmp_path / "other"
    ranks = _start(cache, [two, other], ["--steps", "100000"])
    _wait_for_checkpoint_after(two / "checkpoints", 0, ranks)
    ranks[1].send_signal(signal.SIGTERM)  # JAX's preemption service tells process 0
    results = _finish(ranks)
    stopped = []
    for code, output in results:
        lines = [line for line in output.splitlines() if line.startswith("jaxconv train:")]
        assert code == EXIT_PREEMPTED and len(lines) == 1 and "Traceback" not in output, output
        stopped.append(int(re.search(r"at step (\d+);", lines[0]).group(1)))
    assert stopped[0] == stopped[1], stopped  # both processes stopped at the same step
    assert f"checkpoint {two / 'checkpoints'}" in results[0][1]
    newest = list_checkpoints(str(two / "checkpoints"))[0]
    assert newest[0] == stopped[0] and not (two / "final_params.npz").exists() and not other.exists()
    # Again without --resume: process 0 refuses its --out, and process 1, which cannot see it, agrees at once.
    for code, output in _finish(_start(cache, [two, other], ["--steps", "100000"])):
        assert code == 2 and "already holds checkpoints" in output and "Traceback" not in output, output
    # Resume on one process with one device (the run had two): allowed, same global batch, float32 rounding.
    steps = stopped[0] + 40
    tail = ["--steps", str(steps), "--batch-size", "8", "--image-size", "12", "--seed", "3", "--eval-images", "10"]
    tail += ["--steps-per-dispatch", "10", "--no-progress", "--no-figures"]
    assert main(["train", *tail, "--resume", "--out", str(two)]) == 0
    assert main(["train", *tail, "--out", str(tmp_path / "one")]) == 0
    for key, value in _arrays(tmp_path / "one").items():
        np.testing.assert_allclose(_arrays(two)[key], value, rtol=RTOL, atol=ATOL, err_msg=key)


@pytest.mark.slow  # two processes over gloo, one killed
@needs_gloo
def test_a_lost_peer_ends_the_others_within_the_peer_timeout(tmp_path, cache):
    out = tmp_path / "run"
    ranks = _start(cache, [out, tmp_path / "other"], ["--steps", "100000", "--peer-timeout", str(PEER_TIMEOUT_S)])
    _wait_for_checkpoint_after(out / "checkpoints", 0, ranks)
    ranks[1].send_signal(signal.SIGKILL)
    killed = time.monotonic()
    code, output = _finish(ranks[:1])[0]
    elapsed = time.monotonic() - killed
    _finish(ranks[1:])
    lines = [line for line in output.splitlines() if line.startswith("jaxconv train:")]
    assert code == EXIT_PEER_LOST and len(lines) == 1 and "lost process 1" in lines[0], output
    assert elapsed < PEER_TIMEOUT_S + PEER_EXIT_SLACK_S, f"{elapsed:.1f} s"
    folder = out / "checkpoints"
    assert all(name.startswith("ckpt-") for name in os.listdir(folder))  # no half-written file is left
    config = jaxconv.TrainConfig(jaxconv.PlantedPatternTask("seed", image_shape=12), batch_size=8, seed=3)
    assert restore_latest(str(folder), config) is not None  # every checkpoint left is whole (no warning)
    print(f"process 0 exited {elapsed:.2f} s after process 1 was killed (peer timeout {PEER_TIMEOUT_S} s)")

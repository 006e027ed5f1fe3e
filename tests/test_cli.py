"""``jaxconv train``: the run directory's files, and one-line exit-2 errors for bad flags."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from jaxconv.cli import main

TINY = ["train", "--steps", "20", "--batch-size", "4", "--image-size", "10", "--eval-images", "20", "--no-progress"]
QUICK = [*TINY, "--no-figures"]


def test_train_writes_its_files(tmp_path, capsys):
    out = tmp_path / "run"
    assert main([*TINY, "--steps-per-dispatch", "8", "--out", str(out)]) == 0
    names = {p.name for p in out.iterdir()}
    expected = {"config.json", "metrics.json", "history.jsonl", "final_params.npz"}
    assert expected | {"kernel.png", "detections.png", "training.png"} <= names
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["steps"] == 20 and config["train"]["task"]["pattern"] == [[1, 1, 0], [1, 0, 0]]
    assert config["train"]["task"]["image_shape"] == [10, 10]
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("precision", "recall", "f1", "average_precision", "kernel_cosine"):
        assert 0.0 <= metrics[key] <= 1.0 or key == "kernel_cosine"
        assert key in metrics["matched_filter"]
    assert metrics["matched_filter"]["f1"] == 1.0
    history = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert [h["step"] for h in history] == list(range(1, 21))
    with np.load(out / "final_params.npz") as params:
        assert params["kernel"].shape == (2, 3, 1, 1) and params["bias"].shape == (1,)
    for png in ("kernel.png", "detections.png", "training.png"):
        assert (out / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = capsys.readouterr().out
    assert "learned" in table and "matched filter" in table


@pytest.mark.slow  # a full default run on a 5x5 pattern
def test_a_typed_binary_pattern_is_learned_perfectly_on_the_defaults(tmp_path, capsys):
    # rows drawn once at random (numpy default_rng(3), 5x5, p = 1/2), not chosen; nothing else changed but the
    # held-out count and the figures, which do not touch training
    out = tmp_path / "run"
    assert main(["train", "--pattern", "11001,11101,10100,01001,10110", "--eval-images", "250", "--no-progress",
                 "--no-figures", "--out", str(out)]) == 0  # fmt: skip
    metrics = json.loads((out / "metrics.json").read_text())
    config = json.loads((out / "config.json").read_text())
    assert config["train"]["steps"] == "auto" and config["train"]["near_misses"] == 2
    assert metrics["f1"] == 1.0 and metrics["fp"] == 0 and metrics["fn"] == 0 and metrics["tp"] > 0
    assert "auto: validation draw separated" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--steps", "-5"], "--steps"),
        (["--steps", "abc"], "--steps: must be auto or an int >= 1"),
        (["--near-misses", "-1"], "--near-misses"),
        (["--pattern", "1x2,3"], "--pattern"),
        (["--pattern", "11,1"], "--pattern"),
        (["--learning-rate", "-1"], "--learning-rate"),
        (["--learning-rate", "nan"], "--learning-rate"),
        (["--image-size", "2"], "--image-size"),
        (["--image-size", "0"], "--image-size"),
        (["--instances", "3,1"], "--instances"),
        (["--density", "1.5"], "--density"),
        (["--kernel-size", "1x1"], "--kernel-size"),
        (["--optimizer", "lbfgs"], "--optimizer"),
        (["--background", "gaussian", "--pattern", "110,100", "--noise-std", "0"], "--noise-std"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_bad_flags_exit_2_with_one_line(flags, words, capsys, tmp_path):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", *flags, "--out", str(tmp_path / "never")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and words in err and "Traceback" not in err, err


def test_unwritable_out_exits_2(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as exit_info:
        main([*QUICK, "--out", str(blocker / "run")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--out" in err


def test_console_script_and_experiment_share_the_parser(tmp_path):
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    script = os.path.join(root, "experiments", "learn_pattern.py")
    done = subprocess.run(
        [sys.executable, script, "--steps", "abc"], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "--steps" in done.stderr
    assert "Traceback" not in done.stderr


def test_gaussian_auto_says_it_decayed_and_calibrated(tmp_path, capsys):
    argv = ["train", "--background", "gaussian", "--amplitude", "3", "--image-size", "10", "--batch-size", "4",
            "--eval-images", "20", "--no-progress", "--no-figures", "--out", str(tmp_path / "run")]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "trained steps 1-1000 (auto: learning rate decayed to 0; threshold calibrated" in printed
    assert json.loads((tmp_path / "run" / "config.json").read_text())["train"]["decay_steps"] == 1000


@pytest.mark.slow  # three CLI processes compiling without the suite's cache
def test_train_keeps_its_compiled_programs_in_the_user_cache(tmp_path):
    # the suite's own cache (JAX_COMPILATION_CACHE_DIR, set by conftest) is taken out of the child's environment,
    # so the child uses the CLI's default: the user's cache folder, here under a temporary XDG_CACHE_HOME
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JAX_COMPILATION_CACHE", "JAX_PERSISTENT"))}
    argv = [sys.executable, "-m", "jaxconv", *QUICK, "--steps", "2", "--eval-images", "4"]

    def train(run: str, **extra: str) -> str:
        done = subprocess.run([*argv, "--out", str(tmp_path / run)], env={**env, **extra}, capture_output=True,
                              text=True, timeout=300, check=False)  # fmt: skip
        assert done.returncode == 0, done.stderr
        return done.stdout

    def entries(home: str) -> set[str]:
        folder = tmp_path / home / "jaxconv" / "jax"
        return {p.name for p in folder.iterdir()} if folder.exists() else set()

    printed = train("first", XDG_CACHE_HOME=str(tmp_path / "home"))
    assert "s compiling; steady state" in printed
    first = entries("home")
    assert len(first) >= 3  # the training step, the evaluation and the matched filter's scoring, at least
    train("second", XDG_CACHE_HOME=str(tmp_path / "home"))
    assert entries("home") == first  # every program of the second run was read from the cache
    train("off", XDG_CACHE_HOME=str(tmp_path / "off"), JAXCONV_NO_COMPILE_CACHE="1")
    assert entries("off") == set()

"""Smoke tests: each experiment script runs on a tiny configuration and writes its results and figures."""

import json
import os
import runpy
import sys

import pytest

from jaxconv.lab._train import DEFAULT_DECAY_STEPS

EXPERIMENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "experiments")


def run_experiment(name, *args):
    argv = sys.argv
    sys.argv = [name, *args]
    try:
        with pytest.raises(SystemExit) as exit_info:
            runpy.run_path(os.path.join(EXPERIMENTS, name), run_name="__main__")
    finally:
        sys.argv = argv
    return exit_info.value.code


def test_equivariance(tmp_path):
    assert run_experiment("equivariance.py", "--steps", "60", "--images", "1", "--shifts", "2",
                          "--image-size", "12", "--out", str(tmp_path)) == 0  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["shift_error"]["circular"]["boundary_max_error"] == 0.0
    for mode in ("zeros", "reflect", "replicate", "circular"):
        assert results["shift_error"][mode]["interior_max_error"] == 0.0
    mf = results["planted_everywhere"]["matched filter"]
    assert mf["detected_fraction"] == 1.0 and mf["logit_min"] == mf["logit_max"]
    assert (tmp_path / "shift_error.png").stat().st_size > 0
    assert (tmp_path / "planted_everywhere.png").stat().st_size > 0


def test_gradient_sources(tmp_path):
    assert run_experiment("gradient_sources.py", "--image-size", "10", "--out", str(tmp_path)) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    for checks in results["losses"].values():
        assert checks["max_abs_diff_sum_of_sources_vs_grad"] < 1e-5
        assert checks["max_abs_diff_untied_grad_vs_sources"] < 1e-6
    assert max(results["losses"]["balanced"]["positions_per_weight_conv"]) > 1
    assert (tmp_path / "gradient_sources.png").stat().st_size > 0


def test_noise_sweep(tmp_path):
    assert run_experiment("noise_sweep.py", "--snr-db", "6", "14", "--seeds", "1", "--steps", "40",
                          "--image-size", "12", "--eval-images", "40", "--out", str(tmp_path)) == 0  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    rows = results["rows"]
    assert [r["snr_db"] for r in rows] == [6.0, 14.0]
    assert rows[0]["theory"]["average_precision"] < rows[1]["theory"]["average_precision"]
    assert rows[1]["matched_filter"]["average_precision"] > 0.5
    assert set(results["gaps"]) == {"6", "14"}
    assert (tmp_path / "noise_sweep.png").stat().st_size > 0


@pytest.mark.parametrize(
    ("l1", "runs"),
    [
        ((), ["no penalty"]),  # the penalties' effect on the loss is tested in test_train
        pytest.param(("0.01",), ["no penalty", "L1 0.01"], marks=pytest.mark.slow),
    ],
    ids=["no-penalty", "l1"],
)
def test_kernel_size(tmp_path, l1, runs):
    assert run_experiment("kernel_size.py", "--kernel", "4", "4", "--seeds", "1", "--steps", "60", "--l1", *l1,
                          "--l2", "--image-size", "10", "--eval-images", "20", "--backgrounds", "binary",
                          "--out", str(tmp_path)) == 0  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    by_penalty = results["runs"]["binary"]
    assert list(by_penalty) == runs
    placement = by_penalty["no penalty"][0]["placement"]
    assert 0 <= placement["outside_energy"] < results["random_kernel_outside_energy"]
    assert (tmp_path / "kernel_size.png").stat().st_size > 0


def test_multi_pattern(tmp_path):
    assert run_experiment("multi_pattern.py", "--patterns", "hedge", "vedge", "--steps", "60",
                          "--batch-size", "8", "--image-size", "12", "--instances", "1", "1", "--eval-images", "20",
                          "--out", str(tmp_path)) == 0  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    confusion = results["evaluation"]["learned"]["confusion"]
    assert len(confusion) == 2 and len(confusion[0]) == 3
    assert (tmp_path / "multi_kernels.png").stat().st_size > 0
    assert (tmp_path / "multi_confusion.png").stat().st_size > 0


def test_kernel_evolution(tmp_path):
    assert run_experiment("kernel_evolution.py", "--steps", "40", "--every", "10", "--snapshots", "0", "10", "40",
                          "--image-size", "12", "--eval-images", "20", "--out", str(tmp_path)) == 0  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    assert [c["step"] for c in results["curve"]] == [0, 10, 20, 30, 40]
    assert [s["step"] for s in results["snapshots"]] == [0, 10, 40]
    assert results["curve"][-1]["kernel_cosine"] > results["curve"][0]["kernel_cosine"]
    assert (tmp_path / "kernel_evolution.png").stat().st_size > 0
    assert (tmp_path / "cosine_curve.png").stat().st_size > 0


def test_false_alarms(tmp_path):
    assert run_experiment("false_alarms.py", "--steps", "60", "--images", "30", "--image-size", "12",
                          "--out", str(tmp_path)) == 0  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["binary"]["targets_equal_exact_matches"]
    assert results["binary"]["detectors"]["matched filter"]["false_alarms"] == 0
    assert results["binary"]["detectors"]["matched filter"]["missed_occurrences"] == 0
    assert results["gaussian"]["targets_all_zero"]
    assert (tmp_path / "false_alarms.png").stat().st_size > 0


def test_least_squares(tmp_path):
    assert run_experiment("least_squares.py", "--train-images", "20", "--test-images", "20", "--steps", "600",
                          "--learning-rate", "0.02", "--image-size", "12", "--out", str(tmp_path)) == 0  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    ls, gd = results["least_squares"], results["gradient_descent"]
    assert ls["train_mse"] <= gd["train_mse"] + 1e-6
    assert gd["final_relative_distance"] < 1e-2
    assert ls["train_mse"] < results["constant_predictor"]["train_mse"]
    assert (tmp_path / "least_squares_kernels.png").stat().st_size > 0
    assert (tmp_path / "least_squares_convergence.png").stat().st_size > 0


def test_pattern_sweep_smoke(tmp_path):
    # 1 random pattern of one (shape, image size) group: one compile
    assert run_experiment("pattern_sweep.py", "--random", "1", "--groups", "1", "--no-named", "--eval-images", "50",
                          "--out", str(tmp_path)) == 0  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["completed_runs"] == results["perfect_runs"] == 1
    for row in results["rows"]:
        assert row["f1"] == 1.0 and row["fp"] == row["fn"] == 0 and row["steps"] >= 50
        assert 16 <= row["image_size"] <= 64 and 0.1 <= row["density"] <= 0.5
        assert list(row["size"]) == [len(row["pattern"]), len(row["pattern"][0])] and any(map(any, row["pattern"]))
    assert (tmp_path / "pattern_sweep.png").stat().st_size > 0


def test_gaussian_snr_smoke(tmp_path):
    code = run_experiment("gaussian_snr.py", "--patterns", "seed", "--snr-db", "12", "--eval-images", "250",
                          "--image-size", "16", "--seeds", "1", "--out", str(tmp_path))  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    (row,) = results["rows"]
    assert code == 0 and row["ok"] and row["ap_gap"] >= -0.005
    assert row["steps"] == DEFAULT_DECAY_STEPS["gaussian"]  # auto: to the end of the decay
    assert 0 < row["learned_f1"] <= 1 and 0 < row["matched_filter_f1"] <= 1 and 0 <= row["matched_filter_f1_map"] <= 1


@pytest.mark.parametrize(
    "remedies",
    [
        ("average_1000",),  # the script's own iterate averaging; a decayed rate is fit's, tested in test_train
        pytest.param(("average_1000", "decay_500"), marks=pytest.mark.slow),
    ],
    ids=["average", "average-decay"],
)
def test_gaussian_remedies_smoke(tmp_path, remedies):
    out = tmp_path / "remedies.json"
    code = run_experiment("gaussian_remedies.py", "--patterns", "seed", "--snr-db", "12", "--remedies", *remedies,
                          "--image-size", "16", "--eval-images", "100", "--out", str(out))  # fmt: skip
    results = json.loads(out.read_text())
    rows = {r["remedy"]: r for r in results["rows"]}
    assert code == 0 and list(rows) == list(remedies) and set(results["summary"]) == set(remedies)
    averaged = rows["average_1000"]
    assert averaged["steps"] == 1000
    if "decay_500" in rows:
        assert rows["decay_500"]["steps"] == 500
    low, high = averaged["iterate_cosine_last_500"]["min"], averaged["iterate_cosine_last_500"]["max"]
    assert -1 <= low <= high <= 1


def test_digits_cnn(tmp_path):
    pytest.importorskip("flax")
    pytest.importorskip("sklearn")
    assert run_experiment("digits_cnn.py", "--steps", "5", "--test-size", "100", "--timing-reps", "3",
                          "--out", str(tmp_path)) == 0  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    assert len(results["stock"]["losses"]) == len(results["jaxconv"]["losses"]) == 5
    assert results["max_loss_difference"] < 1e-4
    assert abs(results["accuracy_difference_points"]) <= 0.5
    assert (tmp_path / "digits_loss.png").stat().st_size > 0
    assert (tmp_path / "digits_kernels.png").stat().st_size > 0


def test_lax_padding_bug(tmp_path):
    assert run_experiment("lax_padding_bug.py", "--sweep", "1", "--repeats", "1", "--out", str(tmp_path)) == 0
    results = json.loads((tmp_path / "results.json").read_text())
    assert results["jaxconv_correct"] is True
    issue = {r["name"]: r["errors"] for r in results["cases"]}["issue: 12 channels, auto"]
    for name in ("jaxconv xla", "jaxconv auto"):
        assert max(issue[f"{name} eager"]["dx"], issue[f"{name} jit"]["dx"]) < 1e-5
    assert set(results["environment"]) >= {"jax", "jaxlib", "cpu"}
    assert len(results["timing"]) == 2 and all(t["ratio_jaxconv_over_lax"] > 0 for t in results["timing"])


def test_textures_smoke(tmp_path):
    pytest.importorskip("skimage")
    pytest.importorskip("sklearn")
    code = run_experiment("textures.py", "--textures", "brick", "grass", "--photo-size", "96", "--train-rows", "64",
                          "--crop", "16", "--kernels", "2", "--kernel-size", "5", "--steps", "100", "--batch", "8",
                          "--eval-crops", "20", "--out", str(tmp_path))  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    assert code == 0 and results["chance"] == 0.5 and 0 <= results["held_out_accuracy"] <= 1
    assert sum(map(sum, results["confusion"]["counts"])) == 40 and len(results["kernels"]) == 2
    for kernel in results["kernels"]:
        assert 0 <= kernel["orientation_deg"] < 180 and 0 < kernel["frequency"] <= 0.75
        assert 0 <= kernel["selectivity"] <= 1 and kernel["prefers"] in ("brick", "grass")
    assert (tmp_path / "texture_kernels.png").stat().st_size > 0


def test_real_photos_smoke(tmp_path):
    pytest.importorskip("skimage")
    pytest.importorskip("sklearn")
    code = run_experiment("real_photos.py", "--train-photos", "camera", "--held-out-photos", "coins",
                          "--photo-size", "64", "--image-size", "16", "--steps", "20", "--spectrum-images", "20",
                          "--eval-images", "250", "--out", str(tmp_path))  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    detectors = results["detectors"]
    assert code == 0 and results["training_steps"] == 20
    linear = {"learned", "matched_filter", "zero_mean_matched_filter", "whitened_matched_filter"}
    assert set(detectors) == linear | {"match_template"}
    assert all(0 < d[c]["average_precision"] <= 1 for d in detectors.values() for c in ("held_out", "fixed_exposure"))
    # The whitened filter's predicted d' is the largest any linear kernel can have (Cauchy-Schwarz).
    best = detectors["whitened_matched_filter"]["predicted_d_prime"]
    assert all(detectors[name]["predicted_d_prime"] <= best + 1e-9 for name in linear)
    assert all(-1 <= c["plain"] <= 1 for c in results["cosines"].values())
    assert (tmp_path / "real_photos.png").stat().st_size > 0


def test_fft_sweep(tmp_path):
    assert run_experiment("fft_sweep.py", "--kernels", "3", "9", "--images", "8", "--rounds", "1",
                          "--out", str(tmp_path)) == 0  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    assert [p["kernel"] for p in results["points"]] == [3]  # a kernel larger than the image is skipped
    assert set(results["points"][0]["ms"]) == {"direct", "xla", "fft"} and results["environment"]["jax"]


@pytest.mark.parametrize(
    "models",
    [
        # the two ends (one shared kernel, one dense matrix); the local detector trains through fit in test_detectors
        ("conv", "dense"),
        pytest.param(("conv", "local", "dense"), marks=pytest.mark.slow),
    ],
    ids=["conv-dense", "all"],
)
def test_weight_sharing_smoke(tmp_path, models):
    assert run_experiment("weight_sharing.py", "--sizes", "10", "--cap", "1", "--seeds", "1", "--steps", "4",
                          "--eval-images", "20", "--unseen-size", "10", "--backgrounds", "gaussian",
                          "--models", *models, "--out", str(tmp_path)) == 0  # fmt: skip
    results = json.loads((tmp_path / "results.json").read_text())
    sweeps = results["sweeps"]["gaussian"]["10"]
    ho, wo = 9, 8  # the 2x3 pattern's positions in a 10x10 image
    expected = {"conv": 2 * 3 + 1, "local": (2 * 3 + 1) * ho * wo, "dense": 10 * 10 * ho * wo + ho * wo}
    assert set(sweeps) == set(results["unseen"]) == set(models)
    for model in models:
        (sweep,) = sweeps[model]
        assert [r["n"] for r in sweep["runs"]] == [1] and sweep["runs"][0]["parameters"] == expected[model]
        assert sweep["n_star"] in (None, 1) and 0 <= sweep["runs"][0]["coverage"] <= 1
        unseen = results["unseen"][model]
        assert (len(unseen["f1_map"]), len(unseen["f1_map"][0])) == (ho, wo)
        assert set(unseen["halves"]) == {"left", "right"}
    assert (tmp_path / "n_star.png").stat().st_size > 0
    assert (tmp_path / "unseen_positions.png").stat().st_size > 0
    again = tmp_path / "again" / "new"  # created
    assert run_experiment("weight_sharing.py", "--replot", str(tmp_path / "results.json"), "--out", str(again)) == 0
    assert {p.name for p in again.iterdir()} == {"n_star.png", "unseen_positions.png"}


@pytest.mark.slow  # its smallest case is still its 8 patterns, 400 steps each on 40x40 images
def test_remedies_smoke(tmp_path):
    out = tmp_path / "remedies.json"
    assert run_experiment("remedies.py", "--remedies", "before", "--eval-images", "20", "--out", str(out)) == 0
    results = json.loads(out.read_text())
    assert set(results["summary"]) == {"before"} and len(results["rows"]) == 8
    for row in results["rows"]:
        assert row["remedy"] == "before" and row["steps"] == 400 and 0 <= row["f1"] <= 1
        assert isinstance(row["worst_case"], dict) and row["fp"] >= 0 and row["fn"] >= 0

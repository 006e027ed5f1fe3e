"""The lab's three detectors (conv, local, dense), the fixed training set and planting in a column range."""

import json

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from reference import tiered

import jaxconv
from jaxconv.cli import main
from jaxconv.lab import PlantedPatternTask, TrainConfig, init_params, logit_map, position_scores, training_set
from jaxconv.lab._streams import stream
from jaxconv.lab._train import batch_loss, init_state, train_steps

TASK = PlantedPatternTask("seed", image_shape=10)
GAUSSIAN = PlantedPatternTask("seed", image_shape=10, background="gaussian", amplitude=3.0)
FIT = {"steps": 20, "batch_size": 4, "steps_per_dispatch": 10, "eval_images": 20}
MODELS = ("conv", "local", "dense")


def numpy_logits(params, images):
    """An independent NumPy reference: a loop over output positions (local) or a plain matrix product (dense)."""
    x = np.asarray(images, np.float64)[..., 0]
    b = np.asarray(params["bias"], np.float64)
    if "matrix" in params:
        return (x.reshape(len(x), -1) @ np.asarray(params["matrix"], np.float64)).reshape(len(x), *b.shape) + b
    k = np.asarray(params["kernels"], np.float64)[:, :, :, :, 0, :]
    ho, wo, kh, kw, _ = k.shape
    out = np.zeros((len(x), ho, wo, k.shape[-1]))
    for i in range(ho):
        for j in range(wo):
            out[:, i, j] = np.einsum("nab,abk->nk", x[:, i : i + kh, j : j + kw], k[i, j]) + b[i, j]
    return out


@pytest.mark.parametrize("model", ["local", "dense"])
def test_logits_match_a_numpy_reference_and_init_scales_by_fan_in(model):
    rng = np.random.default_rng(0)
    params = init_params(jax.random.key(1), (2, 3), 2, model=model, image_shape=(7, 9))
    params = {**params, "bias": jnp.asarray(rng.normal(size=params["bias"].shape), jnp.float32)}
    images = rng.normal(size=(3, 7, 9, 1)).astype(np.float32)
    got = jax.jit(logit_map)(params, images)
    np.testing.assert_allclose(got, numpy_logits(params, images), rtol=1e-5, atol=1e-5)
    weights = np.asarray(params["kernels" if model == "local" else "matrix"])
    fan_in = 6 if model == "local" else 63
    assert abs(weights.std() * np.sqrt(fan_in) - 1) < 0.1 and abs(weights.mean()) < 0.1


def test_a_local_detector_with_equal_filters_is_the_conv_detector():
    conv = init_params(jax.random.key(2), (2, 3))
    images = np.random.default_rng(1).normal(size=(2, 6, 8, 1)).astype(np.float32)
    local = {"kernels": jnp.broadcast_to(conv["kernel"], (5, 6, 2, 3, 1, 1)), "bias": jnp.full((5, 6, 1), 0.25)}
    np.testing.assert_allclose(
        logit_map(local, images), logit_map({**conv, "bias": jnp.array([0.25])}, images), rtol=1e-6, atol=1e-6
    )


# the fast tier trains the locally connected detector here; conv trains throughout the suite, dense through the CLI
@pytest.mark.parametrize("model", tiered(MODELS, fast={MODELS.index("local")}))
def test_each_detector_trains_through_fit_and_is_scored_by_evaluate(model):
    result = jaxconv.fit(TASK, model=model, train_images=3, **FIT)
    losses = [h["loss"] for h in result.history]
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    m = result.metrics
    assert 0 <= m["f1"] <= 1 and 0 <= m["average_precision"] <= 1 and m["num_images"] == 20
    assert (m["kernel_cosine"] is None) == (model != "conv")
    # position_scores against counts taken by hand from the same held-out logits and targets
    maps = position_scores(result.params, TASK, num_images=20)
    _, logits, targets = jaxconv.lab.held_out_scores(result.params, TASK, num_images=20)
    np.testing.assert_array_equal(maps["tp"], ((logits > 0) & (targets > 0.5)).sum(0))
    np.testing.assert_array_equal(maps["fp"], ((logits > 0) & (targets <= 0.5)).sum(0))
    assert [int(maps[k].sum()) for k in ("tp", "fp", "fn")] == [m["tp"], m["fp"], m["fn"]]


def test_the_default_detector_is_unchanged():
    config = TrainConfig(TASK, batch_size=4)
    old = {k: v for k, v in config.to_dict().items() if k not in ("model", "train_images", "train_columns")}
    assert TrainConfig.from_dict(old) == config and config.model == "conv"  # a config saved before #22 resumes
    kernel = jax.random.normal(stream(0, "init"), (2, 3, 1, 1), jnp.float32) / np.sqrt(6)
    chex.assert_trees_all_equal(init_state(config).params, {"kernel": kernel, "bias": jnp.zeros(1)})


def test_resume_of_a_local_detector_on_a_training_set_is_bit_identical(tmp_path):
    fit = {**FIT, "model": "local", "train_images": 5, "steps": 30, "eval_images": 0}
    whole = jaxconv.fit(TASK, **fit)
    folder = str(tmp_path / "ckpt")
    jaxconv.fit(TASK, **{**fit, "steps": 20}, checkpoint_dir=folder, checkpoint_every=10)
    resumed = jaxconv.fit(TASK, **fit, checkpoint_dir=folder, resume=True)
    assert resumed.resumed_from == 20
    chex.assert_trees_all_equal(resumed.params, whole.params)
    assert resumed.history == whole.history
    with pytest.raises(jaxconv.CheckpointError, match="train_images: 5 -> 6"):
        jaxconv.fit(TASK, **{**fit, "train_images": 6}, checkpoint_dir=folder, resume=True)


def test_the_training_set_is_n_images_and_a_step_trains_on_them_in_order():
    config = TrainConfig(TASK, batch_size=4, train_images=3, optimizer="sgd", learning_rate=0.5, near_misses=0)
    images, targets = (np.asarray(a) for a in training_set(config))
    assert images.shape == (3, 10, 10, 1) and len({im.tobytes() for im in images}) == 3
    bigger = np.asarray(training_set(TrainConfig(TASK, near_misses=0, train_images=5))[0])
    np.testing.assert_array_equal(bigger[:3], images)  # the sets are nested
    # One SGD step from the initial params: its update is the gradient on images 0, 1, 2, 0 of the set, taken here
    # by hand with optax's plain SGD (the train step's optimizer is wrapped to skip non-finite updates).
    state = init_state(config)
    stepped, _ = train_steps(config, state, 1)
    batch = images[[0, 1, 2, 0]], targets[[0, 1, 2, 0]]
    grads = jax.grad(batch_loss)(state.params, config.step, *batch)
    updates, _ = optax.sgd(0.5).update(grads, optax.sgd(0.5).init(state.params))
    chex.assert_trees_all_close(stepped.params, optax.apply_updates(state.params, updates), atol=1e-6)
    # ... and no other image: a step that would draw fresh images gives another update
    fresh, _ = train_steps(TrainConfig(TASK, batch_size=4, optimizer="sgd", learning_rate=0.5, near_misses=0), state, 1)
    assert not np.allclose(fresh.params["kernel"], stepped.params["kernel"])


def test_region_planting_never_plants_outside_the_region():
    task = PlantedPatternTask("seed", image_shape=(12, 16), background="gaussian", plant_columns=(3, 8))
    sample = task.sample(jax.random.key(4), 64)
    columns = np.nonzero(np.asarray(sample.targets))[2]
    assert set(columns.tolist()) == {3, 4, 5, 6, 7}  # every allowed column, and nothing else
    planted = np.asarray(sample.positions)[..., 1]
    assert set(planted[planted >= 0].tolist()) == {3, 4, 5, 6, 7}
    # Training draws from the region, held-out images plant everywhere.
    config = TrainConfig(GAUSSIAN, train_columns=(0, 4), train_images=40)
    train_columns = np.nonzero(np.asarray(training_set(config)[1]))[2]
    assert train_columns.max() < 4
    _, _, held_out = jaxconv.lab.held_out_scores(init_state(config).params, GAUSSIAN, num_images=40)
    assert np.nonzero(held_out)[2].max() >= 4


def test_jaxconv_train_model_dense_end_to_end(tmp_path, capsys):
    out = tmp_path / "run"
    flags = ["--steps", "10", "--batch-size", "4", "--image-size", "10", "--eval-images", "20", "--no-progress"]
    assert main(["train", "--model", "dense", "--train-images", "3", "--train-columns", "0,4", *flags,
                 "--out", str(out)]) == 0  # fmt: skip
    config = json.loads((out / "config.json").read_text())["train"]
    assert (config["model"], config["train_images"], config["train_columns"]) == ("dense", 3, [0, 4])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["kernel_cosine"] is None and 0 <= metrics["f1"] <= 1
    with np.load(out / "final_params.npz") as params:
        assert params["matrix"].shape == (100, 8 * 9) and params["bias"].shape == (9, 8, 1)
    assert {p.name for p in out.iterdir()} >= {"detections.png", "training.png"} and not (out / "kernel.png").exists()
    assert "learned" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--model", "cnn"], "--model: invalid choice: 'cnn'"),
        (["--train-images", "0"], "--train-images: must be an int >= 1; got '0'"),
        (["--train-columns", "4"], "--train-columns: must be LO,HI"),
        (["--train-columns", "5,2"], "--train-columns: must be None or (lo, hi), ints with 0 <= lo < hi <= 8"),
    ],
)
def test_bad_flags_exit_2_with_one_line(flags, words, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--image-size", "10", "--no-progress", *flags])
    assert exit_info.value.code == 2
    assert words in capsys.readouterr().err


@pytest.mark.parametrize(
    ("call", "error", "words"),
    [
        (lambda: TrainConfig(TASK, model="cnn"), ValueError, "TrainConfig: `model` must be one of"),
        (lambda: TrainConfig(TASK, train_images=0), ValueError, "`train_images` must be an int >= 1; got 0"),
        (lambda: TrainConfig(TASK, train_columns=(3, 3)), ValueError, "`train_columns` must be None or (lo, hi)"),
        (lambda: TrainConfig(TASK, train_columns=(0, 9)), ValueError, "0 <= lo < hi <= 8; got (0, 9)"),
        (lambda: TrainConfig(TASK, train_columns=(0, 1)), ValueError, "`instances` must be at most"),
        (lambda: PlantedPatternTask(plant_columns=(0.5, 2)), TypeError, "`plant_columns` must be None or a pair"),
        (lambda: init_params(jax.random.key(0), (2, 3), model="local"), ValueError, "`image_shape` must be a pair"),
        (lambda: init_params(jax.random.key(0), (2, 3), model="mlp"), ValueError, "`model` must be one of"),
        (lambda: training_set(TrainConfig(TASK)), ValueError, "with `train_images` set"),
        (
            lambda: jaxconv.evaluate(init_params(jax.random.key(0), (2, 3), model="dense", image_shape=(9, 9)), TASK),
            ValueError,
            "must be a dense detector of the task's 10x10 images",
        ),
        (
            lambda: logit_map(init_params(jax.random.key(0), (2, 3), model="dense", image_shape=(9, 9)), jnp.ones(4)),
            ValueError,
            "logit_map: `images` must be [B, H, W, 1] with H * W = 81",
        ),
        (lambda: logit_map({"weights": 1, "bias": 0}, jnp.ones(4)), TypeError, "one of 'kernel' (conv), 'kernels'"),
        (
            lambda: train_steps(TrainConfig(TASK, train_images=2), None, 1, data=(jnp.ones((1, 10, 10, 1)),) * 2),
            ValueError,
            "`data` must be None when `config.train_images` is set",
        ),
    ],
)
def test_bad_values_give_clear_errors(call, error, words):
    with pytest.raises(error) as info:
        call()
    assert words in str(info.value)

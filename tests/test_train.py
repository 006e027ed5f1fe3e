"""Loss, jitted multi-step training and fit: under jit, chunking-invariant, and the imbalance handling matters."""

import dataclasses

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import jaxconv
from jaxconv.lab import PlantedPatternTask, TrainConfig, detection_loss, init_state, train_steps
from jaxconv.lab._train import _train_steps, batch_loss

SMALL = PlantedPatternTask("seed", image_shape=(12, 12))


def softplus(x):
    return np.logaddexp(0.0, x)


def test_losses_match_numpy_under_jit():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(3, 5, 6)).astype(np.float32) * 3
    t = (rng.random((3, 5, 6)) < 0.1).astype(np.float32)
    on, off = softplus(-z), softplus(z)
    npos = t.sum()
    bce = np.mean(t * on + (1 - t) * off)
    balanced = 0.5 * ((t * on).sum() / npos + ((1 - t) * off).sum() / (1 - t).sum())
    hardest = np.sort(((1 - t) * off).ravel())[::-1][: int(3 * npos)]
    hard = 0.5 * ((t * on).sum() / npos + hardest.sum() / (3 * npos))
    mse = np.mean((z - t) ** 2)
    for name, expected in [("bce", bce), ("balanced", balanced), ("hard_negative", hard), ("mse", mse)]:
        got = jax.jit(detection_loss, static_argnames="loss")(z, t, loss=name)
        np.testing.assert_allclose(float(got), expected, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="`loss`"):
        detection_loss(z, t, loss="hinge")
    with pytest.raises(ValueError, match="`targets`"):
        detection_loss(z, t[0])


def test_sum_of_largest_matches_a_sort_with_ties_and_its_gradient_is_shared_among_ties():
    from jaxconv.lab._detector import sum_of_largest

    rng = np.random.default_rng(11)
    for n in (1, 7, 500):
        # few distinct values: many ties, as identical binary windows give identical logits
        values = rng.choice(np.float32([0.0, 1e-6, 0.25, 0.25001, 3.0, 40.0]), size=n)
        for k in sorted({1, max(1, n // 3), n}):
            expected = np.sort(values)[::-1][:k].sum(dtype=np.float64)
            got = jax.jit(sum_of_largest)(jnp.asarray(values), jnp.asarray(k, jnp.float32))
            np.testing.assert_allclose(float(got), expected, rtol=1e-6, atol=1e-9)
    values = jnp.array([5.0, 2.0, 2.0, 2.0, 1.0])
    grad = jax.grad(lambda v: sum_of_largest(v, jnp.array(3.0)))(values)  # 5 and two of the three 2s
    np.testing.assert_allclose(np.asarray(grad), [1, 2 / 3, 2 / 3, 2 / 3, 0], rtol=1e-6)


def test_loss_gradient_pushes_the_right_way():
    z = jnp.array([0.0, 0.0, 0.0, 0.0])
    t = jnp.array([1.0, 0.0, 0.0, 0.0])
    for name in ("hard_negative", "balanced", "bce"):
        g = jax.grad(lambda z, name=name: detection_loss(z, t, loss=name))(z)
        assert g[0] < 0 and bool(jnp.all(g[1:] > 0)), (name, g)


@pytest.mark.slow  # three chunkings of one run; the fit doctest and test_checkpoint resume cover chunking in the suite
def test_train_steps_under_jit_compiles_once_and_does_not_depend_on_chunking():
    config = TrainConfig(SMALL, batch_size=4)
    state = init_state(config)
    chex.assert_trees_all_equal_shapes(state.params, {"kernel": jnp.zeros((2, 3, 1, 1)), "bias": jnp.zeros(1)})
    state, losses = train_steps(config, state, 2)
    before = _train_steps._cache_size()
    for _ in range(3):
        state, losses = train_steps(config, state, 2)
    other_seed = TrainConfig(SMALL, batch_size=4, seed=3)  # the seed lives in the state: no new compile
    train_steps(other_seed, init_state(other_seed), 2)
    assert _train_steps._cache_size() == before
    assert int(state.step) == 8 and losses.shape == (2,)
    assert bool(jnp.all(jnp.isfinite(losses)))
    at_once, all_losses = train_steps(config, init_state(config), 8)  # one dispatch vs four: bit-identical
    chex.assert_trees_all_equal(at_once, state)
    np.testing.assert_array_equal(np.asarray(all_losses[-2:]), np.asarray(losses))
    # Any step count up to steps_per_dispatch runs the same program (a run's shorter last dispatch compiles nothing
    # new), with the same result as the steps taken one at a time; a longer call compiles its own.
    uneven = init_state(config)
    for n in (3, 1, 4):
        uneven, uneven_losses = train_steps(config, uneven, n)
    assert _train_steps._cache_size() == before and uneven_losses.shape == (4,)
    chex.assert_trees_all_equal(uneven, state)
    np.testing.assert_array_equal(np.asarray(uneven_losses), np.asarray(all_losses[-4:]))
    train_steps(config, init_state(config), config.steps_per_dispatch + 1)
    assert _train_steps._cache_size() == before + 1


def test_fit_tiny_config_learns_the_pattern():
    result = jaxconv.fit(SMALL, steps=150, batch_size=8, steps_per_dispatch=150, eval_images=200)
    assert len(result.history) == 150 and result.history[-1]["step"] == 150
    assert result.history[-1]["loss"] < result.history[0]["loss"] / 5
    assert result.metrics["f1"] == 1.0
    assert result.metrics["kernel_cosine"] > 0.99
    assert result.timing["steps_per_s"] > 0 and result.timing["images_per_s"] > 0
    again = jaxconv.fit(SMALL, steps=150, batch_size=8, steps_per_dispatch=150, eval_images=0)
    chex.assert_trees_all_equal(result.params, again.params)  # same seed: bit-identical
    assert again.metrics == {}


@pytest.mark.slow  # a run per pattern; the fast tier trains the seed pattern (test_fit_tiny_config_learns_the_pattern)
@pytest.mark.parametrize("name", ["cross", "corner"])
def test_named_patterns_reach_f1_one(name):
    task = PlantedPatternTask(name, image_shape=(16, 16))
    result = jaxconv.fit(task, steps=400, batch_size=16, eval_images=250, seed=1)
    assert result.metrics["f1"] == 1.0, result.metrics


@pytest.mark.slow  # three losses trained side by side
def test_imbalance_handling_matters():
    task = PlantedPatternTask("corner", image_shape=(16, 16))
    kwargs = {"steps": 200, "batch_size": 16, "eval_images": 250}
    handled = jaxconv.fit(task, **kwargs).metrics
    plain = jaxconv.fit(task, loss="bce", **kwargs).metrics
    assert handled["f1"] == 1.0
    assert plain["recall"] < 0.5 * handled["recall"], plain  # plain BCE: the bias stays on the wrong side
    assert plain["kernel_cosine"] > 0.9  # ... although the kernel's shape is right


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"steps": 0}, ValueError, "`steps`"),
        ({"batch_size": 0}, ValueError, "`batch_size`"),
        ({"batch_size": 2.0}, TypeError, "`batch_size`"),
        ({"learning_rate": -1.0}, ValueError, "`learning_rate`"),
        ({"optimizer": "lbfgs"}, ValueError, "`optimizer`"),
        ({"kernel_shape": (1, 3)}, ValueError, "`kernel_shape`"),
        ({"loss": "hinge"}, ValueError, "`loss`"),
        ({"seed": -1}, ValueError, "`seed`"),
        ({"steps_per_dispatch": 0}, ValueError, "`steps_per_dispatch`"),
        ({"l1": -0.1}, ValueError, "`l1`"),
        ({"l2": float("nan")}, ValueError, "`l2`"),
        ({"l1": "0.1"}, TypeError, "`l1`"),
    ],
)
def test_fit_rejects_bad_arguments(kwargs, error, words):
    with pytest.raises(error, match=words):
        jaxconv.fit(SMALL, **kwargs)


@pytest.mark.slow  # a 4x5-kernel run; test_penalties_add_to_the_loss_and_round_trip round-trips a config (fast)
def test_config_round_trips_and_larger_kernel_trains():
    config = TrainConfig(SMALL, kernel_shape=(4, 5), optimizer="sgd", loss="balanced", seed=2)
    assert TrainConfig.from_dict(config.to_dict()) == config
    state, losses = train_steps(config, init_state(config), 2)
    assert state.params["kernel"].shape == (4, 5, 1, 1) and losses.shape == (2,)


def test_penalties_add_to_the_loss_and_round_trip():
    config = TrainConfig(SMALL, kernel_shape=(3, 4), l1=0.01, l2=0.02)
    assert TrainConfig.from_dict(config.to_dict()) == config
    assert TrainConfig.from_dict({k: v for k, v in config.to_dict().items() if k not in ("l1", "l2")}).l1 == 0.0
    params = init_state(config).params
    images, targets, _ = SMALL.sample(jax.random.key(0), 2)
    plain = batch_loss(params, TrainConfig(SMALL, kernel_shape=(3, 4)), images, targets)
    penalised = batch_loss(params, config, images, targets)
    k = np.asarray(params["kernel"])
    np.testing.assert_allclose(penalised - plain, 0.01 * np.abs(k).sum() + 0.02 * (k**2).sum(), rtol=1e-5)


@pytest.mark.slow  # four auto runs
def test_training_validation_and_held_out_streams_are_separate_and_held_out_decides_nothing():
    from jaxconv.lab._fit import VALIDATION_IMAGES
    from jaxconv.lab._metrics import held_out_key
    from jaxconv.lab._streams import STREAMS, stream
    from jaxconv.lab._train import training_batch

    assert len({STREAMS["train"], STREAMS["validation"], STREAMS["held_out"]}) == 3
    config = TrainConfig(SMALL, batch_size=4, seed=0)
    state = init_state(config)
    train_images = [np.asarray(training_batch(config, jax.random.fold_in(state.key, s))[0]) for s in range(3)]
    validation_key = stream(0, "validation")
    validation = dataclasses.replace(config, batch_size=VALIDATION_IMAGES)
    validation_images = np.asarray(training_batch(validation, validation_key)[0])
    held_out_images = np.asarray(SMALL.sample(held_out_key(0, 0), 4).images)
    for a in [*train_images, held_out_images]:
        assert not any(np.array_equal(a[0], v) for v in validation_images)
    assert not any(np.array_equal(held_out_images[0], t) for batch in train_images for t in batch)
    # the held-out seed changes what is reported, never what is trained, when training stops, or the bias
    a = jaxconv.fit(SMALL, batch_size=8, eval_images=40, eval_seed=0)
    b = jaxconv.fit(SMALL, batch_size=8, eval_images=40, eval_seed=9)
    assert len(a.history) == len(b.history) and a.validation == b.validation
    chex.assert_trees_all_equal(a.params, b.params)
    assert a.metrics["positions"] == b.metrics["positions"] and a.metrics["tp"] != b.metrics["tp"]


@pytest.mark.slow  # auto runs to separation; the fit doctest runs auto in the fast tier
def test_auto_steps_stop_on_a_separated_validation_draw_with_the_bias_mid_gap():
    from jaxconv.lab._fit import AUTO_MAX_STEPS, CHECK_EVERY, validation_check

    result = jaxconv.fit(SMALL, batch_size=8, eval_images=100, steps_per_dispatch=30)
    steps = len(result.history)
    assert result.validation["errors"] == 0 and steps % CHECK_EVERY == 0 and steps < AUTO_MAX_STEPS
    assert result.validation["stopped_at"] == steps and result.metrics["f1"] == 1.0
    again = validation_check(result.params, result.config)  # calibrated: the gap is centred on logit 0
    assert again["errors"] == 0 and again["min_positive"] == pytest.approx(-again["max_negative"], abs=1e-4)
    assert abs(again["bias_shift"]) < 1e-4
    other = jaxconv.fit(SMALL, batch_size=8, eval_images=100, steps_per_dispatch=7)  # dispatch size: same run
    assert len(other.history) == steps
    np.testing.assert_allclose(np.asarray(other.params["kernel"]), np.asarray(result.params["kernel"]), atol=1e-5)
    with pytest.raises(ValueError, match="auto or an int"):
        jaxconv.fit(SMALL, steps="many")


@pytest.mark.slow  # a full default run on 40x40
def test_the_issues_4x4_checkerboard_is_learned_perfectly_on_the_defaults():
    # The case that left 280 false alarms on the old defaults (400 steps, no near misses, no calibration).
    task = PlantedPatternTask([[1, 0, 1, 0], [0, 1, 0, 1], [1, 0, 1, 0], [0, 1, 0, 1]], image_shape=(40, 40))
    result = jaxconv.fit(task, seed=5, eval_images=250)
    assert result.metrics["f1"] == 1.0 and result.metrics["fp"] == 0 and result.metrics["tp"] > 250


def test_gaussian_calibration_picks_the_threshold_of_the_largest_f1():
    from jaxconv.lab._fit import _best_f1_threshold

    rng = np.random.default_rng(4)
    for _ in range(20):
        labels = rng.random(60) < 0.2
        scores = np.round(rng.normal(size=60) + 1.5 * labels, 1)  # ties
        threshold = _best_f1_threshold(scores, labels)

        def f1(th, scores=scores, labels=labels):
            hit = scores > th
            tp = np.sum(hit & labels)
            return 2 * tp / (hit.sum() + labels.sum())

        best = max(f1(th) for th in np.r_[scores, scores.min() - 1])
        assert f1(threshold) == pytest.approx(best) and threshold not in scores


def test_cosine_decay_matches_its_closed_form():
    from jaxconv.lab._train import make_optimizer

    lr, n = 0.3, 7
    opt = make_optimizer("sgd", lr, decay_steps=n)
    params = jnp.zeros(2)
    state, got = opt.init(params), []
    for _ in range(n + 3):
        updates, state = opt.update(jnp.ones(2), state, params)
        got.append(float(-updates[0]))
    s = np.minimum(np.arange(n + 3), n)
    np.testing.assert_allclose(got, lr * (1 + np.cos(np.pi * s / n)) / 2, rtol=1e-6, atol=1e-7)
    constant = make_optimizer("sgd", lr)
    np.testing.assert_allclose(-constant.update(jnp.ones(2), constant.init(params), params)[0], lr, rtol=1e-7)


def test_decay_steps_defaults_by_background_and_rejects_bad_values():
    from jaxconv.lab._train import DEFAULT_DECAY_STEPS

    gaussian = PlantedPatternTask("seed", image_shape=12, background="gaussian")
    assert TrainConfig(SMALL).decay_steps == 0
    assert TrainConfig(gaussian).decay_steps == DEFAULT_DECAY_STEPS["gaussian"] > 0
    config = TrainConfig(gaussian, decay_steps=30)
    assert TrainConfig.from_dict(config.to_dict()) == config
    old = {k: v for k, v in config.to_dict().items() if k != "decay_steps"}
    assert TrainConfig.from_dict(old).decay_steps == 0  # runs from before the decay trained at a constant rate
    with pytest.raises(ValueError, match=r"`decay_steps` must be an int >= 0; got -1"):
        TrainConfig(gaussian, decay_steps=-1)
    with pytest.raises(TypeError, match=r"`decay_steps` must be an int >= 0; got 2.5"):
        jaxconv.fit(gaussian, decay_steps=2.5)


@pytest.mark.slow  # 1000 steps; test_cli runs the gaussian auto path end to end
def test_gaussian_auto_trains_to_the_end_of_the_decay_then_calibrates_once():
    task = PlantedPatternTask("seed", image_shape=12, background="gaussian", amplitude=3.0)
    result = jaxconv.fit(task, decay_steps=120, steps_per_dispatch=50, eval_images=0)
    assert len(result.history) == 120 and result.validation["checks"] == 1
    assert result.validation["stopped_at"] == 120 and result.validation["bias_shift"] != 0.0
    # The same 120 steps as a fixed count; auto adds only the validation draw's shift to the bias.
    fixed = jaxconv.fit(task, steps=120, decay_steps=120, steps_per_dispatch=50, eval_images=0)
    np.testing.assert_array_equal(result.params["kernel"], fixed.params["kernel"])
    shifted = fixed.params["bias"] + np.float32(result.validation["bias_shift"])
    np.testing.assert_array_equal(result.params["bias"], shifted)

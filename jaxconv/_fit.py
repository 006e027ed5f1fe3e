"""``fit``: train a detector on a task from a random kernel, then judge it on held-out images."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxconv._data import PlantedPatternTask
from jaxconv._detector import Params
from jaxconv._metrics import evaluate
from jaxconv._train import TrainConfig, TrainState, init_state, train_steps


class FitResult(NamedTuple):
    """What :func:`fit` returns.

    Attributes:
      params: the learned ``{"kernel": [KH, KW, 1, 1], "bias": [1]}``.
      history: one ``{"step": s, "loss": l}`` per step (``s`` counts from 1).
      metrics: :func:`evaluate`'s dict on the held-out images (empty when ``eval_images == 0``).
      state: the final :class:`TrainState`.
      config: the :class:`TrainConfig` that made it.
      timing: ``wall_s`` (training, compile included), ``steps_per_s`` and ``images_per_s`` (after the first
        dispatch, which compiles), ``eval_s``.
    """

    params: Params
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    state: TrainState
    config: TrainConfig
    timing: dict[str, float]


def _check_int(name: str, value: Any, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
        raise ValueError(f"`{name}` must be an int >= {low}; got {value!r}")
    return int(value)


def fit(
    task: PlantedPatternTask | None = None,
    *,
    steps: int = 400,
    batch_size: int = 32,
    learning_rate: float = 0.1,
    optimizer: str = "adam",
    kernel_shape: tuple[int, int] | None = None,
    seed: int = 0,
    loss: str = "hard_negative",
    steps_per_dispatch: int = 100,
    eval_images: int = 1000,
    eval_seed: int = 0,
    callback: Callable[[TrainState, np.ndarray], None] | None = None,
) -> FitResult:
    """Learns a kernel and bias that detect ``task``'s pattern, by backpropagation through ``conv2d``.

    The kernel starts random; each step samples a fresh batch on the device (no host round-trip) and
    ``steps_per_dispatch`` steps run per jitted ``lax.scan``. Step ``s`` uses batch ``fold_in(key, s)``, so the
    result is the same for every ``steps_per_dispatch``.

    Args:
      task: the :class:`PlantedPatternTask` (default: the seed pattern on 32x32 binary images).
      steps: optimizer steps, ``>= 1``.
      batch_size: images per step.
      learning_rate: the optimizer's step size.
      optimizer: one of ``OPTIMIZERS``.
      kernel_shape: ``(KH, KW)``, at least the pattern's; default the pattern's shape.
      seed: seeds the initial kernel and every training batch.
      loss: one of ``LOSSES``: ``"hard_negative"`` (BCE over the positives and the hardest negatives),
        ``"balanced"`` (class-balanced BCE) or ``"bce"`` (plain, no imbalance handling).
      steps_per_dispatch: steps per jitted call, ``>= 1`` (does not change the result).
      eval_images: held-out images to score at the end (0: skip).
      eval_seed: picks the held-out images.
      callback: called after every dispatch with the state and that dispatch's losses ``[n]``.

    Returns:
      A :class:`FitResult` ``(params, history, metrics, state, config, timing)``.

    Raises:
      ValueError: an argument outside what is allowed (the message names it).
      TypeError: an argument of the wrong type.

    Examples:
      >>> import jaxconv
      >>> task = jaxconv.PlantedPatternTask("seed", image_shape=(12, 12))
      >>> result = jaxconv.fit(task, steps=150, batch_size=8, eval_images=50)
      >>> result.params["kernel"].shape, len(result.history), result.metrics["f1"]
      ((2, 3, 1, 1), 150, 1.0)
    """
    task = PlantedPatternTask() if task is None else task
    config = TrainConfig(
        task,
        batch_size=batch_size,
        learning_rate=learning_rate,
        optimizer=optimizer,
        kernel_shape=kernel_shape,
        seed=seed,
        loss=loss,
    )
    steps = _check_int("steps", steps, 1)
    per_dispatch = _check_int("steps_per_dispatch", steps_per_dispatch, 1)
    eval_images = _check_int("eval_images", eval_images, 0)
    state = init_state(config)
    history: list[dict[str, Any]] = []
    start = time.perf_counter()
    first_done = start
    first_steps = 0
    while int(state.step) < steps:
        n = min(per_dispatch, steps - int(state.step))
        state, dispatch_losses = train_steps(config, state, n)
        losses = np.asarray(jax.device_get(dispatch_losses))
        done = int(state.step)
        history.extend({"step": done - n + i + 1, "loss": float(v)} for i, v in enumerate(losses))
        if first_steps == 0:
            first_done, first_steps = time.perf_counter(), done
        if callback is not None:
            callback(state, losses)
    end = time.perf_counter()
    timed_steps = steps - first_steps
    rate = timed_steps / (end - first_done) if timed_steps else first_steps / (end - start)
    timing = {"wall_s": end - start, "steps_per_s": rate, "images_per_s": rate * config.batch_size}
    metrics: dict[str, Any] = {}
    if eval_images:
        metrics = evaluate(state.params, task, num_images=eval_images, seed=eval_seed)
        timing["eval_s"] = time.perf_counter() - end
    return FitResult(state.params, history, metrics, state, config, timing)


__all__ = ["FitResult", "fit"]

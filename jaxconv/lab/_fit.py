"""``fit``: train a detector on a task from a random kernel, then judge it on held-out images."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh

from jaxconv._checks import fail
from jaxconv.lab._checkpoint import list_checkpoints, save_checkpoint
from jaxconv.lab._data import PlantedPatternTask, TaskValues
from jaxconv.lab._detector import Params, crop_targets, logit_map
from jaxconv.lab._metrics import average_precision, evaluate
from jaxconv.lab._preempt import Preempted, StopSignals, peer_errors, restore_shared
from jaxconv.lab._streams import stream
from jaxconv.lab._train import (
    StepConfig,
    TrainConfig,
    TrainState,
    check_mesh,
    init_state,
    nonfinite_steps,
    replicate,
    train_steps,
    training_batch,
)

VALIDATION_IMAGES = 256
"""Images in the validation draw (with near misses pasted in, as in training)."""
CHECK_EVERY = 50
"""With ``steps="auto"``, the validation draw is scored every this many steps."""
AUTO_MAX_STEPS = 3000
"""With ``steps="auto"`` on a binary background, the cap on the number of steps."""


class CompileSpans:
    """A context that records when JAX traced, lowered and compiled (its ``jax.monitoring`` time spans).

    Nested spans (a jitted function traced inside another's trace) are counted once: :meth:`within` measures the
    union of the spans.

    Examples:
      >>> import jax, jax.numpy as jnp
      >>> with CompileSpans() as spans:
      ...     _ = jax.jit(lambda x: jnp.sin(x) * 3)(jnp.arange(5.0)).block_until_ready()
      >>> spans.within() > 0
      True
    """

    EVENTS = (
        "/jax/core/compile/jaxpr_trace_duration",
        "/jax/core/compile/jaxpr_to_mlir_module_duration",
        "/jax/core/compile/backend_compile_duration",
    )

    def __init__(self) -> None:
        self.spans: list[tuple[float, float]] = []

    def _record(self, event: str, start_time: float, end_time: float, **kwargs: str | int) -> None:
        if event in self.EVENTS:
            self.spans.append((start_time, end_time))

    def __enter__(self) -> CompileSpans:
        jax.monitoring.register_event_time_span_listener(self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        jax.monitoring.unregister_event_time_span_listener(self._record)

    def within(self, low: float = -np.inf, high: float = np.inf) -> float:
        """Seconds (``time.time()`` clock) that some span covers between ``low`` and ``high``."""
        total, reach = 0.0, low
        for start, end in sorted(self.spans):
            start, end = max(start, reach), min(end, high)
            if end > start:
                total, reach = total + end - start, end
        return total


class NonFiniteError(RuntimeError):
    """Training stopped: too many steps in a row had a non-finite loss or gradient."""


class FitResult(NamedTuple):
    """What :func:`fit` returns.

    Attributes:
      params: the learned ``{"kernel": [KH, KW, 1, K], "bias": [K]}`` (K: the task's patterns).
      history: one ``{"step": s, "loss": l}`` per step (``s`` counts from 1; ``l`` is ``None`` for a step
        skipped because its loss or gradient was not finite), including steps run before a resume.
      metrics: :func:`evaluate`'s dict on the held-out images (empty when ``eval_images == 0``).
      state: the final :class:`TrainState`.
      config: the :class:`TrainConfig` that made it.
      timing: ``wall_s`` (training in this call: compiles, dispatches and validation checks), ``compile_s``
        (the part of it JAX spent tracing, lowering and compiling, from its own compile events; a program read
        from the persistent compilation cache counts its read), ``steps_per_s`` and ``images_per_s`` (steady
        state: the steps trained over the dispatches' time less the compiles within them), ``eval_s``.
      skipped_steps: how many steps were skipped as non-finite.
      resumed_from: the step this call resumed from (0 for a fresh start).
      validation: with ``steps="auto"``: ``{"errors", "checks", "stopped_at", "bias_shift", "min_positive",
        "max_negative"}`` from the last check of the validation draw (``bias_shift``: what calibration added to
        the bias, 0.0 if none); ``None`` for a fixed step count.
    """

    params: Params
    history: list[dict[str, Any]]
    metrics: dict[str, Any]
    state: TrainState
    config: TrainConfig
    timing: dict[str, float]
    skipped_steps: int
    resumed_from: int
    validation: dict[str, Any] | None = None


def _config(task: Any, config: Any, overrides: dict[str, Any]) -> TrainConfig:
    """``fit``'s one :class:`TrainConfig`: ``config`` (or a fresh one) with ``task`` and ``overrides`` applied."""
    knobs = [f.name for f in dataclasses.fields(TrainConfig) if f.name != "task"]
    for name in overrides:
        if name not in knobs:
            raise fail("fit", name, f"a TrainConfig field ({', '.join(knobs)})", overrides[name], TypeError)
    if task is not None:
        overrides = {**overrides, "task": task}
    if config is None:
        return TrainConfig(**overrides)
    if not isinstance(config, TrainConfig):
        raise fail("fit", "config", "a TrainConfig or None", type(config).__name__, TypeError)
    return dataclasses.replace(config, **overrides)


@functools.partial(jax.jit, static_argnames=("config",))
def _validation_logits(
    params: Params, config: StepConfig, key: jax.Array, values: TaskValues
) -> tuple[jax.Array, jax.Array]:
    images, targets = training_batch(config, key, values)
    per_pattern = config.task.num_patterns > 1
    targets = crop_targets(targets, config.task.pattern_shape, config.kernel_shape, per_pattern=per_pattern)
    return logit_map(params, images), targets


def _best_f1_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    """The threshold (midway between two distinct scores) at which ``score > threshold`` has the largest F1."""
    order = np.argsort(-scores, kind="stable")
    s, y = scores[order], labels[order]
    last = np.r_[np.nonzero(np.diff(s))[0], s.size - 1]  # the last index of each group of tied scores
    tp = np.cumsum(y)[last]
    f1 = 2 * tp / (last + 1 + y.sum())
    best = int(np.argmax(f1))
    below = s[last[best] + 1] if last[best] + 1 < s.size else s[-1] - 1.0
    return float((s[last[best]] + below) / 2)


def validation_check(params: Params, config: TrainConfig) -> dict[str, Any]:
    """Scores ``params`` on the run's validation draw and, where it separates it, calibrates the bias.

    The draw: :data:`VALIDATION_IMAGES` images of the task with ``config.near_misses`` near misses pasted into
    each (binary backgrounds), from ``stream(config.seed, "validation")`` — a stream that neither training nor
    the held-out evaluation uses (see :mod:`jaxconv.lab._streams`). On a binary background, when every
    positive's logit exceeds every negative's, ``bias_shift`` puts the threshold midway between the two (the
    widest margin this kernel allows), which leaves no validation error. On a gaussian background, where
    nothing separates, it puts the threshold where the validation F1 is largest. :func:`fit` applies it when
    training stops. With K > 1 patterns, each kernel is checked (and calibrated) against its own pattern's
    targets, the other patterns' positions among its negatives.

    Args:
      params: ``{"kernel": [KH, KW, 1, K], "bias": [K]}``.
      config: the run's :class:`TrainConfig`.

    Returns:
      ``{"errors": false alarms + misses at logit > 0 after the shift, "bias_shift", "min_positive",
      "max_negative", "average_precision"}`` (logits before calibration; ``None`` where there are none; the
      average precision only on a gaussian background, where it decides when to stop). For K > 1: ``errors``
      summed over the patterns, ``bias_shift``, ``min_positive`` and ``max_negative`` lists of K, and
      ``average_precision`` the mean of the K patterns' (or ``None``).

    Examples:
      >>> import jaxconv
      >>> from jaxconv.lab._fit import validation_check
      >>> config = jaxconv.TrainConfig(jaxconv.PlantedPatternTask("seed", image_shape=12))
      >>> check = validation_check(jaxconv.matched_filter(config.task), config)
      >>> check["errors"], check["min_positive"], check["max_negative"], check["bias_shift"]
      (0, 0.5, -0.5, 0.0)
      >>> check["average_precision"] is None
      True
    """
    key = stream(config.seed, "validation")
    static = config.step._replace(batch_size=VALIDATION_IMAGES)
    z, t = (np.asarray(a, np.float64) for a in _validation_logits(params, static, key, config.task.values()))
    binary = config.task.background == "binary"
    if config.task.num_patterns == 1:
        return _check_one(z, t, binary)
    checks = [_check_one(z[..., k], t[..., k], binary) for k in range(config.task.num_patterns)]
    aps = [c["average_precision"] for c in checks]
    return {
        "errors": sum(c["errors"] for c in checks),
        **{name: [c[name] for c in checks] for name in ("bias_shift", "min_positive", "max_negative")},
        "average_precision": None if any(ap is None for ap in aps) else float(np.mean(aps)),
    }


def _check_one(z: np.ndarray, t: np.ndarray, binary: bool) -> dict[str, Any]:
    """:func:`validation_check` of one kernel's logits ``z`` against its targets ``t`` (same shape)."""
    positive, negative = z[t > 0.5], z[t <= 0.5]
    low = float(positive.min()) if positive.size else None
    high = float(negative.max()) if negative.size else None
    shift = 0.0
    if binary and low is not None and high is not None and low > high:
        shift = -(low + high) / 2 if low + high else 0.0
    elif not binary and positive.size:
        shift = -_best_f1_threshold(z.reshape(-1), t.reshape(-1) > 0.5)
    errors = int(np.sum(positive + shift <= 0) + np.sum(negative + shift > 0))
    ap = None if binary or not positive.size else average_precision(z, t)
    return {"errors": errors, "bias_shift": shift, "min_positive": low, "max_negative": high, "average_precision": ap}


def batch_mesh(devices: int | Sequence[jax.Device], batch_size: int) -> Mesh:
    """The 1-D mesh (axis ``"batch"``) that :func:`fit` shards each ``[batch_size, ...]`` batch over.

    Args:
      devices: an int ``D`` (the first ``D`` of ``jax.local_devices()``) or a sequence of distinct
        ``jax.Device`` (under ``jax.distributed``, it may hold other processes' devices: ``jax.devices()``).
      batch_size: the global batch; ``D`` must divide it.

    Returns:
      A ``jax.sharding.Mesh`` of shape ``(D,)``.

    Raises:
      TypeError: ``devices`` is neither an int nor a sequence of ``jax.Device``.
      ValueError: ``devices`` is empty, repeats a device or asks for more than there are; ``batch_size`` is not
        a multiple of ``D``.

    Examples:
      >>> import jax
      >>> from jaxconv.lab._fit import batch_mesh
      >>> dict(batch_mesh(1, 8).shape)
      {'batch': 1}
      >>> batch_mesh(jax.devices()[:1], 8).devices.tolist() == jax.devices()[:1]
      True
    """
    local = jax.local_devices()
    if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        if not 1 <= devices <= len(local):
            raise fail("batch_mesh", "devices", f"an int in [1, {len(local)}] (this process's devices)", devices)
        chosen = local[: int(devices)]
    elif isinstance(devices, (Sequence, np.ndarray)) and not isinstance(devices, str):
        chosen = list(np.ravel(np.asarray(devices, dtype=object)))
        if not chosen:
            raise fail("batch_mesh", "devices", "at least one device", devices)
        bad = [d for d in chosen if not isinstance(d, jax.Device)]
        if bad:
            raise TypeError(
                f"batch_mesh: `devices` must be an int or a sequence of jax.Device; got an element {bad[0]!r}"
            )
        if len(set(chosen)) != len(chosen):
            raise ValueError(f"batch_mesh: `devices` must not repeat a device; got {chosen}")
    else:
        raise TypeError(f"batch_mesh: `devices` must be None, an int or a sequence of jax.Device; got {devices!r}")
    return check_mesh(Mesh(np.array(chosen), ("batch",)), batch_size)


def fit(
    task: PlantedPatternTask | None = None,
    config: TrainConfig | None = None,
    *,
    checkpoint_dir: str | None = None,
    resume: bool = False,
    callback: Callable[[TrainState, np.ndarray], None] | None = None,
    devices: int | Sequence[jax.Device] | None = None,
    **overrides: Any,
) -> FitResult:
    """Learns a kernel and bias that detect ``task``'s pattern, by backpropagation through ``conv2d``.

    The kernel starts random; each step samples a fresh batch on the device (no host round-trip) and
    ``steps_per_dispatch`` steps run per jitted ``lax.scan``. Step ``s`` uses batch ``fold_in(key, s)``, so the
    result is the same for every ``steps_per_dispatch`` — and for a run resumed from a checkpoint, however
    often it was interrupted.

    With ``steps="auto"`` (the default), on a binary background, the run is checked every :data:`CHECK_EVERY`
    steps on a validation draw (:func:`validation_check`) and stops as soon as the kernel separates it (the bias
    then calibrated to the middle of the gap), at :data:`AUTO_MAX_STEPS` at the latest. On a gaussian
    background, where nothing separates, it trains to the end of the learning-rate decay (``decay_steps``;
    :data:`AUTO_MAX_STEPS` without one) and then moves the bias to where the validation draw's F1 is largest.
    The held-out images that ``metrics`` reports play no part in it.

    Args:
      task: the :class:`PlantedPatternTask` (default: ``config``'s task, or the seed pattern on 32x32 binary images).
      config: a :class:`TrainConfig` (default ``TrainConfig()``): every knob of the run — batch size, learning rate,
        optimizer, kernel shape, seed, loss, penalties, near misses, ``steps`` (``"auto"`` or a count),
        ``steps_per_dispatch``, ``eval_images``, ``eval_seed``, ``checkpoint_every``, ``keep``,
        ``max_nonfinite`` — with what each may be.
      **overrides: any :class:`TrainConfig` field by name, e.g. ``fit(task, steps=200, learning_rate=0.05)``;
        applied to ``config`` (or to a fresh ``TrainConfig`` built from ``task``), checked once.
      checkpoint_dir: where checkpoints go (``None``: none are written). With a folder, SIGTERM and SIGINT stop
        the run after the dispatch in flight: a checkpoint is written there and :class:`Preempted` raised.
      resume: continue from the newest usable checkpoint in ``checkpoint_dir`` (start fresh if it has none).
        Under ``jax.distributed`` process 0 reads it and every process receives it, so only process 0 needs the
        folder; the device and process counts may differ from the run that wrote it (same params to float32
        rounding: the data of step ``s`` depends on the seed and ``s`` only, the global batch is checked).
      callback: called after every dispatch with the state and that dispatch's losses ``[n]``.
      devices: ``None`` (one device), an int ``D`` (this process's first ``D`` devices) or a sequence of
        ``jax.Device``: data parallel over a 1-D mesh of them (see :func:`batch_mesh`), each device taking
        ``batch_size / D`` images of every step; the same params as one device to float32 rounding. Under
        ``jax.distributed``, pass ``jax.devices()`` (all processes' devices) from every process, with the same
        arguments: only process 0 writes checkpoints, and a SIGTERM to any process stops them all at one step.

    Returns:
      A :class:`FitResult` ``(params, history, metrics, state, config, timing, skipped_steps, resumed_from,
      validation)``.

    Raises:
      ValueError: an argument outside what is allowed (the message names it).
      TypeError: an argument of the wrong type.
      CheckpointError: ``resume`` but no checkpoint is usable, or the newest usable one was made with a
        different configuration (the message says what differs).
      NonFiniteError: ``max_nonfinite`` steps in a row were not finite; the last checkpoint is kept.
      Preempted: SIGTERM or SIGINT (to any process), with ``checkpoint_dir``; its checkpoint is written.
      PeerLostError: under ``jax.distributed``, another process died; no checkpoint is written after it.

    Examples:
      >>> import jaxconv
      >>> task = jaxconv.PlantedPatternTask("seed", image_shape=(12, 12))
      >>> result = jaxconv.fit(task, steps=150, batch_size=8, steps_per_dispatch=150, eval_images=50)
      >>> result.params["kernel"].shape, len(result.history), result.metrics["f1"]
      ((2, 3, 1, 1), 150, 1.0)
      >>> result = jaxconv.fit(task, batch_size=8, eval_images=50)
      >>> result.validation["errors"], len(result.history) % 50, result.metrics["f1"]
      (0, 0, 1.0)
    """
    config = _config(task, config, overrides)
    if checkpoint_dir is None and (config.checkpoint_every or resume):
        raise fail("fit", "checkpoint_dir", "given with `checkpoint_every` or `resume`", None)
    steps = _total_steps(config)
    mesh = None if devices is None else batch_mesh(devices, config.batch_size)
    state, losses = _start(config, checkpoint_dir if resume else None, mesh)
    resumed_from = int(state.step)
    if resumed_from > steps:
        raise ValueError(f"fit: `steps` must be at least the resumed checkpoint's step {resumed_from}; got {steps}")
    writer = jax.process_index() == 0
    parts, start = [losses], time.perf_counter()
    dispatches: list[tuple[float, float]] = []
    # With a checkpoint folder, SIGTERM/SIGINT stop the run after the dispatch in flight, at a step that every
    # process agrees on, with a checkpoint written there.
    stop = StopSignals() if checkpoint_dir is not None else None
    validation: dict[str, Any] | None = None
    finished = False
    with stop or contextlib.nullcontext(), CompileSpans() as compiles:
        while int(state.step) < steps and not finished:
            n = _dispatch_size(config, int(state.step), steps)
            dispatched = time.time()
            with peer_errors():
                state, dispatch_losses = train_steps(config, state, n, mesh=mesh)
                chunk = np.asarray(jax.device_get(dispatch_losses), np.float32)
                stopping = stop is not None and stop.requested()
            dispatches.append((dispatched, time.time()))
            parts.append(chunk)
            if callback is not None:
                callback(state, chunk)
            _check_finite(state, config.max_nonfinite, checkpoint_dir)
            step_now = int(state.step)
            if _validates_now(config, step_now, steps):
                state, finished, validation = _validate(state, config, step_now, steps, validation)
            path = None
            every = config.checkpoint_every
            due = (every and step_now % every == 0) or step_now == steps or stopping or finished
            if writer and checkpoint_dir is not None and due:
                path = save_checkpoint(checkpoint_dir, state, config, np.concatenate(parts), keep=config.keep)
            if stopping and step_now < steps and not finished:  # (a run whose last step is done just finishes)
                assert stop is not None
                raise Preempted(step_now, path, stop.reason)
    running = sum(b - a - compiles.within(a, b) for a, b in dispatches)
    rate = (int(state.step) - resumed_from) / running if running > 0 else 0.0
    timing = {
        "wall_s": time.perf_counter() - start,
        "compile_s": compiles.within(),
        "steps_per_s": rate,
        "images_per_s": rate * config.batch_size,
    }
    return _result(state, config, np.concatenate(parts), timing, resumed_from, validation, mesh)


def _total_steps(config: TrainConfig) -> int:
    """The step count the run trains to: ``config.steps``, or under ``"auto"`` the cap (binary: checked every
    :data:`CHECK_EVERY` steps) or the end of the learning rate's decay (gaussian: checked once, there)."""
    if config.steps != "auto":
        return int(config.steps)
    if config.decay_steps and config.task.background != "binary":
        return int(config.decay_steps)
    return AUTO_MAX_STEPS


def _start(config: TrainConfig, resume_from: str | None, mesh: Mesh | None) -> tuple[TrainState, np.ndarray]:
    """The state to train from and the losses so far: fresh, or the newest usable checkpoint in ``resume_from``
    (process 0 reads it, every process gets it); replicated over ``mesh``."""
    state, losses = init_state(config), np.zeros((0,), np.float32)
    if resume_from is not None:
        with peer_errors():
            restored = restore_shared(resume_from, config)
        if restored is not None:
            state, losses = restored.state, restored.losses
    if mesh is not None:
        state = replicate(state, mesh)  # under jax.distributed: checks that every process holds the same state
    return state, losses


def _dispatch_size(config: TrainConfig, done: int, steps: int) -> int:
    """Steps in the next dispatch: up to ``steps_per_dispatch``, ending at the next checkpoint or validation step."""
    n = min(config.steps_per_dispatch, steps - done)
    if config.checkpoint_every:
        n = min(n, config.checkpoint_every - done % config.checkpoint_every)
    if config.steps == "auto" and config.task.background == "binary":
        n = min(n, CHECK_EVERY - done % CHECK_EVERY)
    return n


def _check_finite(state: TrainState, max_nonfinite: int, checkpoint_dir: str | None) -> None:
    """Raises :class:`NonFiniteError` after ``max_nonfinite`` skipped (non-finite) steps in a row."""
    in_a_row, total = nonfinite_steps(state)
    if in_a_row >= max_nonfinite:
        kept = list_checkpoints(checkpoint_dir) if checkpoint_dir else []
        where = f"; the last checkpoint is step {kept[0][0]} in {checkpoint_dir}" if kept else ""
        raise NonFiniteError(
            f"training stopped at step {int(state.step)}: the last {in_a_row} steps had a non-finite loss "
            f"or gradient ({total} skipped in all){where}"
        )


def _validates_now(config: TrainConfig, step: int, steps: int) -> bool:
    separable = config.task.background == "binary"
    return config.steps == "auto" and ((separable and step % CHECK_EVERY == 0) or step == steps)


def _validate(
    state: TrainState, config: TrainConfig, step: int, steps: int, last: dict[str, Any] | None
) -> tuple[TrainState, bool, dict[str, Any]]:
    """``steps="auto"``'s check: ``(state, finished, validation)``, the bias calibrated when training stops
    (binary: once the validation draw is separated; gaussian: at the decay's end)."""
    check = validation_check(state.params, config)
    finished = check["errors"] == 0 or config.task.background != "binary"
    shift = np.asarray(check["bias_shift"], np.float32)  # [] for one pattern, [K] for K
    if shift.any() and (finished or step == steps):
        bias = state.params["bias"]  # [K] (conv) or [Ho, Wo, K] (local, dense): the shift is per pattern
        state = state._replace(params=dict(state.params, bias=bias + jnp.broadcast_to(shift, bias.shape)))
    checks = 1 + (last["checks"] if last else 0)
    return state, finished, {**check, "checks": checks, "stopped_at": step}


def _result(
    state: TrainState,
    config: TrainConfig,
    losses: np.ndarray,
    timing: dict[str, float],
    resumed_from: int,
    validation: dict[str, Any] | None,
    mesh: Mesh | None,
) -> FitResult:
    """The :class:`FitResult`, with the held-out evaluation when ``config.eval_images``."""
    history = [{"step": i + 1, "loss": float(v) if np.isfinite(v) else None} for i, v in enumerate(losses.tolist())]
    params = state.params
    if mesh is not None:  # a local copy on the default device, whatever mesh trained it
        params = jax.tree.map(jnp.asarray, jax.device_get(params))
    metrics: dict[str, Any] = {}
    if config.eval_images:
        started = time.perf_counter()
        metrics = evaluate(params, config.task, num_images=config.eval_images, seed=config.eval_seed)
        timing["eval_s"] = time.perf_counter() - started
    skipped = nonfinite_steps(state)[1]
    return FitResult(params, history, metrics, state, config, timing, skipped, resumed_from, validation)


__all__ = [
    "FitResult",
    "NonFiniteError",
    "batch_mesh",
    "fit",
    "validation_check",
    "VALIDATION_IMAGES",
    "CHECK_EVERY",
    "AUTO_MAX_STEPS",
]

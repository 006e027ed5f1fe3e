"""Training state and the jitted multi-step update.

A run is fully described by a hashable :class:`TrainConfig`; its state is a :class:`TrainState` NamedTuple
created by :func:`init_state` and advanced by :func:`train_steps`, which samples every batch on the device
inside one ``lax.scan``. Step ``s`` draws its batch from ``fold_in(data_key, s)`` — a function of the seed
and the step number only — so how the steps are grouped into dispatches (or split across a kill and a
resume) does not change the result.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Literal, NamedTuple, cast, get_args

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxconv._checks import Allowed, check_choice, check_number, fail, is_int
from jaxconv.lab._data import PlantedPatternTask, TaskValues, plant_near_misses
from jaxconv.lab._detector import (
    LOSSES,
    MODELS,
    WEIGHTS,
    Loss,
    Model,
    Params,
    check_kernel_shape,
    crop_targets,
    detection_loss,
    init_params,
    logit_map,
)
from jaxconv.lab._streams import NEAR_MISS_SUBSTREAM, stream

Optimizer = Literal["adam", "adamw", "sgd", "momentum", "rmsprop"]
OPTIMIZERS: tuple[str, ...] = get_args(Optimizer)

Batch = tuple[jax.Array, jax.Array]

NEAR_MISSES = 2
"""Default near misses pasted into each training image (binary backgrounds)."""
DEFAULT_LOSS = {"binary": "hard_negative", "gaussian": "balanced", "photo": "balanced"}
"""The loss ``TrainConfig(loss=None)`` picks for each background."""
DEFAULT_DECAY_STEPS = {"binary": 0, "gaussian": 1000, "photo": 1000}
"""The learning-rate decay ``TrainConfig(decay_steps=None)`` picks for each background: none on a binary one
(separable: training stops at the first separating kernel), a cosine decay to 0 over this many steps on a gaussian
one and on a photo one (not separable: at a constant rate the kernel keeps wandering around the optimum with the
batch noise)."""


def make_optimizer(name: str, learning_rate: float, decay_steps: int = 0) -> optax.GradientTransformation:
    """The optax optimizer called ``name`` (one of :data:`OPTIMIZERS`) at ``learning_rate``.

    With ``decay_steps > 0`` the rate follows a cosine from ``learning_rate`` at step 0 down to 0 at step
    ``decay_steps`` (``lr * (1 + cos(pi * s / decay_steps)) / 2``) and stays 0 after it; with 0 it is constant.

    Raises:
      ValueError: an unknown ``name``, a ``learning_rate`` that is not ``> 0`` or a negative ``decay_steps``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxconv.lab._train import make_optimizer
      >>> opt = make_optimizer("sgd", 0.5, decay_steps=2)
      >>> state, params = opt.init(jnp.zeros(1)), jnp.zeros(1)
      >>> steps = []
      >>> for _ in range(3):
      ...     updates, state = opt.update(jnp.ones(1), state, params)
      ...     steps.append(round(float(updates[0]), 4))
      >>> steps
      [-0.5, -0.25, -0.0]
    """
    check_choice("make_optimizer", "optimizer", name, OPTIMIZERS)
    check_number("make_optimizer", "learning_rate", learning_rate, allowed="a number > 0", ok=lambda v: v > 0)
    decay_steps = Allowed("int", low=0).check("make_optimizer", "decay_steps", decay_steps)
    rate = optax.cosine_decay_schedule(learning_rate, decay_steps) if decay_steps else learning_rate
    if name == "momentum":
        return optax.sgd(rate, momentum=0.9)
    return getattr(optax, name)(rate)


def _guarded(optimizer: optax.GradientTransformation) -> optax.GradientTransformation:
    # Skips (and counts) every update whose gradient is not finite. optax would apply the update anyway after
    # `max_consecutive_errors` in a row; `fit` stops the run long before that instead.
    return optax.apply_if_finite(optimizer, max_consecutive_errors=2**30)


def nonfinite_steps(state: TrainState) -> tuple[int, int]:
    """``(in_a_row, total)``: the steps skipped for a non-finite loss or gradient, latest run and overall.

    Examples:
      >>> import jaxconv
      >>> from jaxconv.lab._train import nonfinite_steps
      >>> nonfinite_steps(jaxconv.lab.init_state(jaxconv.TrainConfig()))
      (0, 0)
    """
    opt_state = state.opt_state
    return int(opt_state.notfinite_count), int(opt_state.total_notfinite)


def _positive(v: float) -> bool:
    return v > 0


def _nonnegative(v: float) -> bool:
    return v >= 0


def _knob(default: Any, help: str, allowed: Allowed | None = None, *, run: bool = False, **cli: Any) -> Any:
    """A :class:`TrainConfig` field: its default, what it may be, its help line (``--help``), and for the CLI
    anything beyond the rule (``flag``: a flag name other than ``--field-name``; ``cli``: a parser kind)."""
    return dataclasses.field(default=default, metadata={"help": help, "allowed": allowed, "run": run, **cli})


class StepConfig(NamedTuple):
    """:attr:`TrainConfig.step`: the hashable static part of a training step (see :class:`TrainConfig`)."""

    task: PlantedPatternTask
    kernel_shape: tuple[int, int]
    batch_size: int
    learning_rate: float
    optimizer: str
    loss: str
    l1: float
    l2: float
    near_misses: int
    decay_steps: int
    model: str


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Every knob of a training run, in one place: :func:`jaxconv.fit` takes it (or keyword overrides of it),
    ``jaxconv train`` has one flag per field with the same default, help and allowed values (``--help`` lists
    them), checkpoints store it. Hashable and JSON round-trippable. What a compiled step depends on is
    :attr:`step`; the rest (seed, run length, evaluation, checkpoints) is read outside the compiled step.

    Args:
      task: the :class:`PlantedPatternTask` to learn.
      batch_size: images per step, ``>= 1``.
      learning_rate: ``> 0``.
      optimizer: one of :data:`OPTIMIZERS`.
      kernel_shape: ``(KH, KW)``, at least the pattern's shape; ``None`` means the pattern's shape.
      seed: the run's seed; the initial kernel and every batch derive from it.
      loss: one of :data:`LOSSES`, or ``None`` for the background's default (:data:`DEFAULT_LOSS`):
        ``"hard_negative"`` on a binary background, where the near misses decide the threshold;
        ``"balanced"`` on a gaussian one, where the log-likelihood ratio is linear, so logistic regression on all
        positions is well specified and converges to the matched filter, which hard-negative mining (fitting to
        the noise's extremes) does not.
      l1: weight of an L1 penalty ``l1 * sum |kernel|`` added to the loss (not on the bias), ``>= 0``.
      l2: weight of an L2 penalty ``l2 * sum kernel^2`` added to the loss (not on the bias), ``>= 0``.
      near_misses: on a binary background, copies of the pattern with one pixel flipped pasted into every
        training image (see :func:`jaxconv.lab._data.plant_near_misses`), ``>= 0``: the negatives that decide the
        threshold, which random images almost never hold. Ignored on a gaussian background.
      decay_steps: ``None`` for the background's default (:data:`DEFAULT_DECAY_STEPS`), 0 for a constant
        learning rate, or ``N >= 1``: a cosine decay of the rate to 0 over the first ``N`` steps (see
        :func:`make_optimizer`); ``steps="auto"`` then trains ``N`` steps on a gaussian background.
      model: the detector, one of :data:`~jaxconv.lab._detector.MODELS`: ``"conv"`` (one shared kernel, the
        default), ``"local"`` (a kernel per output position) or ``"dense"`` (one matrix from the image to the logit
        map); see :func:`~jaxconv.lab._detector.init_params` for each one's initialisation.
      train_images: ``None`` (every step draws fresh images) or ``n >= 1``: a fixed training set of ``n`` images
        (:func:`training_set`), which the steps' batches of ``batch_size`` cycle through in order
        (:func:`set_indices`). Not part of the compiled step: runs that differ only in ``n`` share one compile.
      train_columns: ``None`` or ``(lo, hi)``: training images (and the validation draw) plant the pattern only at
        output columns ``lo <= j < hi`` (see ``PlantedPatternTask.plant_columns``), while the held-out images of
        :func:`jaxconv.evaluate` plant it everywhere: the positions outside are never planted in training.
      steps: ``"auto"`` (train until a validation draw is separated, or on a gaussian background to the end of the
        decay; see :func:`jaxconv.fit`) or the total
        optimizer steps, ``>= 1`` (a resumed run continues up to this count).
      steps_per_dispatch: steps per jitted call, ``>= 1`` (does not change the result).
      eval_images: held-out images :func:`jaxconv.fit` scores at the end, ``>= 0`` (0: none).
      eval_seed: picks the held-out images, ``>= 0``.
      checkpoint_every: with a checkpoint folder, write one every this many steps, ``>= 0`` (0: only at the end).
      keep: how many checkpoints to keep, ``>= 1``.
      max_nonfinite: stop after this many steps in a row with a non-finite loss or gradient (each is skipped and
        counted), ``>= 1``.

    Raises:
      ValueError: a value that is not allowed (the message names the argument).
      TypeError: an argument of the wrong type.

    Examples:
      >>> import jaxconv
      >>> config = jaxconv.TrainConfig(jaxconv.PlantedPatternTask("seed"))
      >>> config.kernel_shape, config.optimizer, config.loss, config.decay_steps
      ((2, 3), 'adam', 'hard_negative', 0)
      >>> jaxconv.TrainConfig.from_dict(config.to_dict()) == config
      True
      >>> jaxconv.TrainConfig(batch_size=0)
      Traceback (most recent call last):
      ...
      ValueError: TrainConfig: `batch_size` must be an int >= 1; got 0
    """

    task: PlantedPatternTask = dataclasses.field(default_factory=PlantedPatternTask, metadata={"help": "the task"})
    batch_size: int = _knob(32, "images per step", Allowed("int", low=1))
    learning_rate: float = _knob(
        0.1, "the optimizer's step size", Allowed("number", describe="a number > 0", ok=_positive)
    )
    optimizer: Optimizer = _knob("adam", "the optax optimizer", Allowed("choice", choices=OPTIMIZERS))
    kernel_shape: Any = _knob(
        None,
        "the learned kernel's (KH, KW), at least the pattern's; None: the pattern's",
        cli="size",
        flag="--kernel-size",
    )
    seed: int = _knob(0, "seeds the initial kernel and every training batch", Allowed("int", low=0))
    loss: Loss | None = _knob(
        None,
        "imbalance handling; None: hard_negative on binary, balanced on gaussian",
        Allowed("choice", choices=LOSSES),
    )
    l1: float = _knob(
        0.0, "weight of an L1 penalty on the kernel", Allowed("number", describe="a number >= 0", ok=_nonnegative)
    )
    l2: float = _knob(
        0.0, "weight of an L2 penalty on the kernel", Allowed("number", describe="a number >= 0", ok=_nonnegative)
    )
    near_misses: int = _knob(
        NEAR_MISSES,
        "binary background: copies of the pattern with one pixel flipped pasted into each training image",
        Allowed("int", low=0),
    )
    decay_steps: int | None = _knob(
        None,
        "decay the learning rate to 0 (cosine) over N steps, 0: constant; None: 0 on binary, "
        f"{DEFAULT_DECAY_STEPS['gaussian']} on gaussian or photo (where auto trains to its end)",
        Allowed("int", low=0),
    )
    model: Model = _knob(
        "conv",
        "the detector: conv (one shared kernel), local (a kernel per position), dense (one image-to-map matrix)",
        Allowed("choice", choices=MODELS),
    )
    train_images: int | None = _knob(
        None,
        "a fixed training set of N images that every step samples its batch from; None: fresh images",
        Allowed("int", low=1),
    )
    train_columns: Any = _knob(
        None,
        "plant the pattern in training only at output columns LO <= j < HI (held-out images: everywhere)",
        cli="columns",
    )
    steps: int | str = _knob(
        "auto",
        "auto: until a validation draw (not the held-out images) is separated, the bias "
        "then calibrated to the middle of its gap, at most 3000 (gaussian: to the end of the decay, the bias "
        "then put where the validation F1 is largest); or N steps",
        Allowed("int_or_auto", low=1),
        run=True,
    )
    steps_per_dispatch: int = _knob(
        100, "steps per jitted call; does not change the result", Allowed("int", low=1), run=True
    )
    eval_images: int = _knob(1000, "held-out images scored at the end", Allowed("int", low=0), run=True)
    eval_seed: int = _knob(0, "picks the held-out images", Allowed("int", low=0), run=True)
    checkpoint_every: int = _knob(
        0, "write a checkpoint every N steps (0: only at the end)", Allowed("int", low=0), run=True
    )
    keep: int = _knob(3, "checkpoints kept", Allowed("int", low=1), run=True)
    max_nonfinite: int = _knob(
        20, "stop after this many steps in a row with a non-finite loss or gradient", Allowed("int", low=1), run=True
    )

    def __post_init__(self) -> None:
        if not isinstance(self.task, PlantedPatternTask):
            raise fail("TrainConfig", "task", "a PlantedPatternTask", type(self.task).__name__, TypeError)
        for field in dataclasses.fields(self):
            allowed = field.metadata.get("allowed")
            value = getattr(self, field.name)
            if allowed is not None and not (value is None and field.default is None):
                object.__setattr__(self, field.name, allowed.check("TrainConfig", field.name, value))
        pattern_shape = self.task.pattern_shape
        kernel_shape = pattern_shape if self.kernel_shape is None else self.kernel_shape
        object.__setattr__(self, "kernel_shape", check_kernel_shape(kernel_shape, pattern_shape, "TrainConfig"))
        if self.train_columns is not None:
            wo = self.task.output_shape[1]
            columns = self.train_columns
            if not (
                isinstance(columns, (tuple, list))
                and len(columns) == 2
                and all(is_int(v) for v in columns)
                and 0 <= columns[0] < columns[1] <= wo
            ):
                raise fail("TrainConfig", "train_columns", f"None or (lo, hi), ints with 0 <= lo < hi <= {wo}", columns)
            object.__setattr__(self, "train_columns", (int(columns[0]), int(columns[1])))
            self.training_task  # noqa: B018 -- the task must still fit its copies in those columns
        if self.loss is None:
            object.__setattr__(self, "loss", DEFAULT_LOSS[self.task.background])
        if self.decay_steps is None:
            object.__setattr__(self, "decay_steps", DEFAULT_DECAY_STEPS[self.task.background])

    @property
    def step(self) -> StepConfig:
        """What a compiled training step depends on — the static argument of the jitted step: the task's
        :meth:`~PlantedPatternTask.skeleton` (its numbers are traced) and the step's knobs, not the seed or the
        run's length, so runs that differ only in those share one compile."""
        return StepConfig(self.training_task.skeleton(), *(getattr(self, name) for name in StepConfig._fields[1:]))

    @property
    def training_task(self) -> PlantedPatternTask:
        """The task that training images (and the validation draw) come from: :attr:`task`, planted only in
        :attr:`train_columns` when they are given."""
        if self.train_columns is None:
            return self.task
        return dataclasses.replace(self.task, plant_columns=self.train_columns)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict; :meth:`from_dict` turns it back into an equal config."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["task"] = self.task.to_dict()
        out["kernel_shape"] = list(self.kernel_shape)
        if self.train_columns is not None:
            out["train_columns"] = list(self.train_columns)
        return out

    def trajectory(self) -> dict[str, Any]:
        """:meth:`to_dict` without the knobs that cannot change the trained params (run length, evaluation,
        checkpointing): what a checkpoint must match to be resumed."""
        return {k: v for k, v in self.to_dict().items() if k not in RUN_KNOBS}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """The inverse of :meth:`to_dict` (a dict from before ``l1``, ``l2``, ``near_misses`` or ``decay_steps``
        existed gets them as 0, as those runs trained; one without the run's knobs gets their defaults)."""
        data = {"l1": 0.0, "l2": 0.0, "near_misses": 0, "decay_steps": 0, **data}
        data["task"] = PlantedPatternTask(**data["task"])
        data["kernel_shape"] = tuple(data["kernel_shape"])
        return cls(**data)


RUN_KNOBS = tuple(f.name for f in dataclasses.fields(TrainConfig) if f.metadata.get("run"))
"""The fields of :class:`TrainConfig` that cannot change the trained params."""


class TrainState(NamedTuple):
    """Everything that changes during training.

    Attributes:
      params: ``{"kernel": [KH, KW, 1, K], "bias": [K]}`` (K: the task's patterns).
      opt_state: the optimizer's state, wrapped by ``optax.apply_if_finite`` (it counts skipped steps).
      step: ``[]`` int32, steps taken so far.
      key: the data-stream key; step ``s`` uses ``fold_in(key, s)``.
    """

    params: Params
    opt_state: optax.OptState
    step: jax.Array
    key: jax.Array


def init_state(config: TrainConfig) -> TrainState:
    """The state before step 0: a random kernel drawn from ``config.seed``, a fresh optimizer state.

    Args:
      config: the run's :class:`TrainConfig`.

    Returns:
      A :class:`TrainState` with ``step == 0``.

    Raises:
      TypeError: ``config`` is not a :class:`TrainConfig`.

    Examples:
      >>> import jaxconv
      >>> state = jaxconv.lab.init_state(jaxconv.TrainConfig(jaxconv.PlantedPatternTask("seed")))
      >>> state.params["kernel"].shape, int(state.step)
      ((2, 3, 1, 1), 0)
    """
    if not isinstance(config, TrainConfig):
        raise fail("init_state", "config", "a TrainConfig", type(config).__name__, TypeError)
    params = init_params(
        stream(config.seed, "init"),
        config.kernel_shape,
        config.task.num_patterns,
        model=config.model,
        image_shape=config.task.image_shape,
    )
    decay_steps = cast(int, config.decay_steps)  # resolved on construction
    opt_state = _guarded(make_optimizer(config.optimizer, config.learning_rate, decay_steps)).init(params)
    return TrainState(params, opt_state, jnp.zeros((), jnp.int32), stream(config.seed, "train"))


def batch_loss(params: Params, config: StepConfig, images: jax.Array, targets: jax.Array) -> jax.Array:
    """The training loss of ``params`` on one batch ``(images [B,H,W,1], targets [B,Ho,Wo] or [B,Ho,Wo,K])``,
    penalties included; for K > 1 patterns, the mean of the K patterns' losses (``detection_loss(...,
    per_pattern=True)``)."""
    per_pattern = config.task.num_patterns > 1
    targets = crop_targets(targets, config.task.pattern_shape, config.kernel_shape, per_pattern=per_pattern)
    logits = logit_map(params, images)
    loss = detection_loss(logits, targets, loss=cast(str, config.loss), per_pattern=per_pattern)  # loss: resolved
    weights = params[WEIGHTS[config.model]]
    if config.l1:
        loss = loss + config.l1 * jnp.sum(jnp.abs(weights))
    if config.l2:
        loss = loss + config.l2 * jnp.sum(weights**2)
    return loss


def training_batch(config: StepConfig, key: jax.Array, values: TaskValues | None = None) -> tuple[jax.Array, jax.Array]:
    """One training batch ``(images [B, H, W, 1], targets [B, Ho, Wo] or [B, Ho, Wo, K])``: the task's images drawn
    from ``key``, with ``config.near_misses`` near misses of each pattern pasted into each on a binary background.

    Args:
      config: the :class:`TrainConfig` (its task may be a skeleton when ``values`` are given).
      key: a PRNG key.
      values: the task's :class:`~jaxconv.lab._data.TaskValues` (default: ``config.task.values()``).
    """
    task = config.task
    values = task.values() if values is None else values
    batch = task.sample_with(key, config.batch_size, values)
    if config.near_misses and task.background == "binary":
        batch = plant_near_misses(task, jax.random.fold_in(key, NEAR_MISS_SUBSTREAM), batch, config.near_misses, values)
    return batch.images, batch.targets


def set_batch(config: StepConfig, key: jax.Array, indices: jax.Array, values: TaskValues | None = None) -> Batch:
    """Images ``indices`` of a fixed training set: image ``i`` is :func:`training_batch`'s one image (near misses
    pasted in) from ``fold_in(key, i)``, so any ``n`` images of the set are drawn without drawing the others.

    Args:
      config: the :class:`TrainConfig` (its task may be a skeleton when ``values`` are given).
      key: the set's key, ``stream(seed, "train_set")``.
      indices: ``[B]`` int, traced or not.
      values: the task's :class:`~jaxconv.lab._data.TaskValues` (default: ``config.task.values()``).

    Returns:
      ``(images [B, H, W, 1], targets [B, Ho, Wo] or [B, Ho, Wo, K])``.
    """
    one = config._replace(batch_size=1)
    images, targets = jax.vmap(lambda i: training_batch(one, jax.random.fold_in(key, i), values))(indices)
    return images[:, 0], targets[:, 0]


_set_batch = jax.jit(set_batch, static_argnames=("config",))


def training_set(config: TrainConfig) -> Batch:
    """The fixed training set of a run with ``config.train_images = n``: image ``i < n`` drawn from
    ``fold_in(stream(seed, "train_set"), i)`` (:func:`set_batch`; near misses pasted in, as in every training
    batch). The set of ``n`` images holds the set of every smaller ``n``, for the same seed.

    Args:
      config: a :class:`TrainConfig` with ``train_images`` set.

    Returns:
      ``(images [n, H, W, 1], targets [n, Ho, Wo] or [n, Ho, Wo, K])``.

    Raises:
      ValueError: ``config.train_images`` is ``None``.
      TypeError: ``config`` is not a :class:`TrainConfig`.

    Examples:
      >>> import jaxconv
      >>> from jaxconv.lab._train import training_set
      >>> config = jaxconv.TrainConfig(jaxconv.PlantedPatternTask("seed", image_shape=8), train_images=3)
      >>> [a.shape for a in training_set(config)]
      [(3, 8, 8, 1), (3, 7, 6)]
    """
    if not isinstance(config, TrainConfig):
        raise fail("training_set", "config", "a TrainConfig", type(config).__name__, TypeError)
    if config.train_images is None:
        raise fail("training_set", "config", "a TrainConfig with `train_images` set", None)
    indices = jnp.arange(config.train_images)
    return _set_batch(config.step, stream(config.seed, "train_set"), indices, config.task.values())


def set_indices(step: jax.typing.ArrayLike, batch_size: int, n: jax.typing.ArrayLike) -> jax.Array:
    """``[batch_size]``: which images of an ``n``-image training set step ``step`` trains on — the set in order,
    cycled: ``(step * batch_size + arange(batch_size)) % n`` (every image as often as the others, to within one
    per ``n`` batches; with ``n < batch_size`` each batch holds every image, some once more than others).

    Examples:
      >>> from jaxconv.lab._train import set_indices
      >>> set_indices(0, 4, 3).tolist(), set_indices(1, 4, 6).tolist()
      ([0, 1, 2, 0], [4, 5, 0, 1])
    """
    return (jnp.asarray(step) * batch_size + jnp.arange(batch_size)) % n


def _one_step(
    config: StepConfig,
    mesh: Mesh | None,
    values: TaskValues,
    data: Batch | None,
    train_set: tuple[jax.Array, jax.Array] | None,
    state: TrainState,
    _: Any,
) -> tuple[TrainState, jax.Array]:
    optimizer = _guarded(make_optimizer(config.optimizer, config.learning_rate, config.decay_steps))
    if train_set is not None:  # (the set's key, n): n traced, so every n shares one compile
        indices = set_indices(state.step, config.batch_size, train_set[1])
        images, targets = set_batch(config, train_set[0], indices, values)
    elif data is None:
        images, targets = training_batch(config, jax.random.fold_in(state.key, state.step), values)
    else:
        images, targets = data
    if mesh is not None:
        # Data parallel: each device holds (and, threefry being partitionable, samples) B / D images; the
        # params are replicated, so XLA all-reduces the batch-mean gradient.
        by_batch = NamedSharding(mesh, PartitionSpec(mesh.axis_names[0]))
        images, targets = jax.lax.with_sharding_constraint((images, targets), by_batch)
    loss, grads = jax.value_and_grad(batch_loss)(state.params, config, images, targets)
    # A non-finite loss poisons the gradient too, so that the step is skipped even if the gradient looks finite.
    grads = jax.tree.map(lambda g: jnp.where(jnp.isfinite(loss), g, jnp.nan), grads)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return TrainState(params, opt_state, state.step + 1, state.key), loss


@functools.partial(jax.jit, static_argnames=("config", "length", "mesh"))
def _train_steps(
    config: StepConfig,
    state: TrainState,
    num_steps: jax.Array,
    length: int,
    mesh: Mesh | None,
    values: TaskValues,
    data: Batch | None,
    train_set: tuple[jax.Array, jax.Array] | None,
) -> tuple[TrainState, jax.Array]:
    """``length`` scan iterations, the first ``num_steps`` (traced) of them steps and the rest passing the state
    through (their losses NaN): every dispatch of a run up to ``length`` steps long shares one program."""
    step = functools.partial(_one_step, config, mesh, values, data, train_set)

    def skip(state: TrainState, _: Any) -> tuple[TrainState, jax.Array]:
        return state, jnp.full((), jnp.nan, jnp.float32)

    def maybe_step(state: TrainState, i: jax.Array) -> tuple[TrainState, jax.Array]:
        return jax.lax.cond(i < num_steps, step, skip, state, None)

    out = jax.lax.scan(maybe_step, state, jnp.arange(length))
    if mesh is not None:  # every process can read the (replicated) state and losses
        out = jax.lax.with_sharding_constraint(out, NamedSharding(mesh, PartitionSpec()))
    return out


def check_mesh(mesh: Any, batch_size: int) -> Mesh:
    """``mesh`` if it is a 1-D :class:`jax.sharding.Mesh` whose size divides ``batch_size``.

    Raises:
      TypeError: ``mesh`` is not a ``Mesh``.
      ValueError: ``mesh`` is not 1-D, or ``batch_size`` does not divide evenly over its devices.
    """
    if not isinstance(mesh, Mesh):
        raise TypeError(f"check_mesh: `mesh` must be a jax.sharding.Mesh; got {type(mesh).__name__}")
    if len(mesh.axis_names) != 1:
        raise ValueError(f"check_mesh: `mesh` must be 1-D (one batch axis); got axes {mesh.axis_names}")
    if batch_size % mesh.size:
        raise fail("check_mesh", "batch_size", f"a multiple of the device count {mesh.size}", batch_size)
    return mesh


def replicate(state: TrainState, mesh: Mesh) -> TrainState:
    """``state`` with every leaf replicated over ``mesh``, ready for ``train_steps(..., mesh=mesh)``.

    Args:
      state: a :class:`TrainState` (on any device, or NumPy).
      mesh: a :class:`jax.sharding.Mesh`; it may span processes (``jax.distributed``), and ``state`` must then
        be the same on every process (``jax.device_put`` checks it).

    Returns:
      The same :class:`TrainState`, every leaf a ``jax.Array`` with sharding ``NamedSharding(mesh, P())``.

    Examples:
      >>> import jax
      >>> import jaxconv
      >>> from jaxconv.lab._train import replicate
      >>> mesh = jax.sharding.Mesh(jax.devices()[:1], ("batch",))
      >>> state = replicate(jaxconv.lab.init_state(jaxconv.TrainConfig()), mesh)
      >>> state.params["kernel"].sharding.spec == jax.sharding.PartitionSpec(), state.key.dtype
      (True, key<fry>)
    """
    replicated = NamedSharding(mesh, PartitionSpec())

    def put(x: Any) -> Any:
        if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
            return jax.random.wrap_key_data(put(jax.random.key_data(x)), impl=jax.random.key_impl(x))
        return jax.device_put(np.asarray(x), replicated)

    return jax.tree.map(put, state)


def train_steps(
    config: TrainConfig,
    state: TrainState,
    num_steps: int,
    *,
    mesh: Mesh | None = None,
    data: tuple[jax.typing.ArrayLike, jax.typing.ArrayLike] | None = None,
) -> tuple[TrainState, jax.Array]:
    """Advances ``state`` by ``num_steps`` optimizer steps in one jitted dispatch (a ``lax.scan``).

    Each step samples a fresh batch on the device from ``fold_in(state.key, step)`` (with
    ``config.train_images``: the images :func:`set_indices` picks from the :func:`training_set`), so the result
    does not depend on how a run's steps are grouped into calls. A step whose loss or gradient is not finite
    changes nothing but the optimizer state's counters (see :func:`nonfinite_steps`).

    With a ``mesh``, the step is data parallel: the ``[B, ...]`` batch is sharded along the mesh's one axis
    (``B / D`` images per device), ``state`` should be replicated over it (see :func:`replicate`), and XLA
    inserts the gradient all-reduce; the result equals the single-device one to float32 rounding. The mesh
    may span several processes (``jax.distributed``): each process then runs this same call.

    Args:
      config: the run's :class:`TrainConfig` (static: a new config compiles anew).
      state: the current :class:`TrainState`.
      num_steps: ``>= 1``; calls of up to ``config.steps_per_dispatch`` steps share one compiled program.
      mesh: ``None`` (one device, as before) or a 1-D :class:`jax.sharding.Mesh` whose size ``D`` divides
        ``config.batch_size`` (static).
      data: ``None`` (every step samples its batch from the task) or a fixed batch ``(images [N, H, W, 1],
        targets [N, Ho, Wo] or [N, Ho, Wo, K])`` that every step trains on: full-batch gradient descent on a
        fixed training set (``N`` need not be ``config.batch_size``; with a ``mesh``, ``D`` must divide it); not
        with ``config.train_images``, which gives the training set itself.

    Returns:
      ``(new_state, losses [num_steps])``.

    Raises:
      ValueError: ``num_steps`` is not an int ``>= 1``; ``mesh`` is not 1-D or does not divide the batch;
        ``data`` with ``config.train_images``.
      TypeError: ``config`` or ``mesh`` of the wrong type.

    Examples:
      >>> import jax
      >>> import jaxconv
      >>> from jaxconv.lab._train import replicate
      >>> config = jaxconv.TrainConfig(jaxconv.PlantedPatternTask("seed", image_shape=8), batch_size=2)
      >>> state, losses = jaxconv.lab.train_steps(config, jaxconv.lab.init_state(config), 3)
      >>> int(state.step), losses.shape
      (3, (3,))
      >>> mesh = jax.sharding.Mesh(jax.devices()[:1], ("batch",))
      >>> sharded, _ = jaxconv.lab.train_steps(config, replicate(jaxconv.lab.init_state(config), mesh), 3, mesh=mesh)
      >>> float(abs(sharded.params["kernel"] - state.params["kernel"]).max()) < 1e-5
      True
    """
    if not isinstance(config, TrainConfig):
        raise fail("train_steps", "config", "a TrainConfig", type(config).__name__, TypeError)
    num_steps = Allowed("int", low=1).check("train_steps", "num_steps", num_steps)
    if data is not None:
        if config.train_images is not None:
            raise fail(
                "train_steps",
                "data",
                "None when `config.train_images` is set (it gives the training set)",
                "a pair (images, targets)",
            )
        data = _check_data(config, data)
    if mesh is not None:
        mesh = check_mesh(mesh, config.batch_size if data is None else data[0].shape[0])
    train_set = None
    if config.train_images is not None:
        train_set = (stream(config.seed, "train_set"), jnp.asarray(config.train_images, jnp.int32))
    # One program for every dispatch of up to `steps_per_dispatch` steps (a run's last, shorter one, or one cut at a
    # checkpoint or validation step, compiles nothing new); a longer call compiles its own length.
    length = max(num_steps, config.steps_per_dispatch)
    state, losses = _train_steps(config.step, state, num_steps, length, mesh, config.task.values(), data, train_set)
    return state, losses if num_steps == length else losses[:num_steps]


def _check_data(config: TrainConfig, data: Any) -> Batch:
    if not isinstance(data, (tuple, list)) or len(data) != 2:
        raise fail("train_steps", "data", "None or a pair (images, targets)", type(data).__name__, TypeError)
    images, targets = jnp.asarray(data[0], jnp.float32), jnp.asarray(data[1], jnp.float32)
    (h, w), (ho, wo), k = config.task.image_shape, config.task.output_shape, config.task.num_patterns
    n = images.shape[0] if images.ndim else 0
    want = ((n, h, w, 1), (n, ho, wo) if k == 1 else (n, ho, wo, k))
    if n < 1 or (images.shape, targets.shape) != want:
        raise fail(
            "train_steps",
            "data",
            f"(images {want[0]}, targets {want[1]}) with N >= 1",
            f"shapes {images.shape} and {targets.shape}",
        )
    return images, targets


__all__ = [
    "OPTIMIZERS",
    "TrainConfig",
    "StepConfig",
    "RUN_KNOBS",
    "TrainState",
    "make_optimizer",
    "init_state",
    "train_steps",
    "batch_loss",
    "training_batch",
    "training_set",
    "set_batch",
    "set_indices",
    "NEAR_MISSES",
    "DEFAULT_LOSS",
    "DEFAULT_DECAY_STEPS",
    "nonfinite_steps",
    "check_mesh",
    "replicate",
]

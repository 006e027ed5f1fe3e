"""K kernels for K patterns at once: one ``conv2d`` with K output channels, trained and judged per pattern.

A :class:`MultiPatternTask` plants copies of K patterns (padded with zeros at the bottom/right to a common
``PH x PW``) into white Gaussian noise, optionally with C channels; the detector is one kernel
``[PH, PW, C, K]`` and a bias ``[K]``, and output channel ``k`` is trained to fire on pattern ``k`` only
(:func:`jaxconv.detection_loss` per channel, averaged). :func:`multi_evaluate` gives each kernel's F1 and AP
on its own pattern and a confusion matrix: how often each kernel fires on each pattern.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax import lax

from jaxconv.conv._conv import conv2d
from jaxconv.lab._data import PlantedPatternTask
from jaxconv.lab._detector import LOSSES, Params, detection_loss
from jaxconv.lab._metrics import EVAL_STREAM, average_precision
from jaxconv.lab._train import INIT_STREAM, TRAIN_STREAM, make_optimizer


def _fail(argument: str, allowed: str, given: Any, error: type[Exception] = ValueError) -> Exception:
    return error(f"MultiPatternTask: `{argument}` must be {allowed}; got {given!r}")


@dataclasses.dataclass(frozen=True)
class MultiPatternTask:
    """Images with copies of K patterns planted in white Gaussian noise, none overlapping another.

    Args:
      patterns: K >= 1 patterns, each a name from :data:`PATTERNS` or a 2-D array; each is padded with zeros
        at the bottom/right to the common shape ``(max PH, max PW)`` and stored as a tuple of float rows.
      image_shape: ``(H, W)`` (or one int), at least the common pattern shape.
      instances: ``(min, max)`` copies *of each pattern* per image (or one int), ``0 <= min <= max``; all
        ``K * max`` copies must fit without overlap wherever the earlier ones landed.
      channels: ``C >= 1`` image channels. Pattern ``k`` is planted in channel ``k % C`` only (with one
        channel, all patterns share it and only their shapes tell them apart).
      noise_std: the noise's std, ``> 0``.
      amplitude: each copy adds ``amplitude * pattern``, ``> 0``.

    Raises:
      ValueError: an invalid value (the message names the argument).
      TypeError: an argument of the wrong type.

    Examples:
      >>> import jax
      >>> from jaxconv.lab._multi import MultiPatternTask
      >>> task = MultiPatternTask(("hedge", "vedge"), image_shape=12, instances=1, channels=2)
      >>> task.pattern_shape, task.output_shape, task.num_patterns
      ((3, 3), (10, 10), 2)
      >>> images, targets, positions = task.sample(jax.random.key(0), 4)
      >>> images.shape, targets.shape, positions.shape
      ((4, 12, 12, 2), (4, 10, 10, 2), (4, 2, 2))
      >>> targets.sum(axis=(1, 2)).tolist()
      [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]
    """

    patterns: Any = ("hedge", "vedge", "cross", "ring")
    image_shape: Any = (32, 32)
    instances: Any = (0, 2)
    channels: int = 1
    noise_std: float = 1.0
    amplitude: float = 3.0

    def __post_init__(self) -> None:
        if isinstance(self.patterns, str) or not isinstance(self.patterns, (tuple, list)) or not self.patterns:
            raise _fail("patterns", "a non-empty sequence of pattern names or 2-D arrays", self.patterns, TypeError)
        # PlantedPatternTask checks each pattern (a known name, 2-D, finite, non-constant) and the numbers.
        singles = [
            PlantedPatternTask(
                p,
                image_shape=self.image_shape,
                background="gaussian",
                noise_std=self.noise_std,
                amplitude=self.amplitude,
            )  # fmt: skip
            for p in self.patterns
        ]
        ph = max(len(s.pattern) for s in singles)
        pw = max(len(s.pattern[0]) for s in singles)
        padded = tuple(
            tuple(tuple(row) + (0.0,) * (pw - len(row)) for row in s.pattern) + ((0.0,) * pw,) * (ph - len(s.pattern))
            for s in singles
        )
        image_shape = singles[0].image_shape
        if image_shape[0] < ph or image_shape[1] < pw:
            raise _fail("image_shape", f"at least the common pattern shape {(ph, pw)}", image_shape)
        if isinstance(self.channels, bool) or not isinstance(self.channels, (int, np.integer)):
            raise _fail("channels", "an int >= 1", self.channels, TypeError)
        if self.channels < 1:
            raise _fail("channels", "an int >= 1", self.channels)
        instances = PlantedPatternTask(padded[0], image_shape=image_shape, background="gaussian",
                                       instances=self.instances).instances  # fmt: skip
        k = len(padded)
        ho, wo = image_shape[0] - ph + 1, image_shape[1] - pw + 1
        if (k * instances[1] - 1) * (2 * ph - 1) * (2 * pw - 1) >= ho * wo:
            raise _fail("instances", f"small enough that {k} x max copies of a {ph}x{pw} pattern fit without "
                        f"overlap in a {image_shape[0]}x{image_shape[1]} image", instances)  # fmt: skip
        for name, value in [("patterns", padded), ("image_shape", image_shape), ("instances", instances),
                            ("channels", int(self.channels)), ("noise_std", singles[0].noise_std),
                            ("amplitude", singles[0].amplitude)]:  # fmt: skip
            object.__setattr__(self, name, value)

    @property
    def num_patterns(self) -> int:
        """K."""
        return len(self.patterns)

    @property
    def pattern_shape(self) -> tuple[int, int]:
        """``(PH, PW)``: the common (padded) pattern shape, which is also the kernel's."""
        return len(self.patterns[0]), len(self.patterns[0][0])

    @property
    def output_shape(self) -> tuple[int, int]:
        """``(Ho, Wo)`` of a VALID ``PH x PW`` window."""
        ph, pw = self.pattern_shape
        return self.image_shape[0] - ph + 1, self.image_shape[1] - pw + 1

    @property
    def templates(self) -> np.ndarray:
        """``[PH, PW, C, K]`` float32: pattern ``k`` in channel ``k % C`` (the planted signal is ``A`` times it)."""
        ph, pw = self.pattern_shape
        out = np.zeros((ph, pw, self.channels, self.num_patterns), np.float32)
        for k, pattern in enumerate(self.patterns):
            out[:, :, k % self.channels, k] = np.asarray(pattern, np.float32)
        return out

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict that ``MultiPatternTask(**d)`` turns back into an equal task."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        out["patterns"] = [[list(row) for row in p] for p in self.patterns]
        out["image_shape"], out["instances"] = list(self.image_shape), list(self.instances)
        return out

    def sample(self, key: jax.Array, batch_size: int) -> Sample:
        """Draws ``batch_size`` images; pure and jittable.

        Returns:
          A :class:`Sample` ``(images [B, H, W, C], targets [B, Ho, Wo, K], positions [B, K * max, 2])``:
          ``targets[..., k]`` is 1 at the top-left corner of each planted copy of pattern ``k``; slot ``s`` of
          ``positions`` holds a copy of pattern ``s // max`` (``-1`` when unused).

        Raises:
          ValueError: ``batch_size`` is not an int ``>= 1``.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"MultiPatternTask.sample: `batch_size` must be an int >= 1; got {batch_size!r}")
        return _sample(self, key, int(batch_size))

    def _sample_one(self, key: jax.Array) -> Sample:
        templates = jnp.asarray(np.moveaxis(self.templates, -1, 0) * self.amplitude)  # [K, PH, PW, C]
        (ph, pw), (h, w), (ho, wo) = self.pattern_shape, self.image_shape, self.output_shape
        k, (lo, hi) = self.num_patterns, self.instances
        k_count, k_noise, k_slots = jax.random.split(key, 3)
        counts = jax.random.randint(k_count, (k,), lo, hi + 1)
        image = self.noise_std * jax.random.normal(k_noise, (h, w, self.channels), jnp.float32)
        slot_noise = jax.random.uniform(k_slots, (k * hi, ho * wo))
        rows, cols = jnp.arange(ho)[:, None], jnp.arange(wo)[None, :]

        def place(carry: tuple[jax.Array, jax.Array], slot: tuple[jax.Array, jax.Array]) -> tuple[Any, jax.Array]:
            image, free = carry
            index, scores = slot
            which = index // max(hi, 1)
            active = (index % max(hi, 1)) < counts[which]
            flat = jnp.argmax(jnp.where(free.reshape(-1), scores, -jnp.inf))
            i, j = flat // wo, flat % wo
            current = lax.dynamic_slice(image, (i, j, 0), (ph, pw, self.channels))
            pasted = jnp.where(active, current + templates[which], current)
            image = lax.dynamic_update_slice(image, pasted, (i, j, 0))
            overlaps = (jnp.abs(rows - i) < ph) & (jnp.abs(cols - j) < pw)
            free = jnp.where(active, free & ~overlaps, free)
            return (image, free), jnp.where(active, jnp.stack([i, j]), -1).astype(jnp.int32)

        free = jnp.ones((ho, wo), bool)
        (image, _), positions = lax.scan(place, (image, free), (jnp.arange(k * hi), slot_noise))
        positions = positions.reshape(k * hi, 2)
        active = positions[:, 0] >= 0
        which = jnp.arange(k * hi) // max(hi, 1)
        targets = (
            jnp.zeros((ho, wo, k), jnp.float32)
            .at[jnp.where(active, positions[:, 0], ho), jnp.where(active, positions[:, 1], wo), which]
            .set(1.0, mode="drop")
        )
        return Sample(image, targets, positions)


class Sample(NamedTuple):
    """A batch from a :class:`MultiPatternTask`: ``images [B,H,W,C]``, ``targets [B,Ho,Wo,K]``, ``positions``."""

    images: jax.Array
    targets: jax.Array
    positions: jax.Array


@functools.partial(jax.jit, static_argnames=("task", "batch_size"))
def _sample(task: MultiPatternTask, key: jax.Array, batch_size: int) -> Sample:
    return jax.vmap(task._sample_one)(jax.random.split(key, batch_size))


def _check_task(task: Any) -> MultiPatternTask:
    if not isinstance(task, MultiPatternTask):
        raise TypeError(f"`task` must be a MultiPatternTask; got {type(task).__name__}")
    return task


def multi_init_params(key: jax.Array, task: MultiPatternTask) -> Params:
    """Random kernels (normal, std ``1 / sqrt(PH * PW * C)``) and zero biases for ``task``.

    Returns:
      ``{"kernel": [PH, PW, C, K], "bias": [K]}`` float32.

    Examples:
      >>> import jax
      >>> from jaxconv.lab._multi import MultiPatternTask, multi_init_params
      >>> params = multi_init_params(jax.random.key(0), MultiPatternTask(("hedge", "vedge"), channels=3))
      >>> params["kernel"].shape, params["bias"].shape
      ((3, 3, 3, 2), (2,))
    """
    task = _check_task(task)
    (ph, pw), c, k = task.pattern_shape, task.channels, task.num_patterns
    kernel = jax.random.normal(key, (ph, pw, c, k), jnp.float32) / np.sqrt(ph * pw * c)
    return {"kernel": kernel, "bias": jnp.zeros((k,), jnp.float32)}


def multi_logits(params: Params, images: jax.typing.ArrayLike) -> jax.Array:
    """``conv2d(images, kernel) + bias``: ``images [B, H, W, C]``, kernel ``[KH, KW, C, K]`` -> ``[B, Ho, Wo, K]``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxconv.lab._multi import multi_logits
      >>> params = {"kernel": jnp.array([1.0, -1.0]).reshape(1, 1, 1, 2), "bias": jnp.array([0.0, 0.5])}
      >>> multi_logits(params, jnp.full((1, 1, 2, 1), 2.0)).tolist()
      [[[[2.0, -1.5], [2.0, -1.5]]]]
    """
    return conv2d(images, params["kernel"], params["bias"])


def multi_detection_loss(
    logits: jax.typing.ArrayLike, targets: jax.typing.ArrayLike, *, loss: str = "hard_negative"
) -> jax.Array:
    """The mean over output channels ``k`` of ``detection_loss(logits[..., k], targets[..., k])``.

    Each channel's negatives include the other patterns' positions, so a kernel that fires on another
    pattern is penalised: that is what makes the kernels specialise.

    Args:
      logits: ``[..., K]``.
      targets: same shape, 0 or 1.
      loss: one of ``LOSSES``.

    Returns:
      A scalar.

    Raises:
      ValueError: mismatched shapes or an unknown ``loss``.

    Examples:
      >>> import jax.numpy as jnp
      >>> from jaxconv import detection_loss
      >>> from jaxconv.lab._multi import multi_detection_loss
      >>> z = jnp.array([[3.0, -1.0], [-2.0, 2.0], [-3.0, -3.0]])
      >>> t = jnp.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]])
      >>> bool(multi_detection_loss(z, t) == (detection_loss(z[:, 0], t[:, 0]) + detection_loss(z[:, 1], t[:, 1])) / 2)
      True
    """
    logits, targets = jnp.asarray(logits), jnp.asarray(targets)
    if logits.shape != targets.shape or logits.ndim < 1:
        raise ValueError(f"`targets` must have the logits' shape {logits.shape}; got {targets.shape}")
    per_channel = jax.vmap(functools.partial(detection_loss, loss=loss), in_axes=(-1, -1))(logits, targets)
    return jnp.mean(per_channel)


class MultiFitResult(NamedTuple):
    """What :func:`multi_fit` returns: ``params`` (``kernel [PH, PW, C, K]``, ``bias [K]``) and ``losses [steps]``."""

    params: Params
    losses: np.ndarray


@functools.partial(jax.jit, static_argnames=("task", "steps", "batch_size", "learning_rate", "optimizer", "loss"))
def _multi_train(
    task: MultiPatternTask, params: Params, key: jax.Array, *, steps: int, batch_size: int, learning_rate: float,
    optimizer: str, loss: str,
) -> tuple[Params, jax.Array]:  # fmt: skip
    opt = make_optimizer(optimizer, learning_rate)

    def step(carry: tuple[Params, Any], s: jax.Array) -> tuple[tuple[Params, Any], jax.Array]:
        params, opt_state = carry
        batch = task.sample(jax.random.fold_in(key, s), batch_size)
        value, grads = jax.value_and_grad(
            lambda p: multi_detection_loss(multi_logits(p, batch.images), batch.targets, loss=loss)
        )(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), value

    (params, _), losses = lax.scan(step, (params, opt.init(params)), jnp.arange(steps))
    return params, losses


def multi_fit(
    task: MultiPatternTask,
    *,
    steps: int = 400,
    batch_size: int = 32,
    learning_rate: float = 0.1,
    optimizer: str = "adam",
    seed: int = 0,
    loss: str = "hard_negative",
) -> MultiFitResult:
    """Learns K kernels at once (one conv with K outputs) from random weights, each for its own pattern.

    Step ``s`` trains on the batch ``task.sample(fold_in(fold_in(key(seed), 1), s), batch_size)``; the whole
    run is one jitted ``lax.scan``.

    Args:
      task: the :class:`MultiPatternTask`.
      steps: optimizer steps, ``>= 1``.
      batch_size: images per step, ``>= 1``.
      learning_rate: ``> 0``.
      optimizer: one of ``OPTIMIZERS``.
      seed: seeds the initial kernels and the batches.
      loss: one of ``LOSSES``, applied per output channel (:func:`multi_detection_loss`).

    Returns:
      A :class:`MultiFitResult` ``(params, losses [steps])``.

    Raises:
      TypeError: ``task`` is not a :class:`MultiPatternTask`.
      ValueError: another argument outside what is allowed (the message names it).

    Examples:
      >>> from jaxconv.lab._multi import MultiPatternTask, multi_evaluate, multi_fit
      >>> task = MultiPatternTask(("hedge", "vedge"), image_shape=12, instances=1, amplitude=4.0)
      >>> result = multi_fit(task, steps=150, batch_size=8)
      >>> result.params["kernel"].shape, result.losses.shape
      ((3, 3, 1, 2), (150,))
      >>> confusion = multi_evaluate(result.params, task, num_images=100)["confusion"]  # [K, K + 1]
      >>> [[bool(rate > 0.5) for rate in row[:2]] for row in confusion]  # each kernel fires on its own pattern
      [[True, False], [False, True]]
    """
    task = _check_task(task)
    for name, value in (("steps", steps), ("batch_size", batch_size), ("seed", seed)):
        low = 0 if name == "seed" else 1
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"`{name}` must be an int >= {low}; got {value!r}")
    make_optimizer(optimizer, learning_rate)
    if loss not in LOSSES:
        raise ValueError(f"`loss` must be one of {LOSSES}; got {loss!r}")
    base = jax.random.key(int(seed))
    params = multi_init_params(jax.random.fold_in(base, INIT_STREAM), task)
    params, losses = _multi_train(task, params, jax.random.fold_in(base, TRAIN_STREAM), steps=int(steps),
                                  batch_size=int(batch_size), learning_rate=float(learning_rate), optimizer=optimizer,
                                  loss=loss)  # fmt: skip
    return MultiFitResult(params, np.asarray(losses))


def multi_matched_filter(task: MultiPatternTask) -> Params:
    """Each pattern's own matched filter (as :func:`jaxconv.matched_filter` for white noise), side by side.

    Kernel ``k`` is ``A t_k / s^2`` (``t_k`` the template in its channel) with bias
    ``-A^2 |t_k|^2 / (2 s^2) + log(pi / (1 - pi))``, ``pi = mean(instances) / (Ho * Wo)``. Each is optimal for
    its pattern against noise alone — not against the *other* patterns, which it may fire on.

    Returns:
      ``{"kernel": [PH, PW, C, K], "bias": [K]}`` float32.

    Examples:
      >>> from jaxconv.lab._multi import MultiPatternTask, multi_matched_filter
      >>> mf = multi_matched_filter(MultiPatternTask(("hedge", "vedge"), amplitude=2.0))
      >>> mf["kernel"][:, :, 0, 0].tolist(), round(float(mf["bias"][0]), 3)
      ([[2.0, 2.0, 2.0], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]], -12.801)
    """
    task = _check_task(task)
    ho, wo = task.output_shape
    prior = min(max((sum(task.instances) / 2) / (ho * wo), 1e-9), 1 - 1e-9)
    t = task.templates.astype(np.float64)
    var = task.noise_std**2
    kernel = task.amplitude * t / var
    bias = -(task.amplitude**2) * np.sum(t * t, axis=(0, 1, 2)) / (2 * var) + math.log(prior / (1 - prior))
    return {"kernel": jnp.asarray(kernel, jnp.float32), "bias": jnp.asarray(bias, jnp.float32)}


@functools.partial(jax.jit, static_argnames=("task", "num_images"))
def _scores(params: Params, task: MultiPatternTask, key: jax.Array, num_images: int) -> tuple[jax.Array, jax.Array]:
    batch = task.sample(key, num_images)
    return multi_logits(params, batch.images), batch.targets


def multi_evaluate(params: Params, task: MultiPatternTask, *, num_images: int = 500, seed: int = 0) -> dict[str, Any]:
    """Per-pattern detection and the confusion matrix of K kernels on held-out images.

    Args:
      params: ``{"kernel": [PH, PW, C, K], "bias": [K]}`` for ``task``.
      task: the :class:`MultiPatternTask`.
      num_images: held-out images, ``>= 1`` (from a stream ``multi_fit`` never draws from).
      seed: picks the held-out images.

    Returns:
      A dict of lists over kernels ``k``: ``precision``, ``recall``, ``f1`` (logit > 0 against pattern ``k``'s
      targets) and ``average_precision``; ``confusion`` ``[K, K + 1]``: row ``k``, column ``j < K`` is the share
      of pattern ``j``'s planted copies on which kernel ``k`` fires (at their top-left corner), column ``K`` the
      share of positions holding no pattern where it fires; ``num_images``.

    Raises:
      TypeError: ``task`` is not a :class:`MultiPatternTask`.
      ValueError: ``params`` of the wrong shapes or a bad ``num_images``/``seed``.

    Examples:
      >>> from jaxconv.lab._multi import MultiPatternTask, multi_evaluate, multi_matched_filter
      >>> task = MultiPatternTask(("hedge", "vedge"), image_shape=12, instances=1, amplitude=6.0)
      >>> m = multi_evaluate(multi_matched_filter(task), task, num_images=50)
      >>> [round(v, 2) for v in m["recall"]], [round(v, 2) for v in m["confusion"][0][:2]]
      ([1.0, 1.0], [1.0, 0.0])
    """
    task = _check_task(task)
    (ph, pw), c, k = task.pattern_shape, task.channels, task.num_patterns
    kernel, bias = jnp.asarray(params["kernel"], jnp.float32), jnp.asarray(params["bias"], jnp.float32)
    if kernel.shape != (ph, pw, c, k) or bias.shape != (k,):
        raise ValueError(f"`params` must hold kernel {(ph, pw, c, k)} and bias {(k,)}; got {kernel.shape} and "
                         f"{bias.shape}")  # fmt: skip
    for name, value, low in (("num_images", num_images, 1), ("seed", seed, 0)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
            raise ValueError(f"`{name}` must be an int >= {low}; got {value!r}")
    key = jax.random.fold_in(jax.random.key(int(seed)), EVAL_STREAM)
    z, t = (np.asarray(a) for a in _scores({"kernel": kernel, "bias": bias}, task, key, int(num_images)))
    fired, truth = z > 0, t > 0.5
    out: dict[str, Any] = {"precision": [], "recall": [], "f1": [], "average_precision": []}
    confusion = np.zeros((k, k + 1))
    background = ~truth.any(-1)
    for i in range(k):
        tp = int(np.sum(fired[..., i] & truth[..., i]))
        fp = int(np.sum(fired[..., i] & ~truth[..., i]))
        fn = int(np.sum(~fired[..., i] & truth[..., i]))
        out["precision"].append(tp / (tp + fp) if tp + fp else 1.0)
        out["recall"].append(tp / (tp + fn) if tp + fn else 1.0)
        out["f1"].append(2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0)
        out["average_precision"].append(average_precision(z[..., i], t[..., i]))
        for j in range(k):
            confusion[i, j] = fired[..., i][truth[..., j]].mean() if truth[..., j].any() else math.nan
        confusion[i, k] = fired[..., i][background].mean()
    out["confusion"] = confusion.tolist()
    out["num_images"] = int(num_images)
    return out


__all__ = [
    "MultiPatternTask",
    "Sample",
    "MultiFitResult",
    "multi_init_params",
    "multi_logits",
    "multi_detection_loss",
    "multi_fit",
    "multi_matched_filter",
    "multi_evaluate",
]

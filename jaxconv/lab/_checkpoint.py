"""Checkpoints that are never half-written, and resuming from the newest one that is whole.

A checkpoint is one ``.npz`` file, ``ckpt-<step:08d>.npz``, holding every leaf of the :class:`TrainState`
(params, optimizer state), the step, the data key's raw bits, the losses so far, the run's
:class:`TrainConfig` and library versions (as JSON), and a SHA-256 digest over all of it. It is written
to a temporary file in the same folder, fsynced, and renamed over its final name with ``os.replace`` (then
the folder is fsynced), so a kill at any moment leaves either the old set of checkpoints or the new one.
Loading verifies the digest and the state's structure; a bad newest checkpoint is skipped with a
:class:`CheckpointWarning` and the previous one is used.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import warnings
from typing import Any, NamedTuple

import jax
import numpy as np

from jaxconv._env import versions
from jaxconv._files import write_atomic
from jaxconv.lab._train import RUN_KNOBS, TrainConfig, TrainState, init_state

FORMAT = 1
_NAME = re.compile(r"^ckpt-(\d{8,})\.npz$")
_TMP = re.compile(r"^\.ckpt-\d{8,}\.npz\.tmp-\d+$")


class CheckpointWarning(UserWarning):
    """A checkpoint could not be used (truncated, corrupted, unreadable) and an older one was tried."""


class CheckpointError(ValueError):
    """No checkpoint can be resumed from, or the newest good one belongs to a different configuration."""


class Restored(NamedTuple):
    """What :func:`restore_latest` returns.

    Attributes:
      state: the :class:`TrainState` at ``step``.
      losses: ``[step]`` float32, the loss of every step so far (``nan`` where a step was skipped).
      path: the checkpoint file.
    """

    state: TrainState
    losses: np.ndarray
    path: str


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def checkpoint_path(directory: str, step: int) -> str:
    """The file name of step ``step``'s checkpoint in ``directory``."""
    return os.path.join(directory, f"ckpt-{step:08d}.npz")


def list_checkpoints(directory: str) -> list[tuple[int, str]]:
    """``(step, path)`` of every checkpoint file in ``directory``, newest first (temporary files ignored)."""
    if not os.path.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        match = _NAME.match(name)
        if match:
            found.append((int(match.group(1)), os.path.join(directory, name)))
    return sorted(found, reverse=True)


def save_checkpoint(
    directory: str, state: TrainState, config: TrainConfig, losses: np.ndarray, *, keep: int = 3
) -> str:
    """Atomically writes ``state`` as ``directory/ckpt-<step>.npz`` and deletes all but the newest ``keep``.

    One writer per folder: temporary files left by a writer killed mid-write are deleted too.

    Args:
      directory: created if missing.
      state: the :class:`TrainState` to save.
      config: the run's :class:`TrainConfig` (saved so that a resume can be checked against it).
      losses: ``[step]`` losses of the steps so far.
      keep: how many checkpoints to keep, ``>= 1``.

    Returns:
      The path written.

    Raises:
      ValueError: ``keep < 1`` or ``losses`` not of length ``state.step``.
      OSError: the folder cannot be written.

    Examples:
      >>> import tempfile
      >>> import numpy as np
      >>> import jaxconv
      >>> from jaxconv import restore_latest, save_checkpoint
      >>> config = jaxconv.TrainConfig(jaxconv.PlantedPatternTask("seed", image_shape=8), batch_size=2)
      >>> state, losses = jaxconv.lab.train_steps(config, jaxconv.lab.init_state(config), 3)
      >>> folder = tempfile.mkdtemp()
      >>> path = save_checkpoint(folder, state, config, np.asarray(losses))
      >>> restored = restore_latest(folder, config)
      >>> int(restored.state.step), bool((restored.state.params["kernel"] == state.params["kernel"]).all())
      (3, True)
    """
    if isinstance(keep, bool) or not isinstance(keep, (int, np.integer)) or keep < 1:
        raise ValueError(f"save_checkpoint: `keep` must be an int >= 1; got {keep!r}")
    step = int(state.step)
    losses = np.asarray(losses, np.float32)
    if losses.shape != (step,):
        raise ValueError(f"save_checkpoint: `losses` must have shape ({step},) at step {step}; got {losses.shape}")
    leaves = jax.tree_util.tree_leaves((state.params, state.opt_state))
    arrays: dict[str, np.ndarray] = {f"leaf_{i:04d}": np.asarray(leaf) for i, leaf in enumerate(leaves)}
    meta = {"format": FORMAT, "step": step, "config": config.to_dict(), "versions": versions()}
    arrays["step"] = np.asarray(step, np.int64)
    arrays["key_data"] = np.asarray(jax.random.key_data(state.key))
    arrays["losses"] = losses
    arrays["meta"] = np.asarray(json.dumps(meta, sort_keys=True))
    arrays["digest"] = np.asarray(_digest(arrays))
    buffer = io.BytesIO()
    np.savez(buffer, allow_pickle=False, **arrays)

    os.makedirs(directory, exist_ok=True)
    path = checkpoint_path(directory, step)
    write_atomic(path, buffer.getvalue(), durable=True)
    stale = [os.path.join(directory, n) for n in os.listdir(directory) if _TMP.match(n)]  # left by a kill mid-write
    for old in stale + [p for _, p in list_checkpoints(directory)[keep:]]:
        try:
            os.remove(old)
        except FileNotFoundError:
            pass
    return path


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(d, dict):
        out: dict[str, Any] = {}
        for k, v in d.items():
            out.update(_flat(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: d}


def _added_field_defaults() -> dict[str, Any]:
    return {"l1": 0.0, "l2": 0.0, "model": "conv", "train_images": None, "train_columns": None}


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """``"name: saved -> current"`` for every field where two ``TrainConfig.to_dict()`` dicts differ.

    Examples:
      >>> import jaxconv
      >>> a = jaxconv.TrainConfig(jaxconv.PlantedPatternTask("seed")).to_dict()
      >>> b = jaxconv.TrainConfig(jaxconv.PlantedPatternTask("seed", density=0.2), learning_rate=0.2).to_dict()
      >>> from jaxconv.lab._checkpoint import config_differences
      >>> config_differences(a, b)
      ['learning_rate: 0.1 -> 0.2', 'task.density: 0.3 -> 0.2']
    """
    a, b = _flat(saved), _flat(current)
    return [f"{k}: {a.get(k)} -> {b.get(k)}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def _load(path: str, template: TrainState) -> tuple[dict[str, Any], TrainState, np.ndarray]:
    with open(path, "rb") as f:
        raw = f.read()
    with np.load(io.BytesIO(raw), allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    digest = str(arrays.pop("digest"))
    if _digest(arrays) != digest:
        raise ValueError("its digest does not match its contents")
    meta = json.loads(str(arrays["meta"]))
    if meta.get("format") != FORMAT:
        raise ValueError(f"format {meta.get('format')!r} is not {FORMAT}")
    step = int(arrays["step"])
    leaves, treedef = jax.tree_util.tree_flatten((template.params, template.opt_state))
    saved = [arrays.get(f"leaf_{i:04d}") for i in range(len(leaves))]
    if f"leaf_{len(leaves):04d}" in arrays or any(
        s is None or s.shape != np.shape(t) or s.dtype != np.asarray(t).dtype
        for s, t in zip(saved, leaves, strict=True)
    ):
        raise ValueError("its state does not have this configuration's structure")
    params, opt_state = jax.tree_util.tree_unflatten(treedef, [jax.numpy.asarray(s) for s in saved])
    key = jax.random.wrap_key_data(arrays["key_data"])
    state = TrainState(params, opt_state, jax.numpy.asarray(step, jax.numpy.int32), key)
    return meta, state, arrays["losses"]


def restore_latest(directory: str, config: TrainConfig) -> Restored | None:
    """The newest checkpoint in ``directory`` that is whole, checked against ``config``.

    Unreadable, truncated or corrupted checkpoints are skipped, newest first, each with a one-line
    :class:`CheckpointWarning`.

    Args:
      directory: the checkpoint folder.
      config: the run's :class:`TrainConfig`; the checkpoint must have been made with an equal one.

    Returns:
      A :class:`Restored` ``(state, losses, path)``, or ``None`` if the folder holds no checkpoint file.

    Raises:
      CheckpointError: checkpoint files exist but none is usable, or the newest usable one was made with a
        different configuration (the message lists what differs).

    Examples:
      >>> import tempfile
      >>> import jaxconv
      >>> config = jaxconv.TrainConfig(jaxconv.PlantedPatternTask("seed", image_shape=8), batch_size=2)
      >>> print(jaxconv.restore_latest(tempfile.mkdtemp(), config))
      None
    """
    candidates = list_checkpoints(directory)
    if not candidates:
        return None
    template = init_state(config)
    for step, path in candidates:
        try:
            meta, state, losses = _load(path, template)
        except Exception as err:  # a bad file may fail in many ways (zip, npy, json, shapes): all mean "unusable"
            reason = str(err).splitlines()[0] if str(err) else type(err).__name__
            warnings.warn(
                f"checkpoint {os.path.basename(path)} is unusable ({reason}); trying an older one",
                CheckpointWarning,
                stacklevel=2,
            )
            continue
        # A checkpoint from before a field existed (e.g. ``l1``, ``l2``) was made with that field's default.
        saved = {**_added_field_defaults(), **meta["config"]}
        saved = {k: v for k, v in saved.items() if k not in RUN_KNOBS}
        differences = config_differences(saved, config.trajectory())
        if differences:
            raise CheckpointError(
                f"cannot resume from {path}: it was made with a different configuration ({'; '.join(differences)})"
            )
        if int(meta["step"]) != step or losses.shape != (step,):
            raise CheckpointError(f"cannot resume from {path}: its step does not match its name")
        return Restored(state, losses, path)
    raise CheckpointError(f"cannot resume: none of the {len(candidates)} checkpoints in {directory} is usable")


__all__ = [
    "CheckpointWarning",
    "CheckpointError",
    "Restored",
    "versions",
    "checkpoint_path",
    "list_checkpoints",
    "save_checkpoint",
    "restore_latest",
    "config_differences",
]

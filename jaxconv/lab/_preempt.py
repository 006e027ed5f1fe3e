"""Preemption and lost peers: stop at a step every process agrees on, resume on every process from one read.

Three pieces that :func:`jaxconv.fit` uses when it has a checkpoint folder:

- :class:`StopSignals` turns SIGTERM and SIGINT into a request to stop after the dispatch in flight. With one
  process it is a Python signal handler. With several (``jax.distributed``) it is JAX's preemption sync
  service — the runtime catches SIGTERM on any process, tells the others, and
  ``multihost_utils.reached_preemption_sync_point`` returns ``True`` on every process at the same call; SIGINT is
  forwarded to it as a SIGTERM. Where that service is switched off (``jax_enable_preemption_service``), Python
  handlers and one ``process_allgather`` of a flag per dispatch do the same job.
- :func:`restore_shared`: process 0 reads and verifies the newest good checkpoint; its contents reach every
  process by ``multihost_utils.broadcast_one_to_all``, as raw bits (exact, ``-0.0`` and NaN payloads included),
  so that no other process needs to see the checkpoint folder.
- :func:`peer_errors` turns a collective that fails because another process died into a one-line
  :class:`PeerLostError`.

The command line's exit statuses for these: :data:`EXIT_PREEMPTED` and :data:`EXIT_PEER_LOST`.
"""

from __future__ import annotations

import contextlib
import inspect
import itertools
import os
import signal
import threading
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils

from jaxconv.lab._checkpoint import CheckpointError, Restored, checkpoint_path, restore_latest
from jaxconv.lab._train import TrainConfig, TrainState, init_state

EXIT_PREEMPTED = 75
"""``jaxconv train``'s exit status after SIGTERM/SIGINT once the checkpoint is written (``EX_TEMPFAIL``: rerun
with ``--resume``)."""
EXIT_PEER_LOST = 69
"""``jaxconv train``'s exit status when another process of the run was lost (``EX_UNAVAILABLE``)."""

_RUNTIME_ERROR: type[Exception] = getattr(jax.errors, "JaxRuntimeError", RuntimeError)
# Words by which the runtime says that a collective or the coordination service lost a peer (gloo, NCCL, the
# coordination service's heartbeat); any other runtime error is passed on untouched.
_LOST_WORDS = ("gloo", "nccl", "connection", "peer", "unavailable", "heartbeat", "coordination", "socket")
# One count of preemption checks per process: every process makes the same checks in the same order, so equal
# counts are equal steps, also across several `fit` calls in one process.
_checks = itertools.count()


class Preempted(RuntimeError):
    """Training stopped on SIGTERM/SIGINT after the dispatch in flight; the checkpoint at ``step`` is written.

    Attributes:
      step: the step every process stopped at.
      path: the checkpoint written (``None`` on processes other than 0, which write none).
      reason: what stopped it, e.g. ``"SIGTERM"``.
    """

    def __init__(self, step: int, path: str | None, reason: str) -> None:
        where = f"checkpoint {path}" if path else "process 0 wrote the checkpoint"
        super().__init__(f"stopped by {reason} at step {step}; {where}")
        self.step, self.path, self.reason = step, path, reason


class PeerLostError(RuntimeError):
    """Another process of a ``jax.distributed`` run died or stopped answering; no checkpoint was written."""


class StopSignals:
    """A context manager that turns SIGTERM/SIGINT into a stop request that every process agrees on.

    Inside it, :meth:`requested` must be called once per dispatch by every process, in the same order; it
    returns ``True`` on every process at the same call once any process got SIGTERM or SIGINT. Handlers are
    installed on entry (from the main thread only; elsewhere signals keep their handlers) and restored on exit.

    Examples:
      >>> import os, signal
      >>> from jaxconv.lab._preempt import StopSignals
      >>> with StopSignals() as stop:
      ...     before = stop.requested()
      ...     os.kill(os.getpid(), signal.SIGTERM)
      ...     after = stop.requested()
      >>> before, after, stop.reason
      (False, True, 'SIGTERM')
    """

    def __init__(self) -> None:
        self.reason = ""
        self._received: str | None = None
        self._saved: dict[int, Any] = {}
        self._engine = False

    def __enter__(self) -> StopSignals:
        several = jax.process_count() > 1
        # JAX's preemption service installs its own SIGTERM handler when jax.distributed starts.
        self._engine = several and bool(getattr(jax.config, "jax_enable_preemption_service", False))
        if threading.current_thread() is threading.main_thread():
            ours = [signal.SIGINT] if self._engine else [signal.SIGTERM, signal.SIGINT]
            for sig in ours:
                self._saved[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._saved.items():
            signal.signal(sig, previous)
        self._saved.clear()

    def _handle(self, signum: int, frame: Any) -> None:
        self._received = signal.Signals(signum).name
        if self._engine:  # JAX's service listens for SIGTERM only: hand it the SIGINT as one
            os.kill(os.getpid(), signal.SIGTERM)

    def requested(self) -> bool:
        """Whether to stop now (the same answer on every process); call once per dispatch."""
        check = next(_checks)
        if self._engine:
            stop = multihost_utils.reached_preemption_sync_point(check)
            if stop:
                self.reason = self._received or "SIGTERM or SIGINT (a preemption notice)"
            return bool(stop)
        local = np.int32(self._received is not None)
        stop = bool(np.max(multihost_utils.process_allgather(local))) if jax.process_count() > 1 else bool(local)
        if stop:
            self.reason = self._received or "a signal to another process"
        return stop


def _lost_message(err: Exception) -> str:
    me, count = jax.process_index(), jax.process_count()
    others = [p for p in range(count) if p != me]
    who = f"process {others[0]}" if len(others) == 1 else f"one of processes {', '.join(map(str, others))}"
    first = next((line.strip() for line in str(err).splitlines() if line.strip()), type(err).__name__)
    return f"process {me} of {count} lost {who}: a step across the processes failed ({first})"


@contextlib.contextmanager
def peer_errors() -> Iterator[None]:
    """Re-raises a runtime error that says a peer process was lost as a one-line :class:`PeerLostError`.

    Only under ``jax.distributed`` with several processes; other errors pass through unchanged.
    """
    try:
        yield
    except _RUNTIME_ERROR as err:
        if jax.process_count() == 1 or not any(w in str(err).lower() for w in _LOST_WORDS):
            raise
        raise PeerLostError(_lost_message(err)) from err


def _as_bits(x: Any) -> np.ndarray:
    a = np.asarray(x)
    if a.dtype.itemsize > 4:
        raise TypeError(f"cannot broadcast a {a.dtype} leaf (at most 32 bits)")
    return a.view(np.dtype(f"u{a.itemsize}")).astype(np.uint32)


def _from_bits(bits: np.ndarray, like: Any) -> np.ndarray:
    dtype = np.asarray(like).dtype
    return np.asarray(bits).astype(np.dtype(f"u{dtype.itemsize}")).view(dtype).reshape(np.shape(like))


def _leaves(state: TrainState) -> tuple[list[Any], Any]:
    return jax.tree_util.tree_flatten(state._replace(key=jax.random.key_data(state.key)))


def restore_shared(directory: str, config: TrainConfig) -> Restored | None:
    """:func:`restore_latest` on process 0, its result broadcast to every process (no shared folder needed).

    With one process this is :func:`restore_latest`. With several, every process must call it; only process 0
    reads ``directory``, and the others get a bit-for-bit copy of the state and losses it restored.

    Args:
      directory: the checkpoint folder (read on process 0 only).
      config: the run's :class:`TrainConfig`, the same on every process.

    Returns:
      A :class:`Restored` ``(state, losses [step], path)``, or ``None`` if process 0 found no checkpoint.

    Raises:
      CheckpointError: process 0 could not resume (on process 0 the message says why).

    Examples:
      >>> import tempfile
      >>> import jaxconv
      >>> from jaxconv.lab._preempt import restore_shared
      >>> print(restore_shared(tempfile.mkdtemp(), jaxconv.TrainConfig()))
      None
    """
    if jax.process_count() == 1:
        return restore_latest(directory, config)
    source = jax.process_index() == 0
    restored, failure = None, None
    if source:
        try:
            restored = restore_latest(directory, config)
        except Exception as err:  # every process must still take part in the broadcast below
            failure = err
    found = 2 if failure is not None else int(restored is not None)
    step = int(restored.state.step) if restored is not None else 0
    header = multihost_utils.broadcast_one_to_all(np.array([found, step], np.int32), is_source=source)
    found, step = int(header[0]), int(header[1])
    if found == 2:
        if failure is not None:
            raise failure
        raise CheckpointError("cannot resume: process 0 could not use the checkpoints (its error says why)")
    if found == 0:
        return None
    template = restored.state if restored is not None else init_state(config)
    leaves, treedef = _leaves(template)
    losses = restored.losses if restored is not None else np.zeros((step,), np.float32)
    payload = [_as_bits(x) for x in leaves] + [_as_bits(losses)]
    payload = multihost_utils.broadcast_one_to_all(payload, is_source=source)
    values = [_from_bits(bits, like) for bits, like in zip(payload[:-1], leaves, strict=True)]
    state = jax.tree_util.tree_unflatten(treedef, [jax.numpy.asarray(v) for v in values])
    state = state._replace(key=jax.random.wrap_key_data(state.key))
    path = restored.path if restored is not None else checkpoint_path(directory, step)
    return Restored(state, _from_bits(payload[-1], losses), path)


def distributed_options(peer_timeout: int) -> dict[str, Any]:
    """``jax.distributed.initialize`` keywords that bound how long a lost peer goes unnoticed, where supported.

    ``heartbeat_timeout_seconds``: a process that sends no heartbeat for ``peer_timeout`` seconds counts as dead
    and the others stop. Older JAX versions have no such keyword: their default applies.

    Examples:
      >>> from jaxconv.lab._preempt import distributed_options
      >>> distributed_options(10) in ({"heartbeat_timeout_seconds": 10}, {})
      True
    """
    accepted = inspect.signature(jax.distributed.initialize).parameters
    return {"heartbeat_timeout_seconds": int(peer_timeout)} if "heartbeat_timeout_seconds" in accepted else {}


__all__ = [
    "EXIT_PEER_LOST",
    "EXIT_PREEMPTED",
    "PeerLostError",
    "Preempted",
    "StopSignals",
    "distributed_options",
    "peer_errors",
    "restore_shared",
]

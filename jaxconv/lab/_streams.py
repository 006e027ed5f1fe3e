"""The lab's PRNG streams: every random draw of a run comes from exactly one of them, and no two share keys.

A run with seed ``s`` draws its initial kernel from ``stream(s, "init")``, the batch of step ``t`` from
``fold_in(stream(s, "train"), t)`` (with a fixed training set, image ``i`` of the set from
``fold_in(stream(s, "train_set"), i)``), its validation draw (for stopping and calibration) from
``stream(s, "validation")``; held-out images of ``evaluate(..., seed=e)`` come from ``stream(e, "held_out")``,
chunk ``c`` from ``fold_in(stream(e, "held_out"), c)``. Experiments that need draws of their own take
``stream(s, "experiment")``. Numbers, not names, are folded in, so keys stay what they were when these
streams were first numbered (checkpoints and recorded results replay).
"""

from __future__ import annotations

from typing import Literal

import jax

Stream = Literal["init", "train", "held_out", "validation", "train_set", "experiment"]

STREAMS: dict[str, int] = {"init": 0, "train": 1, "held_out": 2, "validation": 3, "train_set": 4, "experiment": 7}
"""Each stream's number: ``stream(seed, name) = fold_in(key(seed), STREAMS[name])``."""

NEAR_MISS_SUBSTREAM = 1
"""Within step ``t``'s key ``k``: the batch comes from ``k`` itself, its near misses from ``fold_in(k, 1)``."""


def stream(seed: int, name: Stream) -> jax.Array:
    """The key of stream ``name`` for ``seed``.

    Args:
      seed: an int ``>= 0``.
      name: one of ``STREAMS``.

    Returns:
      A typed PRNG key.

    Examples:
      >>> import jax
      >>> from jaxconv.lab._streams import stream
      >>> bool((jax.random.key_data(stream(0, "train")) != jax.random.key_data(stream(0, "held_out"))).any())
      True
    """
    return jax.random.fold_in(jax.random.key(seed), STREAMS[name])


__all__ = ["Stream", "STREAMS", "NEAR_MISS_SUBSTREAM", "stream"]

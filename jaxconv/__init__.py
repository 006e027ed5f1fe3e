"""jaxconv: 1-, 2- and 3-D convolutions from ``lax.dynamic_slice`` and ``vmap``, and a lab for learning a kernel.

Two wings: :mod:`jaxconv.conv` (the operation) and :mod:`jaxconv.lab` (task, detector, training, judging), plus
:mod:`jaxconv.theory`. The names below are the ones most code needs; the lab's load on first use, so
``from jaxconv import conv2d`` pulls in neither optax nor tqdm.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from jaxconv.conv import conv1d as conv1d
from jaxconv.conv import conv2d as conv2d
from jaxconv.conv import conv3d as conv3d
from jaxconv.conv import conv_general_dilated as conv_general_dilated
from jaxconv.conv import conv_general_dilated_local as conv_general_dilated_local
from jaxconv.conv import conv_transpose1d as conv_transpose1d
from jaxconv.conv import conv_transpose2d as conv_transpose2d
from jaxconv.conv import conv_transpose3d as conv_transpose3d
from jaxconv.conv import local_conv1d as local_conv1d
from jaxconv.conv import local_conv2d as local_conv2d
from jaxconv.conv import local_conv3d as local_conv3d
from jaxconv.conv import match_template as match_template
from jaxconv.conv import spatial_conv2d as spatial_conv2d

if TYPE_CHECKING:
    from jaxconv import lab as lab
    from jaxconv import theory as theory
    from jaxconv.lab import CheckpointError as CheckpointError
    from jaxconv.lab import FitResult as FitResult
    from jaxconv.lab import NonFiniteError as NonFiniteError
    from jaxconv.lab import PeerLostError as PeerLostError
    from jaxconv.lab import PlantedPatternTask as PlantedPatternTask
    from jaxconv.lab import Preempted as Preempted
    from jaxconv.lab import TrainConfig as TrainConfig
    from jaxconv.lab import detection_loss as detection_loss
    from jaxconv.lab import evaluate as evaluate
    from jaxconv.lab import fit as fit
    from jaxconv.lab import init_params as init_params
    from jaxconv.lab import logit_map as logit_map
    from jaxconv.lab import matched_filter as matched_filter
    from jaxconv.lab import restore_latest as restore_latest
    from jaxconv.lab import save_checkpoint as save_checkpoint

__version__ = "0.1.0"

_LAB_NAMES = (
    "PlantedPatternTask",
    "TrainConfig",
    "fit",
    "FitResult",
    "evaluate",
    "matched_filter",
    "init_params",
    "logit_map",
    "detection_loss",
    "save_checkpoint",
    "restore_latest",
    "CheckpointError",
    "NonFiniteError",
    "Preempted",
    "PeerLostError",
)
_NAMESPACES = ("conv", "lab", "theory")


def __getattr__(name: str) -> Any:
    if name in _LAB_NAMES:
        return getattr(importlib.import_module("jaxconv.lab"), name)
    if name in _NAMESPACES:
        return importlib.import_module(f"jaxconv.{name}")
    raise AttributeError(f"module 'jaxconv' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted({*globals(), *_LAB_NAMES, *_NAMESPACES})


__all__ = [
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "conv_general_dilated",
    "local_conv1d",
    "local_conv2d",
    "local_conv3d",
    "conv_general_dilated_local",
    "spatial_conv2d",
    "match_template",
    *_LAB_NAMES,
]

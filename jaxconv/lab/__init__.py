"""The lab: a task with planted patterns, a detector learned by backpropagation through ``conv2d``, and its judging.

The names most runs need are also on ``jaxconv`` itself; closed-form theory is in :mod:`jaxconv.theory`.
"""

from jaxconv.lab._anatomy import kernel_gradient_sources as kernel_gradient_sources
from jaxconv.lab._anatomy import kernel_spectrum as kernel_spectrum
from jaxconv.lab._anatomy import patches as patches
from jaxconv.lab._anatomy import shift_error as shift_error
from jaxconv.lab._checkpoint import CheckpointError as CheckpointError
from jaxconv.lab._checkpoint import CheckpointWarning as CheckpointWarning
from jaxconv.lab._checkpoint import restore_latest as restore_latest
from jaxconv.lab._checkpoint import save_checkpoint as save_checkpoint
from jaxconv.lab._data import PATTERNS as PATTERNS
from jaxconv.lab._data import Background as Background
from jaxconv.lab._data import PlantedPatternTask as PlantedPatternTask
from jaxconv.lab._data import Sample as Sample
from jaxconv.lab._detector import Loss as Loss
from jaxconv.lab._detector import detection_loss as detection_loss
from jaxconv.lab._detector import init_params as init_params
from jaxconv.lab._detector import logit_map as logit_map
from jaxconv.lab._fit import FitResult as FitResult
from jaxconv.lab._fit import NonFiniteError as NonFiniteError
from jaxconv.lab._fit import fit as fit
from jaxconv.lab._metrics import average_precision as average_precision
from jaxconv.lab._metrics import evaluate as evaluate
from jaxconv.lab._metrics import held_out_scores as held_out_scores
from jaxconv.lab._metrics import kernel_cosine as kernel_cosine
from jaxconv.lab._metrics import kernel_placement as kernel_placement
from jaxconv.lab._metrics import matched_filter as matched_filter
from jaxconv.lab._metrics import position_scores as position_scores
from jaxconv.lab._metrics import worst_case as worst_case
from jaxconv.lab._oracle import least_squares_kernel as least_squares_kernel
from jaxconv.lab._preempt import PeerLostError as PeerLostError
from jaxconv.lab._preempt import Preempted as Preempted
from jaxconv.lab._streams import stream as stream
from jaxconv.lab._tiled import TiledResponse as TiledResponse
from jaxconv.lab._tiled import tiled_response as tiled_response
from jaxconv.lab._train import Optimizer as Optimizer
from jaxconv.lab._train import TrainConfig as TrainConfig
from jaxconv.lab._train import TrainState as TrainState
from jaxconv.lab._train import init_state as init_state
from jaxconv.lab._train import train_steps as train_steps
from jaxconv.lab._train import training_set as training_set

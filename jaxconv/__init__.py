"""jaxconv: a 2-D convolution built from ``lax.dynamic_slice`` and ``vmap``, and a lab for learning its kernel."""

from jaxconv._anatomy import kernel_gradient_sources as kernel_gradient_sources
from jaxconv._anatomy import patches as patches
from jaxconv._anatomy import shift_error as shift_error
from jaxconv._checkpoint import CheckpointError as CheckpointError
from jaxconv._checkpoint import CheckpointWarning as CheckpointWarning
from jaxconv._checkpoint import restore_latest as restore_latest
from jaxconv._checkpoint import save_checkpoint as save_checkpoint
from jaxconv._conv import conv2d as conv2d
from jaxconv._data import BACKGROUNDS as BACKGROUNDS
from jaxconv._data import PATTERNS as PATTERNS
from jaxconv._data import PlantedPatternTask as PlantedPatternTask
from jaxconv._data import Sample as Sample
from jaxconv._detector import LOSSES as LOSSES
from jaxconv._detector import detection_loss as detection_loss
from jaxconv._detector import init_params as init_params
from jaxconv._detector import logit_map as logit_map
from jaxconv._fit import FitResult as FitResult
from jaxconv._fit import NonFiniteError as NonFiniteError
from jaxconv._fit import fit as fit
from jaxconv._metrics import average_precision as average_precision
from jaxconv._metrics import evaluate as evaluate
from jaxconv._metrics import kernel_cosine as kernel_cosine
from jaxconv._metrics import matched_filter as matched_filter
from jaxconv._spatial import spatial_conv2d as spatial_conv2d
from jaxconv._spec import LAYOUTS as LAYOUTS
from jaxconv._spec import PADDING_MODES as PADDING_MODES
from jaxconv._spec import STRATEGIES as STRATEGIES
from jaxconv._tiled import TiledResponse as TiledResponse
from jaxconv._tiled import tiled_response as tiled_response
from jaxconv._train import OPTIMIZERS as OPTIMIZERS
from jaxconv._train import TrainConfig as TrainConfig
from jaxconv._train import TrainState as TrainState
from jaxconv._train import init_state as init_state
from jaxconv._train import train_steps as train_steps

__version__ = "0.1.0"

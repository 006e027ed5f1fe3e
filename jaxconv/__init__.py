"""jaxconv: a 2-D convolution built from ``lax.dynamic_slice`` and ``vmap``, and a lab for learning its kernel."""

from jaxconv._anatomy import kernel_gradient_sources as kernel_gradient_sources
from jaxconv._anatomy import shift_error as shift_error
from jaxconv._conv import conv2d as conv2d
from jaxconv._spatial import spatial_conv2d as spatial_conv2d
from jaxconv._spec import LAYOUTS as LAYOUTS
from jaxconv._spec import PADDING_MODES as PADDING_MODES
from jaxconv._spec import STRATEGIES as STRATEGIES
from jaxconv._tiled import TiledResponse as TiledResponse
from jaxconv._tiled import tiled_response as tiled_response

__version__ = "0.1.0"

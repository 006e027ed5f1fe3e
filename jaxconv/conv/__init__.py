"""The operation: N-d convolutions built from ``lax.dynamic_slice`` and ``vmap``, differentiable, any strategy.

Imports nothing from the lab (no optax, no tqdm). Every name here is also on ``jaxconv`` itself.
"""

from jaxconv.conv._conv import conv1d as conv1d
from jaxconv.conv._conv import conv2d as conv2d
from jaxconv.conv._conv import conv3d as conv3d
from jaxconv.conv._general import conv_general_dilated as conv_general_dilated
from jaxconv.conv._local import conv_general_dilated_local as conv_general_dilated_local
from jaxconv.conv._local import local_conv1d as local_conv1d
from jaxconv.conv._local import local_conv2d as local_conv2d
from jaxconv.conv._local import local_conv3d as local_conv3d
from jaxconv.conv._spatial import spatial_conv2d as spatial_conv2d
from jaxconv.conv._spec import Layout as Layout
from jaxconv.conv._spec import PaddingMode as PaddingMode
from jaxconv.conv._spec import Strategy as Strategy
from jaxconv.conv._template import match_template as match_template
from jaxconv.conv._transpose import conv_transpose1d as conv_transpose1d
from jaxconv.conv._transpose import conv_transpose2d as conv_transpose2d
from jaxconv.conv._transpose import conv_transpose3d as conv_transpose3d

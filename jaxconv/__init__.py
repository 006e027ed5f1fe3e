"""jaxconv: a 2-D convolution built from ``lax.dynamic_slice`` and ``vmap``, and a lab for learning its kernel."""

from jaxconv._conv import conv2d as conv2d
from jaxconv._data import BACKGROUNDS as BACKGROUNDS
from jaxconv._data import PATTERNS as PATTERNS
from jaxconv._data import PlantedPatternTask as PlantedPatternTask
from jaxconv._data import Sample as Sample
from jaxconv._spec import LAYOUTS as LAYOUTS
from jaxconv._spec import PADDING_MODES as PADDING_MODES
from jaxconv._spec import STRATEGIES as STRATEGIES

__version__ = "0.1.0"

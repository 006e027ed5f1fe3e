"""Evidence: run directories, JSON results and figures for experiments, and the environment a number came from.

The benchmark itself is ``jaxconv bench`` (:mod:`jaxconv.evidence._bench`).
"""

from jaxconv._env import versions as versions
from jaxconv.evidence._bench import environment as environment
from jaxconv.evidence._photos import bundled_photos as bundled_photos
from jaxconv.evidence._report import default_out as default_out
from jaxconv.evidence._report import figure as figure
from jaxconv.evidence._report import prepare_out as prepare_out
from jaxconv.evidence._report import save_figure as save_figure
from jaxconv.evidence._report import show_kernel as show_kernel
from jaxconv.evidence._report import write_json as write_json

"""The error of the cluster layer: below both connecting (`connect`) and checking (`check`),
which raise it."""
from __future__ import annotations

from ..errors import ParallaxError


class ClusterError(ParallaxError):
    """The Dask cluster cannot be reached or used."""

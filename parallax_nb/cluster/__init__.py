"""The Dask cluster: connection, device inventory, selection."""
from .connect import ParallaxCluster, connect
from .errors import ClusterError
from .devices import Device
from .selection import Selection, SelectionError

__all__ = ["connect", "ParallaxCluster", "ClusterError", "Device", "Selection", "SelectionError"]

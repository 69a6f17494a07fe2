"""The Dask cluster: connection, device inventory, selection."""
from .connect import ClusterError, ParallaxCluster, connect
from .devices import Device
from .selection import Selection, SelectionError

__all__ = ["connect", "ParallaxCluster", "ClusterError", "Device", "Selection", "SelectionError"]

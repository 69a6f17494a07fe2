"""Is this Dask cluster ready for a run? ``px.check(cluster)``: one row per worker and need.

For every worker: the Python, TensorFlow, Keras, Horovod (its TensorFlow ops, Gloo) and
parallax_nb a rank process would get there, against the client's; the GPUs NVML sees and the
``CUDA_VISIBLE_DEVICES`` each rank would get (the launch's own rank assignment,
`cluster.ranks.assign_ranks`); what the hostname resolves to (Horovod's Gloo binds
there), the interface Horovod would be told to use, and whether workers on the other
machines can open a TCP connection to a port on it. Each failed row says how to fix it.

The environment is read by a separate Python process per worker (`envprobe.py`, started with
the worker's interpreter and environment, like a rank), so the worker itself imports nothing
heavy and a worker without TensorFlow or parallax_nb still answers. ``quick=True`` (what
`px.train` runs before every launch, cached per cluster and set of workers) reads versions
from the installed files; the full check also imports TensorFlow and Horovod there.

Inside: `run` runs it (what `ParallaxCluster.check` calls: it imports nothing that connects),
`workers` asks the workers, `rows` makes each worker's rows, `assignment` the rank rows,
`network` the TCP reachability, `result` holds the table; `envprobe` and `remote` run on the
workers. `check` here also takes anything `px.connect` accepts and connects for the check.
"""
from __future__ import annotations

from typing import Optional, Sequence

import cloudpickle

from ..selection import Selector
from . import remote
from .result import CHECKS, COLUMNS, CheckResult, CheckRow, ClusterNotReady
from .rows import TENSORFLOW_PIN
from .run import require_ready, run_check

cloudpickle.register_pickle_by_value(remote)   # runs on workers that lack parallax_nb

__all__ = ["check", "require_ready", "CheckResult", "CheckRow", "ClusterNotReady", "CHECKS",
           "COLUMNS", "TENSORFLOW_PIN"]


def check(cluster, select: Selector = None, *, quick: bool = False,
          workers: Optional[Sequence[str]] = None, timeout: Optional[float] = None
          ) -> CheckResult:
    """Check that every worker (or ``workers``) of ``cluster`` can run ranks of a job.

    cluster: a ParallaxCluster, or anything `px.connect` accepts (connected for the check only).
    select: the devices the ranks would use (as `px.train`'s ``select``; default all), for
        the rank assignment rows.
    quick: read versions from the installed files only (what `px.train` runs); the full
        check also imports TensorFlow and Horovod in a process per worker (seconds).
    timeout: seconds a worker's probe may take (default 30 quick, 180 full).
    """
    from ..connect import ParallaxCluster, connect

    if not isinstance(cluster, ParallaxCluster):
        cluster = connect(cluster)
        try:
            return run_check(cluster, select, quick=quick, workers=workers, timeout=timeout)
        finally:
            cluster.close()
    return run_check(cluster, select, quick=quick, workers=workers, timeout=timeout)

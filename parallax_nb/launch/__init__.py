"""Launching a program on the Dask cluster: servers, ranks, rendezvous, the Run handle."""
from __future__ import annotations

import time
import uuid
from typing import Optional

from ..config import AUTO_MODE, Config
from ..program import Program
from ..tuning import search_mode_on_cluster, search_on_cluster, searched_variables
from .attempt import launch as launch_attempt
from .checks import check_optimizer, clamped_partitions, release_devices, reserve_devices
from .fit import refuse_unfit
from .run import Run


def train(program: Program, cluster=None, select=None, config: Optional[Config] = None,
          report=None) -> Run:
    """Start ``program`` data parallel on the selected devices; returns with a Run.

    cluster: a ParallaxCluster (default: ``px.connect()``, an embedded LocalCluster).
    select: None (every device), a count, device keys, a dict of ``cluster.select``
        arguments, or a Selection.
    report: an analysis report to reuse (otherwise the program is analysed here).

    Returns at once, unless ``config.partitions`` is "auto" and a sparse variable is larger
    than ``config.partition_search_min_bytes``: then the partition search's trial runs go
    first, blocking (a Run is one launch: its ranks, servers, placement and metrics; the
    trials are launches of their own, and the real run is placed with their outcome), and
    the Run carries the result as ``run.partition_search``.
    """
    from ..analysis import analyze
    from ..cluster import connect
    from ..cluster.check import require_ready

    called_at = time.time()
    config = config or Config()
    payload = program.check_picklable()
    check_optimizer(program)   # before the analysis, which would fail on it less clearly
    cluster = cluster or connect()
    selection = cluster.resolve(select)
    require_ready(cluster, selection)   # the quick px.check: refuse a cluster that cannot run
    run_id = uuid.uuid4().hex[:10]
    reserve_devices(cluster.client, run_id, program.name or "program", selection.devices,
                    reserve=False)   # refused at once, before the analysis and any search
    report = (report or analyze(program, steps=2, config=config)).for_selection(
        selection, mode=config.mode, servers=config.servers, partitions=config.partitions)
    mode_choice = None
    if config.mode == AUTO_MODE:   # trials where the cost model cannot tell
        mode_choice = search_mode_on_cluster(program, cluster, selection, config, report)
        config = config.replace(mode=mode_choice.mode)
        report = report.replan(mode=mode_choice.mode)
    search = None
    if searched_variables(report):
        search = search_on_cluster(program, cluster, selection, config, report)
        config = config.replace(partitions=search.partitions)
        report = report.replan(partitions=config.partitions)
    refuse_unfit(report, selection, cluster.devices(refresh=False))   # before anything starts
    reserve_devices(cluster.client, run_id, program.name or "program", selection.devices)

    def launcher(number, devices, plan):
        return launch_attempt(cluster, run, number, devices, plan, payload, config)

    run = Run(cluster.client, run_id, config, name=program.name or "program",
              launcher=launcher)
    run._cluster, run.device_count = cluster, len(selection)
    run.add_cleanup(lambda: release_devices(cluster.client, run_id))
    run.train_called_at = called_at
    run.mode_choice = mode_choice
    if mode_choice is not None:
        run.notes.append(mode_choice.summary())
    if search is not None:
        run.partition_search = search
        run.notes.append(search.summary())
    run.notes.extend(clamped_partitions(config, report))
    try:
        launcher(0, selection, report)
    except BaseException:
        run.abort()
        raise
    run._start_watching()
    return run


__all__ = ["train", "Run"]

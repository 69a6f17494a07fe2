"""The partition search on a real cluster: each trial is a short `px.train` run.

A trial trains the program on the run's own selection with the searched variables fixed at P
partitions, for ``search_warmup_steps + search_window_steps`` steps, and its cost is the
median step time of the window over every rank (the first steps trace functions and open
server connections). Trials reuse the Dask cluster and the Run machinery, so each one
starts and stops its ranks and servers like any run: when it returns, its processes are
gone. A trial that fails (a rank or server error, out of memory) is handed to the search as
`TrialFailed`; anything else (Ctrl-C) stops the trial and ends the search.
"""
from __future__ import annotations

import functools
from typing import Optional, Tuple

from ..config import AUTO
from ..errors import ParallaxError
from .partition_search import (PartitionSearch, TrialFailed, minimum_partitions,
                               search_partitions)

# Bytes a server keeps per byte of a partition: the value and up to two optimizer slots
# (Adam's m and v; Adagrad keeps one, SGD none). The optimizer is not built on the client,
# so the search assumes the largest of the bundled kinds.
SERVER_COPIES = 3


def searched_variables(report) -> Tuple[str, ...]:
    """Sparse variables whose partitions ``partitions="auto"`` searches: those on parameter
    servers larger than ``Config.partition_search_min_bytes``."""
    config = report.config
    if config.partitions != AUTO or report.mode == "AR":
        return ()
    return tuple(v.name for v in report.variables
                 if v.kind == "sparse" and v.bytes > config.partition_search_min_bytes)


def search_on_cluster(program, cluster, selection, config, report,
                      maximum: Optional[int] = None) -> PartitionSearch:
    """Search the partitions of `searched_variables(report)` with trial runs on ``selection``.

    report: the analysis planned for this selection (as `px.train` plans it).
    maximum: the largest P to try (default: the smallest searched table's rows).
    """
    from ..launch.servers import server_workers

    names = searched_variables(report)
    if not names:
        raise ValueError("nothing to search: no sparse variable above "
                         "Config.partition_search_min_bytes under partitions='auto'")
    tables = [v for v in report.variables if v.name in names]
    workers = [worker for _, worker in server_workers(selection, report.servers)]
    memory = min(cluster.client.run(_available_memory, workers=workers).values())
    minimum = minimum_partitions(sum(v.bytes for v in tables), report.servers, memory,
                                 SERVER_COPIES)
    rows = min(v.rows for v in tables)
    start = min(max(len(selection.hosts), minimum), rows)
    measure = functools.partial(time_trial, program, cluster, selection, config, report, names)
    result = search_partitions(measure, start, minimum, min(maximum or rows, rows))
    return PartitionSearch(result.chosen, result.samples, result.coefficients, result.seconds,
                           result.start, names)


def time_trial(program, cluster, selection, config, report, names, partitions: int) -> float:
    """Seconds per step of a short run with ``names`` in ``partitions`` partitions each."""
    return timed_run(program, cluster, selection,
                     config.replace(partitions={name: partitions for name in names}), report)


def search_mode_on_cluster(program, cluster, selection, config, report, on_trial=None):
    """``mode="auto"``: choose among the modes that fit ``selection``'s memory, by bytes,
    or by short trials where the bytes are close (`mode_search.choose_mode`)."""
    from ..analysis.placement import effective_mode
    from ..launch.fit import unfit, worker_limits
    from .mode_search import choose_mode

    limits = worker_limits(cluster.devices(refresh=False))
    totals = report.estimate().totals
    modes = {}
    for mode in ("HYBRID", "AR", "PS"):          # HYBRID first: ties keep the paper's default
        modes.setdefault(effective_mode(mode, report.variables)[0], mode)
    predicted = {mode: max(totals[mode]) for mode in modes.values()}
    fits = {mode: not unfit(report.replan(mode=mode), selection, limits) for mode in predicted}

    def measure(mode):
        fixed = config.partitions if config.partitions != AUTO else None
        return timed_run(program, cluster, selection,
                         config.replace(mode=mode, partitions=fixed),
                         report.replan(mode=mode, partitions=fixed))

    return choose_mode(predicted, fits, measure, on_trial)


def timed_run(program, cluster, selection, config, report) -> float:
    """Seconds per step of a short run of ``config`` (warm-up, then the timed window)."""
    from ..launch import train

    trial_config = config.replace(
        steps=config.search_warmup_steps + config.search_window_steps,
        log_every=1, checkpoint_dir=None, checkpoint_every_steps=None,
        checkpoint_every_seconds=None)
    run = None
    try:
        run = train(program, cluster=cluster, select=selection, config=trial_config,
                    report=report)
        run.wait()
    except ParallaxError as exc:
        raise TrialFailed(f"{type(exc).__name__}: {exc}") from exc
    except BaseException:
        if run is not None and not run.done:
            run.stop()
        raise
    return window_seconds_per_step(run.metrics, config.search_warmup_steps)


def window_seconds_per_step(metrics, warmup_steps: int) -> float:
    """Median step time over every rank's steps after the warm-up."""
    window = metrics[metrics["step"] > warmup_steps]["step_time"].dropna()
    if window.empty:
        raise TrialFailed(f"the trial reported no step after its {warmup_steps} warm-up "
                          f"step(s)")
    return float(window.median())


def _available_memory() -> int:
    import psutil

    return int(psutil.virtual_memory().available)

"""The searches on a real cluster: each trial is a short launch of the program.

A trial trains the program on the run's own selection with one setting fixed (a mode, or the
searched variables at P partitions): ``search_warmup_steps`` steps, then a window of at least
``search_window_steps`` steps and ``search_window_seconds`` seconds, after which it is stopped;
its cost is the median step time of the window over every rank (the first steps trace
functions and open server connections). A trial is launched like any run (`launch`), so it
starts and stops its ranks and servers: when it returns, its processes are gone. A trial
that fails (a rank or server error, out of memory) is handed to the search as `TrialFailed`;
a cancelled planning (`progress.Planning.cancel`) stops the trial and ends the search.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Optional, Tuple

from ..config import AUTO
from ..tuning.mode_search import ModeChoice, choose_mode
from ..tuning.partition_search import (PartitionSearch, TrialFailed, minimum_partitions,
                                       search_partitions, trial_bound)
from .decided import Plan
from .progress import Planning, SearchCancelled

# Bytes a server keeps per byte of a partition: the value and up to two optimizer slots
# (Adam's m and v; Adagrad keeps one, SGD none). The optimizer is not built on the client,
# so the search assumes the largest of the bundled kinds.
SERVER_COPIES = 3
POLL_SECONDS = 0.2   # how often a trial looks at its window and for a cancelled planning
MAX_WINDOW = 100_000   # steps a trial may run to fill Config.search_window_seconds
STOP_SECONDS = 60.0    # how long a trial's processes may take to go after its stop


@dataclasses.dataclass
class Trials:
    """Short runs of one program on one selection (the program's pickled payload is made
    once, by `px.train`)."""
    cluster: object
    selection: object
    payload: bytes
    name: str = "program"
    planning: Optional[Planning] = None

    def seconds_per_step(self, config, report) -> float:
        """Seconds per step of a short run of ``config`` (``report``, the analysis, is
        planned here for its mode and partitions)."""
        from ..launch import create_run, launch

        trial_config = config.replace(
            steps=config.search_warmup_steps + max(config.search_window_steps, MAX_WINDOW),
            log_every=1, checkpoint_dir=None, checkpoint_every_steps=None,
            checkpoint_every_seconds=None, max_restarts=0, epochs=None, steps_per_epoch=None,
            validate_every_steps=None, early_stopping=None, keep_best=None,
            tensorboard_dir=None)
        report = report.for_selection(self.selection, mode=config.mode,
                                      servers=config.servers, partitions=config.partitions)
        run = create_run(self.cluster, trial_config, f"{self.name} (trial)", self.payload)
        if self.planning is not None:
            self.planning.launching(run)    # cancel() stops it
        try:
            if self.planning is not None:
                self.planning.raise_if_cancelled()
            launch(run, Plan(self.selection, trial_config, report))
            while not run.done:
                if self.planning is not None and self.planning.cancelled.is_set():
                    run.stop()
                    self.planning.raise_if_cancelled()
                if window_is_long_enough(run.metrics, config):
                    stop_within(run, STOP_SECONDS)   # the trial has what it needs
                    break
                time.sleep(POLL_SECONDS)
            run.wait()
        except SearchCancelled:
            raise
        except Exception as exc:   # a rank or server error, out of memory, a stuck stop
            raise TrialFailed(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            if not run.done:
                stop_within(run, STOP_SECONDS)
            raise
        finally:
            if self.planning is not None:
                self.planning.trial_run = None
        return window_seconds_per_step(run.metrics, config.search_warmup_steps)

    def measured(self, search: str, at_most: int, measure, setting):
        """``measure`` reporting its calls to the planning's progress, if any."""
        if self.planning is None:
            return measure
        return self.planning.measured(search, at_most, measure, setting)


def searched_variables(report) -> Tuple[str, ...]:
    """Sparse variables whose partitions ``partitions="auto"`` searches: those on parameter
    servers larger than ``Config.partition_search_min_bytes``."""
    config = report.config
    if config.partitions != AUTO or report.mode == "AR":
        return ()
    return tuple(v.name for v in report.variables
                 if v.kind == "sparse" and v.bytes > config.partition_search_min_bytes)


def search_partitions_by_trials(trials: Trials, config, report,
                                maximum: Optional[int] = None) -> PartitionSearch:
    """Search the partitions of `searched_variables(report)` with trial runs.

    report: the analysis planned for the trials' selection (as `px.train` plans it).
    maximum: the largest P to try (default: the smallest searched table's rows).
    """
    from ..launch.servers import server_workers

    names = searched_variables(report)
    if not names:
        raise ValueError("nothing to search: no sparse variable above "
                         "Config.partition_search_min_bytes under partitions='auto'")
    tables = [v for v in report.variables if v.name in names]
    selection = trials.selection
    workers = [worker for _, worker in server_workers(selection, report.servers)]
    memory = min(trials.cluster.client.run(_available_memory, workers=workers).values())
    minimum = minimum_partitions(sum(v.bytes for v in tables), report.servers, memory,
                                 SERVER_COPIES)
    rows = min(v.rows for v in tables)
    start = min(max(len(selection.hosts), minimum), rows)
    maximum = min(maximum or rows, rows)

    def measure(partitions: int) -> float:
        return trials.seconds_per_step(
            config.replace(partitions={name: partitions for name in names}), report)

    result = search_partitions(
        trials.measured("partitions", trial_bound(start, minimum, maximum), measure,
                        lambda p: f"P={p}"),
        start, minimum, maximum)
    return PartitionSearch(result.chosen, result.samples, result.coefficients, result.seconds,
                           result.start, names)


def choose_mode_by_trials(trials: Trials, config, report) -> ModeChoice:
    """``mode="auto"``: choose among the modes that fit the selection's memory, by bytes,
    or by short trials where the bytes are close (`tuning.mode_search.choose_mode`)."""
    from ..analysis.placement import effective_mode
    from .fit import unfit, worker_limits

    limits = worker_limits(trials.cluster.devices(refresh=False))
    totals = report.estimate().totals
    modes = {}
    for mode in ("HYBRID", "AR", "PS"):          # HYBRID first: ties keep the paper's default
        modes.setdefault(effective_mode(mode, report.variables)[0], mode)
    predicted = {mode: max(totals[mode]) for mode in modes.values()}
    fits = {mode: not unfit(report.replan(mode=mode), trials.selection, limits)
            for mode in predicted}

    def measure(mode: str) -> float:
        fixed = config.partitions if config.partitions != AUTO else None
        return trials.seconds_per_step(config.replace(mode=mode, partitions=fixed), report)

    # each mode once, and those within the noise of the fastest once more
    return choose_mode(predicted, fits,
                       trials.measured("mode", 2 * len(predicted), measure, str))


def stop_within(run, seconds: float) -> None:
    """Stop a trial run, waiting up to ``seconds`` for its processes (a loaded machine can
    take longer than a run's default stop timeout); raises TimeoutError beyond."""
    try:
        run.stop()
    except TimeoutError:
        run.wait(timeout=seconds)


def window_is_long_enough(metrics, config) -> bool:
    """Whether rank 0 has stepped ``search_window_steps`` steps after the warm-up, over at
    least ``search_window_seconds``."""
    if metrics.empty:
        return False
    chief = metrics[(metrics["rank"] == 0) & (metrics["step"] > config.search_warmup_steps)]
    return (len(chief) >= config.search_window_steps
            and chief["step_time"].sum() >= config.search_window_seconds)


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

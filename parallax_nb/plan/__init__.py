"""The plan of a run: everything decided before anything starts.

program -> analysis -> **plan** -> launch. The analysis says what each variable is and what
it costs; the plan fixes the mode (``mode="auto"``: `tuning.mode_search`, by bytes or by
trials), the partitions (``partitions="auto"``: `tuning.partition_search`, by trials), and
checks that the result fits the workers' memory (`fit`). Trials are short launches
(`trials`), reported as they go (`progress`). `launch` only launches a finished `Plan`.
"""
from __future__ import annotations

from ..config import AUTO_MODE
from .decided import Plan
from .fit import refuse_unfit
from .progress import Planning, SearchCancelled, Trial
from .trials import Trials, choose_mode_by_trials, search_partitions_by_trials, \
    searched_variables


def needs_trials(config, report) -> bool:
    """Whether planning ``config`` launches trials (then `px.train` plans in the
    background, the run showing "planning")."""
    return config.mode == AUTO_MODE or bool(searched_variables(report))


def make_plan(trials: Trials, config, report) -> Plan:
    """Decide the mode and the partitions (by trials where asked), then check the memory.

    report: the analysis planned for ``trials.selection`` with ``config``.
    Raises ConfigError for a plan that cannot fit, `SearchCancelled` if the planning was
    cancelled, and what a search raises when every trial failed.
    """
    from ..launch.checks import clamped_partitions

    notes = []
    mode_choice = search = None
    if config.mode == AUTO_MODE:
        mode_choice = choose_mode_by_trials(trials, config, report)
        config = config.replace(mode=mode_choice.mode)
        report = report.replan(mode=mode_choice.mode)
        notes.append(mode_choice.summary())
    if searched_variables(report):
        search = search_partitions_by_trials(trials, config, report)
        config = config.replace(partitions=search.partitions)
        report = report.replan(partitions=config.partitions)
        notes.append(search.summary())
    if trials.planning is not None:
        trials.planning.raise_if_cancelled()
    refuse_unfit(report, trials.selection, trials.cluster.devices(refresh=False))
    notes.extend(clamped_partitions(config, report))
    return Plan(trials.selection, config, report, mode_choice, search, tuple(notes))


__all__ = ["Plan", "make_plan", "needs_trials", "Trials", "Planning", "Trial",
           "SearchCancelled", "searched_variables"]

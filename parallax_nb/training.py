"""``px.train``: check, plan, launch.

The program and the cluster are checked first (a mistake fails here, in a second), the
devices are reserved for the run, the program is analysed for them, and then:

* when nothing is searched, the plan is made here and launched: ``px.train`` returns with
  the run's ranks submitted;
* when the plan needs trials (``mode="auto"``, or ``partitions="auto"`` on a large table),
  ``px.train`` returns at once with a run that shows ``planning``: a background thread runs
  the searches' trials (each reported as it starts and ends: ``run.planning``, the run
  panel, and the terminal unless ``progress=False``) and then launches the plan. Stopping
  the run (``run.stop()``, the panel's Stop button, Ctrl-C in ``run.wait()``) stops the
  trial under way and launches nothing.
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Optional

from .config import MEASURE_LINK, Config
from .program import Program


def train(program: Program, cluster=None, select=None, config: Optional[Config] = None,
          report=None, progress: bool = True):
    """Start ``program`` data parallel on the selected devices; returns a Run.

    cluster: a ParallaxCluster (default: ``px.connect()``, an embedded LocalCluster).
    select: None (every device), a count, device keys, a dict of ``cluster.select``
        arguments, or a Selection.
    report: an analysis report to reuse (otherwise the program is analysed here).
    progress: print each search trial to stderr as it ends (where searches run).
    """
    from .analysis import analyze
    from .cluster import connect
    from .cluster.check import require_ready
    from .launch import create_run, launch
    from .launch.checks import check_optimizer, check_validation_options, release_devices, \
        reserve_devices, steps_for_epochs
    from .plan import Planning, Trials, make_plan, needs_trials

    called_at = time.time()
    config = config or Config()
    payload = program.check_picklable()
    check_optimizer(program)   # before the analysis, which would fail on it less clearly
    check_validation_options(program, config)
    cluster = cluster or connect()
    selection = cluster.resolve(select)
    require_ready(cluster, selection)   # the quick px.check: refuse a cluster that cannot run
    config = steps_for_epochs(program, config, len(selection))
    name = program.name or "program"
    run = create_run(cluster, config, name, payload)
    run.train_called_at = called_at
    run.device_count = len(selection)
    # the devices are this run's from here: its trials run on them, and a second px.train
    # on any of them is refused at once
    run.add_cleanup(lambda: release_devices(cluster.client, run.run_id))
    reserve_devices(cluster.client, run.run_id, name, selection.devices)
    trials = Trials(cluster, selection, payload, name)
    try:
        report = (report or analyze(program, steps=2, config=config)).for_selection(
            selection, mode=config.mode, servers=config.servers, partitions=config.partitions)
        if report.config.link == MEASURE_LINK:
            report = report.with_link(cluster.measure_link(selection))
        run.add_cleanup(lambda: _record_step_cost(cluster, selection, run))
        if not needs_trials(config, report):
            return launch(run, make_plan(trials, config, report))
    except BaseException as exc:
        run.abort(exc)
        raise
    trials.planning = Planning()
    if progress:
        trials.planning.on_trial(_print_trial(run.run_id))
    run.begin_planning(trials.planning)
    threading.Thread(target=_plan_then_launch, args=(run, trials, config, report, progress),
                     daemon=True, name=f"parallax-plan-{run.run_id}").start()
    return run


def _plan_then_launch(run, trials, config, report, progress: bool) -> None:
    from .launch import launch
    from .plan import SearchCancelled, make_plan

    try:
        plan = make_plan(trials, config, report)
    except BaseException as exc:
        if progress and not isinstance(exc, SearchCancelled):
            print(f"run {run.run_id}: planning failed, nothing was launched: {exc}",
                  file=sys.stderr, flush=True)
        run.end_planning(exc)
        return
    if run.end_planning():
        try:
            launch(run, plan)
        except BaseException as exc:   # launch ended the run with it: run.wait() raises it
            if progress:
                print(f"run {run.run_id}: the launch failed: {exc}", file=sys.stderr,
                      flush=True)


def _record_step_cost(cluster, selection, run) -> None:
    """A run finished between machines calibrates the link's fixed costs for the next plan
    on its workers (`ParallaxCluster.step_costs`): the profile's phases of the steps sampled
    in its second half (``Config.profile``: all of them), when there are some."""
    if run.status != "finished" or run.analysis is None:
        return
    planned = run.analysis.replan(mode=run.mode)
    if planned.pricing_link is None:      # one machine: no link to calibrate
        return
    report = run.report()
    if report.metrics is None or report.metrics.empty:
        return
    cost = planned.step_cost(report.phases(first=int(report.metrics["step"].max()) // 2))
    if cost is not None:
        cluster.record_step_cost(selection, cost)


def _print_trial(run_id: str):
    def show(trial) -> None:
        if not trial.running:
            print(f"run {run_id}: {trial.text()}", file=sys.stderr, flush=True)
    return show

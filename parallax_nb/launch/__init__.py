"""Launching a plan on the Dask cluster: servers, ranks, rendezvous, the Run handle.

`launch` starts what a `plan.Plan` says, nothing else: the searches and the memory check
happen before, in `plan` (`px.train` does both, in that order).
"""
from __future__ import annotations

import time
import uuid

from .attempt import launch as launch_attempt
from .run import Run


def create_run(cluster, config, name: str, payload: bytes) -> Run:
    """A Run of the program pickled as ``payload``, not started yet (`launch` starts it).
    Its attempts (the first, and each restart after a loss) launch with the run's config
    of that moment: the plan's, once `launch` has set it."""
    def launcher(number, devices, report):
        return launch_attempt(cluster, run, number, devices, report, payload, run.config)

    run = Run(cluster.client, uuid.uuid4().hex[:10], config, name=name, launcher=launcher)
    run._cluster = cluster
    run._payload = payload   # run.model() builds the program's model from it
    return run


def launch(run: Run, plan) -> Run:
    """Start ``plan`` as ``run``'s first attempt and follow it; returns once the ranks are
    submitted. On failure what was started is stopped, the run ends, and the error is
    raised."""
    run.config = plan.config
    run.device_count = len(plan.selection)
    run.mode_choice, run.partition_search = plan.mode_choice, plan.partition_search
    run.notes.extend(plan.notes)
    run.started_at = time.time()
    try:
        run._launcher(0, plan.selection, plan.report)
    except BaseException as exc:
        run.abort(exc)
        raise
    run._start_watching()
    return run


__all__ = ["create_run", "launch", "Run"]

"""Automatic recovery: a run that loses a rank, a parameter server or a Dask worker restarts
from its last complete checkpoint (`Config.max_restarts`, 3 by default with
``checkpoint_dir``).

What counts as a loss: a rank or server process that ended without a Python error of its
own (killed by a signal, the out-of-memory killer, a crash), a server that exited, a Dask
worker that left the cluster. An exception in the user's code, a non-finite loss
(`Config.on_nonfinite`) or a configuration error is not: it would fail again.

A restart, run by the client's watcher thread once every task of the failed attempt is
over: the attempt's rendezvous goes; the devices still available are the selected ones whose
workers are alive, topped up to the original count with free devices of the cluster (other
workers, one that came back), preferring the hosts already in use; the plan is made again for
them with the same partition count per table (the checkpoint's partitions must match); the
devices are reserved again; a new attempt starts (`launch.attempt`), whose chief restores the
newest complete checkpoint (TensorFlow's CheckpointManager names a save only once written)
and whose ranks skip the batches already trained on. With the same number of ranks the run
continues exactly as if nothing had happened (tested: equal final weights); with fewer,
rank r reads ``dataset_fn(r, new_size)`` from the same position, and a step averages over the
ranks left (README, "Runs that survive").
"""
from __future__ import annotations

import dataclasses
import time

from ..cluster.selection import Selection
from ..errors import ECHO_NONFINITE, ParallaxError
from .checks import devices_in_use, reserve_devices


HOROVOD_SHUTDOWN = "Horovod has been shut down"


def is_echo(exc) -> bool:
    """An error caused by another rank's failure (Horovod shut down under this one, or
    another rank's non-finite values stopping this one)."""
    return HOROVOD_SHUTDOWN in str(exc) or ECHO_NONFINITE in str(exc)


def may_restart(run, exc=None) -> bool:
    """Could a failure now still end in a restart? (Then the run shows no failure until its
    attempt is over and the cause is known.)"""
    return not run._stop_requested and len(run.restarts) < run.config.restarts_allowed


def primary(errors):
    """The error that explains an attempt's failure: a loss (the others' errors follow
    from it), else the first that is not another rank's echo, else the first."""
    lost = [e for e in errors if getattr(e, "lost", False)]
    if lost:
        return lost[0]
    causes = [e for e in errors if not is_echo(e)]
    return (causes or errors)[0]


def after_attempt(run, attempt) -> bool:
    """Decide how an attempt's end ends the run: True where a new attempt was started."""
    if not attempt.errors or run._stop_requested:
        return False
    error = primary(attempt.errors)
    lost = getattr(error, "lost", False)
    if lost and may_restart(run):
        try:
            restart(run, attempt, error)
            return True
        except Exception as exc:
            _append(error, f" (restarting the run failed: {type(exc).__name__}: {exc})")
    elif lost:
        _append(error, why_no_restart(run))
    with run._lock:
        run.error = error
        if run._status != "stopped":
            run._status = "failed"
    return False


def why_no_restart(run) -> str:
    config = run.config
    if not config.checkpoint_dir:
        return (" (not recovered: with Config(checkpoint_dir=...) the run would have "
                "restarted from its last checkpoint; max_restarts sets how often)")
    if config.restarts_allowed == 0:
        return " (not recovered: Config.max_restarts=0)"
    return (f" (not recovered: the run had restarted {len(run.restarts)} time(s) already, "
            f"Config.max_restarts={config.restarts_allowed})")


def _append(error, text: str) -> None:
    if hasattr(error, "message"):
        error.message += text
    else:
        error.args = (f"{error}{text}",)


def restart(run, attempt, error) -> None:
    """Start the next attempt on the devices still available (the caller's thread)."""
    detected = attempt.failed_at or time.time()
    with run._lock:
        steps = [r["step"] for r in run._records if r.get("attempt") == attempt.number]
        at_step = max(steps) if steps else max((r["step"] for r in run._records), default=0)
    attempt.close()
    selection = devices_for_restart(run, attempt)
    report = attempt.report.for_selection(selection, servers=run.config.servers,
                                          partitions=fixed_partitions(attempt.report))
    reserve_devices(run.client, run.run_id, run.name, selection.devices)
    record = {"restart": len(run.restarts) + 1, "attempt": attempt.number + 1,
              "lost": str(error).splitlines()[0], "at_step": at_step,
              "ranks": len(selection), "hosts": list(selection.hosts),
              "detected_at": detected}
    with run._lock:
        run.restarts.append(record)
    new = run._launcher(attempt.number + 1, selection, report)
    if run._stop_requested:
        new.stop_event.set()
    run._announce(record)


def devices_for_restart(run, attempt) -> Selection:
    """The attempt's devices whose workers are alive, topped up to the run's device count
    with free devices of the cluster (same kind; hosts already in use first)."""
    alive = set(run.client.nthreads())
    survivors = [d for d in attempt.selection if d.worker in alive]
    wanted = run.device_count
    if len(survivors) < wanted and run._cluster is not None:
        try:
            everything = run._cluster.devices(refresh=True)
        except Exception:
            everything = []
        busy = devices_in_use(run.client, run.run_id) | {d.key for d in survivors}
        kind = attempt.selection.devices[0].kind
        hosts = {d.host for d in attempt.selection}   # the run's hosts first
        free = [d for d in everything if d.key not in busy and d.kind == kind and
                d.worker in alive and d.worker not in attempt.lost_workers]
        free.sort(key=lambda d: (d.host not in hosts, d.host, d.worker, d.index))
        survivors += free[:wanted - len(survivors)]
    if not survivors:
        raise ParallaxError("no device of the run is left, and the cluster has no free one")
    order = {h: i for i, h in enumerate(dict.fromkeys(d.host for d in survivors))}
    return Selection(tuple(sorted(survivors, key=lambda d: order[d.host])))


def fixed_partitions(report) -> dict:
    """The partition count of every sparse table, as the checkpoint holds them."""
    fixed = {vp.variable.name: len(vp.partitions) for vp in report.placements
             if vp.placement == "ps" and vp.variable.kind == "sparse"}
    return fixed or dataclasses.MISSING   # no table on a server: the plan's own setting


def resumed(record: dict, step: int) -> dict:
    """What a restart cost, known once the new attempt's first step arrives."""
    return {"resumed_from": step, "steps_lost": max(0, record["at_step"] - step),
            "seconds": time.time() - record["detected_at"]}


def note(record: dict, allowed: int) -> str:
    return (f"restart {record['restart']} of at most {allowed}: {record['lost']} (at step "
            f"{record['at_step']}); resumed from step {record['resumed_from']} on "
            f"{record['ranks']} rank(s), {record['steps_lost']} step(s) redone, "
            f"{record['seconds']:.1f} s from the loss to the first step after it")

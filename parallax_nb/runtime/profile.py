"""Where a step's time goes: phase boundaries stamped inside the step's own graph.

With ``Config(profile=True)`` the step function records ``tf.timestamp()`` once each phase's
results exist (a timestamp op that waits for a phase's outputs, and nothing waits for it, so
it observes the step without reordering it). A step's phases, in the order they complete:

* ``input``: the training loop waiting for the next batch (measured in Python);
* ``pull``: until every row gathered from the servers has arrived (0 without servers);
* ``compute``: the rest of the forward and backward pass, until every gradient exists;
* ``local_aggregation``: the host's ranks exchanging sparse gradients (Horovod, per host);
* ``push_update``: pushes to the servers and, on an applier, the servers' updates;
* ``allreduce``: the dense AllReduce (which doubles as the step's barrier);
* ``apply``: the local optimizer update;
* ``host``: the rest of the wall-clock step: dispatching the function, Python around it.

With the phases go what a step blocks on beyond this process: ``servers_touched`` (server
processes it exchanges with) and ``collectives`` (Horovod collectives in its traced graph).

The gathers are found where the model makes them: a server partition's ``sparse_read`` (what
``tf.gather``, ``embedding_lookup`` and Keras' ``Embedding`` call) reports its result to
`pulled_rows` while the step is traced.
"""
from __future__ import annotations

import contextlib
import time
from typing import List, Optional

from ..tf_env import tensorflow

PHASES = ("input", "pull", "compute", "local_aggregation", "push_update", "allreduce", "apply",
          "host")
_GRAPH_PHASES = PHASES[1:-1]
_recording: Optional[List] = None


def record_gather(rows) -> None:
    """Called by a server partition's ``sparse_read`` with its result."""
    if _recording is not None:
        _recording.append(rows)


@contextlib.contextmanager
def pulled_rows():
    """The rows gathered from the servers while the body runs (a list, filled as it runs)."""
    global _recording
    previous, _recording = _recording, []
    try:
        yield _recording
    finally:
        _recording = previous


def stamp(after=()):
    """``tf.timestamp()`` (seconds) once everything in ``after`` is done."""
    tf = tensorflow()
    with tf.control_dependencies([a for a in tf.nest.flatten(after, expand_composites=True)
                                  if a is not None]):
        return tf.timestamp()


COLLECTIVES = {"HorovodAllreduce", "HorovodGroupedAllreduce", "HorovodAllgather",
               "HorovodGroupedAllgather", "HorovodBroadcast", "HorovodAlltoall",
               "HorovodReducescatter", "HorovodGroupedReducescatter"}


def collectives_in(concrete_function) -> int:
    """Horovod collectives a traced step runs (each blocks until every rank joins it)."""
    return sum(op.type in COLLECTIVES for op in concrete_function.graph.get_operations())


def phase_times(stamps, step_seconds: float, input_seconds: float) -> dict:
    """Seconds per phase from the stamps at the start and at each graph phase's end."""
    values = [float(s) for s in stamps]
    phases = {"input": input_seconds}
    for name, start, end in zip(_GRAPH_PHASES, values, values[1:]):
        phases[name] = max(end - start, 0.0)
    phases["host"] = max(step_seconds - input_seconds - (values[-1] - values[0]), 0.0)
    return {f"t_{k}": v for k, v in phases.items()}


STARTUP_PHASES = ("horovod", "connect", "model", "optimizer", "trace", "first_step")


class StartupClock:
    """Where a rank's start-up goes: wall-clock marks from its ``main`` to its first step.
    ``report(done)`` (the rank's ``startup`` event) runs at every mark, so the notebook sees
    the start-up as it happens; ``done`` at the last (the run report adds the time before
    ``main``)."""

    def __init__(self, report=None):
        self.started = time.time()
        self._last = self.started
        self.phases = {}
        self.report = report

    def mark(self, phase: str) -> None:
        now = time.time()
        self.phases[phase] = now - self._last
        self._last = now
        if self.report is not None:
            self.report(phase == STARTUP_PHASES[-1])

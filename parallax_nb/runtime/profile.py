"""Where a step's time goes: phase boundaries stamped inside the step's own graph.

With ``Config(profile=True)`` the step function records ``tf.timestamp()`` once each phase's
results exist (a timestamp op that waits for a phase's outputs, and nothing waits for it, so
it observes the step without reordering it). Each stamp also waits for the one before it,
so the phases follow one another and tile the step: a phase that overlaps the one before it
(the AllReduce beside the pushes) counts what it adds after it. A step's phases, in order:

* ``input``: the training loop waiting for the next batch (measured in Python);
* ``pull``: until every row gathered from the servers has arrived (0 without servers);
* ``compute``: the rest of the forward and backward pass, until every gradient exists;
* ``local_aggregation``: the host's ranks exchanging sparse gradients (Horovod, per host);
* ``push_update``: pushes to the servers and, on an applier, the servers' updates;
* ``allreduce``: the dense AllReduce (which doubles as the step's barrier), or, where the
  servers' updates announce themselves (``updates_announced``, `server_sync`) and it runs
  beside the pushes, what it adds after them;
* ``apply``: the local optimizer update;
* ``host``: the rest of the wall-clock step: dispatching the function, Python around it.

With the phases go what a step blocks on beyond this process: ``server_messages`` (tensors
that cross between this rank and another process's server: each is one RPC),
``servers_touched`` (server processes it exchanges with), ``collectives`` (Horovod collectives
in its traced graph) and ``updates_announced`` (1 where its AllReduce need not wait for the
pushes).

The gathers are found where the model makes them (`gathers`): the pull phase ends when every
row of the step's lookups has arrived.
"""
from __future__ import annotations

import time

from ..tf_env import tensorflow

PHASES = ("input", "pull", "compute", "local_aggregation", "push_update", "allreduce", "apply",
          "host")
GRAPH_PHASES = PHASES[1:-1]   # stamped in the step's graph, one after the other


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
    for name, start, end in zip(GRAPH_PHASES, values, values[1:]):
        # each stamp waits for the one before; only a step of the wall clock (NTP) could
        # make one earlier
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


def server_messages(concrete_function, own_server) -> int:
    """Tensors a traced step moves between this process and another process's server.

    TensorFlow partitions a step at device boundaries and turns every (tensor, receiving
    device) pair that crosses one into its own Send/Recv, i.e. one ``RecvTensor`` RPC when
    the other device is in another process (a control edge, too: a dummy tensor). This is
    counted here from the traced graph (a control edge counted once per op and side, and not
    at all where the op's output crosses too), placing each op as TensorFlow's placer does: its
    own device, else the device of the resource it takes (a variable's ops run where the
    variable lives) or of the op it is colocated with, else this process.
    ``own_server``: the server task hosted in this process (its crossings stay in it).
    """
    tf = tensorflow()
    graph = concrete_function.graph
    captured = {id(internal): external for external, internal in graph.captures}
    placed = {}

    def device(op):
        if op.name not in placed:
            placed[op.name] = ""   # (a cycle through colocation ends here)
            placed[op.name] = _placed(op)
        return placed[op.name]

    def _placed(op):
        if op.device:
            return op.device
        if op.type == "Placeholder":
            external = captured.get(id(op.outputs[0]))
            return getattr(external, "device", "") or ""
        for name in op.colocation_groups():
            target = name.decode()[len("loc:@"):]
            if target != op.name:
                try:
                    return device(graph.get_operation_by_name(target))
                except (KeyError, ValueError):
                    pass
        for tensor in op.inputs:
            if tensor.dtype == tf.resource:
                return device(tensor.op)
        return ""

    def remote_server(name):
        if not name:
            return None
        spec = tf.DeviceSpec.from_string(name)
        if spec.job != "ps" or spec.task == own_server:
            return None
        return spec.task

    data, control = set(), set()
    for op in graph.get_operations():
        here = remote_server(device(op))
        edges = [(t.op, data, t.value_index) for t in op.inputs] + \
            [(c, control, None) for c in op.control_inputs]
        for source, kind, index in edges:
            there = remote_server(device(source))
            if here != there:
                kind.add((source.name, index, here))
    # A control edge from an op whose output already crosses to that side rides on it.
    sent = {(name, side) for name, _, side in data}
    return len(data) + len({(name, side) for name, _, side in control} - sent)

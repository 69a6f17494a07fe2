"""Communication accounting: bytes a rank hands to each transport in one step.

Measured from the sizes of the tensors at the points where they leave or reach the rank,
inside the step function (so they are exact for this step's batch), not from the wire:
gRPC and Gloo framing are not included. The benchmarks read interface counters for that.

* ``ps_recv``: rows the forward pass gathered from the servers (one per looked-up id,
  as TensorFlow's embedding lookup gathers them) plus, in PS mode, dense variables read;
* ``ps_sent``: the ids sent with those gathers (8 bytes each) plus this rank's pushes
  (de-duplicated rows with their indices, or dense gradients); with local aggregation only a
  host's first rank pushes, for the whole host (on the chief's host the other ranks push
  straight to server 0 in the chief: counted as ``local_bytes``, by `ServerSync.push`);
* ``hvd_sent`` / ``hvd_recv``: Horovod traffic of this rank: a ring AllReduce of W dense bytes
  moves 2 W (N-1)/N each way per rank; an allgather of sparse gradients (AR mode) brings in
  every other rank's slices (values and indices) and sends this rank's to the others.
"""
from __future__ import annotations

from ..tf_env import tensorflow

INDEX_BYTES = 8
BARRIER_BYTES = 4


class Accounting:
    def __init__(self, spec, local_variables, server_sync):
        self.size = spec.size
        self.local_variables = local_variables
        self.server_entries = server_sync.entries if server_sync else []

    def measure(self, local_grads, server_grads, synced, pushed):
        tf = tensorflow()
        n = self.size
        zero = tf.constant(0, tf.int64)
        dense_bytes = BARRIER_BYTES + sum(
            int(v.shape.num_elements()) * v.dtype.size
            for g, v in zip(local_grads, self.local_variables)
            if g is not None and not isinstance(g, tf.IndexedSlices))
        ring = 2 * dense_bytes * (n - 1) // n if n > 1 else 0
        hvd_sent = tf.constant(ring, tf.int64)
        hvd_recv = tf.constant(ring, tf.int64)
        for own, gathered in zip(local_grads, synced):
            if isinstance(own, tf.IndexedSlices):
                slice_bytes = _row_bytes(own.values) + INDEX_BYTES
                own_rows = tf.shape(own.indices, out_type=tf.int64)[0]
                all_rows = tf.shape(gathered.indices, out_type=tf.int64)[0]
                hvd_recv += (all_rows - own_rows) * slice_bytes
                hvd_sent += own_rows * (n - 1) * slice_bytes
        ps_recv, ps_sent = zero, pushed
        for g, entry in zip(server_grads, self.server_entries):
            variable = entry.variable
            if entry.sparse:
                if g is not None:
                    rows = tf.shape(g.indices, out_type=tf.int64)[0]
                    ps_recv += rows * _row_bytes(g.values)
                    ps_sent += rows * INDEX_BYTES
            else:
                ps_recv += int(variable.shape.num_elements()) * variable.dtype.size
        return {"ps_sent": ps_sent, "ps_recv": ps_recv, "hvd_sent": hvd_sent,
                "hvd_recv": hvd_recv}


def _row_bytes(values) -> int:
    shape = values.shape[1:]
    return int(shape.num_elements() or 1) * values.dtype.size

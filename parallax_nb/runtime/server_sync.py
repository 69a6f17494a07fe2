"""Synchronous updates of the variables on the parameter servers (HYBRID and PS modes).

Per step and per partition:

1. every rank de-duplicates its gradient rows (a word seen 5 times is pushed once);
2. with local aggregation, the ranks of a host allgather their rows over the host's Horovod
   process set and only the host's first rank pushes, so each host sends one gradient;
3. pushes go into a FIFO queue on the partition's server (a shared-name queue every rank
   opens);
4. the chief takes the expected number of pushes from each queue, sums them (averages them
   with ``average_sparse``; dense gradients in PS mode are always averaged) and applies them
   with the user's optimizer *on the server*: one optimizer per partition, built under the
   server's device, so its slots live beside the partition and no row leaves the server.

The step's Horovod AllReduce runs after the pushes (and, on the chief, after the updates),
so it doubles as the barrier: no rank gathers rows for step t+1 before step t is applied.
"""
from __future__ import annotations

from typing import List

from ..tf_env import build_optimizer, tensorflow
from .allreduce import stable_names


class ServerSync:
    def __init__(self, hvd, spec, server_variables, optimizer_fn, host_set):
        tf = tensorflow()
        self.hvd = hvd
        self.tf = tf
        self.spec = spec
        self.config = spec.config
        self.host_set = host_set
        self.aggregate = self.config.local_aggregation and spec.local_size > 1
        self.pushes_per_step = spec.hosts if self.config.local_aggregation else spec.size
        self.is_pusher = spec.local_rank == 0 or not self.aggregate
        self.entries = []    # (partition variable, device, queue, is_sparse, optimizer or None)
        for variable in server_variables.variables:
            sparse = variable.placement.variable.kind == "sparse"
            for part_var, device in zip(variable.partitions, variable.devices()):
                dtypes = [tf.int64, part_var.dtype] if sparse else [part_var.dtype]
                queue = SharedQueue(f"{spec.run_id}/{variable.name}/part{len(self.entries)}",
                                    dtypes, device, capacity=max(self.pushes_per_step, 1) * 4)
                optimizer = None
                if spec.rank == 0:
                    optimizer = optimizer_fn()
                    with tf.device(device):
                        build_optimizer(optimizer, [part_var])
                self.entries.append((part_var, device, queue, sparse, optimizer))

    @property
    def variables(self) -> List:
        return [e[0] for e in self.entries]

    def optimizers(self):
        return [e[4] for e in self.entries if e[4] is not None]

    # -- inside the step function ---------------------------------------------------------------
    def push(self, grads):
        """Send this rank's (or host's) gradients.

        Returns (ops to wait for, bytes pushed to the servers, bytes the host's ranks
        exchanged for local aggregation).
        """
        tf = self.tf
        sparse_idx = [i for i, e in enumerate(self.entries) if e[3]]
        dense_idx = [i for i, e in enumerate(self.entries) if not e[3]]
        payload = {}
        for i in sparse_idx:
            g = grads[i]
            if g is None:
                g = tf.IndexedSlices(tf.zeros((0,) + tuple(self.entries[i][0].shape[1:]),
                                              self.entries[i][0].dtype),
                                     tf.zeros((0,), tf.int64))
            payload[i] = (tf.cast(g.indices, tf.int64), g.values)
        if self.aggregate and sparse_idx:
            flat = [payload[i][0] for i in sparse_idx] + [payload[i][1] for i in sparse_idx]
            gathered = _grouped_by_dtype(
                lambda group: self.hvd.grouped_allgather(group, process_set=self.host_set),
                stable_names(flat, "parallax_local_sparse"))
            n = len(sparse_idx)
            for k, i in enumerate(sparse_idx):
                payload[i] = (gathered[k], gathered[n + k])
        dense = {i: grads[i] if grads[i] is not None else tf.zeros_like(self.entries[i][0])
                 for i in dense_idx}
        if self.aggregate and dense_idx:
            summed = self.hvd.grouped_allreduce(
                stable_names([dense[i] for i in dense_idx], "parallax_local_dense"),
                op=self.hvd.Sum, process_set=self.host_set)
            dense = dict(zip(dense_idx, summed))
        # A rank that does not push must still run its half of the local collectives, or
        # the host's pusher waits for it forever. Horovod's ops are not stateful, so one
        # whose result nothing reads is pruned: such a rank returns the results as its
        # "ops to wait for", and the step function returns them (see Trainer._make_step).
        local = tf.constant(0, tf.int64)
        collective_results = []
        if self.aggregate:
            collective_results = [t for i in sparse_idx for t in payload[i]] + \
                                 [dense[i] for i in dense_idx]
            for t in collective_results:
                local += tf.size(t, out_type=tf.int64) * t.dtype.size
        ops, pushed = [], tf.constant(0, tf.int64)
        if not self.is_pusher:
            return collective_results, pushed, local
        for i in sparse_idx:
            indices, values = _deduplicate(tf, *payload[i])
            pushed += tf.size(indices, out_type=tf.int64) * 8 + \
                tf.size(values, out_type=tf.int64) * values.dtype.size
            with tf.device(self.entries[i][1]):
                ops.append(self.entries[i][2].enqueue([indices, values]))
        for i in dense_idx:
            pushed += tf.size(dense[i], out_type=tf.int64) * dense[i].dtype.size
            with tf.device(self.entries[i][1]):
                ops.append(self.entries[i][2].enqueue([dense[i]]))
        return ops, pushed, local

    def apply(self):
        """Chief only: take every push of this step, combine, update on the servers."""
        tf = self.tf
        updates = []
        for part_var, device, queue, sparse, optimizer in self.entries:
            with tf.device(device):
                items = [queue.dequeue() for _ in range(self.pushes_per_step)]
                if sparse:
                    indices = tf.concat([item[0] for item in items], axis=0)
                    values = tf.concat([item[1] for item in items], axis=0)
                    if self.config.average_sparse:
                        values = values / self.spec.size
                    grad = tf.IndexedSlices(values, indices,
                                            tf.shape(part_var, out_type=tf.int64))
                else:
                    grad = tf.add_n([item[0] for item in items]) / self.spec.size
                optimizer.apply_gradients([(grad, part_var)])
                # What apply_gradients returns is the optimizer's step counter, not the
                # variable's update. A one-row read of the partition is ordered after the
                # update by tf.function's automatic control dependencies (same resource),
                # so waiting for it means waiting for the update.
                updates.append(part_var.sparse_read([0]))
        return updates


class SharedQueue:
    """A FIFO queue on a server that every rank opens by name.

    ``tf.queue.FIFOQueue`` swaps the shared name for a unique one in eager mode (so that
    queues are never shared by accident); here sharing is the point, so the raw ops are used.
    """

    def __init__(self, shared_name, dtypes, device, capacity):
        tf = tensorflow()
        self.dtypes = list(dtypes)
        self.device = device
        with tf.device(device):
            self.handle = tf.raw_ops.FIFOQueueV2(component_types=self.dtypes, shapes=[],
                                                 capacity=capacity, container="",
                                                 shared_name=shared_name)

    def enqueue(self, components):
        return tensorflow().raw_ops.QueueEnqueueV2(handle=self.handle, components=components)

    def dequeue(self):
        return tensorflow().raw_ops.QueueDequeueV2(handle=self.handle,
                                                   component_types=self.dtypes)


def _grouped_by_dtype(collective, tensors):
    """Run a grouped Horovod collective once per dtype (it takes one dtype per call)."""
    results = [None] * len(tensors)
    by_dtype = {}
    for i, t in enumerate(tensors):
        by_dtype.setdefault(t.dtype, []).append(i)
    for positions in by_dtype.values():
        for i, out in zip(positions, collective([tensors[i] for i in positions])):
            results[i] = out
    return results


def _deduplicate(tf, indices, values):
    unique, position = tf.unique(indices)
    summed = tf.math.unsorted_segment_sum(values, position, tf.shape(unique)[0])
    return unique, summed

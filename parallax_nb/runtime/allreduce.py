"""Gradient synchronisation through Horovod: grouped calls, not one per tensor.

Dense gradients are averaged by one grouped (fused) AllReduce. Sparse ones, in AR mode, go
through a second grouped call, which Horovod turns into allgathers of values and indices:
averaged too, or summed under ``Config(average_sparse=False)``, as the servers do in the
other modes (the same maths in every mode).
Two calls because Horovod 0.28.1's grouped_allreduce mis-pairs its results when one list
mixes dense tensors and IndexedSlices; and each of them once per dtype, because a grouped
call takes one dtype (a float16 table beside float32 ones, int32 position ids beside int64
token ids: sparse indices are made int64 first, as the servers' pushes make them). Horovod
has no bfloat16: such tensors travel as float32 (exactly) and come back as bfloat16.

Horovod matches a collective across ranks by its tensors' names, and the chief's step graph
has ops the others lack (it applies the server updates), so automatic names can differ
between ranks and the collective would wait forever. Every input is therefore re-issued
under an explicit name that depends only on its position (`stable_names`).

A run of one rank skips the collectives: averaging over one rank is the identity, and every
Horovod collective still waits for Horovod's background cycle (1 ms by default), which made
a one-rank step measurably slower than plain TensorFlow (benchmarks/README.md, "Profile").
"""
from __future__ import annotations


def _widened():
    import tensorflow as tf

    return {tf.bfloat16: tf.float32}


class AllReduceSync:
    def __init__(self, hvd, average_sparse: bool = True):
        self._hvd = hvd
        self._sparse_op = hvd.Average if average_sparse else hvd.Sum

    def __call__(self, grads, densify=()):
        """Synchronise ``grads``; the sparse ones at positions ``densify`` travel as a dense
        gradient with a touched count per row (the plan's choice where that moves fewer
        bytes than an allgather) and come back as the rows some rank touched: the same
        ``IndexedSlices`` an allgather gives, duplicates summed."""
        import tensorflow as tf

        synced = list(grads)
        if self._hvd.size() == 1:
            return synced
        densify = [i for i in densify if isinstance(grads[i], tf.IndexedSlices)]
        dense = [i for i, g in enumerate(grads) if g is not None
                 and not isinstance(g, tf.IndexedSlices)]
        sparse = [i for i, g in enumerate(grads)
                  if isinstance(g, tf.IndexedSlices) and i not in densify]
        for label, group in (("dense", dense), ("sparse", sparse)):
            if group:
                tensors = [_int64_indices(tf, grads[i]) for i in group]
                op = self._hvd.Average if label == "dense" else self._sparse_op
                reduced = grouped_by_dtype(
                    lambda same, op=op: self._hvd.grouped_allreduce(same, op=op),
                    stable_names(tensors, f"parallax_{label}"))
                for i, g in zip(group, reduced):
                    synced[i] = g
        if densify:
            tables = [_densified(tf, grads[i]) for i in densify]
            reduced = grouped_by_dtype(
                lambda same: self._hvd.grouped_allreduce(same, op=self._sparse_op),
                stable_names([t for pair in tables for t in pair], "parallax_densified"))
            for k, i in enumerate(densify):
                values, counts = reduced[2 * k], reduced[2 * k + 1]
                rows = tf.where(counts > 0)[:, 0]
                synced[i] = tf.IndexedSlices(tf.gather(values, rows), rows,
                                             grads[i].dense_shape)
        return synced

    def broadcast(self, variables):
        """Start every replica from rank 0's values. In place: Horovod's default broadcast
        of a list of variables holds a received copy of all of them at once (an AR rank
        of a model with 1 GB of tables peaked 2 GB above its plan); in place, a rank holds
        nothing beyond its variables."""
        import tensorflow as tf

        widened = _widened()
        carried = [v for v in variables if v.dtype in widened]
        for v in variables:   # one at a time: Keras 3 names may repeat within one call
            if v.dtype not in widened:
                self._hvd.broadcast_variables([v], root_rank=0, inplace=True)
        for i, v in enumerate(carried):
            value = self._hvd.broadcast(tf.cast(v, widened[v.dtype]), root_rank=0,
                                        name=f"parallax_broadcast_widened_{i}")
            v.assign(tf.cast(value, v.dtype))


def grouped_by_dtype(collective, tensors):
    """Run a grouped Horovod collective once per dtype (of an IndexedSlices: of its values);
    dtypes Horovod lacks travel widened."""
    import tensorflow as tf

    results = [None] * len(tensors)
    by_dtype = {}
    for i, t in enumerate(tensors):
        by_dtype.setdefault(t.dtype, []).append(i)
    for dtype, positions in by_dtype.items():
        wide = _widened().get(dtype)
        group = [_cast(tf, tensors[i], wide) if wide else tensors[i] for i in positions]
        for i, out in zip(positions, collective(group)):
            results[i] = _cast(tf, out, dtype) if wide else out
    return results


def _cast(tf, t, dtype):
    if isinstance(t, tf.IndexedSlices):
        return tf.IndexedSlices(tf.cast(t.values, dtype), t.indices, t.dense_shape)
    return tf.cast(t, dtype)


def _densified(tf, grad):
    """A sparse gradient as (its dense sum per row, how many slices touched each row)."""
    rows = tf.cast(grad.dense_shape[0], tf.int64)
    indices = tf.cast(grad.indices, tf.int64)
    values = tf.math.unsorted_segment_sum(grad.values, indices, rows)
    counts = tf.math.unsorted_segment_sum(tf.ones_like(indices, tf.float32), indices, rows)
    return values, counts


def _int64_indices(tf, grad):
    if isinstance(grad, tf.IndexedSlices) and grad.indices.dtype != tf.int64:
        return tf.IndexedSlices(grad.values, tf.cast(grad.indices, tf.int64), grad.dense_shape)
    return grad


def stable_names(tensors, prefix):
    """The same tensors under names that are equal on every rank (see module docstring)."""
    import tensorflow as tf

    named = []
    for i, t in enumerate(tensors):
        if isinstance(t, tf.IndexedSlices):
            named.append(tf.IndexedSlices(tf.identity(t.values, name=f"{prefix}_{i}_values"),
                                          tf.identity(t.indices, name=f"{prefix}_{i}_indices"),
                                          t.dense_shape))
        else:
            named.append(tf.identity(t, name=f"{prefix}_{i}"))
    return named

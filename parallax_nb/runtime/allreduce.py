"""Gradient synchronisation through Horovod: grouped calls, not one per tensor.

Dense gradients are averaged by one grouped (fused) AllReduce. Sparse ones, in AR mode, go
through a second grouped call, which Horovod turns into allgathers of values and indices.
Two calls because Horovod 0.28.1's grouped_allreduce mis-pairs its results when one list
mixes dense tensors and IndexedSlices.

Horovod matches a collective across ranks by its tensors' names, and the chief's step graph
has ops the others lack (it applies the server updates), so automatic names can differ
between ranks and the collective would wait forever. Every input is therefore re-issued
under an explicit name that depends only on its position (`stable_names`).

A run of one rank skips the collectives: averaging over one rank is the identity, and every
Horovod collective still waits for Horovod's background cycle (1 ms by default), which made
a one-rank step measurably slower than plain TensorFlow (benchmarks/README.md, "Profile").
"""
from __future__ import annotations


class AllReduceSync:
    def __init__(self, hvd):
        self._hvd = hvd

    def __call__(self, grads):
        import tensorflow as tf

        synced = list(grads)
        if self._hvd.size() == 1:
            return synced
        dense = [i for i, g in enumerate(grads) if g is not None
                 and not isinstance(g, tf.IndexedSlices)]
        sparse = [i for i, g in enumerate(grads) if isinstance(g, tf.IndexedSlices)]
        for label, group in (("dense", dense), ("sparse", sparse)):
            if group:
                reduced = self._hvd.grouped_allreduce(
                    stable_names([grads[i] for i in group], f"parallax_{label}"),
                    op=self._hvd.Average)
                for i, g in zip(group, reduced):
                    synced[i] = g
        return synced

    def broadcast(self, variables):
        """Start every replica from rank 0's values."""
        self._hvd.broadcast_variables(variables, root_rank=0)


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

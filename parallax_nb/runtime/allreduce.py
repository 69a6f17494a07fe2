"""Gradient synchronisation through Horovod: grouped calls, not one per tensor.

Dense gradients are averaged by one grouped (fused) AllReduce. Sparse ones, in AR mode, go
through a second grouped call, which Horovod turns into allgathers of values and indices.
Two calls because Horovod 0.28.1's grouped_allreduce mis-pairs its results when one list
mixes dense tensors and IndexedSlices.
"""
from __future__ import annotations


class AllReduceSync:
    def __init__(self, hvd):
        self._hvd = hvd

    def __call__(self, grads):
        import tensorflow as tf

        synced = list(grads)
        dense = [i for i, g in enumerate(grads) if g is not None
                 and not isinstance(g, tf.IndexedSlices)]
        sparse = [i for i, g in enumerate(grads) if isinstance(g, tf.IndexedSlices)]
        for group in (dense, sparse):
            if group:
                reduced = self._hvd.grouped_allreduce([grads[i] for i in group],
                                                      op=self._hvd.Average)
                for i, g in zip(group, reduced):
                    synced[i] = g
        return synced

    def broadcast(self, variables):
        """Start every replica from rank 0's values."""
        self._hvd.broadcast_variables(variables, root_rank=0)

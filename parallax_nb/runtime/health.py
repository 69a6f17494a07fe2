"""Checks a rank makes on its own step: are the loss and the gradients finite?"""
from __future__ import annotations


def finite_flags(tf, tensors):
    """One bool per tensor (None and integer tensors count as finite): all its values are
    neither NaN nor infinite. Cheap next to the step: one reduction per gradient."""
    flags = []
    for tensor in tensors:
        if isinstance(tensor, tf.IndexedSlices):
            tensor = tensor.values
        if tensor is None or not tensor.dtype.is_floating:
            flags.append(tf.constant(True))
        else:
            flags.append(tf.reduce_all(tf.math.is_finite(tensor)))
    return tf.stack(flags)


def nonfinite_ranks(tf, finite, rank: int, size: int):
    """A float vector of ``size``: 1 at ``rank`` where ``finite`` is not all true. Summed
    (or averaged) over ranks by the step's AllReduce, it tells every rank which ranks saw
    non-finite values, so none of them (the chief above all) saves that step."""
    bad = 1.0 - tf.cast(tf.reduce_all(finite), tf.float32)
    return tf.one_hot(rank, size, dtype=tf.float32) * bad

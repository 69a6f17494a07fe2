"""Batches for one shard, epoch after epoch, so every rank can run exactly `steps` steps
(a rank whose shard ran out while the others still wait in an AllReduce would hang them).

With ``Config(epochs=...)`` every epoch is the first ``steps_per_epoch`` batches of a new
pass over the shard (`count_batches` gives the smallest shard's count, which `px.train`
takes as ``steps_per_epoch``)."""
from __future__ import annotations

import itertools
from typing import Iterator, Optional

from ..errors import ProgramError
from ..keras3 import variable_names
from ..program import Program


def endless_batches(program: Program, shard: int, num_shards: int,
                    batch_size: Optional[int], per_epoch: Optional[int] = None) -> Iterator:
    """The shard's batches, pass after pass; each pass cut to ``per_epoch`` batches."""
    dataset = program.dataset(shard, num_shards, batch_size)
    if is_tf_dataset(dataset):
        if per_epoch is not None:
            dataset = dataset.take(per_epoch)
        # One iterator over every epoch (`repeat`, which reshuffles a shuffled dataset per
        # epoch as a new iterator would): a new iterator per epoch costs TensorFlow a
        # rewrite of the input pipeline's graph, 0.5-0.6 s on the bundled language model,
        # a stall of about 40 steps at every epoch boundary (benchmarks/steady_steps.py).
        batches = iter(dataset.repeat())
        first = next(batches, None)
        if first is None:
            raise ProgramError(f"dataset_fn({shard}, {num_shards}) yielded no batches: every "
                               f"shard needs at least one (fewer ranks, a smaller batch_size, "
                               f"or more data)")
        yield first
        yield from batches
        return
    while True:
        produced = False
        for batch in (dataset if per_epoch is None else itertools.islice(dataset, per_epoch)):
            produced = True
            yield batch
        if not produced:
            raise ProgramError(f"dataset_fn({shard}, {num_shards}) yielded no batches: every "
                               f"shard needs at least one (fewer ranks, a smaller batch_size, "
                               f"or more data)")
        if iter(dataset) is dataset:   # a one-shot iterator cannot start a second epoch
            dataset = program.dataset(shard, num_shards, batch_size)


def count_batches(program: Program, shard: int, num_shards: int,
                  batch_size: Optional[int]) -> int:
    """How many batches one pass over a shard has: ``len()``, a ``tf.data`` cardinality, or
    one pass counting them (an endless dataset is refused by name)."""
    dataset = program.dataset(shard, num_shards, batch_size)
    if is_tf_dataset(dataset):
        tf = _tensorflow()
        count = int(dataset.cardinality())
        if count == int(tf.data.INFINITE_CARDINALITY):
            raise ProgramError(f"Config(epochs=...) counts the batches of a pass over the data, "
                               f"but dataset_fn({shard}, {num_shards}) is endless (.repeat()?): "
                               f"drop the repeat (the run repeats it), or give steps=")
        if count == int(tf.data.UNKNOWN_CARDINALITY):
            count = int(dataset.reduce(0, lambda n, _: n + 1))
        return count
    if hasattr(dataset, "__len__"):
        return len(dataset)
    return sum(1 for _ in dataset)


def _tensorflow():
    from ..tf_env import tensorflow

    return tensorflow()


def is_tf_dataset(dataset) -> bool:
    return isinstance(dataset, _tensorflow().data.Dataset)


def named_weights(variables):
    """``(variable name, numpy value)`` pairs, one value made at a time
    (`keras3.variable_names`: unique, both Kerases); ``dict()`` of them for all at once."""
    for name, variable in zip(variable_names(variables), variables):
        yield name, variable.numpy()

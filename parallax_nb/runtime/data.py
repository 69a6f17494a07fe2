"""Batches for one shard, epoch after epoch, so every rank can run exactly `steps` steps
(a rank whose shard ran out while the others still wait in an AllReduce would hang them)."""
from __future__ import annotations

from typing import Iterator, Optional

from ..errors import ProgramError
from ..keras3 import variable_names
from ..program import Program


def endless_batches(program: Program, shard: int, num_shards: int,
                    batch_size: Optional[int]) -> Iterator:
    dataset = program.dataset(shard, num_shards, batch_size)
    if _is_tf_dataset(dataset):
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
        for batch in dataset:
            produced = True
            yield batch
        if not produced:
            raise ProgramError(f"dataset_fn({shard}, {num_shards}) yielded no batches: every "
                               f"shard needs at least one (fewer ranks, a smaller batch_size, "
                               f"or more data)")
        if iter(dataset) is dataset:   # a one-shot iterator cannot start a second epoch
            dataset = program.dataset(shard, num_shards, batch_size)


def _is_tf_dataset(dataset) -> bool:
    from ..tf_env import tensorflow

    return isinstance(dataset, tensorflow().data.Dataset)


def named_weights(variables):
    """``(variable name, numpy value)`` pairs, one value made at a time
    (`keras3.variable_names`: unique, both Kerases); ``dict()`` of them for all at once."""
    for name, variable in zip(variable_names(variables), variables):
        yield name, variable.numpy()

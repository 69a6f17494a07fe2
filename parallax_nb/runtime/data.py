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


def named_weights(variables) -> dict:
    """``{variable name: numpy value}`` (`keras3.variable_names`: unique, both Kerases)."""
    return {name: variable.numpy()
            for name, variable in zip(variable_names(variables), variables)}

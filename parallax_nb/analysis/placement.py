"""Where each variable lives: replicated (AllReduce) or on parameter servers, and how split.

A variable on the servers is cut into partitions of contiguous rows, split evenly (the first
``rows % P`` partitions get one row more, TensorFlow's "div" strategy). Partitions go to
servers greedily, largest first onto the least-loaded server, so no server holds more than
the largest partition above the mean.
"""
from __future__ import annotations

import dataclasses
from typing import List, Sequence, Tuple

from ..config import Config
from .trace import VariableTrace

ALLREDUCE = "allreduce"
PS = "ps"


@dataclasses.dataclass(frozen=True)
class Partition:
    index: int
    row_start: int
    row_stop: int
    bytes: int
    server: int


@dataclasses.dataclass(frozen=True)
class VariablePlacement:
    variable: VariableTrace
    placement: str                  # "ps" or "allreduce"
    partitions: Tuple[Partition, ...]

    @property
    def servers(self) -> Tuple[int, ...]:
        return tuple(p.server for p in self.partitions)


def effective_mode(mode: str, variables: Sequence[VariableTrace]) -> Tuple[str, str]:
    """The mode a run really uses, and why it differs from the one asked for (or "")."""
    kinds = {v.kind for v in variables}
    if mode == "HYBRID" and "sparse" not in kinds:
        return "AR", "HYBRID runs as AR: the model has no sparse variables"
    if mode == "HYBRID" and not kinds & {"dense", "unused"}:
        return "PS", "HYBRID runs as PS: the model has no dense variables"
    return mode, ""


def row_splits(rows: int, partitions: int) -> List[Tuple[int, int]]:
    """Contiguous, even row ranges ("div" strategy)."""
    base, extra = divmod(rows, partitions)
    bounds, start = [], 0
    for p in range(partitions):
        stop = start + base + (1 if p < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def plan_placement(variables: Sequence[VariableTrace], mode: str, servers: int,
                   config: Config) -> Tuple[VariablePlacement, ...]:
    """Place every variable for ``mode`` on ``servers`` parameter-server tasks."""
    mode, _ = effective_mode(mode, variables)
    on_ps = {v.index for v in variables
             if mode == "PS" or (mode == "HYBRID" and v.kind == "sparse")}
    pieces = []  # (variable index, partition index, row range, bytes)
    for v in variables:
        if v.index not in on_ps:
            continue
        count = config.partitions_for(v.name, servers, v.rows) if v.kind == "sparse" else 1
        for p, (start, stop) in enumerate(row_splits(v.rows, count)):
            pieces.append((v.index, p, start, stop, (stop - start) * v.row_bytes))
    assignment = _greedy_by_bytes(pieces, servers)
    placed = []
    for v in variables:
        if v.index in on_ps:
            parts = tuple(Partition(p, start, stop, size, assignment[(v.index, p)])
                          for (vi, p, start, stop, size) in pieces if vi == v.index)
            placed.append(VariablePlacement(v, PS, parts))
        else:
            placed.append(VariablePlacement(v, ALLREDUCE, ()))
    return tuple(placed)


def _greedy_by_bytes(pieces, servers):
    """Largest piece first onto the least-loaded server (ties: lowest server index)."""
    load = [0] * servers
    assignment = {}
    for vi, p, _, _, size in sorted(pieces, key=lambda x: (-x[4], x[0], x[1])):
        target = min(range(servers), key=lambda s: (load[s], s))
        load[target] += size
        assignment[(vi, p)] = target
    return assignment


def server_loads(placements: Sequence[VariablePlacement], servers: int) -> List[int]:
    """Bytes held by each server."""
    load = [0] * servers
    for vp in placements:
        for part in vp.partitions:
            load[part.server] += part.bytes
    return load

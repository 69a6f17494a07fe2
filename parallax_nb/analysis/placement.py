"""Where each variable lives: replicated (AllReduce) or on parameter servers, how split, and why.

Sparsity is found by gradient type (the paper's rule, `trace`); where a sparse variable then
lives is decided per variable by the bytes it moves (`traffic`): in HYBRID, on the servers
unless AllReduce moves fewer, e.g. a small table every step touches whole (a position
embedding), which is AllReduced as a dense gradient. Between processes of one machine the
same formulas count the bytes between ranks. ``Config(placement={name: "ps"|"allreduce"})``
overrides it. Every placement carries its reason, with the bytes both ways.

A variable on the servers is cut into partitions of contiguous rows, split evenly (the first
``rows % P`` partitions get one row more, TensorFlow's "div" strategy). Partitions go to
servers greedily, largest first onto the least-loaded server, so no server holds more than
the largest partition above the mean.
"""
from __future__ import annotations

import dataclasses
from typing import List, Sequence, Tuple

from ..config import Config, _lookup_by_name
from ..errors import ConfigError
from .trace import VariableTrace
from .traffic import ALLREDUCE, PS, format_bytes, variable_traffic


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
    reason: str = ""                # why it lives there (sparse/dense and why; bytes)
    dense_sync: bool = False        # a sparse variable AllReduced as a dense gradient

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
                   config: Config, machines: int = 1, workers: int = 1
                   ) -> Tuple[VariablePlacement, ...]:
    """Place every variable for ``mode`` on ``servers`` parameter-server tasks, for
    ``machines`` x ``workers`` ranks."""
    check_names(variables, config)
    mode, _ = effective_mode(mode, variables)
    decided = {v.index: _decide(v, mode, config, machines, workers) for v in variables}
    on_ps = {i for i, (where, _, _) in decided.items() if where == PS}
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
        where, reason, dense_sync = decided[v.index]
        parts = tuple(Partition(p, start, stop, size, assignment[(v.index, p)])
                      for (vi, p, start, stop, size) in pieces if vi == v.index)
        placed.append(VariablePlacement(v, where, parts, reason, dense_sync))
    return tuple(placed)


def _decide(v: VariableTrace, mode: str, config: Config, machines: int, workers: int):
    """(placement, reason, dense_sync) of one variable."""
    kind = f"sparse (alpha {v.alpha:.3g})" if v.kind == "sparse" else \
        f"dense: {v.dense_note or 'its gradient is a whole-variable tensor'}" \
        if v.kind == "dense" else "unused: no gradient, not trained"
    if mode == "PS":
        return PS, f"{kind}; PS mode puts every variable on the servers", False
    if v.kind != "sparse":
        return ALLREDUCE, kind, False
    # between processes of one machine, count as if each rank were a machine
    m, g = (machines, workers) if machines > 1 else (workers, 1)
    ps = max(variable_traffic(v, PS, m, g, config.local_aggregation))
    gathered = max(variable_traffic(v, ALLREDUCE, m, g, config.local_aggregation))
    densified = max(variable_traffic(v, ALLREDUCE, m, g, config.local_aggregation, True))
    dense_sync = densified < gathered
    allreduce = min(gathered, densified)
    how = "as a dense gradient" if dense_sync else "allgathered"
    costs = (f"{format_bytes(ps)} per step on the servers, {format_bytes(allreduce)} "
             f"by AllReduce ({how})")
    override = _lookup_by_name(config.placement or {}, v.name)
    if override is not None:
        return override, f"{kind}; Config.placement ({costs})", \
            override == ALLREDUCE and dense_sync
    if mode == "AR":
        return ALLREDUCE, f"{kind}; AR mode ({costs})", dense_sync
    if allreduce < ps:
        return ALLREDUCE, f"{kind}; AllReduce moves fewer bytes: {costs}", dense_sync
    return PS, f"{kind}; servers move no more bytes: {costs}", False


def check_names(variables: Sequence[VariableTrace], config: Config) -> None:
    """A ``partitions`` or ``placement`` dict naming no variable is a mistake: say so."""
    names = [v.name for v in variables]
    known = set(names) | {n.split(":")[0] for n in names}
    for option in ("partitions", "placement"):
        given = getattr(config, option)
        unknown = [k for k in given if k not in known] if isinstance(given, dict) else []
        if unknown:
            raise ConfigError(f"Config.{option} names {unknown}, which the model does not "
                              f"have; its variables are: {', '.join(names)}")


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

"""Bytes a variable moves per machine and step, for each place it can live (the formulas of
`cost`'s module docstring and docs/cost_model.md); placement and the cost estimate both read
them."""
from __future__ import annotations

from typing import Tuple

from .timing import PACKED_CROSSINGS, UNPACKED_CROSSINGS
from .trace import VariableTrace

ALLREDUCE = "allreduce"
PS = "ps"
COUNT_BYTES = 4    # a densified sparse gradient carries a float32 touched count per row


def variable_traffic(v: VariableTrace, placement: str, machines: int, workers: int,
                     local_aggregation: bool, dense_sync: bool = False) -> Tuple[float, float]:
    """(send, recv) bytes per machine per step for one variable, averaged over machines.
    ``dense_sync``: a sparse variable on AllReduce sent as a dense gradient (plus counts)."""
    m, g = machines, workers
    if m <= 1 or (v.kind == "unused" and placement == ALLREDUCE):
        return 0.0, 0.0
    n = m * g
    if placement == ALLREDUCE:
        if v.kind == "sparse" and dense_sync:
            moved = 2.0 * (v.bytes + COUNT_BYTES * v.rows) * (n - 1) / n
        elif v.kind == "sparse":
            moved = (n - 1) * v.slices_per_step * (v.row_bytes + v.index_bytes)
        else:
            moved = 2.0 * v.bytes * (n - 1) / n
        return moved, moved
    if v.kind == "sparse":
        slice_bytes = v.row_bytes + v.index_bytes
        pulls = g * v.slices_per_step * slice_bytes
        if local_aggregation:
            pushes = v.alpha_for(g) * v.rows * slice_bytes
        else:
            pushes = g * v.alpha * v.rows * slice_bytes
    else:
        pulls = g * v.bytes
        pushes = 0.0 if v.kind == "unused" else (1 if local_aggregation else g) * v.bytes
    moved = (m - 1) / m * (pulls + pushes)
    return moved, moved


def server_crossings(machines: int, workers: int, servers: int, packed: bool) -> float:
    """Tensors a machine's ranks send to or get from servers on other machines per step
    (each way, averaged over machines; `timing` frames each): packed, a fixed number per
    server (the ids and rows of the pull, the push), else per partition of every lookup
    (``servers`` is then the variable's partitions)."""
    if machines <= 1:
        return 0.0
    remote = servers * (machines - 1) / machines
    return workers * remote * (PACKED_CROSSINGS if packed else UNPACKED_CROSSINGS)


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000.0
    return f"{n:.1f} TB"

"""The transfer model: bytes each machine sends and receives per step under HYBRID, PS, AR.

Derivation (docs/cost_model.md has the long form). m machines, g ranks per machine,
N = m*g ranks; only traffic between machines counts (ranks on one machine talk over
loopback). For a variable of w bytes with R rows of r bytes, i bytes per index:

* AllReduce, dense gradient (Horovod's ring over all N ranks, each machine's ranks adjacent
  in the ring): 2(N-1) ring steps, each moving w/N over the one link that leaves a machine:
  send = recv = 2 w (N-1)/N.
* AllReduce, sparse gradient (Horovod allgathers an IndexedSlices; ring allgather): each rank
  contributes its s gradient slices, duplicates included, c = s (r + i) bytes; every chunk
  but the receiver's own crosses each link: send = recv = (N-1) c. Or, where that is less,
  densified: the table-sized gradient and a 4-byte touched count per row AllReduced as dense
  ones, 2 (w + 4R)(N-1)/N (placement.py decides which, per variable).
* Parameter server, sparse: each rank pulls every row it looks up, s per step, duplicates
  included (TensorFlow's gathers do not de-duplicate ids; it sends s indices, gets s rows
  back), and the host pushes one aggregated, de-duplicated gradient of u_g (r + i) bytes,
  u_g = distinct rows touched by its g ranks together (g pushes of u (r + i), u = alpha*R,
  without local aggregation). Partitions are spread evenly, so a machine is a client of
  remote servers for (m-1)/m of the rows and serves the other m-1 machines for 1/m of them:
  send = recv = (m-1)/m * (g s (r + i) + pushes).
* Parameter server, dense (PS mode): pulls of w by each rank, pushes of w per host
  (per rank without aggregation): send = recv = (m-1)/m * (g w + pushes).

With g = 1, indices ignored and no id repeated in a batch (s = u) these are the paper's
Table 1 factors per direction: dense AllReduce 2w(m-1)/m, sparse AllReduce alpha w (m-1),
sparse PS 2 alpha w (m-1)/m. Dense PS comes out equal to dense AllReduce at g = 1 (the
paper's table lists PS at twice AllReduce by counting both directions for PS only); with
g > 1 PS pays g pulls per machine.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Sequence, Tuple

import pandas as pd

from ..config import MODES, Config
from .placement import plan_placement
from .timing import Link, wire_bytes
from .trace import VariableTrace
from .traffic import ALLREDUCE, PS, format_bytes, server_crossings, variable_traffic

PREFERENCE = ("HYBRID", "AR", "PS")  # tie-break: the paper's default first


@dataclasses.dataclass(frozen=True)
class CostEstimate:
    """Per-variable and total bytes per machine per step for each mode."""

    machines: int
    workers_per_machine: int
    local_aggregation: bool
    per_variable: pd.DataFrame     # name, kind, then <MODE>_send / <MODE>_recv columns
    totals: Dict[str, Tuple[float, float]]
    recommended: str
    reason: str
    wire: Dict[str, float] = dataclasses.field(default_factory=dict)   # framed bytes, each way
    seconds: Dict[str, float] = dataclasses.field(default_factory=dict)  # on ``link``
    link: Optional[Link] = None

    def to_frame(self) -> pd.DataFrame:
        return self.per_variable.copy()

    def __str__(self):
        lines = [f"bytes per machine per step, {self.machines} machine(s) x "
                 f"{self.workers_per_machine} rank(s), local aggregation "
                 f"{'on' if self.local_aggregation else 'off'}:"]
        for mode, (s, r) in self.totals.items():
            timed = (f"  wire {format_bytes(self.wire[mode]):>10}  "
                     f"{self.seconds[mode] * 1e3:.2f} ms" if mode in self.seconds else "")
            lines.append(f"  {mode:<6} send {format_bytes(s):>10}  recv {format_bytes(r):>10}"
                         + timed)
        if self.link is not None:
            lines.append(f"priced on {self.link.describe()}")
        lines.append(f"recommended: {self.recommended} ({self.reason})")
        return "\n".join(lines)


def estimate(variables: Sequence[VariableTrace], machines: int, workers_per_machine: int,
             config: Config, link: Optional[Link] = None, servers: Optional[int] = None,
             pricing: Optional[Link] = None) -> CostEstimate:
    """Bytes per machine and step for each mode; between machines also the wire bytes
    (framed, `timing`) and, on ``link`` (else ``pricing``), the seconds they and the step's
    fixed exchanges and collectives take. Placed, and recommended, by time on ``link``
    where it is given, else by bytes."""
    pricing = link or pricing
    if machines < 1 or workers_per_machine < 1:
        raise ValueError(f"machines and workers_per_machine must be >= 1, "
                         f"got {machines} and {workers_per_machine}")
    servers = servers or max(machines, 1)
    rows = [{"name": v.name, "kind": v.kind} for v in variables]
    totals, wire, seconds = {}, {}, {}
    for mode in MODES:
        placements = plan_placement(variables, mode, servers, config, machines,
                                    workers_per_machine, link, pricing)
        send_total = recv_total = 0.0
        for row, vp in zip(rows, placements):
            send, recv = variable_traffic(vp.variable, vp.placement, machines,
                                          workers_per_machine, config.local_aggregation,
                                          vp.dense_sync)
            row[f"{mode}_send"], row[f"{mode}_recv"] = send, recv
            send_total += send
            recv_total += recv
        totals[mode] = (send_total, recv_total)
        if machines > 1:
            crossings = step_crossings(placements, machines, workers_per_machine, servers,
                                       config)
            wire[mode] = wire_bytes(max(totals[mode]), crossings)
            if pricing is not None:
                seconds[mode] = pricing.seconds(wire[mode], *fixed_costs(placements))
    recommended, reason = recommend(variables, totals, seconds if link is not None else None)
    return CostEstimate(machines, workers_per_machine, config.local_aggregation,
                        pd.DataFrame(rows), totals, recommended, reason, wire, seconds,
                        pricing)


def step_crossings(placements, machines: int, workers: int, servers: int,
                   config: Config) -> float:
    """Tensors crossing between a machine's ranks and other machines' servers per step."""
    on_servers = [vp for vp in placements if vp.placement == PS]
    if not on_servers:
        return 0.0
    dense = sum(server_crossings(machines, workers, 1, False) / 2      # a pull, a push
                for vp in on_servers if vp.variable.kind != "sparse")
    if config.pack_pulls:
        return dense + server_crossings(machines, workers, servers, True)
    return dense + sum(server_crossings(machines, workers, len(vp.partitions), False)
                       for vp in on_servers if vp.variable.kind == "sparse")


def fixed_costs(placements) -> Tuple[int, int]:
    """(rounds of server exchanges, grouped collectives) of one step under ``placements``."""
    rounds = 2 if any(vp.placement == PS for vp in placements) else 0
    on_allreduce = [vp for vp in placements if vp.placement == ALLREDUCE
                    and vp.variable.kind != "unused"]
    dense = any(vp.variable.kind == "dense" or vp.dense_sync for vp in on_allreduce)
    gathered = any(vp.variable.kind == "sparse" and not vp.dense_sync for vp in on_allreduce)
    return rounds, int(dense) + int(gathered)


def recommend(variables: Sequence[VariableTrace], totals, seconds=None) -> Tuple[str, str]:
    """The mode whose step takes least time on the link where it is known, else the one
    moving the fewest bytes (the larger direction counts); ties go to HYBRID, which itself
    falls back to AR without sparse and to PS without dense variables."""
    from .placement import effective_mode

    if seconds:
        best = min(PREFERENCE, key=lambda mode: (round(seconds[mode], 9),
                                                 PREFERENCE.index(mode)))
        mode, fallback = effective_mode(best, variables)
        return mode, fallback or f"least time per step on the link ({seconds[best] * 1e3:.2f} " \
                                 f"ms, {format_bytes(max(totals[best]))} per machine)"
    best = min(PREFERENCE, key=lambda mode: (max(totals[mode]), PREFERENCE.index(mode)))
    mode, fallback = effective_mode(best, variables)
    moved = max(totals[best])
    if fallback:
        return mode, fallback
    if all(max(t) == moved for t in totals.values()):
        return mode, "all modes move the same bytes here (one machine); HYBRID is the default"
    return mode, f"fewest bytes per machine per step ({format_bytes(moved)})"

"""What each process holds: the bytes of variables and optimizer slots per rank and per server.

Memory is half of why parameter servers exist: AR keeps a full copy of every table and its
optimizer slots in every rank; HYBRID keeps one copy, split over the servers (server 0 lives
in rank 0's process); PS keeps everything on the servers. A rank also holds its dense
gradients (one more copy of what it AllReduces). Slots per variable are counted, not
guessed: the user's optimizer is built for a tiny variable and its slots counted (sparse
variables on a row rule count that rule's slots).

On top of this, every TensorFlow process costs a fixed amount (its runtime and libraries,
`PROCESS_BASELINE_BYTES`, measured here for TensorFlow 2.18 on CPU) that the fit check adds.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Sequence

from .placement import PS, VariablePlacement
from .traffic import format_bytes

# Peak RSS of a rank process training a model of a few kilobytes (TensorFlow 2.18.1 CPU,
# Horovod 0.28.1, measured by tests/test_memory.py's baseline run: 0.55-0.65 GB).
PROCESS_BASELINE_BYTES = 700 * 2**20

# Keras' random initializers hold three copies of a variable at once in eager mode: the draw,
# its scaling and its shift (measured: a 454 MB RandomUniform table peaks at 2.9 times its size
# above the process). The plan counts bytes in use; TensorFlow's CPU allocator on x86 (oneDNN's
# pool) keeps freed blocks resident, which tables of many sizes do not fully reuse (README,
# "Benchmarks at scale": HYBRID's rank 0 at 1.15-1.30 of its plan with 26 tables).
INITIALIZER_COPIES = 3


@dataclasses.dataclass(frozen=True)
class MemoryPlan:
    """Bytes of variables, slots and gradients each process holds under one placement."""

    ranks: Dict[int, int]            # rank -> bytes (rank 0 includes server 0 when it has one)
    servers: Dict[int, int]          # server task -> bytes (where it is its own process)
    creating: Dict[int, int] = dataclasses.field(default_factory=dict)   # rank -> bytes

    def peak(self, rank: int) -> int:
        """What a rank holds at its peak: while training (variables, slots, gradients), or
        earlier while it creates its variables, if that is more (see `INITIALIZER_COPIES`)."""
        return max(self.ranks[rank], self.creating.get(rank, 0))

    def describe(self) -> str:
        """Each kind of process's peak, e.g. ``rank 1.2 GB-1.5 GB, server 800 MB``."""
        ranks = sorted({self.peak(r) for r in self.ranks})
        text = "rank " + (format_bytes(ranks[0]) if len(ranks) == 1 else
                          f"{format_bytes(min(ranks))}-{format_bytes(max(ranks))}")
        if self.servers:
            text += ", server " + ", ".join(format_bytes(b) for b in self.servers.values())
        return text


def count_slots(program, variables) -> Dict[str, int]:
    """Optimizer slots per variable (each as large as the variable): counted by building the
    user's optimizer for a tiny probe variable; row-rule slots for sparse variables."""
    from ..keras3 import KERAS3, flavour, tf_variable
    from ..row_updates import row_rule
    from ..tf_env import build_optimizer, tensorflow

    tf = tensorflow()
    optimizer = program.optimizer()
    if flavour(optimizer) == KERAS3:
        import keras

        probe = keras.Variable(tf.zeros([3, 2]), name="parallax_slot_probe")
    else:
        probe = tf.Variable(tf.zeros([3, 2]), name="parallax_slot_probe")
    build_optimizer(optimizer, [probe])
    made = optimizer.variables
    made = made() if callable(made) else made
    dense = sum(1 for x in made if tuple(tf_variable(x).shape) == (3, 2))
    rule, _ = row_rule(optimizer)
    sparse = rule.slot_count if rule is not None else dense
    return {v.name: sparse if v.kind == "sparse" else dense if v.kind == "dense" else 0
            for v in variables}


def slots_held(slot_counts: Dict[str, int], placement: VariablePlacement) -> int:
    return placement.variable.bytes * slot_counts.get(placement.variable.name, 0)


def memory_plan(placements: Sequence[VariablePlacement], slot_counts: Dict[str, int],
                ranks: int, servers: int) -> MemoryPlan:
    """Per process: replicated variables with their slots and gradients in every rank; server
    partitions with their slots on their server (server 0 inside rank 0). While the variables
    are created, before any slot exists, each rank holds the replicated ones and, for the
    largest it makes, the initializer's copies; rank 0 also makes every server table (the
    chief computes their initial values) and keeps server 0's rows."""
    local = local_variables = server_0_rows = 0
    creation_extra = {"local": 0, "chief": 0}
    on_server = [0] * servers
    for vp in placements:
        v = vp.variable
        held = v.bytes + slots_held(slot_counts, vp)
        if vp.placement == PS:
            kept = 0
            for part in vp.partitions:
                on_server[part.server] += part.bytes * (1 + slot_counts.get(v.name, 0))
                kept += part.bytes if part.server == 0 else 0
            server_0_rows += kept
            creation_extra["chief"] = max(creation_extra["chief"],
                                          INITIALIZER_COPIES * v.bytes - kept)
        else:
            local += held + (v.bytes if v.kind == "dense" else 0)   # its dense gradient
            local_variables += v.bytes
            creation_extra["local"] = max(creation_extra["local"],
                                          (INITIALIZER_COPIES - 1) * v.bytes)
    per_rank = {rank: local for rank in range(ranks)}
    creating = {rank: local_variables + creation_extra["local"] for rank in range(ranks)}
    separate = {}
    for task, held in enumerate(on_server):
        if task == 0 and ranks:
            per_rank[0] += held
        else:
            separate[task] = held
    if ranks:
        creating[0] = local_variables + server_0_rows + max(creation_extra.values())
    return MemoryPlan(per_rank, separate, creating)


def fit_problems(plan: MemoryPlan, rank_limits: Dict[int, Optional[int]],
                 server_limits: Dict[int, Optional[int]]) -> List[str]:
    """What does not fit: each process whose bytes and baseline exceed its memory limit."""
    problems = []
    for rank in plan.ranks:
        limit, held = rank_limits.get(rank), plan.peak(rank)
        if limit and held + PROCESS_BASELINE_BYTES > limit:
            problems.append(f"rank {rank} needs {format_bytes(held)} for variables and slots "
                            f"(+{format_bytes(PROCESS_BASELINE_BYTES)} for TensorFlow) and "
                            f"may use {format_bytes(limit)}")
    for task, held in plan.servers.items():
        limit = server_limits.get(task)
        if limit and held + PROCESS_BASELINE_BYTES > limit:
            problems.append(f"parameter server {task} needs {format_bytes(held)} "
                            f"(+{format_bytes(PROCESS_BASELINE_BYTES)}) and may use "
                            f"{format_bytes(limit)}")
    return problems

"""Sparse-variable analysis: trace gradients, place variables, estimate their traffic."""
from __future__ import annotations

import functools
from typing import Optional

from ..config import Config
from ..program import Program
from ..row_updates import row_rule
from .memory import count_slots
from .placement import check_names
from .report import AnalysisReport
from .trace import trace_gradients


def analyze(program: Program, steps: int = 5, config: Optional[Config] = None,
            servers: Optional[int] = None, machines: int = 1,
            workers_per_machine: int = 1) -> AnalysisReport:
    """Run ``steps`` single-device gradient computations and report every variable.

    servers: parameter-server tasks to place partitions on (default: ``config.servers``,
    else one per machine). machines / workers_per_machine: the cluster shape the cost model
    and the recommended mode assume.
    """
    config = config or Config()
    program.check_picklable()
    trace = _cached_trace(program, steps, config.batch_size)
    check_names(trace.variables, config)
    servers = servers or config.servers or machines
    return AnalysisReport(program.name, trace, config, servers, machines, workers_per_machine,
                          row_rule(program.optimizer())[1],
                          count_slots(program, trace.variables))


@functools.lru_cache(maxsize=8)
def _cached_trace(program: Program, steps: int, batch_size: Optional[int]):
    """The gradient trace of a program, once per Program object and batch size: every
    ``px.train`` analyses its program, and a notebook trains the same one again and again
    (a second run then starts a model build and a few gradient steps sooner). A Program
    whose functions change is a new Program, so it is traced anew."""
    return trace_gradients(program, steps=steps, batch_size=batch_size)


__all__ = ["analyze", "AnalysisReport"]

"""Sparse-variable analysis: trace gradients, place variables, estimate their traffic."""
from __future__ import annotations

from typing import Optional

from ..config import Config
from ..program import Program
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
    trace = trace_gradients(program, steps=steps, batch_size=config.batch_size)
    servers = servers or config.servers or machines
    return AnalysisReport(program.name, trace, config, servers, machines, workers_per_machine)


__all__ = ["analyze", "AnalysisReport"]

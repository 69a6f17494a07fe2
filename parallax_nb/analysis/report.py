"""The analysis report: per-variable facts, placement for a mode, and the cost model."""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

import pandas as pd

from ..config import AUTO_MODE, Config
from ..render import render
from .cost import CostEstimate, estimate, fixed_costs, format_bytes
from .memory import MemoryPlan, memory_plan
from .placement import VariablePlacement, effective_mode, plan_placement, server_loads
from .timing import DEFAULT_LINK, Link, StepCost, link_from
from .trace import GradientTrace, VariableTrace

# The profile's phases a step spends on the link (`runtime.profile.PHASES`): the rest is the
# ranks' own work (input, compute, the local aggregation on one machine, the local apply).
LINK_PHASES = ("pull", "push_update", "allreduce", "host")

COLUMNS = ("name", "shape", "dtype", "bytes", "kind", "alpha", "placement", "partitions",
           "servers", "why")


@dataclasses.dataclass(frozen=True)
class AnalysisReport:
    """What `px.analyze` found, placed for one mode and one number of servers.

    ``replan`` gives the same report for another mode, server count or partition setting
    without running the program again (the notebook's variables view uses it).
    """

    program_name: str
    trace: GradientTrace
    config: Config
    servers: int
    machines: int
    workers_per_machine: int
    sparse_update: str = ""    # which update the sparse variables get (row_updates.row_rule)
    slot_counts: Dict[str, int] = dataclasses.field(default_factory=dict)  # optimizer slots
    one_machine: bool = False  # the machines are host labels of one real machine (no link)

    @property
    def variables(self) -> Tuple[VariableTrace, ...]:
        return self.trace.variables

    @property
    def steps(self) -> int:
        return self.trace.steps

    @property
    def examples_per_step(self) -> Optional[int]:
        return self.trace.examples_per_step

    @property
    def warnings(self) -> Tuple[str, ...]:
        return self.trace.warnings

    @property
    def mode(self) -> str:
        """The mode the plan uses: the configured one (or, for mode="auto", the cost
        model's recommendation; `px.train` may refine it by trials), after fallbacks."""
        return effective_mode(self._asked_mode, self.variables)[0]

    @property
    def mode_note(self) -> str:
        return effective_mode(self._asked_mode, self.variables)[1]

    @property
    def _asked_mode(self) -> str:
        return self.recommended_mode if self.config.mode == AUTO_MODE else self.config.mode

    @property
    def link(self) -> Optional[Link]:
        """The link placement weighs time on: ``Config.link`` where it is given or was
        measured, between machines; None (placement counts bytes) otherwise."""
        if self.machines <= 1 or self.one_machine:
            return None
        return link_from(self.config.link)

    @property
    def pricing_link(self) -> Optional[Link]:
        """What the estimate and the `why` column price a step with between machines: the
        known link, else the documented default (`analysis.timing.DEFAULT_LINK`)."""
        if self.machines <= 1 or self.one_machine:
            return None
        return self.link or DEFAULT_LINK

    @property
    def placements(self) -> Tuple[VariablePlacement, ...]:
        return plan_placement(self.variables, self._asked_mode, self.servers, self.config,
                              self.machines, self.workers_per_machine, self.link,
                              self.pricing_link)

    def step_cost(self, phases_ms: dict) -> Optional[StepCost]:
        """What a run of this plan measured, ``phases_ms`` (`RunReport.phases`), as a
        `StepCost` to calibrate the link with: the pull, push, AllReduce and dispatch
        phases beside the plan's rounds, collectives and wire bytes. None on one machine."""
        link = self.pricing_link
        if link is None or not phases_ms:
            return None
        rounds, collectives = fixed_costs(self.placements)
        seconds = sum(phases_ms.get(p, 0.0) for p in LINK_PHASES) / 1e3
        return StepCost(rounds, collectives, self.estimate().wire[self._asked_mode],
                        link.bytes_per_second, seconds)

    def memory(self, mode: Optional[str] = None) -> MemoryPlan:
        """Bytes of variables, optimizer slots and dense gradients per rank and per server,
        for this placement (or ``mode``'s), over machines x workers_per_machine ranks."""
        report = self.replan(mode=mode) if mode else self
        return memory_plan(report.placements, self.slot_counts,
                           self.machines * self.workers_per_machine,
                           report.servers if report.mode != "AR" else 0)

    def memory_frame(self) -> pd.DataFrame:
        """One row per mode and process: what it holds while training, and its peak (which
        may come earlier, while it makes the variables; see `memory`)."""
        rows = []
        for mode in ("HYBRID", "PS", "AR"):
            plan = self.memory(mode)
            rows += [{"mode": mode, "process": f"rank {r}", "bytes": b,
                      "peak_bytes": plan.peak(r)} for r, b in plan.ranks.items()]
            rows += [{"mode": mode, "process": f"server {t}", "bytes": b, "peak_bytes": b}
                     for t, b in plan.servers.items()]
        return pd.DataFrame(rows, columns=["mode", "process", "bytes", "peak_bytes"])

    def server_loads(self):
        """Bytes held by each parameter server under this placement."""
        return server_loads(self.placements, self.servers)

    def replan(self, *, mode: Optional[str] = None, servers: Optional[int] = None,
               partitions=dataclasses.MISSING, machines: Optional[int] = None,
               workers_per_machine: Optional[int] = None) -> "AnalysisReport":
        changes = {}
        if mode is not None:
            changes["mode"] = mode
        if partitions is not dataclasses.MISSING:
            changes["partitions"] = partitions
        return dataclasses.replace(
            self, config=self.config.replace(**changes) if changes else self.config,
            servers=servers or self.servers, machines=machines or self.machines,
            workers_per_machine=workers_per_machine or self.workers_per_machine)

    def for_selection(self, selection, *, mode: Optional[str] = None,
                      servers: Optional[int] = None,
                      partitions=dataclasses.MISSING) -> "AnalysisReport":
        """This report planned for the devices of ``selection``: its hosts are the machines
        (one parameter server each unless ``servers`` says), and the busiest host's device
        count is the ranks per machine, as `px.train` will run it."""
        from urllib.parse import urlparse

        hosts = selection.by_host()
        addresses = {urlparse(d.worker).hostname for d in selection.devices}
        return dataclasses.replace(
            self.replan(mode=mode, servers=servers or len(hosts), partitions=partitions,
                        machines=len(hosts),
                        workers_per_machine=max(len(d) for d in hosts.values())),
            one_machine=len(addresses) == 1)

    def with_link(self, link: Optional[Link]) -> "AnalysisReport":
        """This report priced on ``link`` (a measured one; None: the default)."""
        return dataclasses.replace(self, config=self.config.replace(link=link))

    def estimate(self, machines: Optional[int] = None,
                 workers_per_machine: Optional[int] = None) -> CostEstimate:
        """Bytes per machine per step under HYBRID, PS and AR (see analysis/cost.py)."""
        report = self.replan(machines=machines, workers_per_machine=workers_per_machine)
        return estimate(self.variables, report.machines, report.workers_per_machine,
                        self.config, report.link,
                        self.servers if report.machines == self.machines else None,
                        report.pricing_link)

    @property
    def recommended_mode(self) -> str:
        return self.estimate().recommended

    def to_frame(self) -> pd.DataFrame:
        rows = []
        for vp in self.placements:
            v = vp.variable
            rows.append({
                "name": v.name, "shape": v.shape, "dtype": v.dtype, "bytes": v.bytes,
                "kind": v.kind, "alpha": v.alpha, "placement": vp.placement,
                "partitions": len(vp.partitions) or None,
                "servers": vp.servers or None, "why": vp.reason,
            })
        return pd.DataFrame(rows, columns=list(COLUMNS))

    def display_frame(self) -> pd.DataFrame:
        """`to_frame` formatted for people: sizes in KB/MB, shapes as 3x4, '-' for none."""
        frame = self.to_frame()
        frame["bytes"] = frame["bytes"].map(format_bytes)
        frame["alpha"] = frame["alpha"].map(lambda a: f"{a:.4f}")
        frame["shape"] = frame["shape"].map(lambda s: "x".join(map(str, s)) or "scalar")
        for column in ("partitions", "servers"):
            frame[column] = frame[column].map(_dash_if_empty)
        return frame

    def _repr_html_(self) -> str:
        return render("analysis_report.html.j2", report=self, columns=COLUMNS,
                      rows=self.display_frame().to_dict("records"), estimate=self.estimate())

    def __str__(self) -> str:
        header = (f"Parallax analysis of {self.program_name}: {self.steps} step(s), "
                  f"mode {self.mode}" + (f" ({self.mode_note})" if self.mode_note else "")
                  + f", {self.servers} parameter server(s)")
        table = self.display_frame().to_string(index=False)
        memory = "; ".join(f"{mode} {self.memory(mode).describe()}"
                           for mode in ("HYBRID", "PS", "AR"))
        parts = [header, table, str(self.estimate()),
                 f"memory per process (variables, optimizer slots, dense gradients): {memory}"]
        if self.sparse_update and any(v.kind == "sparse" for v in self.variables):
            parts.append(f"sparse updates: {self.sparse_update}")
        parts += [f"warning: {w}" for w in self.warnings]
        return "\n".join(parts)

    __repr__ = __str__


def _dash_if_empty(value):
    if value is None or (isinstance(value, float) and pd.isna(value)):
        return "-"
    if isinstance(value, tuple):
        return ",".join(map(str, value))
    return str(int(value))

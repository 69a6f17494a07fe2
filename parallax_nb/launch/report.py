"""The summary of a finished run: throughput, loss, where it ran and where variables lived."""
from __future__ import annotations

import dataclasses
from typing import Optional

import pandas as pd

from ..render import render
from ..runtime.profile import PHASES
from ..tuning import PartitionSearch
from .columns import METRIC_COLUMNS, validation_line
from .timeline import step_timeline

TRAFFIC = ["ps_sent", "ps_recv", "hvd_sent", "hvd_recv", "local_bytes"]


@dataclasses.dataclass(frozen=True)
class RunReport:
    run_id: str
    status: str
    mode: str
    notes: tuple
    ranks_per_host: dict
    steps: int
    seconds: Optional[float]
    examples_per_sec: float          # sum over ranks of each rank's median after warm-up
    per_rank: pd.DataFrame           # rank, host, examples_per_sec, step_time (medians)
    final_loss: float
    placements: pd.DataFrame         # the analysis report's table for the run's mode
    communication: pd.DataFrame      # bytes per step (median) per rank: ps_*, hvd_*, local
    error: Optional[str] = None
    partition_search: Optional[PartitionSearch] = None   # when partitions="auto" searched
    metrics: Optional[pd.DataFrame] = dataclasses.field(default=None, repr=False)
    startup: dict = dataclasses.field(default_factory=dict)   # Run.startup_seconds()
    restarts: tuple = ()             # Run.restarts: what was lost, resumed from, time lost
    validation: Optional[pd.DataFrame] = dataclasses.field(default=None, repr=False)
    training_metrics: dict = dataclasses.field(default_factory=dict)   # last window, mean

    def validation_lines(self) -> list:
        """The last validation's values, and the best one where a checkpoint kept it."""
        frame = self.validation
        if frame is None or frame.empty:
            return []
        last = frame.iloc[-1]
        lines = [f"{validation_line(last)} ({int(last['val_examples'])} examples; "
                 f"{len(frame)} validation(s))"]
        kept = frame[frame["best"].astype(bool)]
        if len(kept):
            lines.append(f"best kept: {validation_line(kept.iloc[-1])}")
        return lines

    def phases(self, first: int = 1, last: Optional[int] = None) -> dict:
        """Where a step's time went (every step with ``Config(profile=True)``, else the
        sampled ones, ``profile_every``): ms per phase, the median over steps first+1..last
        of the rank whose steps took longest (the critical path)."""
        frame = self.metrics
        columns = [f"t_{p}" for p in PHASES]
        if frame is None or frame.empty or frame[columns].isna().all().all():
            return {}
        last = int(frame["step"].max()) if last is None else last
        steady = frame[(frame["step"] > first) & (frame["step"] <= last)].dropna(
            subset=columns)
        if steady.empty:
            return {}
        medians = steady.groupby("rank")[columns + ["step_time"]].median()
        slowest = medians.loc[medians["step_time"].idxmax()]
        return {p: float(slowest[f"t_{p}"] * 1e3) for p in PHASES}

    def timeline(self, first: int = 1, last: Optional[int] = None) -> pd.DataFrame:
        """One step across the ranks, on a common clock (`launch.timeline`): per rank, ms
        after the earliest rank's start until each phase ended, and until its next step
        began (medians over the sampled steps first+1..last)."""
        return step_timeline(self.metrics, first, last)

    def shown_timeline(self) -> pd.DataFrame:
        """The timeline as the report shows it: for two ranks or more, without a column no
        step filled (``next_start`` where only one step in ``profile_every`` is sampled)."""
        timeline = self.timeline()
        if len(timeline) < 2:
            return timeline.iloc[0:0]
        return timeline.dropna(axis=1, how="all")

    def communication_per_host(self) -> pd.DataFrame:
        """Bytes per step each host's ranks hand to the servers and to Horovod, summed."""
        if self.communication.empty:
            return self.communication
        return self.communication.drop(columns="rank").groupby("host").sum().reset_index()

    def __str__(self):
        hosts = ", ".join(f"{h}: {n}" for h, n in self.ranks_per_host.items())
        lines = [f"Run {self.run_id}: {self.status}, mode {self.mode}, "
                 f"{sum(self.ranks_per_host.values())} rank(s) ({hosts})"]
        lines += [f"  note: {n}" for n in self.notes]
        if self.restarts:
            lines.append(f"  {len(self.restarts)} restart(s): " + "; ".join(
                f"#{r['restart']} lost {r['lost']!r} at step {r['at_step']}, resumed from "
                f"step {r.get('resumed_from', '?')}, {r.get('steps_lost', '?')} step(s) "
                f"redone, {r.get('seconds', float('nan')):.1f} s" for r in self.restarts))
        if self.steps:
            lines.append(f"  {self.steps} steps in {self.seconds or 0:.1f} s; "
                         f"{self.examples_per_sec:,.0f} examples/s in total (median per rank "
                         f"after the first step); final loss {self.final_loss:.4f}")
            lines.append(self.per_rank.to_string(index=False))
        if not self.communication.empty:
            lines.append("communication per step (bytes, median over steps; see "
                         "docs/communication.md):")
            lines.append(self.communication.to_string(index=False))
        if self.training_metrics:
            lines.append("training metrics (last window, mean over ranks): " + ", ".join(
                f"{k} {v:.4f}" for k, v in self.training_metrics.items()))
        lines += [f"  {line}" for line in self.validation_lines()]
        if self.startup:
            lines.append(f"start-up {sum(self.startup.values()):.1f} s to the first step: " +
                         ", ".join(f"{k} {v:.2f}" for k, v in self.startup.items()))
        phases = self.phases()
        if phases:
            lines.append("where a step's time goes (ms per step, median, slowest rank): " +
                         ", ".join(f"{k} {v:.2f}" for k, v in phases.items()))
        timeline = self.shown_timeline()
        if not timeline.empty:
            lines.append("one step across the ranks (ms after the first rank's start until "
                         "each phase ended, median):")
            lines.append(timeline.round(2).reset_index().to_string(index=False))
        if self.error:
            lines.append(f"  error: {self.error}")
        if self.partition_search:
            lines.append(str(self.partition_search))
        lines.append("variables:")
        lines.append(self.placements.to_string(index=False))
        return "\n".join(lines)

    __repr__ = __str__   # text consumers (terminals, nbval) get the summary, not fields

    def _repr_html_(self):
        from ..tuning.plot import search_svg

        search = self.partition_search
        return render("run_report.html.j2", report=self,
                      search=search, search_svg=search_svg(search) if search else "",
                      communication=self.communication.to_dict("records"),
                      traffic_columns=list(self.communication.columns),
                      per_rank=self.per_rank.to_dict("records"),
                      placements=self.placements.to_dict("records"),
                      placement_columns=list(self.placements.columns))


def training_metrics(frame: pd.DataFrame) -> dict:
    """Compiled metrics of the last logged step, averaged over the ranks."""
    names = [c for c in frame.columns if c not in METRIC_COLUMNS]
    if not names or frame.empty:
        return {}
    last = frame[frame["step"] == frame["step"].max()]
    return {name: float(last[name].mean()) for name in names
            if pd.api.types.is_numeric_dtype(last[name])}


def build_report(run) -> RunReport:
    frame = run.metrics
    steady = frame[frame["step"] > 1] if (frame["step"] > 1).any() else frame
    per_rank = (steady.groupby(["rank", "host"])[["examples_per_sec", "step_time"]].median()
                .reset_index())
    ranks_per_host: dict = {}
    for slot in run.slots:
        ranks_per_host[slot.host] = ranks_per_host.get(slot.host, 0) + 1
    last = frame.sort_values(["step", "rank"]).iloc[-1] if len(frame) else None
    seconds = (run.finished_at - run.started_at) if run.finished_at else None
    columns = ["name", "kind", "placement", "partitions", "servers"]
    placements = (run.analysis.replan(mode=run.mode).display_frame()[columns]
                  if run.analysis is not None else pd.DataFrame(columns=columns))
    # (no analysis: the run ended while it planned, before anything was launched)
    traffic = [c for c in TRAFFIC if c in steady.columns]
    communication = (steady.groupby(["rank", "host"])[traffic].median().reset_index()
                     if traffic and len(steady) else pd.DataFrame())
    return RunReport(run.run_id, run.status, run.mode, tuple(run.notes), ranks_per_host,
                     int(frame["step"].max()) if len(frame) else 0, seconds,
                     float(per_rank["examples_per_sec"].sum()) if len(per_rank) else 0.0,
                     per_rank, float(last["loss"]) if last is not None else float("nan"),
                     placements, communication, str(run.error) if run.error else None,
                     run.partition_search, frame, run.startup_seconds(),
                     tuple(dict(r) for r in getattr(run, "restarts", ())), run.validation,
                     training_metrics(frame))



"""What the run panel shows: progress, the points of its live plots (validation values too),
and the outcome.

Step records arrive per rank (``Run.on_metrics``) on the Dask client's thread, in any order.
A step counts as done, and gets a point on the totals plots, once every rank has reported it;
each rank's own throughput is plotted as its records come. Points are handed out once
(`take_points`), so a plot only ever streams what is new.
"""
from __future__ import annotations

import threading
from typing import Dict, List, Optional, Sequence

from tqdm import tqdm

from ...launch.columns import validation_line, validation_values
from .phases_view import PhaseBars, StartupView

TOTAL_SERIES = ("step", "examples_per_sec", "step_time", "loss")
RANK_SERIES = ("step", "examples_per_sec")


class RunView:
    """Progress and plot data of one run, fed with step records."""

    def __init__(self, total_steps: int, ranks: Sequence[int]):
        self.total_steps = total_steps
        self.ranks = list(ranks)
        self._lock = threading.Lock()
        self._last_step = {rank: 0 for rank in self.ranks}
        self._waiting: Dict[int, Dict[int, dict]] = {}          # step -> {rank: record}
        self._new_rank_points = {rank: _series(RANK_SERIES) for rank in self.ranks}
        self._new_total_points = _series(TOTAL_SERIES)
        self._latest_total: Optional[dict] = None
        self._first_done: Optional[tuple] = None   # (step, time) of the first step all did
        self.restarts: List[dict] = []              # Run.on_restart's records, newest last
        self.phases = PhaseBars(self.ranks)         # each rank's newest sampled step
        self.validations: List[dict] = []           # Run.on_validation's rows, in order
        self._new_validation_points: List[dict] = []

    def add(self, records: List[dict]) -> None:
        with self._lock:
            for record in sorted(records, key=lambda r: (r["step"], r["rank"])):
                self._add(record)
        self.phases.add(records)

    def _add(self, record: dict) -> None:
        rank, step = record["rank"], record["step"]
        self._last_step[rank] = max(self._last_step[rank], step)
        points = self._new_rank_points[rank]
        points["step"].append(step)
        points["examples_per_sec"].append(record["examples_per_sec"])
        waiting = self._waiting.setdefault(step, {})
        waiting[rank] = record
        if len(waiting) == len(self.ranks):
            del self._waiting[step]
            total = {"step": step,
                     "examples_per_sec": sum(r["examples_per_sec"] for r in waiting.values()),
                     "step_time": max(r["step_time"] for r in waiting.values()),
                     "loss": sum(r["loss"] for r in waiting.values()) / len(waiting)}
            for name in TOTAL_SERIES:
                self._new_total_points[name].append(total[name])
            total["time"] = max(r.get("time") or 0.0 for r in waiting.values())
            self._first_done = self._first_done or (step, total["time"])
            self._latest_total = total

    def add_validation(self, row: dict) -> None:
        """A validation's row (`Run.on_validation`)."""
        with self._lock:
            self.validations.append(row)
            self._new_validation_points.append(
                {"step": row["step"], **validation_values(row)})

    def take_validation_points(self) -> List[dict]:
        """Validations that arrived since the last call: ``{step, val_*: value}`` each."""
        with self._lock:
            points, self._new_validation_points = self._new_validation_points, []
        return points

    def validation_text(self) -> str:
        """The last validation's line (`launch.columns.validation_line`), or ""."""
        with self._lock:
            if not self.validations:
                return ""
            last = self.validations[-1]
        stopped = f"\n{last['stopped']}" if last.get("stopped") else ""
        return validation_line(last) + stopped

    def restarted(self, restart: dict) -> None:
        """The run restarted (`Run.on_restart`): follow its new ranks from here; called again
        with the step it resumed from once it has."""
        with self._lock:
            if self.restarts and self.restarts[-1]["restart"] == restart["restart"]:
                self.restarts[-1] = restart
                return
            self.restarts.append(restart)
            self.ranks = list(range(restart["ranks"]))
            self._last_step = {rank: 0 for rank in self.ranks}
            self._waiting = {}
            self._new_rank_points = {rank: self._new_rank_points.get(rank, _series(RANK_SERIES))
                                     for rank in self.ranks}
            self.phases = PhaseBars(self.ranks)

    def restart_text(self) -> str:
        """``restarted 1x (last: rank 1 on ... lost at step 57, resumed from 50, 9.8 s)``."""
        with self._lock:
            if not self.restarts:
                return ""
            last = self.restarts[-1]
        resumed = (f", resumed from {last['resumed_from']}, {last['seconds']:.1f} s"
                   if "resumed_from" in last else ", restarting")
        return (f"restarted {len(self.restarts)}x (last: {last['lost']} at step "
                f"{last['at_step']}{resumed})")

    @property
    def steps_done(self) -> int:
        """Steps every rank has finished."""
        with self._lock:
            return min(self._last_step.values()) if self._last_step else 0

    @property
    def latest(self) -> Optional[dict]:
        """The newest step all ranks have reported: total examples/s, slowest step time,
        mean loss."""
        with self._lock:
            return dict(self._latest_total) if self._latest_total else None

    def take_points(self):
        """(totals, per rank) points that arrived since the last call, as column lists."""
        with self._lock:
            totals, self._new_total_points = self._new_total_points, _series(TOTAL_SERIES)
            per_rank = self._new_rank_points
            self._new_rank_points = {rank: _series(RANK_SERIES) for rank in self.ranks}
        return totals, per_rank

    @property
    def steps_per_second(self) -> Optional[float]:
        """Training speed since the first step (start-up and the first step's graph building
        would make the ETA far too long)."""
        with self._lock:
            if self._first_done is None or self._latest_total is None:
                return None
            steps = self._latest_total["step"] - self._first_done[0]
            seconds = self._latest_total["time"] - self._first_done[1]
        return steps / seconds if steps > 0 and seconds > 0 else None

    def progress(self, elapsed: float) -> str:
        """tqdm's meter: ``40%|####      | 40/100 [00:10<00:15, 3.96step/s]``."""
        return tqdm.format_meter(self.steps_done, self.total_steps, elapsed, unit="step",
                                 ncols=60, rate=self.steps_per_second)

    def startup_lines(self, run, now: float) -> List[str]:
        """``run``'s start-up as it happens (`phases_view.StartupView`); [] once it steps."""
        return StartupView(run.train_called_at, run.mode in ("HYBRID", "PS")).lines(
            run.status, run.started_at if run.analysis is not None else None,
            dict(run.startup), self.ranks, now)

    def run_text(self, run, now: float) -> str:
        """`text` of ``run``, with its start-up while it starts and its step phases."""
        return "\n".join([self.text(run.status, now - run.started_at)] +
                         self.startup_lines(run, now) + self.phases.text())

    def text(self, status: str, elapsed: float) -> str:
        line = f"{status}: {self.progress(elapsed)}"
        latest = self.latest
        if latest:
            line += (f"  {latest['examples_per_sec']:,.0f} examples/s, step "
                     f"{latest['step_time'] * 1000:.0f} ms, loss {latest['loss']:.4f}")
        return "\n".join(part for part in (line, self.validation_text(), self.restart_text())
                         if part)


def _series(names) -> Dict[str, list]:
    return {name: [] for name in names}

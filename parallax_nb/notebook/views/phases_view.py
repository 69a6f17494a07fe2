"""Where the time goes, while the run goes: start-up as it happens, then each rank's step in
phases.

Start-up: ``plan`` (px.train in the client) and ``process`` (until a rank's code runs) are
known to the client; then each rank reports every mark of its own start-up (``startup``
events: horovod, connect, model, optimizer, trace, first_step), so the view says which
phase each rank is in and for how long so far.

Steps: a rank reports the phases of one step in every ``Config.profile_every`` (every step
with ``profile=True``): ``t_input`` ... ``t_host`` (`runtime.profile.PHASES`), which tile the
step (they add up to its ``step_time``). The newest sampled step of each rank is shown as a
stacked bar; the rank whose step took longest is the one the others wait for, and is flagged.
"""
from __future__ import annotations

import math
import threading
from typing import Dict, List, Optional

from ...runtime.profile import PHASES, STARTUP_PHASES


class StartupView:
    """Start-up as it happens, from the run's timestamps and its ranks' ``startup`` events."""

    def __init__(self, called_at: float, has_servers: bool):
        self.called_at = called_at
        self.has_servers = has_servers

    def next_phase(self, phases: Dict[str, float]) -> Optional[str]:
        """The phase a rank is in after the marks ``phases`` (None once it is done)."""
        order = [p for p in STARTUP_PHASES if self.has_servers or p != "connect"]
        left = [p for p in order if p not in phases]
        return left[0] if left else None

    def lines(self, status: str, launched_at: Optional[float], startup: Dict[int, dict],
              ranks: List[int], now: float) -> List[str]:
        """``start-up 8.1 s: plan 3.4 s; rank 0 in model (1.2 s so far; horovod 2.1, ...)``,
        one line per rank; [] once every rank has stepped."""
        if status == "planning" or launched_at is None:
            return [f"start-up {now - self.called_at:.1f} s: planning (analysis, searches)"]
        if ranks and all(startup.get(r, {}).get("done") for r in ranks):
            return []
        lines = [f"start-up {now - self.called_at:.1f} s: "
                 f"plan {launched_at - self.called_at:.1f} s"]
        for rank in ranks:
            event = startup.get(rank)
            if event is None:
                lines.append(f"  rank {rank}: process starting ({now - launched_at:.1f} s so far)")
                continue
            phases = event["phases"]
            done = ", ".join(f"{p} {s:.2f}" for p, s in phases.items())
            current = self.next_phase(phases)
            if current is None or event.get("done"):
                lines.append(f"  rank {rank}: stepping (process "
                             f"{event['started'] - launched_at:.2f}, {done})")
                continue
            since = now - event["started"] - sum(phases.values())
            lines.append(f"  rank {rank}: {current} ({since:.1f} s so far; process "
                         f"{event['started'] - launched_at:.2f}{', ' + done if done else ''})")
        return lines


class PhaseBars:
    """The newest sampled step of each rank, as bars of milliseconds per phase."""

    def __init__(self, ranks: List[int]):
        self.ranks = list(ranks)
        self._lock = threading.Lock()
        self._latest: Dict[int, dict] = {}
        self.changed = False

    def add(self, records: List[dict]) -> None:
        with self._lock:
            for record in records:
                if not _sampled(record):
                    continue
                rank = record["rank"]
                if rank not in self._latest or record["step"] >= self._latest[rank]["step"]:
                    self._latest[rank] = record
                    self.changed = True

    def bars(self) -> Dict[str, list]:
        """Columns for a stacked bar chart: ``rank`` ("rank 0", ...), ``label`` (the slowest
        rank's says so), ``step``, ``step_ms``, one column of ms per phase, and ``slowest``
        (the rank the others wait for)."""
        with self._lock:
            latest = [self._latest[r] for r in self.ranks if r in self._latest]
            self.changed = False
        slowest = max(latest, key=lambda r: r["step_time"])["rank"] if latest else None
        columns = {"rank": [f"rank {r['rank']}" for r in latest],
                   "label": [_label(r["rank"], r["rank"] == slowest) for r in latest],
                   "step": [r["step"] for r in latest],
                   "step_ms": [r["step_time"] * 1e3 for r in latest],
                   "slowest": [r["rank"] == slowest for r in latest]}
        for phase in PHASES:
            columns[phase] = [r[f"t_{phase}"] * 1e3 for r in latest]
        return columns

    def text(self) -> List[str]:
        """One line per rank: ``rank 1 (step 52): input 0.10 | pull 1.20 | ... = 12.31 ms``."""
        bars = self.bars()
        return [f"{label} (step {step}): " +
                " | ".join(f"{p} {bars[p][i]:.2f}" for p in PHASES) + f" = {total:.2f} ms"
                for i, (label, step, total) in enumerate(zip(bars["label"], bars["step"],
                                                             bars["step_ms"]))]


def _label(rank: int, slowest: bool) -> str:
    return f"rank {rank}" + (" (slowest)" if slowest else "")


def _sampled(record: dict) -> bool:
    value = record.get("t_compute")
    return value is not None and not (isinstance(value, float) and math.isnan(value))

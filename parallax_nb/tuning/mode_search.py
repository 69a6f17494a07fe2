"""``mode="auto"``: which of HYBRID, PS and AR to train in, from the cost model and, where it
cannot tell, from short measured trials.

The cost model counts the bytes each mode moves between machines per step (`analysis.cost`)
and the memory each process holds (`analysis.memory`). A mode that cannot fit is out. When
one mode moves fewer than half the bytes of every other that fits, it is chosen without a
trial: the network decides. Otherwise (on one machine every mode moves nothing between
machines, and there latency and the processes' own work decide, which bytes do not predict)
the close candidates are each timed with a short run, as the partition search times a
partition count, those within 20% of the fastest are timed once more (in reverse order, so
a trend in the machine's load does not favour one), and the fastest mean is chosen.

Everything here is a function of the predictions and of ``measure(mode) -> seconds per
step``, so the logic is tested with synthetic costs; `plan.trials` measures real runs.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, Dict

import pandas as pd

from ..errors import ConfigError
from .partition_search import TrialFailed

CLOSE = 2.0   # candidates within this factor of the fewest bytes are measured
# Trials this close are timed again, in reverse order, and averaged. Three full runs of one
# mode differ by up to 18% here (benchmarks/results/mode_choice.md: slowest over fastest
# 0.82-0.95), and at 10% a trial 16% off once picked a mode 14% slower.
NOISE = 0.20


@dataclasses.dataclass(frozen=True)
class ModeChoice:
    """The chosen mode and every candidate's predicted and measured figures."""

    mode: str
    candidates: pd.DataFrame    # mode, fits, bytes_per_step, seconds_per_step, note
    reason: str
    seconds: float              # what the choice cost (its trials' wall time)

    def to_frame(self) -> pd.DataFrame:
        return self.candidates.copy()

    def summary(self) -> str:
        return f"mode auto chose {self.mode}: {self.reason} ({self.seconds:.1f} s)"

    def __str__(self):
        return self.summary() + "\n" + self.candidates.to_string(index=False)


def choose_mode(predicted: Dict[str, float], fits: Dict[str, bool],
                measure: Callable[[str], float]) -> ModeChoice:
    """predicted: bytes per machine per step of each distinct mode; fits: whether its plan
    fits the workers' memory; measure(mode): seconds per step of a short run (at most two
    per mode)."""
    started = time.time()
    rows = {m: {"mode": m, "fits": fits[m], "bytes_per_step": predicted[m],
                "seconds_per_step": None, "note": "" if fits[m] else "does not fit in memory"}
            for m in predicted}
    fitting = [m for m in predicted if fits[m]]
    if not fitting:
        raise ConfigError(f"mode='auto': no mode fits the workers' memory "
                          f"({', '.join(predicted)}); select more workers or workers with "
                          f"more memory")
    least = min(predicted[m] for m in fitting)
    close = [m for m in fitting if predicted[m] <= CLOSE * least]
    if len(close) == 1:
        chosen = close[0]
        others = [m for m in fitting if m != chosen]
        reason = (f"it moves {_ratio(predicted, chosen, others)} fewer bytes per step than "
                  f"any other mode that fits" if others else "the only mode that fits")
        for m in others:
            rows[m]["note"] = "moves more than twice the bytes"
        return ModeChoice(chosen, _frame(rows), reason, time.time() - started)
    timed = {}
    for m in close:
        try:
            timed[m] = measure(m)
            rows[m]["seconds_per_step"] = timed[m]
        except TrialFailed as exc:
            rows[m]["note"] = f"trial failed: {exc}"
    fastest = min(timed.values()) if timed else 0.0
    again = [m for m in reversed(close) if m in timed and timed[m] <= (1 + NOISE) * fastest]
    if len(again) > 1:   # within the machine's noise of each other: a second opinion
        for m in again:
            try:
                timed[m] = (timed[m] + measure(m)) / 2
                rows[m]["seconds_per_step"] = timed[m]
                rows[m]["note"] = "timed twice (close to the fastest), mean"
            except TrialFailed as exc:
                rows[m]["note"] = f"second trial failed: {exc}"
    if not timed:
        raise ConfigError(f"mode='auto': every trial failed ({', '.join(close)}); see the "
                          f"candidates' notes")
    chosen = min(timed, key=timed.get)
    reason = (f"the fastest of {len(timed)} measured trials "
              f"({', '.join(f'{m} {1000 * s:.1f} ms' for m, s in timed.items())} per step); "
              f"the bytes alone did not tell them apart")
    return ModeChoice(chosen, _frame(rows), reason, time.time() - started)


def _ratio(predicted, chosen, others) -> str:
    nearest = min(predicted[m] for m in others)
    return f"{nearest / predicted[chosen]:.1f}x" if predicted[chosen] else "far"


def _frame(rows) -> pd.DataFrame:
    return pd.DataFrame(list(rows.values()),
                        columns=["mode", "fits", "bytes_per_step", "seconds_per_step", "note"])

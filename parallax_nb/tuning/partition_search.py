"""How many partitions a large sparse variable gets: the paper's search, free of any cluster.

More partitions spread a table's gathers and updates over more server threads and servers
(a cost falling like 1/P) but add a request, a queue push and an update per partition and
step (a cost growing with P). Parallax therefore times a few partition counts and fits

    t(P) = a / P + b (P - 1) + c

The search starts at max(#hosts, the fewest partitions that fit in server memory), doubles P
while the step time improves and, when the first doubling is already worse, halves it
instead, stopping at the first sample that is worse than its predecessor. A trial that
fails (out of memory, say) is recorded; before any trial succeeded the search moves up.
With three or more timed samples the integer argmin of the fitted curve inside the sampled
range is chosen, otherwise the fastest sample.

Everything here is a function of ``measure(P) -> seconds per step``, so the logic is tested
with synthetic cost functions; `parallax_nb.plan.trials` measures real runs.
"""
from __future__ import annotations

import dataclasses
import math
import time
import warnings
from typing import Callable, Dict, Optional, Sequence, Tuple

import numpy as np
import pandas as pd

from ..errors import ConfigError, ParallaxError

FIT = "fit"
BEST_SAMPLE = "best sample"


class TrialFailed(ParallaxError):
    """``measure(P)`` could not time P (the run failed); the search records it."""


class SearchFailed(ParallaxError):
    """No partition count could be timed: every trial failed."""


@dataclasses.dataclass(frozen=True)
class Sample:
    """One trial: P, its seconds per step (None if it failed, then ``error`` says why) and
    the trial's own wall time (start-up included)."""

    partitions: int
    seconds_per_step: Optional[float]
    trial_seconds: float
    error: Optional[str] = None

    @property
    def ok(self) -> bool:
        return self.seconds_per_step is not None

    @property
    def reason(self) -> str:
        """Why the trial failed, in one line ("" when it did not)."""
        return _first_line(self.error) if self.error else ""


@dataclasses.dataclass(frozen=True)
class PartitionSearch:
    """The outcome: the chosen P, every sample, the fitted curve and what the search cost."""

    chosen: int
    samples: Tuple[Sample, ...]
    coefficients: Optional[Tuple[float, float, float]]   # a, b, c in seconds; None: no fit
    seconds: float                                         # the whole search, wall time
    start: int
    variables: Tuple[str, ...] = ()                        # the searched variables

    @property
    def method(self) -> str:
        return FIT if self.coefficients else BEST_SAMPLE

    @property
    def partitions(self) -> Dict[str, int]:
        """``Config.partitions`` for the searched variables."""
        return {name: self.chosen for name in self.variables}

    def predicted(self, partitions):
        """Fitted seconds per step at ``partitions`` (an int or an array)."""
        if not self.coefficients:
            raise ValueError("no curve was fitted (fewer than three timed samples)")
        return cost_model(np.asarray(partitions, dtype=float), *self.coefficients)

    def to_frame(self) -> pd.DataFrame:
        """One row per trial in the order run: partitions, seconds_per_step, trial_seconds,
        error."""
        return pd.DataFrame([dataclasses.asdict(s) for s in self.samples],
                            columns=["partitions", "seconds_per_step", "trial_seconds", "error"])

    def summary(self) -> str:
        timed = sum(s.ok for s in self.samples)
        how = (f"argmin of t(P) = a/P + b(P-1) + c fitted to {timed} samples"
               if self.coefficients else f"fastest of {timed} sample(s)")
        return (f"partition search: P={self.chosen} for {', '.join(self.variables) or '-'} "
                f"({how}, {len(self.samples)} trial(s) in {self.seconds:.1f} s)")

    def __str__(self):
        lines = [self.summary(), f"  {'P':>5}  {'ms/step':>9}  {'trial s':>8}"]
        for s in self.samples:
            timed = f"{s.seconds_per_step * 1000:9.2f}" if s.ok else f"{'failed':>9}"
            lines.append(f"  {s.partitions:>5}  {timed}  {s.trial_seconds:8.1f}"
                         + (f"  {s.reason}" if s.error else ""))
        if self.coefficients:
            a, b, c = self.coefficients
            lines.append(f"  fit: a={a:.4g} s, b={b:.4g} s, c={c:.4g} s")
        return "\n".join(lines)


def cost_model(partitions, a, b, c):
    """t(P) = a/P + b(P - 1) + c: per-partition parallelism against per-partition overhead."""
    return a / partitions + b * (partitions - 1) + c


def search_partitions(measure: Callable[[int], float], start: int, minimum: int,
                      maximum: int,
                      clock: Callable[[], float] = time.monotonic) -> PartitionSearch:
    """Search P from ``start`` within [minimum, maximum] (see the module docstring).

    measure(P) returns seconds per step, or raises `TrialFailed`. ``maximum`` bounds a cost
    that keeps falling (at most the table's rows: a partition needs one).
    """
    if not 1 <= minimum <= start <= maximum:
        raise ValueError(f"need 1 <= minimum <= start <= maximum, got {minimum}, {start}, "
                         f"{maximum}")
    began = clock()
    samples = []

    def trial(partitions: int) -> Optional[float]:
        t0 = clock()
        try:
            seconds, error = float(measure(partitions)), None
        except TrialFailed as exc:
            seconds, error = None, str(exc)
        samples.append(Sample(partitions, seconds, clock() - t0, error))
        return seconds

    partitions = start
    seconds = trial(partitions)
    while seconds is None:                    # failed: more partitions, smaller ones
        if partitions * 2 > maximum:
            raise SearchFailed(_all_failed(samples))
        partitions *= 2
        seconds = trial(partitions)
    failed_below = any(not s.ok for s in samples)
    floor = partitions if failed_below else minimum   # never back down to a failed count

    improved = False
    while partitions * 2 <= maximum:
        doubled = trial(partitions * 2)
        if doubled is None or doubled >= seconds:
            break
        partitions, seconds, improved = partitions * 2, doubled, True
    # Halve only when the first doubling was already worse. Once doubling has improved, the
    # convex t(P) has its minimum above the start, so a trial below it could only be slower.
    if not improved:
        while partitions // 2 >= floor:
            halved = trial(partitions // 2)
            if halved is None or halved >= seconds:
                break
            partitions, seconds = partitions // 2, halved

    chosen, coefficients = choose(samples)
    return PartitionSearch(chosen, tuple(samples), coefficients, clock() - began, start)


def trial_bound(start: int, minimum: int, maximum: int) -> int:
    """The most trials `search_partitions` can run: it tries each P of the form
    start * 2**k (k >= 0, up to ``maximum``) or start // 2**k (down to ``minimum``) at most
    once."""
    up = 0
    while start * 2 ** (up + 1) <= maximum:
        up += 1
    down = 0
    while start // 2 ** (down + 1) >= minimum:
        down += 1
    return 1 + up + down


def choose(samples: Sequence[Sample]) -> Tuple[int, Optional[Tuple[float, float, float]]]:
    """The integer argmin of the fitted curve within the timed range (three samples or
    more, and a fit that converges), else the fastest sample."""
    timed = [s for s in samples if s.ok]
    fastest = min(timed, key=lambda s: s.seconds_per_step).partitions
    if len(timed) < 3:
        return fastest, None
    coefficients = fit_cost_model([s.partitions for s in timed],
                                  [s.seconds_per_step for s in timed])
    if coefficients is None:
        return fastest, None
    candidates = np.arange(min(s.partitions for s in timed), max(s.partitions for s in timed) + 1)
    return int(candidates[np.argmin(cost_model(candidates, *coefficients))]), coefficients


def fit_cost_model(partitions: Sequence[int], seconds: Sequence[float]
                   ) -> Optional[Tuple[float, float, float]]:
    """Least-squares a, b, c of `cost_model` with ``scipy.optimize.curve_fit``, or None.

    a and b are kept non-negative: a negative parallelism or overhead term has no meaning and,
    fitted to noise, would put the minimum at an edge for no reason. Times are scaled to their
    maximum for the fit (as Parallax does), which keeps the solver well conditioned.
    """
    from scipy.optimize import OptimizeWarning, curve_fit

    x = np.asarray(partitions, dtype=float)
    scale = float(max(seconds))
    y = np.asarray(seconds, dtype=float) / scale
    guess = (max(y[np.argmin(x)] - y.min(), 1e-3) * x.min(), 1e-3, y.min())
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", OptimizeWarning)  # exact fits: no covariance
            (a, b, c), _ = curve_fit(cost_model, x, y, p0=guess,
                                     bounds=([0.0, 0.0, -np.inf], [np.inf, np.inf, np.inf]))
    except (RuntimeError, ValueError):
        return None
    return float(a * scale), float(b * scale), float(c * scale)


def minimum_partitions(table_bytes: int, servers: int, server_memory: int,
                       copies: int) -> int:
    """The fewest partitions whose heaviest server still fits ``copies`` x its share.

    With P partitions over S servers the busiest server holds ceil(P/S) partitions of
    table/P bytes, and no P brings that below table/S: if P = 1..S cannot fit, none can.
    ``copies`` counts the value and the optimizer's slots kept beside it on the server.
    """
    for partitions in range(1, servers + 1):
        if math.ceil(partitions / servers) * table_bytes * copies / partitions <= server_memory:
            return partitions
    raise ConfigError(
        f"the searched sparse variables ({table_bytes / 2**20:,.0f} MiB, x{copies} with "
        f"optimizer slots) do not fit in {servers} parameter server(s) with "
        f"{server_memory / 2**20:,.0f} MiB available each: add hosts or servers "
        f"(Config.servers), or free memory on the servers' hosts")


def _all_failed(samples: Sequence[Sample]) -> str:
    tried = "; ".join(f"P={s.partitions}: {s.reason}" for s in samples)
    return (f"partition search: every trial failed ({tried}). Fix the failure, or set "
            f"Config(partitions=...) to a count that works")


def _first_line(text: Optional[str]) -> str:
    return next(iter((text or "").strip().splitlines()), "failed")

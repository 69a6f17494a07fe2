"""Examples per second: the median over a window of steps after warm-up.

The first steps trace functions, connect to servers and fill caches; the last ones are
followed by the run's end (rank 0 reads the trained variables back from the servers), which
the link counters would smear into the window. Both are left out. A synchronous run's ranks
step together, so its throughput is the sum over ranks of each rank's median examples/s in
the window.
"""
from __future__ import annotations

import time
from typing import Optional, Tuple

import numpy as np
import pandas as pd

from parallax_nb.program import Program
from parallax_nb.runtime.single import train_single_device


COOLDOWN = 2     # steps at the end left out
MIN_STEPS = 10   # fewest steps a window may hold


def window(steps: int, warmup: int, metrics: Optional[pd.DataFrame] = None,
           after: Optional[float] = None) -> Tuple[int, int]:
    """(first, last): the measured steps are first+1 .. last.

    after: a moment (``time.time()``) the window must not reach back before, e.g. when the
    links were shaped: the window then starts at the last step rank 0 ended before it.
    """
    first, last = warmup, steps - COOLDOWN
    if after is not None:
        chief = metrics[metrics["rank"] == 0]
        before = chief.loc[chief["time"] <= after, "step"]
        if len(before):   # (none: the links changed before rank 0's first step ended)
            first = max(first, int(before.max()))
    if last - first < MIN_STEPS:
        raise ValueError(f"only {max(last - first, 0)} of {steps} steps left to measure "
                         f"(warm-up {warmup}, start {first}, {COOLDOWN} final steps left "
                         f"out); at least {MIN_STEPS} are needed: train more steps")
    return first, last


def run_throughput(metrics: pd.DataFrame, first: int, last: int) -> float:
    """Examples/s of an SDK run over steps first+1 .. last: each rank's median, summed."""
    steady = metrics[(metrics["step"] > first) & (metrics["step"] <= last)]
    return float(steady.groupby("rank")["examples_per_sec"].median().sum())


def plain_throughput(program: Program, steps: int, batch_size: int, warmup: int) -> float:
    """Examples/s of plain TensorFlow: one process, one ``tf.function`` step, no SDK.

    The SDK's own single-device loop (`train_single_device`: tape, gradients, apply) over
    the same model, loss, data and optimizer functions; each step's time runs from the end
    of the previous step to the end of this one, as a rank measures it.
    """
    ends = [time.perf_counter()]
    train_single_device(program, steps, batch_size=batch_size,
                        on_step=lambda *_: ends.append(time.perf_counter()))
    first, last = window(steps, warmup)
    step_times = np.diff(ends)[first:last]
    return float(batch_size / np.median(step_times))

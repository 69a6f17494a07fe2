"""One step across the ranks: when each rank's phases ended, on a common clock.

A rank's phases (`runtime.profile`) say how long each part of its own step took, but not
what it waited *for*: a rank's pull can be long because the server's update of the step
before came late (another rank's push was late), or because the exchange itself is slow
while the update was ready long before. Only the ranks' phases side by side, on one clock,
tell these apart. Each sampled step's record carries ``step_started_at``: the wall-clock
time at which the step's own graph began (``tf.timestamp()``, seconds since the epoch, the
host's clock); the graph phases follow it one after the other (``t_pull`` ... ``t_apply``:
each stamp waits for the one before, `runtime.profile`), so their running sums are when each
phase ended.

`step_timeline` aligns every step that all ranks sampled on the earliest rank's start, and
gives per rank the median of each phase's end, and of its next step's start (the gap between
steps: the Python around the step and TensorFlow dispatching the next call). The ranks of
one host share its clock; ranks on different hosts are compared as their clocks stand
(NTP keeps them within about a millisecond at best), so across hosts read it with that in
mind. After a restart (``attempt``) only the last attempt's steps count: the one before may
have had other ranks, and a step it redid is the new attempt's.
"""
from __future__ import annotations

from typing import Optional

import pandas as pd

from ..runtime.profile import GRAPH_PHASES

COLUMNS = ["start", *GRAPH_PHASES, "next_start"]


def step_timeline(frame: Optional[pd.DataFrame], first: int = 1,
                  last: Optional[int] = None) -> pd.DataFrame:
    """Per rank (index), ms after the step's earliest start across ranks (median over the
    steps first+1..last that every rank sampled): ``start``, the end of each graph phase,
    and ``next_start``, when the rank's next step began (NaN where that step was not
    sampled). Empty without sampled steps (``Config(profile=True)`` or ``profile_every``)."""
    columns = ["step_started_at"] + [f"t_{p}" for p in GRAPH_PHASES]
    if frame is None or frame.empty or "step_started_at" not in frame.columns:
        return pd.DataFrame(columns=COLUMNS)
    if "attempt" in frame.columns and frame["attempt"].notna().any():
        frame = frame[frame["attempt"] == frame["attempt"].max()]
    sampled = (frame.dropna(subset=columns)[["rank", "step"] + columns]
               .drop_duplicates(["rank", "step"], keep="last"))
    ranks = sampled["rank"].nunique()
    last = int(frame["step"].max()) if last is None else last
    steps = sampled[(sampled["step"] > first) & (sampled["step"] <= last)]
    complete = steps.groupby("step")["rank"].transform("nunique") == ranks
    steps = steps[complete]
    if steps.empty:
        return pd.DataFrame(columns=COLUMNS)
    origin = steps.groupby("step")["step_started_at"].transform("min")
    ends = pd.DataFrame({"rank": steps["rank"], "start": steps["step_started_at"] - origin})
    elapsed = ends["start"]
    for phase in GRAPH_PHASES:
        elapsed = elapsed + steps[f"t_{phase}"]
        ends[phase] = elapsed
    following = sampled.assign(step=sampled["step"] - 1).set_index(["rank", "step"])
    next_started = following["step_started_at"].reindex(
        pd.MultiIndex.from_arrays([steps["rank"], steps["step"]])).to_numpy()
    ends["next_start"] = next_started - origin.to_numpy()
    return ends.groupby("rank")[COLUMNS].median() * 1e3

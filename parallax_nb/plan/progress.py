"""What a run's planning is doing: the searches' trials as they happen, and its cancel switch.

The searches run short trial launches before the real one (`plan.trials`). Each trial is
reported here when it starts and when it ends (which search, trial i of at most n, the
setting tried, its seconds per step or why it failed), for the run panel, the terminal and
``run.planning.records``; ``cancel()`` (what ``run.stop()`` does while the run plans) stops
the trial under way and ends the search.
"""
from __future__ import annotations

import dataclasses
import threading
from typing import Callable, List, Optional

from ..errors import RunStopped


CANCELLED = "cancelled"


class SearchCancelled(RunStopped):
    """The run was stopped while its searches ran: no plan, nothing launched."""


@dataclasses.dataclass(frozen=True)
class Trial:
    search: str                 # "mode" or "partitions"
    number: int                 # 1, 2, ...
    at_most: int                # the search's bound on its trials
    setting: str                # "AR", "P=8"
    seconds_per_step: Optional[float] = None
    error: str = ""
    running: bool = False

    def text(self) -> str:
        if self.running:
            outcome = "running"
        elif self.seconds_per_step is not None:
            outcome = f"{self.seconds_per_step * 1e3:.2f} ms/step"
        elif self.error == CANCELLED:
            outcome = CANCELLED
        else:
            outcome = f"failed: {self.error}"
        return (f"{self.search} search: trial {self.number} of at most {self.at_most}, "
                f"{self.setting}: {outcome}")


class Planning:
    """The trials of one run's searches so far; callbacks see each as it starts and ends."""

    def __init__(self):
        self.records: List[Trial] = []      # ended trials, in order
        self.current: Optional[Trial] = None
        self.trial_run = None               # the Run of the trial under way (`trials`)
        self.trial_run_ids: List[str] = []  # every trial's run id, in launch order: what
        #                                     each left (``parallax-<id>-*``) can be found
        self.cancelled = threading.Event()
        self._callbacks: List[Callable[[Trial], None]] = []
        self._lock = threading.RLock()      # also orders what callbacks see

    def on_trial(self, callback: Callable[[Trial], None]) -> None:
        """Call ``callback(trial)`` when a trial starts (``running``) and when it ends."""
        with self._lock:
            self._callbacks.append(callback)
            for trial in list(self.records) + ([self.current] if self.current else []):
                callback(trial)

    def measured(self, search: str, at_most: int, measure: Callable, setting: Callable):
        """``measure`` wrapped to report each call as a trial of ``search``;
        ``setting(argument)`` names what a trial tries."""
        def trial(argument):
            self.raise_if_cancelled()
            started = Trial(search, len([r for r in self.records if r.search == search]) + 1,
                            at_most, setting(argument), running=True)
            self._tell(started, ended=False)
            try:
                seconds = measure(argument)
            except SearchCancelled:
                self._tell(dataclasses.replace(started, running=False, error=CANCELLED),
                           record=False)
                raise
            except Exception as exc:
                self._tell(dataclasses.replace(started, running=False, error=str(exc)))
                raise
            self._tell(dataclasses.replace(started, running=False, seconds_per_step=seconds))
            return seconds
        return trial

    def _tell(self, trial: Trial, ended: bool = True, record: bool = True) -> None:
        with self._lock:
            self.current = None if ended else trial
            if ended and record:
                self.records.append(trial)
            for callback in list(self._callbacks):
                try:
                    callback(trial)
                except Exception:   # a view that fails must not end the search
                    pass

    def launching(self, run) -> None:
        """``run`` is the trial about to launch: `cancel` stops it."""
        with self._lock:
            self.trial_run = run
            self.trial_run_ids.append(run.run_id)

    def cancel(self) -> None:
        """End the searches: no further trial starts, and the one under way is stopped
        here (its processes are gone when this returns, or within its stop's timeout)."""
        self.cancelled.set()
        trial = self.trial_run
        if trial is not None and not trial.done:
            try:
                trial.stop()
            except TimeoutError:   # the trial's own loop keeps stopping it
                pass

    def raise_if_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise SearchCancelled("the run was stopped during its searches: nothing was "
                                  "launched")

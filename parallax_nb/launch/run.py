"""A running (or finished) training job, as the client sees it.

Metrics arrive as Dask events on the run's topic; a watcher thread follows the rank tasks:
the first failure stops every other rank, and when all tasks are over the rendezvous
server is stopped and the topic unsubscribed.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Dict, List, Optional

import pandas as pd

from ..errors import ParallaxError, RankError, RunStopped
from ..events import DONE, INFO, STARTED, STARTUP, TOPOLOGY
from ..runtime.profile import PHASES

STARTING, RUNNING, FINISHED, FAILED, STOPPED = "starting", "running", "finished", "failed", \
    "stopped"
METRIC_COLUMNS = ["rank", "host", "step", "loss", "examples", "step_time", "examples_per_sec",
                  "ps_sent", "ps_recv", "hvd_sent", "hvd_recv", "local_bytes", "time"] + \
    [f"t_{phase}" for phase in PHASES] + ["servers_touched", "collectives"]   # profile=True


class Run:
    """Handle of one training job: ``metrics``, ``status``, ``wait()``, ``stop()``,
    ``result()``, and ``on_metrics(callback)`` for live views."""

    def __init__(self, client, run_id: str, topic: str, stop_event, slots, config,
                 mode: str, analysis):
        self.client = client
        self.analysis = analysis
        self.run_id = run_id
        self.topic = topic
        self.config = config
        self.mode = mode
        self.slots = slots
        self._stop_event = stop_event
        self._cleanups: List[Callable[[], None]] = [self._unsubscribe]
        self._lock = threading.Lock()
        self._records: List[dict] = []
        self._callbacks: List[Callable[[List[dict]], None]] = []
        self._status = STARTING
        self._done = threading.Event()
        self.error: Optional[BaseException] = None
        self.notes: List[str] = []
        self.pids: Dict[int, int] = {}
        self.topology: Dict[int, dict] = {}
        self.startup: Dict[int, dict] = {}   # per rank: STARTUP events (see startup_seconds)
        self.train_called_at = time.time()   # px.train sets it to when it was called
        self.servers_started: Dict[int, dict] = {}
        self.ranks_done: set = set()
        self._outcomes: Dict[int, dict] = {}
        self._futures = []
        self.started_at = time.time()
        self.finished_at: Optional[float] = None
        self.partition_search = None   # set by train() when partitions="auto" searched
        client.subscribe_topic(topic, self._on_event)

    # -- events from the ranks ------------------------------------------------------------------
    def _on_event(self, event):
        _, message = event
        kind = message.get("type")
        if kind == "steps":
            records = message["records"]
            with self._lock:
                self._records.extend(records)
                if self._status == STARTING:
                    self._status = RUNNING
                callbacks = list(self._callbacks)
            for callback in callbacks:
                callback(records)
        elif kind == STARTED and "server" in message:
            self.servers_started[message["server"]] = message
        elif kind == STARTED:
            self.pids[message["rank"]] = message["pid"]
        elif kind == TOPOLOGY:
            self.topology[message["rank"]] = message
        elif kind == STARTUP:
            self.startup[message["rank"]] = message
        elif kind == INFO:
            if message["message"] not in self.notes:
                self.notes.append(message["message"])
        elif kind == DONE:
            self.ranks_done.add(message["rank"])

    def startup_seconds(self) -> dict:
        """Where the start-up went, for the rank that took longest to its first step:
        ``plan`` (px.train in the client: analysis, searches, servers), ``process`` (until
        the rank's code ran: a new Python process, or a spare's wake-up), then the rank's own
        phases (``horovod``, ``connect``, ``model``, ``optimizer``, ``first_step``)."""
        if not self.startup:
            return {}
        slowest = max(self.startup.values(),
                      key=lambda m: m["started"] + sum(m["phases"].values()))
        return {"plan": self.started_at - self.train_called_at,
                "process": slowest["started"] - self.started_at, **slowest["phases"]}

    def on_metrics(self, callback: Callable[[List[dict]], None]) -> None:
        """Call ``callback(records)`` with every new batch of step records (client thread)."""
        with self._lock:
            self._callbacks.append(callback)
            backlog = list(self._records)
        if backlog:
            callback(backlog)

    @property
    def metrics(self) -> pd.DataFrame:
        """One row per rank and reported step, growing while the run goes on."""
        with self._lock:
            records = list(self._records)
        frame = pd.DataFrame(records)
        return frame.reindex(columns=METRIC_COLUMNS) if len(frame) else \
            pd.DataFrame(columns=METRIC_COLUMNS)

    # -- lifetime -------------------------------------------------------------------------------
    def _unsubscribe(self):
        if self.client.status not in ("closing", "closed"):
            self.client.unsubscribe_topic(self.topic)

    @property
    def stop_event_name(self) -> str:
        return self._stop_event.name

    def add_cleanup(self, cleanup: Callable[[], None]) -> None:
        self._cleanups.append(cleanup)

    def _watch(self, rank_futures, server_futures):
        """Follow the tasks: the first failure stops everything; when every rank has
        finished, the servers are told to stop too."""
        from distributed import as_completed

        ranks_left = len(rank_futures)
        self._futures = list(rank_futures) + list(server_futures)
        try:
            for future in as_completed(list(rank_futures) + list(server_futures)):
                is_rank = future in rank_futures
                if future.status == "error":
                    self._fail(future.exception())
                elif future.status == "cancelled":
                    self._fail(ParallaxError(f"task {future.key} was cancelled"))
                else:
                    outcome = future.result()
                    if outcome.get("error") is not None:   # the process failed
                        self._fail(outcome["error"])
                    elif is_rank:
                        self._outcomes[outcome["rank"]] = outcome
                if is_rank:
                    ranks_left -= 1
                    if ranks_left == 0:
                        self._stop_event.set()   # the servers' work is done
        except Exception as exc:  # the client lost the scheduler, for example
            self._fail(exc)
        finally:
            self._finish()

    def abort(self):
        """Undo a launch that failed half way (the caller sets the stop event)."""
        self._finish()

    def _watch_workers(self):
        """A Dask worker that leaves the cluster takes its rank with it: fail the run."""
        while not self._done.wait(1.0):
            try:
                alive = set(self.client.scheduler_info(n_workers=-1)["workers"])
            except Exception:
                continue
            gone = [s for s in self.slots if s.device.worker not in alive]
            if gone:
                slot = gone[0]
                self._fail(RankError(slot.rank, slot.host, f"Dask worker {slot.device.worker} "
                                                           f"left the cluster"))
                # The lost worker's task never reports back; the others stop on the stop
                # event. Give them time to clean up, then cancel what is left.
                if not self._done.wait(LOST_WORKER_GRACE_SECONDS):
                    self.client.cancel(self._futures)
                return

    def _fail(self, exc: BaseException):
        """Record a failure and stop every task. When one rank fails, Horovod shuts down on
        the others and their errors echo it; the first error that is not such an echo is
        the one reported."""
        with self._lock:
            if self._status == STOPPED:
                return
            first = self.error is None
            if first or (_is_echo(self.error) and not _is_echo(exc)):
                self.error = exc
            self._status = FAILED
        if first:
            self._stop_event.set()

    def _finish(self):
        # Step events of the last moments may still be on their way: wait for them briefly.
        deadline = time.time() + 2.0
        while (self.error is None and self._status != STOPPED
               and len(self.ranks_done) < len(self.slots) and time.time() < deadline):
            time.sleep(0.05)
        with self._lock:
            if self._status in (STARTING, RUNNING):
                self._status = FINISHED
        self.finished_at = time.time()
        try:
            for cleanup in self._cleanups:
                cleanup()
        finally:
            self._done.set()

    @property
    def status(self) -> str:
        with self._lock:
            return self._status

    @property
    def done(self) -> bool:
        """True once the run is over (finished, failed or stopped), like ``status``."""
        return self._done.is_set()

    def wait(self, timeout: Optional[float] = None) -> "Run":
        """Block until the run is over; raise its error if it failed."""
        if not self._done.wait(timeout):
            raise TimeoutError(f"run {self.run_id} still {self.status} after {timeout} s")
        if self.error is not None:
            raise self.error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every rank; returns once they are all gone (or raises after ``timeout``)."""
        with self._lock:
            if self._status in (STARTING, RUNNING):
                self._status = STOPPED
        self._stop_event.set()
        if not self._done.wait(timeout):
            raise TimeoutError(f"run {self.run_id}: ranks still running {timeout} s after stop")

    def result(self, timeout: Optional[float] = None) -> Dict[str, "object"]:
        """The trained variables of rank 0, ``{name: numpy array}``."""
        self.wait(timeout)
        if self.status == STOPPED:
            raise RunStopped(f"run {self.run_id} was stopped before it finished")
        return self._outcomes[0]["result"]

    def report(self):
        """Throughput, loss, placement: a RunReport (text in a terminal, HTML in Jupyter)."""
        from .report import build_report

        return build_report(self)

    def __repr__(self):
        return f"<Run {self.run_id} {self.mode} {len(self.slots)} rank(s): {self.status}>"


HOROVOD_SHUTDOWN = "Horovod has been shut down"
LOST_WORKER_GRACE_SECONDS = 10.0


def _is_echo(exc) -> bool:
    """An error caused by another rank's failure (Horovod shut down under this one)."""
    return HOROVOD_SHUTDOWN in str(exc)

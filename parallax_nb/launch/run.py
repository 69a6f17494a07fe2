"""A running (or finished) training job, as the client sees it.

Metrics arrive as Dask events on the run's topic; a watcher thread follows the tasks of the
current attempt (`launch.attempt`): the first failure stops every other rank; a lost rank,
server or Dask worker restarts the run from its last checkpoint while ``max_restarts``
allows (`launch.recovery`); when all tasks are over the rendezvous server is stopped, the
topic unsubscribed and the devices released.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Dict, List, Optional

import pandas as pd

from ..errors import ConfigError, ParallaxError, RankError, RunStopped, ServerError
from ..events import DONE, INFO, RESTART, STARTED, STARTUP, TOPOLOGY, VALIDATION
from . import recovery
from .columns import METRIC_COLUMNS, VALIDATION_FACTS

PLANNING, STARTING, RUNNING, FINISHED, FAILED, STOPPED = (
    "planning", "starting", "running", "finished", "failed", "stopped")
class Run:
    """Handle of one training job: ``metrics``, ``status``, ``wait()``, ``stop()``,
    ``result()``, ``restarts``, and ``on_metrics(callback)`` for live views."""

    def __init__(self, client, run_id: str, config, name: str = "", launcher=None):
        self.client = client
        self.run_id = run_id
        self.config = config
        self.name = name
        self._launcher = launcher   # (number, selection, report) -> a started Attempt
        self._payload: Optional[bytes] = None   # the pickled Program (create_run sets it)
        self._cluster = None        # the ParallaxCluster (restarts look for free devices)
        self.device_count = 0       # devices asked for (a restart tops up to this many)
        self._attempt = None
        self._cleanups: List[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._records: List[dict] = []
        self._validations: List[dict] = []
        self._callbacks: List[Callable[[List[dict]], None]] = []
        self._validation_callbacks: List[Callable[[dict], None]] = []
        self._restart_callbacks: List[Callable[[dict], None]] = []
        self._status = STARTING
        self._stop_requested = False
        self._done = threading.Event()
        self.error: Optional[BaseException] = None
        self.notes: List[str] = []
        self.restarts: List[dict] = []   # one per restart (launch.recovery.restart_record)
        self.pids: Dict[int, int] = {}
        self.topology: Dict[int, dict] = {}
        self.startup: Dict[int, dict] = {}   # per rank: STARTUP events (see startup_seconds)
        self.train_called_at = time.time()   # px.train sets it to when it was called
        self.servers_started: Dict[int, dict] = {}
        self.ranks_done: set = set()
        self._outcomes: Dict[int, dict] = {}
        self.started_at = time.time()
        self.finished_at: Optional[float] = None
        self.partition_search = None   # set by launch() when partitions="auto" searched
        self.mode_choice = None        # set by launch() under mode="auto" (tuning.mode_search)
        self.planning = None   # plan.Planning while px.train's searches run (their trials)

    # -- the current attempt --------------------------------------------------------------------
    @property
    def slots(self):
        return self._attempt.slots if self._attempt else []

    @property
    def mode(self) -> str:
        return self._attempt.mode if self._attempt else self.config.mode

    @property
    def analysis(self):
        return self._attempt.report if self._attempt else None

    @property
    def topic(self) -> str:
        return self._attempt.topic

    @property
    def stop_event_name(self) -> str:
        return self._attempt.stop_event.name

    def _begin_attempt(self, attempt) -> None:
        """Make ``attempt`` the current one (`launch.attempt.launch` calls this first)."""
        with self._lock:
            previous, self._attempt = self._attempt, attempt
            self.pids, self.topology, self.servers_started = {}, {}, {}
            self.ranks_done = set()
        if previous is not None:
            self._unsubscribe(previous.topic)
        self.client.subscribe_topic(attempt.topic,
                                    lambda event, n=attempt.number: self._on_event(event, n))

    # -- planning (px.train's searches, before the first attempt) ----------------------------
    def begin_planning(self, planning) -> None:
        """The run plans in the background (trial launches): it shows "planning" meanwhile,
        and ``stop()`` cancels the searches."""
        with self._lock:
            self.planning, self._status = planning, PLANNING

    def end_planning(self, error: Optional[BaseException] = None) -> bool:
        """The searches are over. Returns True when the plan is to be launched; otherwise
        (an error, or the run was stopped meanwhile) the run ends here."""
        with self._lock:
            stopped = self._stop_requested
            if error is None and not stopped:
                self._status = STARTING
                return True
            if not stopped:
                self.error, self._status = error, FAILED
        self._finish()
        return False

    # -- events from the ranks ------------------------------------------------------------------
    def _on_event(self, event, number: int = 0):
        _, message = event
        kind = message.get("type")
        with self._lock:
            current = self._attempt is not None and self._attempt.number == number
        if not current:        # a late event of an attempt given up for a restart
            return
        if kind == "steps":
            records = [dict(r, attempt=number) for r in message["records"]]
            with self._lock:
                if number and self.restarts and "resumed_from" not in self.restarts[-1]:
                    resumed = min(r["step"] for r in records) - 1
                    self._records = [r for r in self._records if r["step"] <= resumed]
                    self._validations = [v for v in self._validations
                                         if v["step"] <= resumed]
                    finished = self.restarts[-1]
                    finished.update(recovery.resumed(finished, resumed))
                    self.notes.append(recovery.note(finished, self.config.restarts_allowed))
                else:
                    finished = None
                self._records.extend(records)
                if self._status == STARTING:
                    self._status = RUNNING
                callbacks = list(self._callbacks)
            if finished is not None:
                self._announce(finished)
            for callback in callbacks:
                callback(records)
        elif kind == STARTED and "server" in message:
            self.servers_started[message["server"]] = message
        elif kind == STARTED:
            self.pids[message["rank"]] = message["pid"]
        elif kind == TOPOLOGY:
            self.topology[message["rank"]] = message
        elif kind == STARTUP:
            if number == 0:
                self.startup[message["rank"]] = message
        elif kind == INFO:
            if message["message"] not in self.notes:
                self.notes.append(message["message"])
        elif kind == VALIDATION:
            row = {k: v for k, v in message.items() if k not in ("type", "rank", "time")}
            row["attempt"] = number
            with self._lock:
                self._validations.append(row)
                callbacks = list(self._validation_callbacks)
            for callback in callbacks:
                callback(dict(row))
        elif kind == DONE:
            self.ranks_done.add(message["rank"])

    def startup_seconds(self) -> dict:
        """Where the start-up went, for the rank that took longest to its first step:
        ``plan`` (px.train in the client: analysis, searches, servers), ``process`` (until
        the rank's code ran: a new Python process, or a spare's wake-up), then the rank's own
        phases (``horovod``, ``connect``, ``model``, ``optimizer``, ``trace``: the step
        function traced, ``first_step``: TensorFlow instantiating it and running it once)."""
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

    def on_validation(self, callback: Callable[[dict], None]) -> None:
        """Call ``callback(row)`` with every validation's row (``validation``'s columns)."""
        with self._lock:
            self._validation_callbacks.append(callback)
            backlog = [dict(v) for v in self._validations]
        for row in backlog:
            callback(row)

    def on_restart(self, callback: Callable[[dict], None]) -> None:
        """Call ``callback(restart)`` when the run restarts (with the new ranks) and again
        once it has resumed (with the step it resumed from, steps redone, seconds lost)."""
        with self._lock:
            self._restart_callbacks.append(callback)

    def _announce(self, restart: dict) -> None:
        """Tell the views and every subscriber of the run's topic about a restart."""
        with self._lock:
            callbacks = list(self._restart_callbacks)
        for callback in callbacks:
            try:
                callback(dict(restart))
            except Exception:
                pass
        def publish():   # not from the client's event loop thread (events arrive there)
            try:
                self.client.log_event(self.topic, {"type": RESTART, **restart})
            except Exception:
                pass

        threading.Thread(target=publish, daemon=True, name="parallax-restart-event").start()

    @property
    def metrics(self) -> pd.DataFrame:
        """One row per rank and reported step, growing while the run goes on (after a
        restart, the steps redone replace those of the attempt that was lost)."""
        with self._lock:
            records = list(self._records)
        frame = pd.DataFrame(records)
        if not len(frame):
            return pd.DataFrame(columns=METRIC_COLUMNS)
        metrics = [c for c in frame.columns if c not in METRIC_COLUMNS and c != "type"]
        return frame.reindex(columns=METRIC_COLUMNS + metrics)

    @property
    def validation(self) -> pd.DataFrame:
        """One row per validation (``Config.validate_every_steps``, epochs, the run's end):
        ``step``, ``epoch``, ``val_loss``, ``val_<metric>``, then ``val_examples``,
        ``val_rows_gathered`` (rows read from the servers), ``val_table_reads`` (reads of a
        whole sparse table: 0), ``val_seconds``, ``best`` (it
        improved ``keep_best``'s value), ``stopped`` (early stopping's reason, where it ended
        the run there). The same values on every rank: one row each."""
        with self._lock:
            rows = [dict(v) for v in self._validations]
        if not rows:
            return pd.DataFrame(columns=["step", "epoch", "val_loss"])
        frame = pd.DataFrame(rows)
        values = [c for c in frame.columns if c.startswith("val_") and
                  c not in VALIDATION_FACTS]
        return frame.reindex(columns=["step", "epoch"] + values + VALIDATION_FACTS)

    @property
    def stopped_early(self) -> Optional[str]:
        """Early stopping's reason where it ended the run (else None)."""
        with self._lock:
            return next((v["stopped"] for v in self._validations if v.get("stopped")), None)

    # -- lifetime -------------------------------------------------------------------------------
    def _unsubscribe(self, topic: str):
        if self.client.status not in ("closing", "closed"):
            try:
                self.client.unsubscribe_topic(topic)
            except Exception:
                pass

    def add_cleanup(self, cleanup: Callable[[], None]) -> None:
        self._cleanups.append(cleanup)

    def _start_watching(self) -> None:
        with self._lock:
            stopped = self._stop_requested   # stop() came while the attempt was launched
        if stopped:
            self._attempt.stop_event.set()
        threading.Thread(target=self._supervise, daemon=True,
                         name=f"parallax-watch-{self.run_id}").start()
        threading.Thread(target=self._watch_workers, daemon=True,
                         name=f"parallax-workers-{self.run_id}").start()

    def _supervise(self):
        """Follow attempt after attempt until the run is over."""
        try:
            while True:
                attempt = self._attempt
                self._watch(attempt)
                if not recovery.after_attempt(self, attempt):
                    break
        except Exception as exc:   # never leave the run unfinished
            with self._lock:
                self.error = self.error or exc
                if self._status != STOPPED:
                    self._status = FAILED
        finally:
            self._finish()

    def _watch(self, attempt):
        """Follow one attempt's tasks: the first failure stops the others; when every rank
        has finished, the servers are told to stop too."""
        from distributed import as_completed

        rank_keys = {f.key for f in attempt.rank_futures}
        ranks_left = len(rank_keys)
        try:
            for future in as_completed(attempt.futures):
                is_rank = future.key in rank_keys
                if future.status == "error":
                    self._fail(attempt, future.exception())
                elif future.status == "cancelled":
                    if future.key not in attempt.cancelled:
                        self._fail(attempt, ParallaxError(f"task {future.key} was cancelled"))
                else:
                    outcome = future.result()
                    if outcome.get("error") is not None:   # the process failed
                        self._fail(attempt, outcome["error"])
                    elif is_rank:
                        self._outcomes[outcome["rank"]] = outcome
                if is_rank:
                    ranks_left -= 1
                    if ranks_left == 0:
                        attempt.stop_event.set()   # the servers' work is done
        except Exception as exc:  # the client lost the scheduler, for example
            self._fail(attempt, exc)

    def abort(self, error: Optional[BaseException] = None):
        """End a run whose launch failed half way (its attempt stopped what it had started);
        ``error`` becomes the run's."""
        with self._lock:
            if error is not None and self._status != STOPPED:
                self.error, self._status = error, FAILED
        self._finish()

    def _watch_workers(self):
        """A Dask worker that leaves the cluster takes its rank (or server) with it: fail
        the attempt at once (its tasks there never report back: they are cancelled), so
        the run fails, or restarts, within a second of the worker going."""
        while not self._done.wait(WORKER_POLL_SECONDS):
            attempt = self._attempt
            if attempt is None or attempt.lost_workers:
                continue
            try:
                alive = set(self.client.nthreads())
            except Exception:
                continue
            gone = sorted(w for w in attempt.workers if w not in alive)
            if gone:
                attempt.lost_workers = gone
                self._fail(attempt, lost_worker_error(attempt, gone[0]))
                lost = [f for f, s in zip(attempt.rank_futures, attempt.slots)
                        if s.device.worker in gone]
                lost += [f for f in attempt.server_futures
                         if attempt.server_worker_of(f.key) in gone]
                attempt.cancelled.update(f.key for f in lost)
                try:
                    self.client.cancel(lost)
                except Exception:
                    pass

    def _fail(self, attempt, exc: BaseException):
        """Record a failure of ``attempt`` and stop its tasks. Which error is reported, and
        whether the run restarts, is decided once they are all over (`recovery`); where no
        restart can follow, the run shows as failed at once."""
        with self._lock:
            if self._status == STOPPED:
                return
            first = not attempt.errors
            attempt.errors.append(exc)
            if first:
                attempt.failed_at = time.time()
            if not recovery.may_restart(self, exc):
                self.error = recovery.primary(attempt.errors)
                self._status = FAILED
        if first:
            attempt.stop_event.set()

    def _finish(self):
        if self._done.is_set():   # a launch that failed half way ends the run once
            return
        # Step events of the last moments may still be on their way: wait for them briefly.
        deadline = time.time() + 2.0
        while (self.error is None and self._status != STOPPED and self._attempt is not None
               and len(self.ranks_done) < len(self.slots) and time.time() < deadline):
            time.sleep(0.05)
        with self._lock:
            if self._status in (STARTING, RUNNING):
                self._status = FINISHED
        self.finished_at = time.time()
        try:
            if self._attempt is not None:
                self._attempt.close()
                self._unsubscribe(self._attempt.topic)
            for cleanup in self._cleanups:
                try:
                    cleanup()
                except Exception:
                    pass
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
        """Block until the run is over; raise its error if it failed.

        Ctrl-C (KeyboardInterrupt) while waiting stops the run, as ``%parallax wait`` does:
        its ranks and servers end and their files go before the interrupt is re-raised.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        try:
            while not self._done.wait(WAIT_POLL_SECONDS if deadline is None else
                                      max(0.0, min(WAIT_POLL_SECONDS,
                                                   deadline - time.monotonic()))):
                if deadline is not None and time.monotonic() >= deadline:
                    raise TimeoutError(f"run {self.run_id} still {self.status} after "
                                       f"{timeout} s")
        except KeyboardInterrupt:
            try:
                self.stop()
            except TimeoutError:   # still going down: the interrupt is what the caller sees
                pass
            raise
        if self.error is not None:
            raise self.error
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every rank (or the searches, while the run plans); returns once they are all
        gone (or raises after ``timeout``)."""
        with self._lock:
            self._stop_requested = True
            if self._status in (PLANNING, STARTING, RUNNING):
                self._status = STOPPED
            attempt, planning = self._attempt, self.planning
        if planning is not None:
            planning.cancel()     # the trial under way stops, the searches end
        if attempt is not None:
            attempt.stop_event.set()
        if not self._done.wait(timeout):
            raise TimeoutError(f"run {self.run_id}: ranks still running {timeout} s after stop")

    def result(self, timeout: Optional[float] = None) -> Dict[str, "object"]:
        """The trained variables of rank 0, ``{name: numpy array}`` (Ctrl-C stops the run,
        as in ``wait``)."""
        self.wait(timeout)
        if self.status == STOPPED:
            raise RunStopped(f"run {self.run_id} was stopped before it finished")
        return self._outcomes[0]["result"]

    def model(self, timeout: Optional[float] = None, best: bool = False):
        """The user's Keras model (``model_fn``'s) on this machine with the trained weights:
        ``evaluate``, ``predict`` and ``save`` work on it as after ``model.fit``.
        ``best=True``: the weights of the best validation instead (``Config(keep_best=...)``,
        read from its checkpoint)."""
        import cloudpickle

        from ..runtime.checkpoint import best_directory
        from ..runtime.export import assign_weights, build_model, load_from_checkpoint

        if self._payload is None:
            raise ParallaxError(f"run {self.run_id} was not made by px.train: it has no "
                                f"program to build the model from")
        program = cloudpickle.loads(self._payload)
        if best:
            if not self.config.keep_best:
                raise ConfigError(f"run {self.run_id} kept no best checkpoint: give "
                                  f"Config(keep_best='val_...') (and checkpoint_dir)")
            self.wait(timeout)
            return load_from_checkpoint(program, best_directory(self.config.checkpoint_dir))
        weights = self.result(timeout)
        model = build_model(program)
        assign_weights(model, weights)
        return model

    def save(self, path: str, format: str = "keras", timeout: Optional[float] = None,
             best: bool = False) -> str:
        """Save the trained model (``best=True``: the best validation's) where plain Keras
        loads it, no parallax_nb needed: ``format="keras"`` a ``.keras`` file
        (``keras.models.load_model``), ``format="tf"`` a SavedModel folder
        (``tf.saved_model.load``). Returns the path."""
        from ..runtime.export import check_save_target, save_model

        check_save_target(path, format)
        return save_model(self.model(timeout, best=best), path, format)

    def report(self):
        """Throughput, loss, placement, restarts: a RunReport (text in a terminal, HTML in
        Jupyter)."""
        from .report import build_report

        return build_report(self)

    def __repr__(self):
        restarts = f", {len(self.restarts)} restart(s)" if self.restarts else ""
        return (f"<Run {self.run_id} {self.mode} {len(self.slots)} rank(s): "
                f"{self.status}{restarts}>")


def lost_worker_error(attempt, worker: str) -> ParallaxError:
    """The error of a Dask worker that left: its first rank's, else its server's."""
    for slot in attempt.slots:
        if slot.device.worker == worker:
            error = RankError(slot.rank, slot.host, f"Dask worker {worker} left the cluster")
            break
    else:
        task = attempt.server_workers.index(worker)
        error = ServerError(task, attempt.server_hosts[task],
                            (attempt.server_addresses or ("?",) * (task + 1))[task],
                            f"Dask worker {worker} left the cluster")
    error.lost = True
    return error




WORKER_POLL_SECONDS = 0.25   # how often the client asks the scheduler which workers live
WAIT_POLL_SECONDS = 0.2      # wait() wakes up this often (Ctrl-C is seen between waits)

"""The messages a rank reports, and how they travel.

rank process --(JSON lines on an inherited pipe)--> its supervisor task in the Dask worker
--(``Worker.log_event`` on the run's topic)--> the client (``Client.subscribe_topic``).
A pipe rather than a Dask client inside the rank: the rank stays a plain process, and when
the supervisor goes away the rank's next write fails and it exits.
"""
from __future__ import annotations

import json
import os
import threading
import time

STEP = "step"          # one training step: rank, step, loss, examples, step_time, ...
STARTED = "started"    # the rank process is up: rank, host, pid
TOPOLOGY = "topology"  # Horovod's view of the rank after hvd.init(): rank, local/cross rank, size
INFO = "info"          # a note worth showing the user (fallback mode, restored checkpoint)
DONE = "done"          # the rank finished its steps
ERROR = "error"        # the rank failed: message, traceback


def topic_of(run_id: str) -> str:
    return f"parallax-run-{run_id}"


class EventWriter:
    """Used by the rank: one JSON object per line on the inherited file descriptor."""

    def __init__(self, fd: int):
        self._file = os.fdopen(fd, "w", buffering=1)
        self._lock = threading.Lock()

    def send(self, kind: str, **fields):
        fields.update(type=kind, time=time.time())
        line = json.dumps(fields, default=float)
        with self._lock:
            self._file.write(line + "\n")


class EventForwarder(threading.Thread):
    """Used by the supervisor: read the rank's lines and log them as Dask events.

    Step records are batched (at most every ``flush_seconds``) so fast steps do not flood
    the scheduler; other messages go at once. The last ERROR message is kept for the
    supervisor's exception.
    """

    def __init__(self, fd: int, log_event, topic: str, flush_seconds: float = 0.25):
        super().__init__(daemon=True, name=f"parallax-events-{topic}")
        self._file = os.fdopen(fd, "r")
        self._log_event = log_event
        self._topic = topic
        self._flush_seconds = flush_seconds
        self.error = None
        self.messages = 0

    def run(self):
        pending, last_flush = [], time.monotonic()
        for line in self._file:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            self.messages += 1
            if message.get("type") == STEP:
                pending.append(message)
                if time.monotonic() - last_flush < self._flush_seconds:
                    continue
            if message.get("type") == ERROR:
                self.error = message
            if pending:
                self._log_event(self._topic, {"type": "steps", "records": pending})
                pending, last_flush = [], time.monotonic()
            if message.get("type") != STEP:
                self._log_event(self._topic, message)
        if pending:
            self._log_event(self._topic, {"type": "steps", "records": pending})
        self._file.close()

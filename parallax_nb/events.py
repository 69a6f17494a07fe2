"""The messages a rank reports, and how they travel.

rank process --(JSON lines on an inherited pipe)--> its supervisor task in the Dask worker
--(``Worker.log_event`` on the run's topic)--> the client (``Client.subscribe_topic``).
A pipe rather than a Dask client inside the rank: the rank stays a plain process, and when
the supervisor goes away the rank's next write fails and it exits.
"""
from __future__ import annotations

import json
import os
import select
import threading
import time

STEP = "step"          # one training step: rank, step, loss, examples, step_time, ...
STARTED = "started"    # the rank process is up: rank, host, pid
TOPOLOGY = "topology"  # Horovod's view of the rank after hvd.init(): rank, local/cross rank, size
INFO = "info"          # a note worth showing the user (fallback mode, restored checkpoint)
STARTUP = "startup"    # at each start-up mark: started (time), phases {name: s} so far, done
DONE = "done"          # the rank finished its steps
ERROR = "error"        # the rank failed: message, traceback
RESTART = "restart"    # the client restarted the run after a loss (launch.recovery)
VALIDATION = "validation"   # rank 0, after each validation: step, epoch, val_* values, facts


def topic_of(run_id: str) -> str:
    return f"parallax-run-{run_id}"


class EventWriter:
    """Used by the rank: one JSON object per line on the inherited file descriptor.

    A broken pipe means the supervisor is gone; ``on_orphaned`` (the process's exit) runs.
    """

    def __init__(self, fd: int, on_orphaned=None):
        self._file = os.fdopen(fd, "w", buffering=1)
        self._lock = threading.Lock()
        self._on_orphaned = on_orphaned

    def send(self, kind: str, **fields):
        fields.update(type=kind, time=time.time())
        line = json.dumps(fields, default=float)
        try:
            with self._lock:
                self._file.write(line + "\n")
        except BrokenPipeError:
            if self._on_orphaned is None:
                raise
            self._on_orphaned()


class EventForwarder(threading.Thread):
    """Used by the supervisor: read the rank's lines and log them as Dask events.

    Step records are batched (flushed at least every ``flush_seconds``, also when the rank
    is quiet) so fast steps do not flood the scheduler; other messages go at once. The last
    ERROR message is kept for the supervisor's exception; ``on_startup`` runs once, when the
    process reports its start-up done: a rank's ``startup`` mark with ``done`` (its first
    step; earlier marks do not count), a server's ``started`` (``startup_done=STARTED``).
    """

    def __init__(self, fd: int, log_event, topic: str, flush_seconds: float = 0.25,
                 on_startup=None, startup_done: str = STARTUP):
        super().__init__(daemon=True, name=f"parallax-events-{topic}")
        self._fd = fd
        self._log_event = log_event
        self._topic = topic
        self._flush_seconds = flush_seconds
        self._pending = []
        self._on_startup = on_startup
        self._startup_done = startup_done
        self.error = None
        self.started_up = False

    def run(self):
        buffer = b""
        last_flush = time.monotonic()
        while True:
            ready, _, _ = select.select([self._fd], [], [], self._flush_seconds)
            if ready:
                chunk = os.read(self._fd, 65536)
                if not chunk:
                    break
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    self._handle(line)
            if self._pending and time.monotonic() - last_flush >= self._flush_seconds:
                self._flush()
                last_flush = time.monotonic()
        self._flush()
        os.close(self._fd)

    def _handle(self, line: bytes):
        try:
            message = json.loads(line)
        except ValueError:
            return
        if message.get("type") == STEP:
            self._pending.append(message)
            return
        if message.get("type") == ERROR:
            self.error = message
        if message.get("type") == self._startup_done and message.get("done", True) and \
                not self.started_up:
            self.started_up = True
            if self._on_startup is not None:
                self._on_startup()
        self._flush()
        self._log_event(self._topic, message)

    def _flush(self):
        if self._pending:
            self._log_event(self._topic, {"type": "steps", "records": self._pending})
            self._pending = []

"""Start-up shared by the rank and server processes: their spec, their events pipe, and a
watch that ends them with their supervising Dask worker."""
from __future__ import annotations

import os
import pickle
import shutil
import threading
import time

from ..events import EventWriter


def exit_as_orphan(workdir: str) -> None:
    """The supervisor is gone and cannot clean up: remove this process's own work directory
    (made by the supervisor for it alone) and exit at once."""
    shutil.rmtree(workdir, ignore_errors=True)
    os._exit(3)


def exit_with_parent(workdir: str, poll_seconds: float = 1.0) -> None:
    """Die when the supervising Dask worker dies, so no process outlives its cluster."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent:
                exit_as_orphan(workdir)

    threading.Thread(target=watch, daemon=True, name="parallax-parent-watch").start()


def start(argv):
    """``argv`` is ``[program, SPEC_PATH, EVENTS_FD]``; returns (spec, EventWriter)."""
    spec_path, events_fd = argv[1], int(argv[2])
    workdir = os.getcwd()
    events = EventWriter(events_fd, on_orphaned=lambda: exit_as_orphan(workdir))
    exit_with_parent(workdir)
    with open(spec_path, "rb") as f:
        return pickle.load(f), events

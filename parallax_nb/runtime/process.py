"""Start-up and ending shared by the rank and server processes: their spec, their events
pipe, a watch that ends them with their supervising Dask worker, and their exit."""
from __future__ import annotations

import os
import pickle
import shutil
import signal
import sys
import threading
import time

from ..events import EventWriter


def exit_now(code: int) -> None:
    """End this process without the interpreter's teardown: TensorFlow's and gRPC's
    destructors take 1.5-3 s on 2 cores, and every run's end waited for them. Nothing is
    lost: what the process reports has been written by then (the events pipe is
    line-buffered, the result file and any checkpoint or TensorBoard file closed)."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def exit_as_orphan(workdir: str) -> None:
    """The supervisor is gone and cannot clean up: remove this process's own work directory
    (made by the supervisor for it alone) and exit at once."""
    shutil.rmtree(workdir, ignore_errors=True)
    os._exit(3)


def exit_with_parent(workdir: str, poll_seconds: float = 0.25) -> None:
    """Die when the supervising Dask worker dies, so no process outlives its cluster.

    The work directory removed then is the current one at that moment: a spare's directory
    is renamed for the run that takes it (`launch.warm`), and the process's working
    directory follows the rename; ``workdir`` is the fallback where it is gone already."""
    parent = os.getppid()

    def watch():
        while True:
            time.sleep(poll_seconds)
            if os.getppid() != parent:
                try:
                    current = os.getcwd()
                except OSError:
                    current = workdir
                exit_as_orphan(current if os.path.basename(current).startswith("parallax-")
                               else workdir)

    threading.Thread(target=watch, daemon=True, name="parallax-parent-watch").start()


def continue_when_parent_dies() -> None:
    """Linux: have the kernel send SIGCONT when the thread that started this process ends.
    A spare still importing may be stopped by its worker (`launch.warm.hold`), and a stopped
    process cannot run the watch of `exit_with_parent`: were its worker killed then, it
    would stay stopped for good. Continued, its watch sees the worker gone and ends it."""
    if sys.platform.startswith("linux"):
        import ctypes

        PR_SET_PDEATHSIG = 1
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGCONT))


def start(argv):
    """``argv`` is ``[program, SPEC_PATH, EVENTS_FD]``; returns (spec, EventWriter)."""
    spec_path, events_fd = argv[1], int(argv[2])
    workdir = os.getcwd()
    events = EventWriter(events_fd, on_orphaned=lambda: exit_as_orphan(workdir))
    exit_with_parent(workdir)
    with open(spec_path, "rb") as f:
        return pickle.load(f), events

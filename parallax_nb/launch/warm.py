"""Spare processes a Dask worker keeps for its next rank or server (`runtime.warm`).

Once a run's process on a worker has started up (or has ended before that), the worker
starts one spare in the background, so that the next run there, or this run's restart after
a loss, skips Python's and TensorFlow's start-up (README, "Start-up"). A spare
lives in its own work directory ``parallax-warm-*``; the run that takes it renames that
directory to its own ``parallax-<run>-<label>-*`` (the process keeps it as its working
directory and its log), so cleaning up works as for a process started cold. Spares are
plain child processes of the worker: they exit with it, and ``release()`` ends them at once.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from typing import List, Optional

from ..cluster.connect import SPARE_RELEASERS
from .processes import terminate

MAX_SPARES = 2      # per worker: a worker rarely runs more than a rank and a server at once
_lock = threading.Lock()
_spares: List["Spare"] = []


class Spare:
    """A started ``runtime.warm`` process, its work directory and its events pipe."""

    def __init__(self):
        self.workdir = tempfile.mkdtemp(prefix="parallax-warm-")
        self.log_path = os.path.join(self.workdir, "output.log")
        self.read_fd, write_fd = os.pipe()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "parallax_nb.runtime.warm", str(write_fd)],
                cwd=self.workdir, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(write_fd,), start_new_session=True)
        os.close(write_fd)

    def alive(self) -> bool:
        return self.process.poll() is None

    def claim(self, prefix: str) -> str:
        """Rename the work directory for its run; returns the new path."""
        parent = os.path.dirname(self.workdir)
        target = tempfile.mkdtemp(prefix=prefix, dir=parent)
        os.rmdir(target)
        os.rename(self.workdir, target)
        self.workdir, self.log_path = target, os.path.join(target, "output.log")
        return target

    def start(self, module: str, spec_path: str, environment: dict) -> subprocess.Popen:
        order = {"module": module, "spec": spec_path, "environment": environment,
                 "cwd": self.workdir}
        self.process.stdin.write((json.dumps(order) + "\n").encode())
        self.process.stdin.close()
        return self.process

    def discard(self) -> None:
        import shutil

        terminate(self.process)
        os.close(self.read_fd)
        shutil.rmtree(self.workdir, ignore_errors=True)


def take() -> Optional[Spare]:
    """A live spare of this worker, or None (the caller starts its process cold)."""
    with _lock:
        while _spares:
            spare = _spares.pop(0)
            if spare.alive():
                return spare
            spare.discard()
    return None


def replenish() -> None:
    """Start a spare in the background unless the worker already has enough."""
    def start():
        with _lock:
            if sum(s.alive() for s in _spares) >= MAX_SPARES:
                return
            _spares.append(Spare())

    threading.Thread(target=start, daemon=True, name="parallax-warm-spare").start()


def release() -> int:
    """End this worker's spares (they hold memory: a TensorFlow process each)."""
    with _lock:
        spares, _spares[:] = list(_spares), []
    for spare in spares:
        spare.discard()
    return len(spares)


SPARE_RELEASERS.append(release)   # cluster.release_spares() and cluster.close() end them

"""Spare processes a Dask worker keeps for its next rank or server (`runtime.warm`).

A spare is a process with TensorFlow and Horovod imported and nothing else started, so the
next run on the worker, or this run's restart after a loss, skips Python's and TensorFlow's
start-up (README, "Start-up"). A worker keeps `SPARES_KEPT`: an embedded cluster starts
them as ``px.connect`` returns (another cluster at ``cluster.start_spares()``), and a
worker starts new ones once a run's process there has started up (not during it: on a
small machine they would share its cores), or has ended before that. A spare lives in its
own work directory ``parallax-warm-*``; the run that takes it renames that directory to
its own ``parallax-<run>-<label>-*`` (the process keeps it as its working directory and
its log), so cleaning up works as for a process started cold. Spares are plain child
processes of the worker: they exit with it, and ``release()`` ends them at once.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
from typing import List, Optional

from ..cluster.connect import SPARE_HOOKS
from .processes import terminate

SPARES_KEPT = 2     # per worker: a worker rarely runs more than a rank and a server at once
_lock = threading.Lock()
_spares: List["Spare"] = []
_filling = False    # a thread is starting spares
_released = 0       # how many times `release` ran: a fill started before it stops


class Spare:
    """A started ``runtime.warm`` process, its work directory and its events pipe."""

    def __init__(self):
        self.workdir = tempfile.mkdtemp(prefix="parallax-warm-")
        self.log_path = os.path.join(self.workdir, "output.log")
        self.read_fd, write_fd = os.pipe()
        ready_read, ready_write = os.pipe()
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "parallax_nb.runtime.warm", str(write_fd),
                 str(ready_write)],
                cwd=self.workdir, stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                pass_fds=(write_fd, ready_write), start_new_session=True)
        os.close(write_fd)
        os.close(ready_write)
        self._ready_fd = ready_read

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self) -> None:
        """Until the spare has imported TensorFlow and Horovod (or has died)."""
        try:
            os.read(self._ready_fd, 1)
        finally:
            os.close(self._ready_fd)

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


def replenish() -> int:
    """Start spares in the background until the worker keeps `SPARES_KEPT`: one after
    another, each once the one before has imported (two imports at once would share the
    cores with the run beside them). Keeping two, a run started right after another finds
    one ready even where the spare its predecessor started is still importing. Returns 0
    (run on every worker by `ParallaxCluster.start_spares`, which counts nothing here)."""
    global _filling
    with _lock:
        if _filling:
            return 0
        _filling = True
    threading.Thread(target=_fill, args=(_released,), daemon=True,
                     name="parallax-warm-spares").start()
    return 0


def _fill(generation: int) -> None:
    global _filling
    try:
        while True:
            with _lock:
                if generation != _released or \
                        sum(s.alive() for s in _spares) >= SPARES_KEPT:
                    _filling = False
                    return
                spare = Spare()
                _spares.append(spare)
            spare.wait_ready()
    except BaseException:
        with _lock:
            _filling = False
        raise


def release() -> int:
    """End this worker's spares (they hold memory: a TensorFlow process each)."""
    global _released
    with _lock:
        _released += 1
        spares, _spares[:] = list(_spares), []
    for spare in spares:
        spare.discard()
    return len(spares)


SPARE_HOOKS["start"] = replenish    # px.connect(local=...) and cluster.start_spares()
SPARE_HOOKS["release"] = release    # cluster.release_spares() and cluster.close()

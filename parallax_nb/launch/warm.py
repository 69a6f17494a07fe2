"""Spare processes a Dask worker keeps for its next rank or server (`runtime.warm`).

A spare is a process with TensorFlow and Horovod imported and nothing else started, so the
next run on the worker, or this run's restart after a loss, skips Python's and TensorFlow's
start-up (README, "Start-up"). A worker keeps `SPARES_KEPT`: an embedded cluster starts
them as ``px.connect`` returns (another cluster at ``cluster.start_spares()``), and a
worker starts new ones once a run's process there has started up (not during it: on a
small machine they would share its cores), or has ended before that; and while a run's
process starts up there, a spare still importing is stopped (SIGSTOP) until it has
(`hold`). A spare lives in its own work directory ``parallax-warm-*``; the run that takes
it renames that directory to its own ``parallax-<run>-<label>-*`` (the process keeps it as
its working directory and its log), so cleaning up works as for a process started cold.
Spares are plain child processes of the worker: they exit with it, and ``release()`` ends
them at once.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
from typing import Callable, List, Optional

from ..cluster.connect import SPARE_HOOKS
from .processes import terminate

SPARES_KEPT = 2     # per worker: a worker rarely runs more than a rank and a server at once
# A stopped spare cannot watch for its worker's death: the kernel continues it when the
# thread that started it ends (Linux's parent-death signal, `runtime.process`), so spares
# are paused only there, and are started by one thread that lives as long as the worker.
PAUSABLE = sys.platform.startswith("linux")
_lock = threading.Condition()
_spares: List["Spare"] = []
_wanted = False     # keep `SPARES_KEPT` spares (`replenish`), until `release`
_starter: Optional[threading.Thread] = None
_holds = 0          # this worker's processes starting up now (`hold`)


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
        self.pausable = False  # the kernel continues it if the worker dies (`runtime.warm`)
        self.ready = False     # TensorFlow and Horovod imported
        self.paused = False

    def alive(self) -> bool:
        return self.process.poll() is None

    def wait_ready(self) -> None:
        """Until the spare has imported TensorFlow and Horovod (or has died)."""
        try:
            armed = os.read(self._ready_fd, 1) == b"1"
            with _lock:
                self.pausable = PAUSABLE and armed
                if _holds and self in _spares:      # not taken by a run meanwhile
                    self.pause()
            os.read(self._ready_fd, 1)
        finally:
            os.close(self._ready_fd)
            self.ready = True

    def pause(self) -> None:
        """Stop a spare that is still importing (see `hold`)."""
        if self.pausable and not self.ready and not self.paused and self.alive():
            self.paused = True
            self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            self._signal(signal.SIGCONT)

    def _signal(self, sig) -> None:
        try:
            os.kill(self.process.pid, sig)
        except ProcessLookupError:
            pass

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

        self.resume()
        terminate(self.process)
        os.close(self.read_fd)
        shutil.rmtree(self.workdir, ignore_errors=True)


def take() -> Optional[Spare]:
    """A live spare of this worker, or None (the caller starts its process cold)."""
    with _lock:
        while _spares:
            spare = _spares.pop(0)
            if spare.alive():
                spare.resume()      # its run waits for it
                return spare
            spare.discard()
    return None


def hold() -> Callable[[], None]:
    """A run's process on this worker starts up: spares still importing stop until it has,
    and no new one starts meanwhile (on a small machine they would share its cores: a run
    started right after another waited a second more for the import its predecessor's
    spare was doing). Returns the function that lets go (once, however often called)."""
    global _holds
    with _lock:
        _holds += 1
        for spare in _spares:
            spare.pause()
    held = True

    def let_go() -> None:
        global _holds
        nonlocal held
        with _lock:
            if not held:
                return
            held = False
            _holds -= 1
            if not _holds:
                for spare in _spares:
                    spare.resume()
                _lock.notify_all()
    return let_go


def replenish() -> int:
    """Start spares in the background until the worker keeps `SPARES_KEPT`: one after
    another, each once the one before has imported (two imports at once would share the
    cores with the run beside them), none while a process of a run starts up here
    (`hold`). Keeping two, a run started right after another finds one ready. Returns 0
    (run on every worker by `ParallaxCluster.start_spares`, which counts nothing here)."""
    global _wanted, _starter
    with _lock:
        _wanted = True
        if _starter is None or not _starter.is_alive():   # none yet, or one that failed
            _starter = threading.Thread(target=_start_spares, daemon=True,
                                        name="parallax-warm-spares")
            _starter.start()
        _lock.notify_all()
    return 0


def _start_spares() -> None:
    """The one thread that starts this worker's spares, for as long as the worker lives."""
    while True:
        with _lock:
            while not (_wanted and not _holds and
                       sum(s.alive() for s in _spares) < SPARES_KEPT):
                _lock.wait()
            spare = Spare()
            _spares.append(spare)
        spare.wait_ready()


def release() -> int:
    """End this worker's spares (they hold memory: a TensorFlow process each); none starts
    again until the next `replenish`."""
    global _wanted
    with _lock:
        _wanted = False
        spares, _spares[:] = list(_spares), []
    for spare in spares:
        spare.discard()
    return len(spares)


SPARE_HOOKS["start"] = replenish    # px.connect(local=...) and cluster.start_spares()
SPARE_HOOKS["release"] = release    # cluster.release_spares() and cluster.close()

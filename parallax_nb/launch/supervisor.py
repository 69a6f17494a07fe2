"""The task a Dask worker runs for one rank: start the rank's process and look after it.

The rank is a separate OS process (TensorFlow and Horovod keep global state, and a crash
must not take the worker down). The supervisor forwards the rank's events, stops it when
the run's stop event is set, and turns a failure into a `RankError` naming rank and host.
"""
from __future__ import annotations

import os
import pickle
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from urllib.parse import urlparse

from ..errors import RankError
from ..events import EventForwarder
from ..runtime.spec import RankSpec
from .rendezvous import interface_of

GRACE_SECONDS = 3.0
LOG_TAIL_BYTES = 4000


def run_rank(spec: RankSpec) -> dict:
    """Run one rank to its end; return its outcome (rank 0's includes the trained weights)."""
    import cloudpickle
    from distributed import Event, get_worker, secede

    worker = get_worker()
    secede()  # a run can take hours: do not hold one of the worker's task threads
    workdir = tempfile.mkdtemp(prefix=f"parallax-{spec.run_id}-rank{spec.rank}-")
    spec_path = os.path.join(workdir, "spec.pkl")
    result_path = os.path.join(workdir, "result.pkl")
    with open(spec_path, "wb") as f:
        cloudpickle.dump(_with_result_file(spec, result_path), f)
    env = dict(os.environ, **spec.environment,
               HOROVOD_GLOO_IFACE=interface_of(urlparse(worker.address).hostname))
    read_fd, write_fd = os.pipe()
    log_path = os.path.join(workdir, "rank.log")
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "parallax_nb.runtime.rank", spec_path, str(write_fd)],
            env=env, cwd=workdir, stdout=log, stderr=subprocess.STDOUT,
            pass_fds=(write_fd,), start_new_session=True)
    os.close(write_fd)
    forwarder = EventForwarder(read_fd, worker.log_event, spec.topic)
    forwarder.start()
    stop = Event(spec.stop_event)
    stopped = False
    try:
        while process.poll() is None:
            if stop.is_set():
                stopped = True
                break
            time.sleep(0.25)
    finally:
        terminate(process)
        forwarder.join(timeout=5)
    try:
        if stopped:
            return {"rank": spec.rank, "status": "stopped", "pid": process.pid}
        if process.returncode != 0:
            error = forwarder.error or {}
            message = error.get("message") or f"the rank process exited with code " \
                                               f"{process.returncode}"
            raise RankError(spec.rank, spec.host, message,
                            error.get("traceback") or _tail(log_path))
        result = None
        if os.path.exists(result_path):
            with open(result_path, "rb") as f:
                result = pickle.load(f)
        return {"rank": spec.rank, "status": "finished", "pid": process.pid, "result": result}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def terminate(process: subprocess.Popen) -> None:
    """SIGTERM the rank's process group, SIGKILL it after a grace period."""
    if process.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, GRACE_SECONDS), (signal.SIGKILL, 10.0)):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def _with_result_file(spec: RankSpec, path: str) -> RankSpec:
    import dataclasses

    return dataclasses.replace(spec, result_file=path if spec.rank == 0 else None)


def _tail(path: str) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - LOG_TAIL_BYTES))
            return "(end of the rank's output)\n" + f.read().decode(errors="replace")
    except OSError:
        return ""

"""The tasks a Dask worker runs for a rank or a parameter server: start its process and look
after it.

Each rank and each server is a separate OS process (TensorFlow and Horovod keep global
state, and a crash must not take the worker down). The supervisor forwards the process's
events, stops it when the run's stop event is set, and turns an unexpected exit into an
error that names the rank (or server) and host, says how the process ended, and quotes the
lines of its log that matter. The error is the task's *result* (``outcome["error"]``), not
an exception of the task: Dask would log a raised one on the worker, traceback and all,
before the client reports it cleanly.
"""
from __future__ import annotations

import dataclasses
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from typing import List, Optional
from urllib.parse import urlparse

from ..errors import RankError, ServerError
from ..events import STARTED, STARTUP, EventForwarder
from ..native_noise import lines_that_matter
from ..cluster.ranks import interface_of
from ..runtime.result import read_weights
from ..runtime.spec import RankSpec, ServerSpec
from . import warm
from .processes import terminate

LOG_TAIL_BYTES = 4000


def run_rank(spec: RankSpec) -> dict:
    """Run one rank to its end; return its outcome (rank 0's includes the trained weights)."""

    def failure(message, details):
        return RankError(spec.rank, spec.host, message, details)

    def prepare(workdir):
        result_file = os.path.join(workdir, "result.pkl") if spec.rank == 0 else None
        return dataclasses.replace(spec, result_file=result_file)

    outcome = _supervise("parallax_nb.runtime.rank", spec, f"rank{spec.rank}", prepare,
                         spec.environment, failure)
    outcome["rank"] = spec.rank
    return outcome


def run_server(spec: ServerSpec) -> dict:
    """Run one parameter server until the run's stop event; it must not exit before."""

    def failure(message, details):
        return ServerError(spec.task, spec.host, spec.addresses[spec.task], message, details)

    outcome = _supervise("parallax_nb.runtime.server", spec, f"ps{spec.task}", lambda _: spec,
                         {"CUDA_VISIBLE_DEVICES": ""}, failure, must_run_until_stopped=True)
    outcome["server"] = spec.task
    return outcome


def _supervise(module, spec, label, prepare, environment, failure,
               must_run_until_stopped=False) -> dict:
    import cloudpickle
    from distributed import Event, get_worker, secede

    worker = get_worker()
    key = worker.get_current_task()
    secede()  # a run can take hours: do not hold one of the worker's task threads
    sweep_stale_workdirs()
    prefix = f"parallax-{spec.run_id}-{label}-"
    spare = warm.take() if spec.config.warm_start else None
    workdir = spare.claim(prefix) if spare else tempfile.mkdtemp(prefix=prefix)
    spec = prepare(workdir)
    spec_path = os.path.join(workdir, "spec.pkl")
    with open(spec_path, "wb") as f:
        cloudpickle.dump(spec, f)
    ip = urlparse(worker.address).hostname
    environment = dict(environment, HOROVOD_GLOO_IFACE=interface_of(ip), PARALLAX_ADDRESS=ip)
    log_path = os.path.join(workdir, "output.log")
    kills_before = oom_kills()
    let_go = warm.hold()     # spares still importing here wait until this one has started
    try:
        if spare:
            process, read_fd = spare.start(module, spec_path, environment), spare.read_fd
        else:
            read_fd, write_fd = os.pipe()
            with open(log_path, "wb") as log:
                process = subprocess.Popen(
                    [sys.executable, "-m", module, spec_path, str(write_fd)],
                    env=dict(os.environ, **environment), cwd=workdir, stdout=log,
                    stderr=subprocess.STDOUT, pass_fds=(write_fd,), start_new_session=True)
            os.close(write_fd)
    except BaseException:
        let_go()
        raise
    # The next run on this worker starts warm: a spare is started once this process has
    # started up (not during it: on a small machine they would share its cores), or once it
    # ends if it never got that far (a failed rank).
    replenish = warm.replenish if spec.config.warm_start else (lambda: 0)

    def started_up():
        let_go()
        replenish()

    forwarder = EventForwarder(read_fd, worker.log_event, spec.topic, on_startup=started_up,
                               startup_done=STARTED if must_run_until_stopped else STARTUP)
    forwarder.start()
    stopped = False
    try:
        stop = Event(spec.stop_event)
        while process.poll() is None:
            # stopped by the run, or nobody wants the result any more (the client that
            # launched the run is gone, or cancelled it): the process goes with the run
            if stop.is_set() or not _wanted(worker, key):
                stopped = True
                break
            try:
                process.wait(timeout=0.25)     # returns as soon as the process ends
            except subprocess.TimeoutExpired:
                pass
    finally:
        terminate(process)
        forwarder.join(timeout=5)
        if not forwarder.started_up:
            started_up()
    try:
        how = ending(stopped, process.returncode, forwarder.error, must_run_until_stopped)
        if how == "stopped":
            return {"status": "stopped", "pid": process.pid}
        if how == "failed":
            error = forwarder.error or {}
            message = error.get("message") or how_it_ended(process.returncode, kills_before)
            failed = failure(message, error.get("traceback") or tail(log_path))
            failed.lost = not error   # killed or crashed, not a Python error of its own
            return {"status": "failed", "pid": process.pid, "error": failed}
        result = None
        if getattr(spec, "result_file", None) and os.path.exists(spec.result_file):
            result = read_weights(spec.result_file)
        return {"status": "finished", "pid": process.pid, "result": result}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def ending(stopped: bool, returncode: Optional[int], reported: Optional[dict],
           must_run_until_stopped: bool = False) -> str:
    """How a supervised process ended: "stopped", "failed" or "finished".

    A process stopped by the run failed all the same where it had reported an error of its
    own (``reported``, its ERROR event) before it was gone: the stop can be the consequence
    of that very error. A rank whose code raised sends its error, then leaves Horovod as it
    exits, and a rank waiting for it in a collective fails at once ("Horovod has been shut
    down"); where that echo reaches the client first (the failing process's interpreter,
    TensorFlow and all, takes a while to exit, longer on a loaded machine), the run stops
    every other process, the failing one included, and its own error, the cause, must still
    be reported so that the run blames it (`recovery.primary`) rather than the echo. The stop
    itself makes no error: a process ends on SIGTERM without a Python error of its own.
    """
    if stopped:
        return "failed" if reported else "stopped"
    return "failed" if returncode != 0 or must_run_until_stopped else "finished"


def _wanted(worker, key) -> bool:
    """Whether the scheduler still wants this task's result (a task whose client left, or
    that was cancelled, is 'cancelled' on the worker while its thread still runs)."""
    try:
        task = worker.state.tasks.get(key)
    except Exception:
        return True
    return task is not None and task.state not in ("cancelled", "released", "forgotten")


STALE_SECONDS = 60.0
_WORKDIR = re.compile(r"^parallax-(warm|[0-9a-f]{10}-(rank|ps)\d+)-")


def sweep_stale_workdirs(root: Optional[str] = None) -> List[str]:
    """Remove the work directories of processes that are gone without cleaning up (a
    process and its worker killed together): ``parallax-<run>-rank*``, ``-ps*`` and
    ``parallax-warm-*`` folders in the temporary directory that this user owns, that no live
    process works in and that are older than a minute. Returns what it removed.

    Other clusters on the machine share the temporary directory: their live processes keep
    their folders (a process's working directory is visible to its own user), and another
    user's folders are never touched, even by root (whose view of their processes is not
    proof of anything: it would remove a folder whose process it cannot read)."""
    import psutil

    root = root or tempfile.gettempdir()
    try:
        candidates = [os.path.join(root, name) for name in os.listdir(root)
                      if _WORKDIR.match(name)]
    except OSError:
        return []
    candidates = [path for path in candidates if _stale(path)]
    if not candidates:
        return []
    in_use = set()
    for process in psutil.process_iter(["cwd"]):
        try:
            if process.info["cwd"]:
                in_use.add(process.info["cwd"])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    removed = []
    for path in candidates:
        if not any(cwd == path or cwd.startswith(path + os.sep) for cwd in in_use):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _stale(path: str) -> bool:
    """A folder of this user's, unchanged for `STALE_SECONDS`; False for one that is gone
    or not a folder: another worker's sweep, or a run claiming a spare (a rename), can take
    it while we look."""
    try:
        status = os.stat(path)
    except OSError:
        return False
    return stat.S_ISDIR(status.st_mode) and status.st_uid == os.geteuid() and \
        time.time() - status.st_mtime > STALE_SECONDS


def free_port(dask_worker=None) -> str:
    """An ``ip:port`` free on this worker's machine (run on the worker by the client)."""
    from distributed.utils import open_port

    host = urlparse(dask_worker.address).hostname if dask_worker is not None else "127.0.0.1"
    return f"{host}:{open_port(host)}"


def tail(path: str) -> str:
    """The end of a process's log, for error messages (the log itself is removed): its last
    lines that are neither TensorFlow's start-up noise nor warnings."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - LOG_TAIL_BYTES))
            text = lines_that_matter(f.read().decode(errors="replace"))
    except OSError:
        return ""
    return f"(end of the process's output)\n{text}" if text else ""


def how_it_ended(returncode: int, oom_kills_before: Optional[int]) -> str:
    """An exit code, or the signal that ended the process, and whether the kernel's
    out-of-memory killer sent it (its count in this cgroup went up meanwhile)."""
    if returncode >= 0:
        return f"the process exited with code {returncode}"
    name = signal.Signals(-returncode).name if -returncode in signal.valid_signals() \
        else f"signal {-returncode}"
    text = f"the process was killed by {name}"
    after = oom_kills()
    if -returncode == signal.SIGKILL and None not in (oom_kills_before, after) and \
            after > oom_kills_before:
        text += (" from the kernel's out-of-memory killer: the machine (or its container) "
                 "ran out of memory; use fewer ranks per machine, a smaller batch, or put the "
                 "tables on parameter servers (HYBRID or PS)")
    return text


def oom_kills() -> Optional[int]:
    """How many processes the out-of-memory killer ended in this process's cgroup (v2)."""
    try:
        with open("/proc/self/cgroup") as f:
            path = f.read().strip().split("::", 1)[1]
        with open(f"/sys/fs/cgroup{path}/memory.events") as f:
            events = dict(line.split() for line in f if line.strip())
        return int(events.get("oom_kill", 0))
    except (OSError, IndexError, ValueError):
        return None

"""Checks `px.train` makes before it starts anything, so a mistake fails in the client in
a second, naming what to change, instead of in a rank after start-up.

* ``optimizer_fn()`` returns an optimizer (not None, not a class, not a model);
* validation options (``validate_every_steps``, ``early_stopping``, ``keep_best``) come
  with a program that has a ``validation_fn``, and ``epochs`` become steps
  (`steps_for_epochs`);
* ``checkpoint_dir`` can be written *on the Dask workers that write it*: rank 0's, and those
  of the separate parameter servers (TensorFlow writes each server's variables from the
  server's own process); a directory local to the client says nothing about them;
* partitions asked above a table's rows are clamped: say so (a note of the run);
* the devices are not in use by another run of this cluster (`DeviceRegistry`).
"""
from __future__ import annotations

import os
import time
import uuid
from typing import Dict, List, Optional

from ..errors import ConfigError, ParallaxError, ProgramError


def check_optimizer(program) -> None:
    """Call ``optimizer_fn()`` once and refuse what is not an optimizer."""
    optimizer = program.optimizer()
    if _is_optimizer(optimizer):
        return
    what = (f"the class {optimizer.__name__}" if isinstance(optimizer, type)
            else f"{type(optimizer).__module__}.{type(optimizer).__qualname__}"
            if optimizer is not None else "None")
    raise ProgramError(f"optimizer_fn() returned {what}, not an optimizer: it must return a "
                       f"new Keras optimizer instance on every call, e.g. "
                       f"`return tf.keras.optimizers.Adagrad(0.1)`")


def check_validation_options(program, config) -> None:
    """Refuse validation options where the program has no validation data."""
    if program.validation_fn is not None:
        return
    asked = [name for name in ("validate_every_steps", "early_stopping", "keep_best")
             if getattr(config, name) is not None]
    if asked:
        raise ConfigError(f"Config({', '.join(asked)}=...) needs validation data, but the "
                          f"program has no validation_fn: give px.Program(..., "
                          f"validation_fn=...) or Program.from_keras(..., validation_fn=...)")


def steps_for_epochs(program, config, ranks: int):
    """``config`` with ``steps`` set where it gives ``epochs`` alone: ``steps_per_epoch`` is
    the smallest shard's number of batches for ``ranks`` ranks (`runtime.data`)."""
    if config.steps_known:
        return config
    from ..runtime.data import count_batches

    counts = [count_batches(program, shard, ranks, config.batch_size) for shard in range(ranks)]
    if min(counts) == 0:
        raise ProgramError(f"dataset_fn gives {counts} batches to the {ranks} shards: every "
                           f"shard needs at least one (fewer ranks, a smaller batch_size, or "
                           f"more data)")
    return config.replace(steps_per_epoch=min(counts))


def _is_optimizer(obj) -> bool:
    if isinstance(obj, type) or obj is None:
        return False
    bases = []
    try:
        import tf_keras
        bases += [tf_keras.optimizers.Optimizer, tf_keras.optimizers.legacy.Optimizer]
    except (ImportError, AttributeError):
        pass
    try:
        import keras
        bases.append(keras.optimizers.Optimizer)
    except (ImportError, AttributeError):
        pass
    if bases and isinstance(obj, tuple(bases)):
        return True
    # another Keras-compatible optimizer: what the ranks call on it
    return callable(getattr(obj, "apply_gradients", None)) and (
        callable(getattr(obj, "build", None)) or
        callable(getattr(obj, "_create_all_weights", None)))


def clamped_partitions(config, report) -> List[str]:
    """Notes for sparse variables given more partitions than they have rows."""
    from ..config import _lookup_by_name

    notes = []
    for placement in report.placements:
        variable = placement.variable
        if variable.kind != "sparse" or placement.placement != "ps":
            continue
        wanted = config.partitions
        if isinstance(wanted, dict):
            wanted = _lookup_by_name(wanted, variable.name)
        if isinstance(wanted, int) and wanted > len(placement.partitions):
            notes.append(f"partitions={wanted} for {variable.name} is more than its "
                         f"{variable.rows} rows: it has {len(placement.partitions)} "
                         f"partition(s), one row each")
    return notes


def probe_writable(directory: str) -> Optional[str]:
    """On a worker: create ``directory`` if needed and write, then remove, a file in it.
    Returns None, or why it cannot be written."""
    probe = os.path.join(directory, f".parallax-write-check-{uuid.uuid4().hex[:8]}")
    try:
        os.makedirs(directory, exist_ok=True)
        with open(probe, "wb") as f:
            f.write(b"ok")
        os.remove(probe)
        return None
    except OSError as exc:
        return f"{type(exc).__name__}: {exc.strerror or exc}"


def check_checkpoint_dir(client, config, workers: Dict[str, str]) -> None:
    """``workers``: {Dask worker address: what it writes there}. Raise naming the first
    worker where ``config.checkpoint_dir`` cannot be written."""
    if not config.checkpoint_dir:
        return
    directory = os.path.abspath(os.path.expanduser(config.checkpoint_dir)) \
        if not _is_url(config.checkpoint_dir) else config.checkpoint_dir
    answers = client.run(probe_writable, directory, workers=list(workers))
    for worker, why in answers.items():
        if why:
            raise ParallaxError(f"checkpoint_dir {config.checkpoint_dir!r} cannot be written on "
                                f"Dask worker {worker} ({workers[worker]} there): {why}. "
                                f"Use a directory every such worker can write (a shared file "
                                f"system on several machines), or checkpoint_dir=None")


def _is_url(path: str) -> bool:
    return "://" in path   # gs://, s3://, hdfs://: TensorFlow's file systems, not probed here


# -- devices in use --------------------------------------------------------------------------
class DevicesInUse(ParallaxError):
    """Another run of this cluster is using some of the selected devices."""


def _reserve_on_scheduler(run_id: str, entry: dict, client_id: str, reserve: bool = True,
                          dask_scheduler=None):
    """Runs inside the scheduler (one event-loop callback: atomic against other clients).
    Returns the conflicting live run's entry, or None after reserving the devices (with
    ``reserve`` False: only checking)."""
    runs = dask_scheduler.__dict__.setdefault("_parallax_runs", {})
    for other_id, other in list(runs.items()):
        if other["client"] not in dask_scheduler.clients:   # its client is gone
            del runs[other_id]
            continue
        if other_id != run_id and set(other["devices"]) & set(entry["devices"]):
            return dict(other, run_id=other_id)
    if reserve:
        runs[run_id] = dict(entry, client=client_id)
    return None


def _release_on_scheduler(run_id: str, dask_scheduler=None):
    dask_scheduler.__dict__.setdefault("_parallax_runs", {}).pop(run_id, None)


def reserve_devices(client, run_id: str, name: str, devices, reserve: bool = True) -> None:
    """Mark ``devices`` as used by ``run_id`` on the scheduler, or raise `DevicesInUse`
    naming the run that holds some of them. Reservations go with their run (released at
    its end) or with the client that made them. ``reserve=False`` only checks."""
    entry = {"devices": [d.key for d in devices], "labels": {d.key: f"{d.host}/{d.label}"
                                                            for d in devices},
             "name": name, "started": time.time()}
    try:
        other = client.run_on_scheduler(_reserve_on_scheduler, run_id, entry, client.id,
                                        reserve)
    except ParallaxError:
        raise
    except Exception:   # a scheduler that refuses run_on_scheduler: no registry there
        return
    if other:
        shared = [other["labels"].get(k, k) for k in other["devices"] if k in entry["devices"]]
        started = time.strftime("%H:%M:%S", time.localtime(other["started"]))
        raise DevicesInUse(
            f"device(s) {', '.join(shared)} are in use by run {other['run_id']} "
            f"(program {other['name']!r}, started {started}, still running): wait for it "
            f"(run.wait()), stop it (run.stop()), or select other devices")


def _in_use_on_scheduler(run_id: str, dask_scheduler=None):
    runs = dask_scheduler.__dict__.get("_parallax_runs", {})
    return [k for other_id, other in runs.items()
            if other_id != run_id and other["client"] in dask_scheduler.clients
            for k in other["devices"]]


def devices_in_use(client, run_id: str) -> set:
    """Keys of the devices other live runs hold."""
    try:
        return set(client.run_on_scheduler(_in_use_on_scheduler, run_id))
    except Exception:
        return set()


def release_devices(client, run_id: str) -> None:
    if client.status in ("closing", "closed"):
        return
    try:
        client.run_on_scheduler(_release_on_scheduler, run_id)
    except Exception:
        pass

"""Launching a program on the Dask cluster: ranks, rendezvous, supervision, the Run handle."""
from __future__ import annotations

import threading
import uuid
from typing import Optional

from ..config import Config
from ..errors import ParallaxError
from ..events import topic_of
from ..program import Program
from ..runtime.spec import RankSpec
from .rendezvous import Rendezvous, assign_ranks
from .run import Run
from .supervisor import run_rank


def train(program: Program, cluster=None, select=None, config: Optional[Config] = None,
          report=None) -> Run:
    """Start ``program`` data parallel on the selected devices; returns at once with a Run.

    cluster: a ParallaxCluster (default: ``px.connect()``, an embedded LocalCluster).
    select: None (every device), a count, device keys, a dict of ``cluster.select``
        arguments, or a Selection.
    report: an analysis report to reuse (otherwise the program is analysed here).
    """
    from distributed import Event

    from ..analysis import analyze
    from ..cluster import connect

    config = config or Config()
    payload = program.check_picklable()
    cluster = cluster or connect()
    selection = cluster.resolve(select)
    slots = assign_ranks(selection)
    if report is None:
        report = analyze(program, steps=2, config=config, servers=len(selection.hosts),
                         machines=len(selection.hosts),
                         workers_per_machine=max(len(d) for d in selection.by_host().values()))
    mode = report.replan(mode=config.mode).mode
    if mode != "AR":
        raise ParallaxError(f"mode {mode} needs parameter servers, which this version does not "
                            f"run yet: use Config(mode='AR')")
    run_id = uuid.uuid4().hex[:10]
    topic = topic_of(run_id)
    stop_event = Event(f"parallax-stop-{run_id}", client=cluster.client)
    rendezvous = Rendezvous(slots, cluster.scheduler_address)

    def cleanup():
        rendezvous.stop()
        cluster.client.unsubscribe_topic(topic)

    run = Run(cluster.client, run_id, topic, stop_event, slots, config, mode, report, cleanup)
    specs = [RankSpec(run_id=run_id, rank=s.rank, size=s.size, local_rank=s.local_rank,
                      local_size=s.local_size, host=s.host, device_kind=s.device.kind,
                      program=payload, config=config, mode=mode,
                      environment=s.horovod_environment(rendezvous.address, rendezvous.port),
                      topic=topic, stop_event=stop_event.name,
                      sparse_variables=tuple(v.index for v in report.variables
                                             if v.kind == "sparse"))
             for s in slots]
    futures = [cluster.client.submit(run_rank, spec, workers=[spec_slot.device.worker],
                                     allow_other_workers=False, pure=False, retries=0,
                                     key=f"parallax-rank-{run_id}-{spec.rank}")
               for spec, spec_slot in zip(specs, slots)]
    threading.Thread(target=run._watch, args=(futures,), daemon=True,
                     name=f"parallax-watch-{run_id}").start()
    threading.Thread(target=run._watch_workers, args=(selection.workers,), daemon=True,
                     name=f"parallax-workers-{run_id}").start()
    return run


__all__ = ["train", "Run"]

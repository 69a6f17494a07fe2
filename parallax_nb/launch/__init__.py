"""Launching a program on the Dask cluster: servers, ranks, rendezvous, the Run handle."""
from __future__ import annotations

import threading
import time
import uuid
from typing import Optional

from ..config import HOROVOD_DEFAULTS, Config
from ..events import topic_of
from ..program import Program
from ..runtime.spec import RankSpec
from ..tuning import search_on_cluster, searched_variables
from .rendezvous import Rendezvous, assign_ranks
from .run import Run
from .servers import IN_CHIEF, server_appliers, start_servers
from .supervisor import run_rank


def train(program: Program, cluster=None, select=None, config: Optional[Config] = None,
          report=None) -> Run:
    """Start ``program`` data parallel on the selected devices; returns with a Run.

    cluster: a ParallaxCluster (default: ``px.connect()``, an embedded LocalCluster).
    select: None (every device), a count, device keys, a dict of ``cluster.select``
        arguments, or a Selection.
    report: an analysis report to reuse (otherwise the program is analysed here).

    Returns at once, unless ``config.partitions`` is "auto" and a sparse variable is larger
    than ``config.partition_search_min_bytes``: then the partition search's trial runs go
    first, blocking (a Run is one launch: its ranks, servers, placement and metrics; the
    trials are launches of their own, and the real run is placed with their outcome), and
    the Run carries the result as ``run.partition_search``.
    """
    from distributed import Event

    from ..analysis import analyze
    from ..cluster import connect
    from ..cluster.check import require_ready

    called_at = time.time()
    config = config or Config()
    payload = program.check_picklable()
    cluster = cluster or connect()
    selection = cluster.resolve(select)
    require_ready(cluster, selection)   # the quick px.check: refuse a cluster that cannot run
    slots = assign_ranks(selection)
    hosts = len(selection.hosts)
    report = (report or analyze(program, steps=2, config=config)).for_selection(
        selection, mode=config.mode, servers=config.servers, partitions=config.partitions)
    servers = report.servers
    search = None
    if searched_variables(report):
        search = search_on_cluster(program, cluster, selection, config, report)
        config = config.replace(partitions=search.partitions)
        report = report.replan(partitions=config.partitions)
    mode = report.mode
    if mode == "AR":
        servers = 0
    run_id = uuid.uuid4().hex[:10]
    stop_event = Event(f"parallax-stop-{run_id}", client=cluster.client)
    run = Run(cluster.client, run_id, topic_of(run_id), stop_event, slots, config, mode,
              report)
    run.train_called_at = called_at
    if search is not None:
        run.partition_search = search
        run.notes.append(search.summary())
    rendezvous = None
    try:
        addresses, placed, server_futures = (
            start_servers(cluster.client, run, selection, servers, config.start_timeout)
            if servers else ((), (), []))
        appliers = server_appliers(placed, slots)
        rendezvous = Rendezvous(slots, cluster.scheduler_address)
        run.add_cleanup(rendezvous.stop)
        host_ranks = tuple(tuple(s.rank for s in slots if s.host == host)
                           for host in selection.hosts)
        specs = [RankSpec(run_id=run_id, rank=s.rank, size=s.size, local_rank=s.local_rank,
                          local_size=s.local_size, host=s.host,
                          program=payload, config=config, mode=mode,
                          environment={**s.horovod_environment(rendezvous.address,
                                                               rendezvous.port),
                                       **HOROVOD_DEFAULTS, **(config.horovod or {})},
                          topic=run.topic, stop_event=stop_event.name, hosts=hosts,
                          host_ranks=host_ranks, servers=addresses, appliers=appliers,
                          server_task=IN_CHIEF if servers and s.rank == 0 else None,
                          placements=report.placements)
                 for s in slots]
        rank_futures = [cluster.client.submit(run_rank, spec, workers=[slot.device.worker],
                                              allow_other_workers=False, pure=False, retries=0,
                                              key=f"parallax-rank-{run_id}-{spec.rank}")
                        for spec, slot in zip(specs, slots)]
    except BaseException:
        stop_event.set()
        run.abort()
        raise
    threading.Thread(target=run._watch, args=(rank_futures, server_futures), daemon=True,
                     name=f"parallax-watch-{run_id}").start()
    threading.Thread(target=run._watch_workers, daemon=True,
                     name=f"parallax-workers-{run_id}").start()
    return run


__all__ = ["train", "Run"]

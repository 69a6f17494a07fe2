"""One launch of a run's processes: servers, rendezvous and ranks on a set of devices.

A run is one attempt, or several when it restarts after a loss (`Config.max_restarts`):
each attempt has its own ranks, servers, Horovod rendezvous, stop event and event topic
(events of an attempt that was given up cannot be mistaken for the next one's); the run's
id, its checkpoint directory and its metrics stay.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable, List

from ..config import HOROVOD_DEFAULTS
from ..events import topic_of
from ..runtime.spec import RankSpec
from .checks import check_checkpoint_dir
from ..cluster.ranks import assign_ranks
from .rendezvous import Rendezvous
from .servers import IN_CHIEF, server_appliers, server_workers, start_servers
from .supervisor import run_rank


@dataclasses.dataclass
class Attempt:
    number: int
    selection: object
    slots: list
    report: object
    mode: str
    topic: str
    stop_event: object
    rank_futures: list = dataclasses.field(default_factory=list)
    server_futures: list = dataclasses.field(default_factory=list)
    server_workers: tuple = ()     # the Dask worker of each server task (task order)
    server_hosts: tuple = ()
    server_addresses: tuple = ()
    server_keys: dict = dataclasses.field(default_factory=dict)   # future key -> task
    lost_workers: list = dataclasses.field(default_factory=list)
    failed_at: float = 0.0
    cleanups: List[Callable[[], None]] = dataclasses.field(default_factory=list)
    errors: list = dataclasses.field(default_factory=list)
    cancelled: set = dataclasses.field(default_factory=set)   # keys we cancelled ourselves
    started_at: float = dataclasses.field(default_factory=time.time)

    @property
    def futures(self):
        return list(self.rank_futures) + list(self.server_futures)

    @property
    def workers(self):
        return {s.device.worker for s in self.slots} | set(self.server_workers)

    def server_worker_of(self, key: str):
        task = self.server_keys.get(key)
        return None if task is None else self.server_workers[task]

    def close(self):
        for cleanup in self.cleanups:
            try:
                cleanup()
            except Exception:
                pass
        self.cleanups = []


def attempt_topic(run_id: str, number: int) -> str:
    return topic_of(run_id) if number == 0 else f"{topic_of(run_id)}-a{number}"


def launch(cluster, run, number: int, selection, report, payload, config) -> Attempt:
    """Start attempt ``number`` of ``run`` on ``selection``; returns once the ranks are
    submitted. On failure everything it started is stopped and the error raised."""
    from distributed import Event

    client = cluster.client
    slots = assign_ranks(selection)
    mode = report.mode
    # AR, or HYBRID whose sparse variables all cost less on AllReduce: no server
    servers = report.servers if any(p.placement == "ps" for p in report.placements) else 0
    placed = server_workers(selection, servers) if servers else []
    check_checkpoint_dir(client, config, {
        slots[0].device.worker: "rank 0 saves the checkpoints",
        **{worker: f"parameter server {task} saves its variables"
           for task, (_, worker) in enumerate(placed) if task != IN_CHIEF}})
    stop_event = Event(f"parallax-stop-{run.run_id}-{number}", client=client)
    attempt = Attempt(number, selection, slots, report, mode, attempt_topic(run.run_id, number),
                      stop_event, server_workers=tuple(w for _, w in placed),
                      server_hosts=tuple(h for h, _ in placed))
    run._begin_attempt(attempt)
    suffix = f"-{number}" if number else ""
    try:
        addresses, placed, attempt.server_futures = (
            start_servers(client, run, selection, servers, config.start_timeout, suffix)
            if servers else ((), (), []))
        attempt.server_addresses = tuple(addresses)
        attempt.server_keys = {f.key: task for f, task in zip(
            attempt.server_futures, [t for t in range(len(placed)) if t != IN_CHIEF])}
        appliers = server_appliers(placed, slots)
        rendezvous = Rendezvous(slots, cluster.scheduler_address)
        attempt.cleanups.append(rendezvous.stop)
        host_ranks = tuple(tuple(s.rank for s in slots if s.host == host)
                           for host in selection.hosts)
        specs = [RankSpec(run_id=run.run_id, rank=s.rank, size=s.size, local_rank=s.local_rank,
                          local_size=s.local_size, host=s.host,
                          program=payload, config=config, mode=mode,
                          environment={**s.horovod_environment(rendezvous.address,
                                                               rendezvous.port),
                                       **HOROVOD_DEFAULTS, **(config.horovod or {})},
                          topic=attempt.topic, stop_event=stop_event.name,
                          hosts=len(selection.hosts), host_ranks=host_ranks,
                          servers=addresses, appliers=appliers,
                          server_task=IN_CHIEF if servers and s.rank == 0 else None,
                          placements=report.placements)
                 for s in slots]
        attempt.rank_futures = [
            client.submit(run_rank, spec, workers=[slot.device.worker],
                          allow_other_workers=False, pure=False, retries=0,
                          key=f"parallax-rank-{run.run_id}-{spec.rank}{suffix}")
            for spec, slot in zip(specs, slots)]
    except BaseException:
        stop_event.set()
        client.cancel(attempt.futures)
        attempt.close()
        raise
    return attempt

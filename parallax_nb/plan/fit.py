"""Will the plan fit? Before anything starts, the bytes each process will hold (the analysis's
memory plan) against the memory of the Dask worker it runs on.

A worker's ranks and its separate parameter server are processes of their own, each with
TensorFlow's baseline; together they must stay within the worker's memory limit (Dask's
``memory_limit``; the machine's memory when none is set). A plan that cannot fit is refused
with what would: another mode, or more servers. GPU workers report GPU memory, not the
host's, so their hosts are not checked here.
"""
from __future__ import annotations

import collections
from typing import Dict, List, Tuple

from ..analysis.memory import PROCESS_BASELINE_BYTES
from ..analysis.traffic import format_bytes
from ..errors import ConfigError
from ..cluster.ranks import assign_ranks
from ..launch.servers import IN_CHIEF, server_workers


def refuse_unfit(report, selection, devices) -> None:
    """Raise ConfigError when some worker cannot hold what the plan puts on it."""
    limits = worker_limits(devices)
    problems = unfit(report, selection, limits)
    if not problems:
        return
    fitting = [f"mode={mode!r}" for mode in ("HYBRID", "PS", "AR")
               if mode != report.mode and not unfit(report.replan(mode=mode), selection, limits)]
    hosts = len(selection.hosts)
    fitting += [f"servers={n}" for n in (2 * hosts, 4 * hosts)
                if report.mode != "AR" and not unfit(report.replan(servers=n), selection,
                                                     limits)][:1]
    advice = (f"what would fit: {' or '.join(fitting)}" if fitting else
              "no mode or server count fits these workers: select more of them, or "
              "workers with more memory")
    raise ConfigError(f"the {report.mode} plan does not fit the workers' memory: "
                      f"{'; '.join(problems)}. AR keeps every table and its optimizer slots "
                      f"in every rank, HYBRID and PS one copy spread over the servers; "
                      f"{advice}.")


def worker_limits(devices) -> Dict[str, int]:
    """Memory limit per CPU worker: the sum of its slots' shares."""
    limits: Dict[str, int] = collections.defaultdict(int)
    for d in devices:
        if d.kind == "CPU" and d.memory_total:
            limits[d.worker] += d.memory_total
    return dict(limits)


def worker_needs(report, selection) -> Dict[str, List[Tuple[str, int]]]:
    """Per Dask worker, its processes under the plan: ``[("rank 0", peak bytes held), ...,
    ("server 1", bytes held)]``, without TensorFlow's baseline per process."""
    plan = report.memory()
    needs: Dict[str, List[Tuple[str, int]]] = collections.defaultdict(list)
    for slot in assign_ranks(selection):
        if slot.rank in plan.ranks:
            needs[slot.device.worker].append((f"rank {slot.rank}", plan.peak(slot.rank)))
    if report.mode != "AR":
        for task, (_, worker) in enumerate(server_workers(selection, report.servers)):
            if task != IN_CHIEF and task in plan.servers:
                needs[worker].append((f"server {task}", plan.servers[task]))
    return dict(needs)


def worker_total(processes: List[Tuple[str, int]]) -> int:
    """What a worker's processes need together, TensorFlow's baseline in each included."""
    return sum(held + PROCESS_BASELINE_BYTES for _, held in processes)


def unfit(report, selection, limits: Dict[str, int]) -> List[str]:
    """Each worker whose processes' peaks and baselines exceed its limit, described."""
    problems = []
    for worker, processes in worker_needs(report, selection).items():
        limit = limits.get(worker)
        total = worker_total(processes)
        if limit and total > limit:
            each = ", ".join(f"{name} {format_bytes(held)}" for name, held in processes)
            problems.append(f"worker {worker} may use {format_bytes(limit)} and would hold "
                            f"{format_bytes(total)} ({each}, plus "
                            f"{format_bytes(PROCESS_BASELINE_BYTES)} of TensorFlow per process)")
    return problems

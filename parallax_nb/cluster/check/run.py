"""Running the check: every worker's environment probed and its rows made, the rank
assignment and the network checked; and the quick check `px.train` runs before a launch."""
from __future__ import annotations

import time
import weakref
from typing import List, Optional, Sequence

from ..devices import devices_from_probes
from ..scheduler_view import scheduler_workers
from ..selection import Selector
from . import envprobe, remote
from .assignment import rank_assignment
from .network import tcp_reachability
from .result import FAIL, CheckResult, CheckRow, ClusterNotReady
from .rows import worker_rows
from .workers import envprobe_source, host_of, run_on, worker_facts

QUICK_TIMEOUT = 30.0
FULL_TIMEOUT = 180.0


def run_check(cluster, select: Selector = None, *, quick: bool = False,
              workers: Optional[Sequence[str]] = None, timeout: Optional[float] = None
              ) -> CheckResult:
    """`px.check` on a connected `ParallaxCluster` (see `check`)."""
    started = time.monotonic()
    client = cluster.client
    known = sorted(scheduler_workers(client))
    addresses = sorted(workers) if workers is not None else known
    timeout = timeout or (QUICK_TIMEOUT if quick else FULL_TIMEOUT)
    mine = envprobe.facts(False)
    client_facts = {"python": mine["python"],
                    **{name: (mine["packages"][name] or {}).get("version")
                       for name in ("tensorflow", "horovod", "parallax_nb")},
                    "parallax_nb_digest": (mine["packages"]["parallax_nb"] or {}).get("digest"),
                    "legacy_keras_env": mine["legacy_keras_env"],
                    "machine": mine["network"]["machine"],
                    "packages": mine["packages"]}
    rows: List[CheckRow] = []
    if not addresses:
        rows.append(CheckRow("*", "*", "workers", FAIL, "no workers",
                             "start or scale the cluster's workers (cluster.scale(n)), then check "
                             "again"))
        return CheckResult(cluster.scheduler_address, tuple(rows), (), client_facts, quick,
                           time.monotonic() - started, 0)
    envs = run_on(client, remote.environment, addresses, envprobe_source(),
                "quick" if quick else "full", timeout)
    facts = run_on(client, worker_facts, addresses)
    probes = {a: f for a, f in facts.items() if isinstance(f, dict)}
    hosts = {a: host_of(cluster, a, probes.get(a), envs.get(a)) for a in addresses}
    machine_of = {a: e["network"]["machine"] for a, e in envs.items() if "network" in e}
    machines = len(set(machine_of.values())) or 1
    devices = devices_from_probes(probes, cluster.host_labels)
    ranks, rank_rows = rank_assignment(devices, select, hosts, probes)
    tcp = tcp_reachability(client, addresses, envs, probes, machine_of, machines, hosts)
    for a in addresses:
        rows += worker_rows(a, hosts[a], envs.get(a), facts.get(a), client_facts, machines,
                             ranks, tcp.get(a))
    rows += rank_rows
    return CheckResult(cluster.scheduler_address, tuple(rows), tuple(ranks), client_facts, quick,
                       round(time.monotonic() - started, 2), machines)


_READY: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def require_ready(cluster, selection, timeout: float = QUICK_TIMEOUT) -> None:
    """What `px.train` runs before it starts anything: the quick check of the selected
    workers; raises `ClusterNotReady` (with the table) when a row fails. A passing result is
    remembered per cluster and set of workers, host labels and devices."""
    key = (cluster.scheduler_address, tuple(selection.keys),
           tuple((d.worker, d.host) for d in selection))
    passed = _READY.setdefault(cluster, set())
    if key in passed:
        return
    result = run_check(cluster, selection, quick=True, workers=selection.workers, timeout=timeout)
    if not result.ok:
        raise ClusterNotReady(result)
    passed.add(key)

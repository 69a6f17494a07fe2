"""Connecting to a Dask cluster: an embedded LocalCluster, a scheduler address, a Client,
or a cluster object (dask-gateway, dask-cuda, any ``distributed`` deploy cluster)."""
from __future__ import annotations

import contextlib

import logging
from typing import Callable, Dict, Optional

import pandas as pd

from .devices import devices_from_probes, probe_worker
from .errors import ClusterError
from .scheduler_view import scheduler_workers
from .main_guard import require_main_guard
from .selection import Selection, Selector, resolve, select


# How the workers' spare processes (`Config.warm_start`) are started ("start") and ended
# ("release", returning how many it ended), run on every worker by `ParallaxCluster`:
# `launch.warm` fills them in when imported (the cluster layer stays below the launch layer).
SPARE_HOOKS: Dict[str, Callable[[], int]] = {}


class ParallaxCluster:
    """A Dask client plus what the SDK knows about the cluster's machines.

    host_labels: ``{worker address: host label}`` to group workers into machines other than
    by hostname (e.g. to treat workers on one machine as different hosts in tests).
    """

    def __init__(self, client, *, owned_cluster=None, host_labels: Optional[Dict[str, str]] = None):
        self.client = client
        self._owned_cluster = owned_cluster
        self.host_labels = dict(host_labels or {})
        self._devices = None
        self._links = {}
        self._step_costs = {}

    # -- what is there ------------------------------------------------------------------------
    def devices(self, refresh: bool = False):
        """Every GPU, or CPU slot of workers without GPUs, as `Device` objects."""
        if self._devices is None or refresh:
            probes = self.client.run(probe_worker)
            self._devices = devices_from_probes(probes, self.host_labels)
        return list(self._devices)

    def inventory(self, refresh: bool = True) -> pd.DataFrame:
        """Hosts, Dask workers and their devices, one row per device."""
        rows = [{"host": d.host, "worker": d.worker, "kind": d.kind, "device": d.label,
                 "name": d.name, "memory_total": d.memory_total, "memory_used": d.memory_used,
                 "utilization": d.utilization, "key": d.key}
                for d in self.devices(refresh=refresh)]
        return pd.DataFrame(rows, columns=["host", "worker", "kind", "device", "name",
                                           "memory_total", "memory_used", "utilization", "key"])

    def measure_link(self, select: Selector = None, *, refresh: bool = False):
        """The link between the first two machines of the selection (`cluster.link`):
        round trip and bandwidth, measured once per pair of machines and kept, its fixed
        costs calibrated by the runs finished on these workers (`step_costs`); None when
        the selected workers share one machine. What ``Config(link="measure")`` plans with."""
        from ..analysis.timing import calibrate
        from .link import measure_link

        selection = self.resolve(select)
        key = _workers_of(selection)
        if refresh or key not in self._links:
            self._links[key] = measure_link(self.client, selection)
        measured = self._links[key]
        return None if measured is None else calibrate(measured, self.step_costs(selection))

    def record_step_cost(self, select: Selector, cost) -> None:
        """Keep what a finished run on these workers measured on the link
        (`analysis.timing.StepCost`); `px.train` records every run between machines."""
        self._step_costs.setdefault(_workers_of(self.resolve(select)), []).append(cost)

    def step_costs(self, select: Selector = None) -> list:
        """The `StepCost`s of the runs finished on exactly these workers, oldest first."""
        return list(self._step_costs.get(_workers_of(self.resolve(select)), ()))

    def check(self, select: Selector = None, *, quick: bool = False, timeout=None):
        """Whether every worker can run ranks: a `CheckResult` table (see `px.check`)."""
        from .check.run import run_check

        return run_check(self, select, quick=quick, timeout=timeout)

    def select(self, *, hosts=None, workers=None, count=None, keys=None, kind=None) -> Selection:
        return select(self.devices(), hosts=hosts, workers=workers, count=count, keys=keys,
                      kind=kind)

    def resolve(self, selector: Selector) -> Selection:
        return resolve(self.devices(refresh=True), selector)

    def label_hosts(self, labels: Dict[str, str]) -> None:
        """Group workers into hosts by label (see the class docstring)."""
        self.host_labels.update(labels)
        self._devices = None

    @property
    def dashboard_link(self) -> Optional[str]:
        """The Dask dashboard, formatted by ``distributed.dashboard.link`` (JupyterHub-aware)."""
        try:
            return self.client.dashboard_link
        except Exception:  # no dashboard (bokeh missing or disabled)
            return None

    @property
    def scheduler_address(self) -> str:
        return self.client.scheduler.address

    # -- lifetime -----------------------------------------------------------------------------
    def start_spares(self) -> None:
        """Have every worker start the spare processes it keeps for the next run
        (``Config.warm_start``: TensorFlow and Horovod imported, in the background), so
        that the first run skips that start-up too. An embedded cluster does this as
        ``px.connect`` returns; on a shared cluster it is yours to call."""
        if "start" in SPARE_HOOKS:
            self.client.run(SPARE_HOOKS["start"])

    def release_spares(self) -> int:
        """End the spare processes the workers keep for the next run (``Config.warm_start``);
        returns how many there were."""
        if "release" not in SPARE_HOOKS:
            return 0
        return sum(self.client.run(SPARE_HOOKS["release"]).values())

    def close(self):
        """Close the client, and the cluster too when this SDK started it. The workers'
        spare processes go first (they would outlive the client on a shared cluster)."""
        with contextlib.suppress(Exception):
            self.release_spares()
        self.client.close()
        if self._owned_cluster is not None:
            self._owned_cluster.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __repr__(self):
        devices = self.devices()
        hosts = sorted({d.host for d in devices})
        return (f"<ParallaxCluster {self.scheduler_address}: {len(hosts)} host(s), "
                f"{len({d.worker for d in devices})} worker(s), {len(devices)} device(s)>")


def connect(address=None, *, local: Optional[int] = None, slots_per_worker: int = 1,
            timeout: float = 10.0, host_labels: Optional[Dict[str, str]] = None,
            simulate_hosts: Optional[int] = None, spares: Optional[bool] = None) -> ParallaxCluster:
    """Connect to a Dask cluster, or start an embedded one.

    address: None starts a LocalCluster of ``local`` worker processes (default 2), each with
        ``slots_per_worker`` CPU slots (its Dask threads); a string is a scheduler address; a
        ``distributed.Client`` is used as it is; any object with ``scheduler_address`` (a
        LocalCluster, dask-gateway or dask-cuda cluster) is connected to.
    timeout: seconds to wait for a remote scheduler before giving up.
    simulate_hosts: for the embedded cluster, label its workers as that many hosts
        ("host0", "host1", ...), so multi-machine behaviour can be tried on one machine.
    spares: have the workers start their spare processes now, in the background
        (`ParallaxCluster.start_spares`), so that the first run starts warm too: by default
        for the embedded cluster only (a shared cluster's workers start theirs after a
        run). False where no run will use them (they import TensorFlow, 2 per worker).
    """
    from distributed import Client, LocalCluster

    if address is None:
        require_main_guard("px.connect() (an embedded LocalCluster)")
        workers = local or 2
        cluster = LocalCluster(n_workers=workers, threads_per_worker=slots_per_worker,
                               processes=True, host="127.0.0.1", dashboard_address="127.0.0.1:0",
                               silence_logs=logging.ERROR)
        client = Client(cluster, timeout=timeout)
        parallax = ParallaxCluster(client, owned_cluster=cluster, host_labels=host_labels)
        if simulate_hosts:
            addresses = sorted(scheduler_workers(client))
            parallax.label_hosts({a: f"host{i * simulate_hosts // len(addresses)}"
                                  for i, a in enumerate(addresses)})
        if spares is not False:
            parallax.start_spares()
        return parallax
    if local is not None or simulate_hosts is not None:
        raise ClusterError("local= and simulate_hosts= only apply to the embedded cluster "
                           "(address=None)")
    if isinstance(address, Client):
        client = address
    elif isinstance(address, str):
        try:
            client = Client(address, timeout=timeout)
        except (OSError, TimeoutError) as exc:
            raise ClusterError(f"could not reach the Dask scheduler at {address} within "
                               f"{timeout:g} s ({exc}); check the address and that the "
                               f"scheduler is running") from None
    elif hasattr(address, "scheduler_address"):
        client = Client(address, timeout=timeout)
    else:
        raise ClusterError(f"cannot connect to {address!r}: pass None, a scheduler address, "
                           f"a distributed.Client or a cluster object")
    parallax = ParallaxCluster(client, host_labels=host_labels)
    if spares:
        parallax.start_spares()
    return parallax


def _workers_of(selection) -> tuple:
    """What a link measurement and its calibration are kept by: the selected workers."""
    return tuple(sorted({d.worker for d in selection.devices}))

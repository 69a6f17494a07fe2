"""Asking the workers: a function run on each (its failure kept per worker), the facts the
launch will use of each, and the host each worker counts as."""
from __future__ import annotations

from ..devices import probe_worker
from . import envprobe

def run_on(client, function, addresses, *args):
    try:
        return client.run(function, *args, workers=list(addresses), on_error="return",
                          wait=True)
    except Exception as exc:  # noqa: BLE001  (a worker gone meanwhile: say so per worker)
        return {a: exc for a in addresses}


def envprobe_source() -> str:
    with open(envprobe.__file__, encoding="utf-8") as f:
        return f.read()


def worker_facts(dask_worker=None) -> dict:
    """What the launch will use of this worker (runs inside it; needs parallax_nb there):
    its devices' probe, its address and the interface Horovod will be told to use."""
    import socket
    from urllib.parse import urlparse

    import psutil

    from ..ranks import interface_of

    facts = probe_worker(dask_worker)
    ip = urlparse(dask_worker.address).hostname if dask_worker is not None else "127.0.0.1"
    facts["ip"] = ip
    facts["interface"] = interface_of(ip)      # what the supervisor sets HOROVOD_GLOO_IFACE to
    facts["interface_addresses"] = sorted(
        a.address for addrs in psutil.net_if_addrs().values() for a in addrs
        if a.family == socket.AF_INET)
    return facts


def host_of(cluster, address, probe, env) -> str:
    # the launch's rule (devices_from_probes): a host label, else PARALLAX_HOST, else hostname
    if cluster.host_labels.get(address):
        return cluster.host_labels[address]
    if probe:
        return probe.get("label") or probe["hostname"]
    if isinstance(env, dict) and "network" in env:
        return env["network"]["hostname"]
    return "?"

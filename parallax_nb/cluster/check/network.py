"""Can the ranks reach each other? Every worker listens where Horovod's Gloo will bind, and
a worker of every other machine connects to it."""
from __future__ import annotations

import ipaddress
from typing import Dict

from . import remote
from .workers import run_on

TCP_TIMEOUT = 3.0


def is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


def tcp_reachability(client, addresses, envs, probes, machine_of, machines, hosts) -> Dict[str, dict]:
    """Each worker listens on its Dask address (and on its hostname's, where Gloo binds);
    one worker of every other machine connects (one other worker when there is one machine).
    ``{listener: {"checked": [...], "errors": [...]}}``."""
    from urllib.parse import urlparse

    able = [a for a in addresses if a in machine_of]
    if not able:
        return {}
    plan, connectors = {}, {}
    for a in able:
        others = [o for o in able if machine_of[o] != machine_of[a]]
        if machines > 1:
            first = {}
            for o in others:
                first.setdefault(machine_of[o], o)
            connectors[a] = sorted(first.values())
        else:
            peers = [o for o in able if o != a]
            connectors[a] = [peers[(able.index(a)) % len(peers)]] if peers else [a]
        targets = {urlparse(a).hostname: "Dask address"}
        for ip in envs[a]["network"]["hostname_addresses"]:
            if machines == 1 or not is_loopback(ip):
                targets.setdefault(ip, "hostname address")
        plan[a] = {ip: len(connectors[a]) for ip in targets}
        connectors[a] = [(c, targets) for c in connectors[a]]
    ports = run_on(client, remote.listen, able, plan, TCP_TIMEOUT + 10)
    wanted: Dict[str, list] = {}
    result = {a: {"checked": [], "errors": []} for a in able}
    for a in able:
        opened = ports.get(a)
        if not isinstance(opened, dict):
            result[a]["errors"].append(f"could not open a listening socket: {opened}")
            continue
        for ip, port in opened.items():
            if not isinstance(port, int):
                result[a]["errors"].append(port)
                continue
            for connector, targets in connectors[a]:
                wanted.setdefault(connector, []).append((ip, port))
                result[a]["checked"].append((connector, ip, port, targets[ip]))
    reached = run_on(client, remote.connect, sorted(wanted), wanted, TCP_TIMEOUT)
    for a in able:
        for connector, ip, port, label in result[a]["checked"]:
            outcome = reached.get(connector)
            error = (outcome.get(f"{ip}:{port}") if isinstance(outcome, dict)
                     else f"the connecting worker failed: {outcome}")
            if error:
                result[a]["errors"].append(f"{connector} (host {hosts[connector]}) could not "
                                           f"connect to {ip}:{port} ({label}): {error}")
    return result

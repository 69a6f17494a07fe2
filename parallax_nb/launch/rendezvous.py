"""Rank assignment and Horovod's Gloo rendezvous, run from the client (the driver).

Like Horovod's Ray executor: the driver assigns ranks per host with Horovod's own
`get_host_assignments`, starts Horovod's `RendezvousServer`, and hands every rank the
environment Horovod's Gloo controller reads at ``hvd.init()``.
"""
from __future__ import annotations

import dataclasses
import socket
from typing import Dict, List
from urllib.parse import urlparse

from ..cluster.devices import Device
from ..cluster.selection import Selection


@dataclasses.dataclass(frozen=True)
class RankSlot:
    """Where one rank runs and its place in Horovod's world."""

    rank: int
    size: int
    local_rank: int
    local_size: int
    cross_rank: int
    cross_size: int
    host: str
    device: Device

    def horovod_environment(self, rendezvous_addr: str, rendezvous_port: int) -> Dict[str, str]:
        env = {
            "HOROVOD_GLOO_RENDEZVOUS_ADDR": rendezvous_addr,
            "HOROVOD_GLOO_RENDEZVOUS_PORT": str(rendezvous_port),
            "HOROVOD_CONTROLLER": "gloo",
            "HOROVOD_CPU_OPERATIONS": "gloo",
            "HOROVOD_HOSTNAME": self.host,
            "HOROVOD_RANK": str(self.rank),
            "HOROVOD_SIZE": str(self.size),
            "HOROVOD_LOCAL_RANK": str(self.local_rank),
            "HOROVOD_LOCAL_SIZE": str(self.local_size),
            "HOROVOD_CROSS_RANK": str(self.cross_rank),
            "HOROVOD_CROSS_SIZE": str(self.cross_size),
        }
        # One GPU per rank; CPU ranks see no GPU, so TensorFlow does not grab one by default.
        env["CUDA_VISIBLE_DEVICES"] = self.device.id if self.device.kind == "GPU" else ""
        return env


def assign_ranks(selection: Selection) -> List[RankSlot]:
    """One rank per selected device, ranks of a host consecutive (Horovod's assignment)."""
    from horovod.runner.common.util import hosts

    by_host = selection.by_host()
    infos = [hosts.HostInfo(host, len(devices)) for host, devices in by_host.items()]
    plan = hosts.get_host_assignments(infos, len(selection))
    return [RankSlot(s.rank, s.size, s.local_rank, s.local_size, s.cross_rank, s.cross_size,
                     s.hostname, by_host[s.hostname][s.local_rank]) for s in plan]


class Rendezvous:
    """Horovod's HTTP rendezvous server, living as long as one run (one attempt).

    Horovod's own ``RendezvousServer`` listens on every interface and its ``stop()`` leaves
    the socket open (``shutdown`` without ``server_close``); this one listens only on the
    address the cluster reaches the client by, and closes its port when stopped
    (docs/security.md)."""

    def __init__(self, slots: List[RankSlot], scheduler_address: str):
        from horovod.runner.common.util.hosts import SlotInfo
        from horovod.runner.http.http_server import RendezvousHandler, RendezvousHTTPServer
        from horovod.runner.util.threads import in_thread

        self.address = address_seen_by(scheduler_address)
        self._server = RendezvousHTTPServer((self.address, 0), RendezvousHandler, 0)
        self.port = self._server.server_address[1]
        self._thread = in_thread(target=self._server.serve_forever)
        self._server.init([SlotInfo(hostname=s.host, rank=s.rank, local_rank=s.local_rank,
                                    cross_rank=s.cross_rank, size=s.size,
                                    local_size=s.local_size, cross_size=s.cross_size)
                           for s in slots])

    def stop(self):
        if self._server is not None:
            server, self._server = self._server, None
            server.shutdown()
            server.server_close()
            self._thread.join(timeout=5)


def address_seen_by(scheduler_address: str) -> str:
    """This machine's address on the network the scheduler (and its workers) are on."""
    host = urlparse(scheduler_address).hostname or "127.0.0.1"
    if host in ("localhost", "127.0.0.1", "::1"):
        return "127.0.0.1"
    from distributed.utils import get_ip

    return get_ip(host)


def interface_of(ip: str) -> str:
    """The network interface holding ``ip`` (what HOROVOD_GLOO_IFACE wants)."""
    import psutil

    if ip in ("localhost", "127.0.0.1"):
        ip = "127.0.0.1"
    for name, addresses in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and a.address == ip for a in addresses):
            return name
    return "lo"

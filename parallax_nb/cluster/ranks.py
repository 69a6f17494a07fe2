"""Which selected device runs which rank, and the network interface a host's ranks talk on.

Ranks are assigned per host with Horovod's own `get_host_assignments` (a host's ranks are
consecutive), so the plan (memory per worker), the cluster check and the launch agree on
where each rank runs.
"""
from __future__ import annotations

import dataclasses
import socket
from typing import Dict, List

from .devices import Device
from .selection import Selection


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


def interface_of(ip: str) -> str:
    """The network interface holding ``ip`` (what HOROVOD_GLOO_IFACE wants)."""
    import psutil

    if ip in ("localhost", "127.0.0.1"):
        ip = "127.0.0.1"
    for name, addresses in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and a.address == ip for a in addresses):
            return name
    return "lo"

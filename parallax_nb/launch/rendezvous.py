"""Horovod's Gloo rendezvous, run from the client (the driver).

Like Horovod's Ray executor: the driver assigns ranks per host (`cluster.ranks`), starts
Horovod's `RendezvousServer`, and hands every rank the environment Horovod's Gloo controller
reads at ``hvd.init()``.
"""
from __future__ import annotations

from typing import List
from urllib.parse import urlparse

from ..cluster.ranks import RankSlot


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

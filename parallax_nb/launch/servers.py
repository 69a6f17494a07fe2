"""Parameter-server tasks of a run: where they go, their addresses, starting them.

Server 0 lives inside rank 0's process (the chief hosts it as its own TensorFlow job "ps",
task 0): on one machine every gather, push and update of a step is then a local call in the
chief, and the other ranks of the host reach it over one gRPC hop, as they would reach a
server process. The other servers (one per further host, the paper's layout) are processes
of their own, started before the ranks because rank 0 connects to them as it starts.
A server hosted in a rank needs nothing from the others, which a server in every rank would
(two ranks that each host a server and connect to the other's have crashed TensorFlow
2.18.1's eager service).
"""
from __future__ import annotations

import time
from typing import List, Tuple

from ..errors import ParallaxError
from ..runtime.spec import CHIEF_SERVER as IN_CHIEF
from ..runtime.spec import ServerSpec
from .supervisor import free_port, run_server


def server_workers(selection, count: int) -> List[Tuple[str, str]]:
    """(host, worker) of each server: round robin over the selected hosts, on the first
    selected worker of each host (the paper: one server per machine). Server 0's worker is
    rank 0's."""
    by_host = list(selection.by_host().items())
    return [(by_host[i % len(by_host)][0], by_host[i % len(by_host)][1][0].worker)
            for i in range(count)]


def server_appliers(placed, slots) -> Tuple[int, ...]:
    """The rank that applies each server's updates: the first rank on the server's worker
    (its host's first rank, which always pushes), so the update runs where the pushes land."""
    first = {}
    for slot in sorted(slots, key=lambda s: s.rank):
        first.setdefault(slot.device.worker, slot.rank)
    return tuple(first[worker] for _, worker in placed)


def start_servers(client, run, selection, count: int, timeout: float, key_suffix: str = ""):
    """Pick every server's address, start the server processes (all but the chief's) and
    wait until they listen (``run``'s current attempt: its topic and stop event). Returns
    (addresses in task order, (host, worker) per server, the server tasks' futures)."""
    placed = server_workers(selection, count)
    addresses = tuple(client.run(free_port, workers=[worker])[worker] for _, worker in placed)
    specs = [ServerSpec(run.run_id, task, host, addresses, run.topic, run.stop_event_name,
                        run.config)
             for task, (host, _) in enumerate(placed) if task != IN_CHIEF]
    futures = [client.submit(run_server, spec, workers=[placed[spec.task][1]],
                             allow_other_workers=False, pure=False, retries=0,
                             key=f"parallax-ps-{run.run_id}-{spec.task}{key_suffix}")
               for spec in specs]
    deadline = time.time() + timeout
    try:
        while len(run.servers_started) < len(specs):
            for future in futures:
                if future.status in ("error", "cancelled"):
                    raise future.exception()
                if future.status == "finished":     # a server ends only by failing, here
                    raise future.result()["error"]
            if time.time() > deadline:
                missing = sorted({s.task for s in specs} - set(run.servers_started))
                raise ParallaxError(f"parameter server(s) {missing} did not start within "
                                    f"{timeout:g} s (Config.start_timeout)")
            time.sleep(0.05)
    except BaseException:      # an interrupt too: the started servers go (stop event set
        client.cancel(futures)  # by the caller; cancelled futures free their keys)
        raise
    return addresses, placed, futures

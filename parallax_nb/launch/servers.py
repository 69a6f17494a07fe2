"""Parameter-server tasks of a run: where they go, their addresses, starting them."""
from __future__ import annotations

import time
from typing import List, Tuple

from ..errors import ParallaxError
from ..runtime.spec import ServerSpec
from .supervisor import free_port, run_server


def server_workers(selection, count: int) -> List[Tuple[str, str]]:
    """(host, worker) of each server: round robin over the selected hosts, on the first
    selected worker of each host (the paper: one server per machine)."""
    by_host = list(selection.by_host().items())
    return [(by_host[i % len(by_host)][0], by_host[i % len(by_host)][1][0].worker)
            for i in range(count)]


def start_servers(client, run, selection, count: int, timeout: float):
    """Submit the server tasks and wait until every server process is listening."""
    placed = server_workers(selection, count)
    addresses = tuple(client.run(free_port, workers=[worker])[worker] for _, worker in placed)
    specs = [ServerSpec(run.run_id, task, host, addresses, run.topic, run.stop_event_name)
             for task, (host, _) in enumerate(placed)]
    futures = [client.submit(run_server, spec, workers=[worker], allow_other_workers=False,
                             pure=False, retries=0, key=f"parallax-ps-{run.run_id}-{spec.task}")
               for spec, (_, worker) in zip(specs, placed)]
    deadline = time.time() + timeout
    while len(run.servers_started) < count:
        failed = [f for f in futures if f.status in ("error", "cancelled")]
        if failed:
            raise failed[0].exception()
        if time.time() > deadline:
            missing = sorted(set(range(count)) - set(run.servers_started))
            raise ParallaxError(f"parameter server(s) {missing} did not start within "
                                f"{timeout:g} s (Config.start_timeout)")
        time.sleep(0.05)
    return addresses, futures

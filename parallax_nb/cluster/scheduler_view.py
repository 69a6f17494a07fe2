"""The scheduler's view of its workers, fetched for each call.

`Client.scheduler_info()` fetches the scheduler's identity into an attribute and returns the
attribute; the client's own periodic refresh (every 2 s) replaces that attribute with an
identity that lists no workers. A refresh landing between the two makes a call come back with
no workers at all (a test of `px.check` failed on it in CI), so the identity is asked for here
and returned as it came.
"""
from __future__ import annotations

from typing import Dict


def scheduler_workers(client) -> Dict[str, dict]:
    """Every worker the scheduler knows, address -> its identity (name, status, nthreads...)."""
    return client.sync(client.scheduler.identity, n_workers=-1)["workers"]

"""Bytes each host sends and receives per step, three ways, for runs across machines.

* **predicted**: the cost model (`AnalysisReport.estimate`), bytes between machines per
  machine per step;
* **wire**: the hosts' link counters (bytes through each namespace's veth), sampled while the
  run trains and read at the first and last step of the measured window;
* **accounted**: the SDK's own accounting (bytes each rank hands to Horovod and to the
  parameter servers, docs/communication.md) mapped onto the links between machines: the
  Horovod ring leaves a machine through one of its g ranks' links, so a host's Horovod bytes
  count once, not g times; of what a host's ranks pull from and push to the servers, the
  share on the other m-1 machines' servers crosses the network ((m-1)/m, partitions being
  spread evenly), and the host's own server sends and receives as much for the others.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Dict, List, Tuple

import numpy as np
import pandas as pd

Counters = Callable[[], Dict[str, Tuple[int, int]]]


class CounterLog:
    """Samples ``counters()`` (``{host: (sent, received)}``) every ``interval`` seconds in a
    thread, so bytes can be read for any time span of a run afterwards."""

    def __init__(self, counters: Counters, interval: float = 0.02):
        self._counters = counters
        self._interval = interval
        self.times: List[float] = []
        self.samples: List[Dict[str, Tuple[int, int]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True, name="counter-log")

    def __enter__(self) -> "CounterLog":
        self._record()
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self._record()

    def _record(self):
        self.times.append(time.time())
        self.samples.append(self._counters())

    def _sample(self):
        while not self._stop.wait(self._interval):
            self._record()

    def at(self, moment: float) -> Dict[str, np.ndarray]:
        """Counters at ``moment``, interpolated between the samples around it."""
        return {host: np.array([np.interp(moment, self.times, [s[host][k] for s in self.samples])
                                for k in (0, 1)])
                for host in self.samples[0]}


def wire_per_step(log: CounterLog, metrics: pd.DataFrame, first: int, last: int
                  ) -> Dict[str, dict]:
    """``{host: {"sent": bytes/step, "received": bytes/step}}`` over steps first+1 .. last.

    From the end of step ``first`` to the end of step ``last`` as rank 0 reported them (its
    step records carry the time; every rank steps in lockstep).
    """
    chief = metrics[metrics["rank"] == 0].set_index("step")["time"]
    before, after = log.at(chief[first]), log.at(chief[last])
    steps = last - first
    return {host: {"sent": float(after[host][0] - before[host][0]) / steps,
                   "received": float(after[host][1] - before[host][1]) / steps}
            for host in before}


def accounted_per_host(per_host: pd.DataFrame, machines: int, ranks_per_machine: int
                       ) -> Dict[str, dict]:
    """The SDK's per-host accounting (`RunReport.communication_per_host`) mapped onto the
    links between machines (see the module docstring)."""
    share = (machines - 1) / machines
    out = {}
    for row in per_host.to_dict("records"):
        servers = share * (row["ps_sent"] + row["ps_recv"])
        out[row["host"]] = {"sent": row["hvd_sent"] / ranks_per_machine + servers,
                            "received": row["hvd_recv"] / ranks_per_machine + servers}
    return out


def predicted_per_host(report, mode: str, machines: int, ranks_per_machine: int) -> dict:
    """The cost model's bytes on the wire per machine per step for ``mode``: the payload,
    framed (TCP segment headers, a message per tensor crossing to a server;
    `parallax_nb.analysis.timing`)."""
    estimate = report.estimate(machines=machines, workers_per_machine=ranks_per_machine)
    send, recv = estimate.totals[mode]
    framing = estimate.wire[mode] - max(send, recv) if mode in estimate.wire else 0.0
    return {"sent": float(send + framing), "received": float(recv + framing)}


def compare(measured: Dict[str, dict], predicted: dict) -> Dict[str, dict]:
    """``{host: {"sent": measured/predicted, "received": ...}}``."""
    return {host: {k: (v[k] / predicted[k] if predicted[k] else float("nan")) for k in v}
            for host, v in measured.items()}


def accounted_local(per_host: pd.DataFrame) -> Dict[str, dict]:
    """Bytes per step each host's ranks handed to Horovod and the servers, summed (on one
    machine all of it stays on loopback; shown for scale)."""
    return {row["host"]: {"sent": float(row["hvd_sent"] + row["ps_sent"]),
                          "received": float(row["hvd_recv"] + row["ps_recv"])}
            for row in per_host.to_dict("records")}

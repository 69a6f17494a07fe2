"""What a step's traffic costs in time between machines: the link the planner prices with.

Bytes alone (`traffic`) miss what a step pays per exchange. A step that keeps any variable on
the parameter servers of other machines makes two rounds of exchanges with them (the pull of
its rows, the push of its gradients), one message per server each since the lookups are
packed (`Config.pack_pulls`), the servers answering in parallel: a fixed cost per round,
whatever the tables. AllReduce pays a fixed cost per grouped collective: one for the dense
gradients (and sparse ones sent densified), one for the allgathered sparse ones. So a small
table that joins a collective that runs anyway costs only its bytes, and moving every table
off the servers saves two rounds of exchanges (`placement` weighs both).

    seconds = wire bytes / bytes_per_second + rounds * exchange_seconds
              + collectives * collective_seconds

Wire bytes are payload bytes plus framing: every TCP segment of at most 1448 payload bytes
carries 66 bytes of Ethernet, IP and TCP headers (with timestamps), and every tensor that
crosses between a rank and a server is a gRPC call of its own, about 700 bytes of request,
headers and acknowledgements (fitted to the scale benchmark's link counters: 26 tables at
4 hosts sent 88 KB per host and step more when each lookup crossed on its own, 120 crossings
more). A packed exchange with one server is 5 crossings per step: the ids and the rows of
the pull, the indices, values and counts of the push.

The fixed costs are calibrated by the runs themselves (`calibrate`): every finished run
between machines leaves a `StepCost`, what its steps spent beyond the ranks' own work
(the profile's pull, push, AllReduce and dispatch phases) beside the rounds and collectives
its plan has; runs without servers give the cost of a collective, runs with servers then the
cost of a round. A round trip and a remote call's dispatch are what an idle link costs; a
busy server process or a loaded machine costs more, and only the runs show how much.
"""
from __future__ import annotations

import dataclasses
import math
import statistics
from typing import Optional

SEGMENT_PAYLOAD = 1448           # TCP payload per segment at MTU 1500 with timestamps
SEGMENT_HEADERS = 66             # Ethernet 14 + IPv4 20 + TCP 32
MESSAGE_BYTES = 700              # one tensor crossing to or from a server (gRPC call)
PACKED_CROSSINGS = 5             # per server in another process, per step, lookups packed
UNPACKED_CROSSINGS = 4           # per variable partition on such a server, not packed
TF_DISPATCH_SECONDS = 1.2e-3     # a remote TensorFlow function call beside the network


@dataclasses.dataclass(frozen=True)
class Link:
    """The link between machines as the planner sees it.

    bytes_per_second: what one machine sends (and receives) per second to the others.
    exchange_seconds: one round of exchanges with the servers (every server at once).
    collective_seconds: the fixed cost of one grouped Horovod collective.
    source: where the figures come from ("default", or what measured them)."""

    bytes_per_second: float
    exchange_seconds: float
    collective_seconds: float
    source: str = "default"

    def __post_init__(self):
        for name in ("bytes_per_second", "exchange_seconds", "collective_seconds"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not math.isfinite(value) or value < 0 or \
                    (name == "bytes_per_second" and value == 0):
                raise ValueError(f"Link.{name} must be a finite number "
                                 f"{'> 0' if name == 'bytes_per_second' else '>= 0'}, "
                                 f"got {value!r}")

    def seconds(self, wire_bytes: float, rounds: int = 0, collectives: int = 0) -> float:
        return (wire_bytes / self.bytes_per_second + rounds * self.exchange_seconds
                + collectives * self.collective_seconds)

    def describe(self) -> str:
        return (f"{self.bytes_per_second * 8 / 1e9:.3g} Gbit/s, "
                f"{self.exchange_seconds * 1e3:.2f} ms per exchange, "
                f"{self.collective_seconds * 1e3:.2f} ms per collective ({self.source})")


# 10 Gbit/s Ethernet, a 0.1 ms round trip, a TensorFlow remote call's dispatch (measured
# here: 1.2-1.4 ms for an empty remote function), Horovod's 1 ms cycle per collective.
DEFAULT_LINK = Link(bytes_per_second=10e9 / 8, exchange_seconds=0.1e-3 + TF_DISPATCH_SECONDS,
                    collective_seconds=1.0e-3, source="default")


def link_from(value) -> Optional[Link]:
    """``Config.link`` as a Link: None (the default link where there are several machines),
    a Link, or a dict of its fields; "measure" is measured by `px.train` on the selected
    workers (until then, as here, the default)."""
    if value is None or value == "measure":
        return None
    if isinstance(value, Link):
        return value
    if isinstance(value, dict):
        unknown = set(value) - {f.name for f in dataclasses.fields(Link)}
        if unknown:
            raise ValueError(f"link={value!r}: {sorted(unknown)} are not fields of a link "
                             f"(bytes_per_second, exchange_seconds, collective_seconds)")
        return Link(**{"source": "given", **value})
    raise ValueError(f"link={value!r} must be None, 'measure', a parallax_nb.Link or a dict "
                     f"of its fields")


@dataclasses.dataclass(frozen=True)
class StepCost:
    """What one finished run's steps cost on the link, beside what its plan predicted.

    rounds, collectives: the plan's fixed costs (`cost.fixed_costs`); wire_bytes: its framed
    bytes per machine and step; bytes_per_second: the bandwidth the run had (as planned);
    seconds: measured per step, every phase but input, compute and the local apply."""

    rounds: int
    collectives: int
    wire_bytes: float
    bytes_per_second: float
    seconds: float

    @property
    def fixed_seconds(self) -> float:
        """The measured seconds the bytes do not explain."""
        return max(self.seconds - self.wire_bytes / self.bytes_per_second, 0.0)


def calibrate(link: Link, costs) -> Link:
    """``link`` with its fixed costs fitted to runs (`StepCost`s): a collective costs the
    median over runs without servers of their unexplained time per collective; a round of
    server exchanges the median over runs with servers of theirs, less their collectives,
    per round. A cost no run shows keeps ``link``'s figure."""
    costs = list(costs)
    collective = [c.fixed_seconds / c.collectives for c in costs
                  if not c.rounds and c.collectives]
    collective_seconds = statistics.median(collective) if collective else \
        link.collective_seconds
    exchange = [max(c.fixed_seconds - c.collectives * collective_seconds, 0.0) / c.rounds
                for c in costs if c.rounds]
    if not collective and not exchange:
        return link
    exchange_seconds = statistics.median(exchange) if exchange else link.exchange_seconds
    return dataclasses.replace(
        link, exchange_seconds=exchange_seconds, collective_seconds=collective_seconds,
        source=f"{link.source}; fixed costs from {len(collective)} run(s) without servers "
               f"and {len(exchange)} with")


def wire_bytes(payload: float, crossings: float) -> float:
    """Payload plus TCP segment headers plus the framing of ``crossings`` messages."""
    return payload * (1 + SEGMENT_HEADERS / SEGMENT_PAYLOAD) + crossings * MESSAGE_BYTES

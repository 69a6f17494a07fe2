"""Where each variable lives: replicated (AllReduce) or on parameter servers, how split, and why.

Sparsity is found by gradient type (the paper's rule, `trace`); where a sparse variable then
lives is decided by what its step costs. By default that is bytes (`traffic`): on the servers
unless AllReduce moves fewer, e.g. a small table every step touches whole (a position
embedding), which is AllReduced as a dense gradient. Where the link between machines is known
(``Config(link=...)``: given, or measured on the selected cluster), it is time (`timing`):
its bytes on the link either way, plus the fixed costs it adds or saves: the servers' two
rounds of exchanges per step (paid once, however many variables are there) and one per
grouped collective (a small table joining the dense AllReduce adds none). So every table may
leave the servers where they would save less than their exchanges cost. On one machine
(processes that share it, whatever their host labels) it is always bytes.
``Config(placement={name: "ps"|"allreduce"})`` overrides it. Every placement carries its
reason, with the bytes both ways and, between machines, the time (on the documented default
link where none is known).

A variable on the servers is cut into partitions of contiguous rows, split evenly (the first
``rows % P`` partitions get one row more, TensorFlow's "div" strategy). Partitions go to
servers greedily, largest first onto the least-loaded server, so no server holds more than
the largest partition above the mean.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import Dict, List, Optional, Sequence, Tuple

from ..config import Config, _lookup_by_name
from ..errors import ConfigError
from .timing import Link, wire_bytes
from .trace import VariableTrace
from .traffic import ALLREDUCE, PS, format_bytes, server_crossings, variable_traffic


@dataclasses.dataclass(frozen=True)
class Partition:
    index: int
    row_start: int
    row_stop: int
    bytes: int
    server: int


@dataclasses.dataclass(frozen=True)
class VariablePlacement:
    variable: VariableTrace
    placement: str                  # "ps" or "allreduce"
    partitions: Tuple[Partition, ...]
    reason: str = ""                # why it lives there (sparse/dense and why; bytes)
    dense_sync: bool = False        # a sparse variable AllReduced as a dense gradient

    @property
    def servers(self) -> Tuple[int, ...]:
        return tuple(p.server for p in self.partitions)


def effective_mode(mode: str, variables: Sequence[VariableTrace]) -> Tuple[str, str]:
    """The mode a run really uses, and why it differs from the one asked for (or "")."""
    kinds = {v.kind for v in variables}
    if mode == "HYBRID" and "sparse" not in kinds:
        return "AR", "HYBRID runs as AR: the model has no sparse variables"
    if mode == "HYBRID" and not kinds & {"dense", "unused"}:
        return "PS", "HYBRID runs as PS: the model has no dense variables"
    return mode, ""


def row_splits(rows: int, partitions: int) -> List[Tuple[int, int]]:
    """Contiguous, even row ranges ("div" strategy)."""
    base, extra = divmod(rows, partitions)
    bounds, start = [], 0
    for p in range(partitions):
        stop = start + base + (1 if p < extra else 0)
        bounds.append((start, stop))
        start = stop
    return bounds


def plan_placement(variables: Sequence[VariableTrace], mode: str, servers: int,
                   config: Config, machines: int = 1, workers: int = 1,
                   link: Optional[Link] = None, pricing: Optional[Link] = None
                   ) -> Tuple[VariablePlacement, ...]:
    """Place every variable for ``mode`` on ``servers`` parameter-server tasks, for
    ``machines`` x ``workers`` ranks; by time on ``link`` between machines, else by bytes
    (with what each costs on ``pricing`` in its reason)."""
    check_names(variables, config)
    mode, _ = effective_mode(mode, variables)
    pricing = pricing if machines > 1 else None
    decided = {v.index: _decide(v, mode, config, machines, workers, pricing)
               for v in variables}
    if link is not None and machines > 1 and mode in ("HYBRID", "AR"):
        decided.update(_decide_by_time(variables, mode, config, machines, workers, servers,
                                       link))
    on_ps = {i for i, (where, _, _) in decided.items() if where == PS}
    pieces = []  # (variable index, partition index, row range, bytes)
    for v in variables:
        if v.index not in on_ps:
            continue
        count = config.partitions_for(v.name, servers, v.rows) if v.kind == "sparse" else 1
        for p, (start, stop) in enumerate(row_splits(v.rows, count)):
            pieces.append((v.index, p, start, stop, (stop - start) * v.row_bytes))
    assignment = _greedy_by_bytes(pieces, servers)
    placed = []
    for v in variables:
        where, reason, dense_sync = decided[v.index]
        parts = tuple(Partition(p, start, stop, size, assignment[(v.index, p)])
                      for (vi, p, start, stop, size) in pieces if vi == v.index)
        placed.append(VariablePlacement(v, where, parts, reason, dense_sync))
    return tuple(placed)


def _decide(v: VariableTrace, mode: str, config: Config, machines: int, workers: int,
            pricing: Optional[Link] = None):
    """(placement, reason, dense_sync) of one variable, by bytes."""
    kind = f"sparse (alpha {v.alpha:.3g})" if v.kind == "sparse" else \
        f"dense: {v.dense_note or 'its gradient is a whole-variable tensor'}" \
        if v.kind == "dense" else "unused: no gradient, not trained"
    if mode == "PS":
        return PS, f"{kind}; PS mode puts every variable on the servers", False
    if v.kind != "sparse":
        return ALLREDUCE, kind, False
    # between processes of one machine, count as if each rank were a machine
    m, g = (machines, workers) if machines > 1 else (workers, 1)
    ps = max(variable_traffic(v, PS, m, g, config.local_aggregation))
    gathered = max(variable_traffic(v, ALLREDUCE, m, g, config.local_aggregation))
    densified = max(variable_traffic(v, ALLREDUCE, m, g, config.local_aggregation, True))
    dense_sync = densified < gathered
    allreduce = min(gathered, densified)
    how = "as a dense gradient" if dense_sync else "allgathered"
    costs = (f"{format_bytes(ps)} per step on the servers, {format_bytes(allreduce)} "
             f"by AllReduce ({how})")
    if pricing is not None:
        costs += (f"; {_ms(pricing.seconds(wire_bytes(ps, 0)))} against "
                  f"{_ms(pricing.seconds(wire_bytes(allreduce, 0)))} on the {pricing.source} "
                  f"link, before the servers' exchanges and the collectives")
    override = _lookup_by_name(config.placement or {}, v.name)
    if override is not None:
        return override, f"{kind}; Config.placement ({costs})", \
            override == ALLREDUCE and dense_sync
    if mode == "AR":
        return ALLREDUCE, f"{kind}; AR mode ({costs})", dense_sync
    if allreduce < ps:
        return ALLREDUCE, f"{kind}; AllReduce moves fewer bytes: {costs}", dense_sync
    return PS, f"{kind}; servers move no more bytes: {costs}", False


# Time moves a table off the servers only where a copy in every rank is small: a large one
# stays where the paper puts it (memory is what the servers are for; Config.placement can
# still put it on AllReduce, and the memory plan then says what every rank holds).
REPLICATE_LIMIT_BYTES = 32 * 2 ** 20
OPTIONS = ("ps", "densified", "gathered")
GROUPS = {"ps": "servers", "densified": "dense", "gathered": "gather"}


def _decide_by_time(variables: Sequence[VariableTrace], mode: str, config: Config,
                    machines: int, workers: int, servers: int, link: Link
                    ) -> Dict[int, tuple]:
    """(placement, reason, dense_sync) of every sparse variable, HYBRID or AR between
    machines (AR: no servers, unless ``Config.placement`` puts a variable there).

    Each sparse variable can go to the servers, or to AllReduce densified (with the dense
    gradients' grouped call) or allgathered (a second grouped call). Which fixed costs a
    step pays depends on which of the three groups anything uses, so every combination of
    groups is priced (at most eight) with each variable in its cheapest allowed group; the
    cheapest combination wins, ties to the servers (the paper's default)."""
    sparse = [v for v in variables if v.kind == "sparse"]
    if not sparse:
        return {}
    m, g = machines, workers
    options = {v.index: _option_seconds(v, m, g, servers, config, link) for v in sparse}
    overrides = {v.index: _lookup_by_name(config.placement or {}, v.name) for v in sparse}
    if mode == "HYBRID":
        overrides.update({v.index: PS for v in sparse
                          if overrides[v.index] is None and v.bytes > REPLICATE_LIMIT_BYTES})
    dense_runs_anyway = any(v.kind == "dense" for v in variables)
    crossings = server_crossings(m, g, servers, config.pack_pulls)
    fixed = {"servers": link.seconds(wire_bytes(0, crossings), rounds=2),
             "dense": 0.0 if dense_runs_anyway else link.collective_seconds,
             "gather": link.collective_seconds}
    servers_allowed = mode == "HYBRID" or PS in overrides.values()
    best = None
    for used in itertools.product((True, False), repeat=3):      # servers first on ties
        groups = {name for name, on in zip(("servers", "dense", "gather"), used) if on}
        if "servers" in groups and not servers_allowed:
            continue
        if dense_runs_anyway:
            groups.add("dense")
        choice, total = {}, sum(fixed[name] for name in groups)
        for v in sparse:
            allowed = [o for o in OPTIONS if GROUPS[o] in groups and
                       (overrides[v.index] is None or (o == "ps") == (overrides[v.index] == PS))]
            if not allowed:
                break
            choice[v.index] = min(allowed, key=lambda o: options[v.index][o][1])
            total += options[v.index][choice[v.index]][1]
        else:
            if {GROUPS[o] for o in choice.values()} | ({"dense"} if dense_runs_anyway else
                                                       set()) != groups:
                continue        # a group nothing uses: its combination without it is priced
            if best is None or total < best[0] - 1e-12:
                best = (total, choice, groups)
    _, choice, groups = best
    on_servers = sum(1 for o in choice.values() if o == "ps")
    decided = {}
    for v in sparse:
        kind = f"sparse (alpha {v.alpha:.3g})"
        opt = options[v.index]
        picked = choice[v.index]
        ar = picked if picked != "ps" else min(("densified", "gathered"),
                                               key=lambda o: opt[o][1])
        costs = (f"{format_bytes(opt['ps'][0])}, {_ms(opt['ps'][1])} per step on the servers; "
                 f"{format_bytes(opt[ar][0])}, {_ms(opt[ar][1])} by AllReduce "
                 f"({'as a dense gradient' if ar == 'densified' else 'allgathered'})")
        if v.bytes > REPLICATE_LIMIT_BYTES and _lookup_by_name(config.placement or {},
                                                                v.name) is None:
            verdict = (f"a copy in every rank ({format_bytes(v.bytes)}) is more than time "
                       f"trades for ({format_bytes(REPLICATE_LIMIT_BYTES)}; Config.placement "
                       f"overrides)")
        elif overrides[v.index] is not None:
            verdict = "Config.placement"
        elif mode == "AR":
            how = "as a dense gradient" if picked == "densified" else "allgathered"
            verdict = f"AR mode, {how} where that costs less time"
        elif picked == "ps":
            verdict = (f"its step costs less time on the servers (their 2 exchanges, "
                       f"{_ms(fixed['servers'])}, are shared by the {on_servers} "
                       f"variable(s) there)")
        elif "servers" in groups:
            verdict = "AllReduce costs less time"
        else:
            verdict = (f"no variable on the servers: their 2 exchanges per step "
                       f"({_ms(fixed['servers'])}) cost more than the servers would save")
        if picked == "densified" and dense_runs_anyway and overrides[v.index] is None:
            verdict += "; it joins the dense gradients' AllReduce, no collective of its own"
        where = PS if picked == "ps" else ALLREDUCE
        decided[v.index] = (where, f"{kind}; {verdict}: {costs}", picked == "densified")
    return decided


def _option_seconds(v: VariableTrace, m: int, g: int, servers: int, config: Config,
                    link: Link) -> dict:
    """{option: (payload bytes, seconds of its wire bytes)} for one sparse variable (on the
    servers unpacked, each of its partitions' crossings is framed on its own)."""
    payload = {"ps": max(variable_traffic(v, PS, m, g, config.local_aggregation)),
               "gathered": max(variable_traffic(v, ALLREDUCE, m, g, config.local_aggregation)),
               "densified": max(variable_traffic(v, ALLREDUCE, m, g, config.local_aggregation,
                                                 True))}
    crossings = {"ps": 0.0 if config.pack_pulls else server_crossings(
        m, g, config.partitions_for(v.name, servers, v.rows), False)}
    return {o: (b, link.seconds(wire_bytes(b, crossings.get(o, 0.0))))
            for o, b in payload.items()}


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def check_names(variables: Sequence[VariableTrace], config: Config) -> None:
    """A ``partitions`` or ``placement`` dict naming no variable is a mistake: say so."""
    names = [v.name for v in variables]
    known = set(names) | {n.split(":")[0] for n in names}
    for option in ("partitions", "placement"):
        given = getattr(config, option)
        unknown = [k for k in given if k not in known] if isinstance(given, dict) else []
        if unknown:
            raise ConfigError(f"Config.{option} names {unknown}, which the model does not "
                              f"have; its variables are: {', '.join(names)}")


def _greedy_by_bytes(pieces, servers):
    """Largest piece first onto the least-loaded server (ties: lowest server index)."""
    load = [0] * servers
    assignment = {}
    for vi, p, _, _, size in sorted(pieces, key=lambda x: (-x[4], x[0], x[1])):
        target = min(range(servers), key=lambda s: (load[s], s))
        load[target] += size
        assignment[(vi, p)] = target
    return assignment


def server_loads(placements: Sequence[VariablePlacement], servers: int) -> List[int]:
    """Bytes held by each server."""
    load = [0] * servers
    for vp in placements:
        for part in vp.partitions:
            load[part.server] += part.bytes
    return load

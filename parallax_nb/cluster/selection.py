"""Choosing the devices a run uses: by host, by worker, by count, or explicitly."""
from __future__ import annotations

import dataclasses
from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Sequence, Union

from ..errors import ParallaxError
from .devices import Device


class SelectionError(ParallaxError, ValueError):
    """The selection asks for devices the cluster does not have."""


@dataclasses.dataclass(frozen=True)
class Selection:
    """An ordered set of devices; ranks are assigned host by host in this order."""

    devices: tuple

    def __len__(self):
        return len(self.devices)

    def __iter__(self):
        return iter(self.devices)

    @property
    def hosts(self) -> List[str]:
        return list(OrderedDict.fromkeys(d.host for d in self.devices))

    @property
    def workers(self) -> List[str]:
        return list(OrderedDict.fromkeys(d.worker for d in self.devices))

    def by_host(self) -> Dict[str, List[Device]]:
        grouped: Dict[str, List[Device]] = OrderedDict()
        for device in self.devices:
            grouped.setdefault(device.host, []).append(device)
        return grouped

    @property
    def keys(self) -> List[str]:
        return [d.key for d in self.devices]

    def __str__(self):
        per_host = ", ".join(f"{host}: {len(devs)}" for host, devs in self.by_host().items())
        kinds = "/".join(sorted({d.kind for d in self.devices}))
        return f"Selection({len(self)} {kinds} device(s); {per_host})"

    __repr__ = __str__


Selector = Union[None, int, Selection, Sequence[str], Dict[str, object]]


def select(devices: Sequence[Device], *, hosts: Optional[Iterable[str]] = None,
           workers: Optional[Iterable[str]] = None, count: Optional[int] = None,
           keys: Optional[Iterable[str]] = None, kind: Optional[str] = None) -> Selection:
    """Filter ``devices``; GPUs are preferred where the cluster has any, unless ``kind`` says.

    The result is grouped host by host (ranks of one host get consecutive numbers, as
    Horovod expects) and taken from the front when ``count`` is given.
    """
    available = list(devices)
    if kind is None:
        kind = "GPU" if any(d.kind == "GPU" for d in available) else "CPU"
    kind = kind.upper()
    pool = [d for d in available if d.kind == kind]
    described = f"{len(pool)} {kind} device(s)"
    if hosts is not None:
        hosts = list(hosts)
        pool = _only(pool, "host", hosts)
        described += f" on host(s) {hosts}"
    if workers is not None:
        pool = _only(pool, "worker", list(workers))
    if keys is not None:
        keys = list(keys)
        by_key = {d.key: d for d in pool}
        missing = [k for k in keys if k not in by_key]
        if missing:
            raise SelectionError(f"no such device(s) {missing}; known: {sorted(by_key)}")
        pool = [by_key[k] for k in keys]
    if count is not None:
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise SelectionError(f"count must be a positive integer, got {count!r}")
        if count > len(pool):
            raise SelectionError(
                f"asked for {count} ranks but only {len(pool)} {kind} device(s) are available"
                f"{'' if hosts is None else f' on host(s) {hosts}'}: select fewer, or add "
                f"workers / slots to the cluster (e.g. px.connect(local=N))")
        pool = _grouped_by_host(pool)[:count]
    if not pool:
        raise SelectionError(f"nothing selected (of {described}): pick at least one device")
    return Selection(tuple(_grouped_by_host(pool)))


def _only(pool: List[Device], attribute: str, wanted: List[str]) -> List[Device]:
    """The devices whose host (or worker) is one of ``wanted``; unknown names are an error."""
    known = {getattr(d, attribute) for d in pool}
    unknown = set(wanted) - known
    if unknown:
        raise SelectionError(f"unknown {attribute}(s) {sorted(unknown)}; the cluster has "
                             f"{sorted(known)}")
    return [d for d in pool if getattr(d, attribute) in wanted]


def _grouped_by_host(devices: Sequence[Device]) -> List[Device]:
    order = list(OrderedDict.fromkeys(d.host for d in devices))
    return sorted(devices, key=lambda d: order.index(d.host))


def resolve(devices: Sequence[Device], selector: Selector) -> Selection:
    """What `px.train(select=...)` accepts: None (all), a count, device keys, a dict of
    `select` arguments, or a Selection (re-checked against the cluster)."""
    if selector is None:
        return select(devices)
    if isinstance(selector, Selection):
        if len(selector) == 0:
            raise SelectionError("nothing selected: the selection is empty")
        return select(devices, keys=selector.keys, kind=selector.devices[0].kind)
    if isinstance(selector, int) and not isinstance(selector, bool):
        return select(devices, count=selector)
    if isinstance(selector, dict):
        return select(devices, **selector)
    if isinstance(selector, (list, tuple)):
        if not selector:
            raise SelectionError("nothing selected: the list of devices is empty")
        kinds = {d.kind for d in devices if d.key in set(selector)}
        return select(devices, keys=selector, kind=kinds.pop() if len(kinds) == 1 else None)
    raise SelectionError(f"select={selector!r}: use None, a count, a list of device keys, "
                         f"a dict of select() arguments, or a Selection")

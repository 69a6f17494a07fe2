"""What the cluster panel shows and decides: every device with a tick, grouped by host.

The ticked devices are *the* selection: ``%%parallax train`` and the variables view read
it from here, so what the user sees ticked is what runs. Kept free of widgets so the rows
and the resulting selection can be tested on their own.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Optional

from ...analysis.cost import format_bytes
from ...cluster.devices import Device
from ...cluster.selection import Selection, select

COLUMNS = ("host", "device", "kind", "name", "memory", "utilization", "worker")


class ClusterView:
    """Devices of a cluster and which of them are selected (all of the preferred kind at first:
    GPUs where the cluster has any, CPU slots otherwise, as `px.train` would pick)."""

    def __init__(self, devices: Iterable[Device], dashboard_link: Optional[str] = None):
        self.devices: List[Device] = list(devices)
        self.dashboard_link = dashboard_link
        self._selected = set(select(self.devices).keys) if self.devices else set()
        self._observers: List[Callable[["ClusterView"], None]] = []

    # -- what is shown ---------------------------------------------------------------------------
    def by_host(self) -> Dict[str, List[Device]]:
        return Selection(tuple(self.devices)).by_host()

    def rows(self) -> List[dict]:
        """One row per device: where it is, what it is, its memory and load, whether ticked."""
        return [{"host": d.host, "device": d.label, "kind": d.kind, "name": d.name,
                 "memory": _memory(d), "utilization": _utilization(d), "worker": d.worker,
                 "key": d.key, "selected": d.key in self._selected}
                for d in self.devices]

    def host_state(self, host: str) -> Optional[bool]:
        """True when every device of ``host`` is ticked, False when none is, None when some."""
        ticks = {d.key in self._selected for d in self.by_host()[host]}
        return ticks.pop() if len(ticks) == 1 else None

    # -- what the user changes -------------------------------------------------------------------
    def set_selected(self, key: str, selected: bool) -> None:
        if key not in {d.key for d in self.devices}:
            raise KeyError(f"no device {key!r} in this cluster")
        self._update(self._selected | {key} if selected else self._selected - {key})

    def set_host(self, host: str, selected: bool) -> None:
        """Tick (or untick) every device of one host: the panel's select-all box."""
        keys = {d.key for d in self.by_host()[host]}
        self._update(self._selected | keys if selected else self._selected - keys)

    def observe(self, callback: Callable[["ClusterView"], None]) -> None:
        """Call ``callback(view)`` after every change of the selection."""
        self._observers.append(callback)

    def _update(self, selected: set) -> None:
        if selected == self._selected:
            return
        self._selected = selected
        for callback in list(self._observers):
            callback(self)

    # -- what train uses -------------------------------------------------------------------------
    def _chosen(self) -> List[Device]:
        return [d for d in self.devices if d.key in self._selected]

    @property
    def selected_keys(self) -> List[str]:
        return [d.key for d in self._chosen()]

    @property
    def selection(self) -> Selection:
        """The ticked devices as a Selection (raises SelectionError when nothing is ticked or
        GPUs and CPU slots are mixed)."""
        chosen = self._chosen()
        kinds = {d.kind for d in chosen}
        return select(self.devices, keys=[d.key for d in chosen],
                      kind=kinds.pop() if len(kinds) == 1 else None)

    def summary(self) -> str:
        per_host = Selection(tuple(self._chosen())).by_host()
        hosts = ", ".join(f"{h}: {len(d)}" for h, d in per_host.items()) or "nothing"
        return (f"{len(self._selected)} of {len(self.devices)} device(s) selected on "
                f"{len(per_host)} host(s) ({hosts})")

    def text(self) -> str:
        lines = [f"Cluster: {len(self.by_host())} host(s), {len(self.devices)} device(s)"]
        if self.dashboard_link:
            lines.append(f"Dask dashboard: {self.dashboard_link}")
        for row in self.rows():
            tick = "[x]" if row["selected"] else "[ ]"
            lines.append(f"  {tick} {row['host']:<12} {row['device']:<10} {row['kind']:<4} "
                         f"{row['memory']:>20}  {row['utilization']:>6}  {row['worker']}")
        lines.append(self.summary())
        return "\n".join(lines)


def _memory(device: Device) -> str:
    if device.memory_total is None:
        return "-"
    if device.memory_used is None:
        return format_bytes(device.memory_total)
    return f"{format_bytes(device.memory_used)} / {format_bytes(device.memory_total)}"


def _utilization(device: Device) -> str:
    return "-" if device.utilization is None else f"{device.utilization:.0f}%"

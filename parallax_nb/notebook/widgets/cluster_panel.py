"""The cluster panel: a box per host with a select-all tick, a tick per GPU or CPU slot,
memory and utilisation where NVML reports them, and the Dask dashboard link."""
from __future__ import annotations

import html

import ipywidgets as w

from ..views.cluster_view import ClusterView
from .panel import Panel


class ClusterPanel(Panel):
    def __init__(self, view: ClusterView):
        self.view = view
        self._syncing = False
        self._device_boxes = {}
        self._host_boxes = {}
        hosts = []
        for host, devices in view.by_host().items():
            host_box = w.Checkbox(description=f"{host} (all)", indent=False,
                                  layout=w.Layout(width="auto"))
            host_box.add_class("parallax-host")
            host_box.observe(lambda change, host=host: self._tick_host(host, change["new"]),
                             "value")
            self._host_boxes[host] = host_box
            rows = [host_box]
            for device in devices:
                box = w.Checkbox(description=device.label, indent=False,
                                 layout=w.Layout(width="120px"))
                box.add_class("parallax-device")
                box.observe(lambda change, key=device.key: self._tick(key, change["new"]),
                            "value")
                self._device_boxes[device.key] = box
                rows.append(w.HBox([box, w.HTML(_device_details(view, device.key))]))
            hosts.append(w.VBox(rows, layout=w.Layout(border="1px solid #ddd", padding="4px",
                                                      margin="2px")))
        self._summary = w.HTML()
        self._summary.add_class("parallax-selection")
        self.widget = w.VBox([w.HTML(_header(view)), w.HBox(hosts, layout=w.Layout(
            flex_flow="row wrap")), self._summary])
        self.widget.add_class("parallax-cluster-panel")
        view.observe(lambda _: self._refresh())
        self._refresh()

    def _tick(self, key: str, selected: bool):
        if not self._syncing:
            self.view.set_selected(key, selected)

    def _tick_host(self, host: str, selected: bool):
        if not self._syncing:
            self.view.set_host(host, selected)

    def _refresh(self):
        """Make every tick show the view's selection (changes come from ticks, hosts, code)."""
        self._syncing = True
        try:
            for row in self.view.rows():
                self._device_boxes[row["key"]].value = row["selected"]
            for host, box in self._host_boxes.items():
                box.value = self.view.host_state(host) is True
            self._summary.value = f"<b>{html.escape(self.view.summary())}</b>"
        finally:
            self._syncing = False

    def text(self) -> str:
        return self.view.text()


def _header(view: ClusterView) -> str:
    hosts = len(view.by_host())
    text = f"<b>Cluster</b>: {hosts} host(s), {len(view.devices)} device(s)"
    if view.dashboard_link:
        link = html.escape(view.dashboard_link, quote=True)
        text += f' &middot; <a href="{link}" target="_blank">Dask dashboard</a>'
    return text


def _device_details(view: ClusterView, key: str) -> str:
    row = next(r for r in view.rows() if r["key"] == key)
    parts = [row["kind"], row["name"], f"memory {row['memory']}",
             f"util {row['utilization']}", row["worker"]]
    return ('<span style="color:#555;font-size:90%">'
            + html.escape(" · ".join(p for p in parts if p)) + "</span>")

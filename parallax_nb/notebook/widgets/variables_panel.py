"""The variables view: every variable (sparse rows marked) with its placement, and the bytes
per step of each mode for the current selection; re-planned when the selection or the
partition count changes."""
from __future__ import annotations

import html

import ipywidgets as w

from ...errors import ParallaxError
from ..views.cluster_view import ClusterView
from ..views.variables_view import VariablesView, parse_partitions
from .panel import Panel


class VariablesPanel(Panel):
    def __init__(self, view: VariablesView, cluster_view: ClusterView = None):
        self.view = view
        self._partitions = w.Text(value=_partitions_text(view.config.partitions),
                                  placeholder="one per server", description="partitions",
                                  continuous_update=False)
        self._partitions.observe(lambda change: self._set_partitions(change["new"]), "value")
        self._message = w.HTML()
        self._table = w.HTML()
        self._table.add_class("parallax-variables")
        self.widget = w.VBox([self._partitions, self._message, self._table])
        self.widget.add_class("parallax-variables-panel")
        if cluster_view is not None:
            cluster_view.observe(self._selection_changed)
        self._refresh()

    def _set_partitions(self, text: str):
        try:
            self.view.set_partitions(parse_partitions(text))
        except ParallaxError as exc:
            self._message.value = _error(str(exc))
            return
        self._refresh()

    def _selection_changed(self, cluster_view: ClusterView):
        try:
            self.view.set_selection(cluster_view.selection)
        except ParallaxError as exc:   # nothing ticked: keep the last plan, say why
            self._message.value = _error(str(exc))
            return
        self._refresh()

    def _refresh(self):
        self._message.value = html.escape(self.view.cost_line())
        self._table.value = self.view.html()

    def text(self) -> str:
        return self.view.text()


def _partitions_text(partitions) -> str:
    return "" if partitions is None else str(partitions)


def _error(message: str) -> str:
    return f'<span style="color:#a94442">{html.escape(message)}</span>'

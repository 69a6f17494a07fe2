"""What the variables view shows: the analysis report planned for the current selection.

The analysis itself (which variables are sparse, their alpha) does not depend on the
cluster; where the variables go and what each mode would move does. So the view keeps the
report and re-plans it whenever the selection or the partition count changes, exactly as
`px.train` will (`AnalysisReport.for_selection`).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from ...analysis.cost import format_bytes
from ...analysis.report import AnalysisReport
from ...cluster.selection import Selection
from ...config import MODES, Config


class VariablesView:
    """One row per variable plus the per-mode bytes per step, for a report and a selection."""

    def __init__(self, report: AnalysisReport, selection: Optional[Selection] = None,
                 config: Optional[Config] = None):
        self.report = report
        self.selection = selection
        self.config = config or report.config
        self._replan()

    def set_selection(self, selection: Selection) -> None:
        self.selection = selection
        self._replan()

    def set_partitions(self, partitions) -> None:
        """An int for every sparse variable, a dict per variable, or None (one per server)."""
        self.config = self.config.replace(partitions=partitions)
        self._replan()

    def _replan(self) -> None:
        """Place the report as a run on the selection would (without a selection, on the
        machines the analysis assumed); planned once per change, read by every row and
        figure the panel shows."""
        options = dict(mode=self.config.mode, servers=self.config.servers,
                       partitions=self.config.partitions)
        self.planned: AnalysisReport = (self.report.replan(**options) if self.selection is None
                                        else self.report.for_selection(self.selection,
                                                                       **options))
        self.estimate = self.planned.estimate()

    def rows(self) -> List[dict]:
        """name, shape, size, kind, alpha, placement, partitions, servers, and ``sparse``."""
        frame = self.planned.display_frame().rename(columns={"bytes": "size"})
        rows = frame.to_dict("records")
        for row in rows:
            row["sparse"] = row["kind"] == "sparse"
        return rows

    def costs(self) -> Dict[str, Tuple[float, float]]:
        """(send, recv) bytes per machine per step for each mode on this selection."""
        return dict(self.estimate.totals)

    @property
    def recommended_mode(self) -> str:
        return self.estimate.recommended

    def cost_line(self) -> str:
        per_mode = "; ".join(f"{mode} {format_bytes(max(send, recv))}"
                             for mode, (send, recv) in self.costs().items() if mode in MODES)
        return (f"bytes per machine per step on {self.planned.machines} machine(s) x "
                f"{self.planned.workers_per_machine} rank(s): {per_mode}; recommended "
                f"{self.recommended_mode} ({self.estimate.reason})")

    def html(self) -> str:
        return self.planned._repr_html_()

    def text(self) -> str:
        return str(self.planned)


def parse_partitions(text):
    """The partitions box and ``--partitions``: empty for one per server, an int, or a word
    `Config` knows (such as ``auto``); validated by `Config`, whose error says what is allowed."""
    text = str(text).strip()
    if not text:
        return None
    value = int(text) if text.isdigit() else text
    return Config(partitions=value).partitions

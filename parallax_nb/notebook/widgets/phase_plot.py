"""The live bars of where a step's time goes, per rank (`views.phases_view.PhaseBars`): one
stacked bar per rank, one colour per phase, the slowest rank named in the title."""
from __future__ import annotations

from typing import Dict, List

from bokeh.models import ColumnDataSource, FactorRange
from bokeh.palettes import Category10_10
from bokeh.plotting import figure

from ...runtime.profile import PHASES

TITLE = "a step's phases (ms), newest sample per rank"


class PhasePlot:
    def __init__(self, ranks: List[int]):
        labels = [f"rank {r}" for r in ranks]
        self.source = ColumnDataSource({"rank": [], **{p: [] for p in PHASES}}, name="phases")
        self.figure = figure(title=TITLE, y_range=FactorRange(*reversed(labels)), width=420,
                             height=max(160, 60 + 28 * len(labels)), tools="",
                             x_axis_label="ms", visible=False)
        self.figure.hbar_stack(list(PHASES), y="rank", height=0.7, source=self.source,
                               color=[Category10_10[i % 10] for i in range(len(PHASES))],
                               legend_label=list(PHASES))
        self.figure.legend.label_text_font_size = "7pt"
        self.figure.legend.orientation = "horizontal"
        self.figure.legend.location = "top_left"

    def show(self, bars: Dict[str, list]) -> None:
        """Replace the bars (a document patch; call from one thread at a time)."""
        if not bars["rank"]:
            return
        self.source.data = {"rank": bars["rank"], **{p: bars[p] for p in PHASES}}
        slowest = bars["slowest"].index(True)
        self.figure.title.text = (f"{TITLE}: slowest {bars['rank'][slowest]}, "
                                  f"{bars['step_ms'][slowest]:.1f} ms (step "
                                  f"{bars['step'][slowest]})")
        self.figure.visible = True

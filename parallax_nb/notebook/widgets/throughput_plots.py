"""Live Bokeh plots of a run inside the widget panel (jupyter_bokeh, no Bokeh server):
examples/s in total and per rank, the slowest rank's step time, and the mean loss."""
from __future__ import annotations

import os
from typing import Dict, Sequence

from bokeh.layouts import row
from bokeh.models import ColumnDataSource
from bokeh.palettes import Category10_10
from bokeh.plotting import figure
from jupyter_bokeh import BokehModel

from ..views.run_view import RANK_SERIES, TOTAL_SERIES

BOKEHJS_ENV = "PARALLAX_NB_BOKEHJS"


def load_bokehjs() -> None:
    """Put BokehJS into the page (jupyter_bokeh draws with the page's BokehJS), with every run
    panel, so a reloaded page still has it. Inline by default: hub deployments and closed
    networks often cannot reach Bokeh's CDN, but each load adds ~4 MB to the saved notebook;
    ``PARALLAX_NB_BOKEHJS=cdn`` loads it from the CDN instead."""
    from bokeh.io import output_notebook
    from bokeh.resources import CDN, INLINE
    from IPython import get_ipython

    if get_ipython() is not None:   # no page to load it into outside IPython
        cdn = os.environ.get(BOKEHJS_ENV, "").lower() == "cdn"
        output_notebook(resources=CDN if cdn else INLINE, hide_banner=True)


SIZE = dict(width=320, height=220, tools="pan,wheel_zoom,reset", x_axis_label="step")


class ThroughputPlots:
    def __init__(self, ranks: Sequence[int]):
        self.totals = ColumnDataSource({name: [] for name in TOTAL_SERIES}, name="totals")
        self.per_rank = {rank: ColumnDataSource({name: [] for name in RANK_SERIES},
                                                name=f"rank{rank}") for rank in ranks}
        throughput = figure(title="examples/s", **SIZE)
        throughput.line("step", "examples_per_sec", source=self.totals, line_width=2,
                        color="black", legend_label="total")
        for i, (rank, source) in enumerate(self.per_rank.items()):
            throughput.line("step", "examples_per_sec", source=source, line_dash="dashed",
                            color=Category10_10[i % 10], legend_label=f"rank {rank}")
        throughput.legend.location = "bottom_right"
        throughput.legend.label_text_font_size = "8pt"
        step_time = figure(title="step time (s), slowest rank", **SIZE)
        step_time.line("step", "step_time", source=self.totals, line_width=2)
        loss = figure(title="loss, mean over ranks", **SIZE)
        loss.line("step", "loss", source=self.totals, line_width=2, color="firebrick")
        self.widget = BokehModel(row(throughput, step_time, loss))
        self.widget.add_class("parallax-plots")

    def stream(self, totals: Dict[str, list], per_rank: Dict[int, Dict[str, list]]) -> None:
        """Append new points (call from one thread at a time: each call is a document patch)."""
        if totals["step"]:
            self.totals.stream(totals)
        for rank, points in per_rank.items():
            if points["step"]:
                self.per_rank[rank].stream(points)

"""Live Bokeh plots of a run inside the widget panel (jupyter_bokeh, no Bokeh server):
examples/s in total and per rank, the slowest rank's step time, the mean loss with the
validation loss beside it, and the validation metrics (a plot that appears with the first
validation, when their names are known); below them, where each rank's step goes
(`phase_plot`)."""
from __future__ import annotations

import os
from typing import Dict, List, Sequence

from bokeh.layouts import column, row
from bokeh.models import ColumnDataSource
from bokeh.palettes import Category10_10
from bokeh.plotting import figure
from jupyter_bokeh import BokehModel

from ..views.run_view import RANK_SERIES, TOTAL_SERIES
from .phase_plot import PhasePlot

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
        self.phases = PhasePlot(list(ranks))
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
        loss.line("step", "loss", source=self.totals, line_width=2, color="firebrick",
                  legend_label="training")
        self.validation = ColumnDataSource({"step": [], "val_loss": []}, name="validation")
        loss.line("step", "val_loss", source=self.validation, line_width=2, color="navy",
                  legend_label="validation")
        loss.scatter("step", "val_loss", source=self.validation, color="navy", size=5)
        loss.legend.label_text_font_size = "8pt"
        self.metrics_figure = figure(title="validation metrics", visible=False, **SIZE)
        self.widget = BokehModel(column(row(throughput, step_time, loss, self.metrics_figure),
                                        self.phases.figure))
        self.widget.add_class("parallax-plots")

    def stream_validation(self, points: List[dict]) -> None:
        """Append validations (``{step, val_loss, val_<metric>...}`` each); the first one
        gives the metrics plot its lines."""
        if not points:
            return
        names = [k for k in points[0] if k.startswith("val_")]
        if set(self.validation.data) != {"step", *names}:   # the first validation
            self.validation.data = {k: [] for k in ["step"] + names}
            for i, name in enumerate(n for n in names if n != "val_loss"):
                self.metrics_figure.line("step", name, source=self.validation, line_width=2,
                                         color=Category10_10[i % 10], legend_label=name)
                self.metrics_figure.scatter("step", name, source=self.validation, size=5,
                                            color=Category10_10[i % 10])
            self.metrics_figure.visible = len(names) > 1
        self.validation.stream({k: [p.get(k) for p in points] for k in self.validation.data})

    def stream(self, totals: Dict[str, list], per_rank: Dict[int, Dict[str, list]]) -> None:
        """Append new points (call from one thread at a time: each call is a document patch)."""
        if totals["step"]:
            self.totals.stream(totals)
        for rank, points in per_rank.items():
            if points["step"]:
                self.per_rank[rank].stream(points)

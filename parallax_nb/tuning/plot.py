"""A small picture of a partition search: the timed samples and the fitted curve.

Drawn with matplotlib into an SVG string, so the run report's HTML carries it inline and
shows it wherever the HTML goes (a notebook, a saved page), with no plotting server or
JavaScript.
"""
from __future__ import annotations

import io

import numpy as np

from .partition_search import PartitionSearch


def search_svg(search: PartitionSearch, width: float = 4.2, height: float = 2.6) -> str:
    """The samples (ms per step over P, log2 axis), the fitted t(P) and the chosen P."""
    import matplotlib
    from matplotlib.figure import Figure   # no pyplot: the user's backend stays as it is

    timed = [s for s in search.samples if s.ok]
    failed = [s.partitions for s in search.samples if not s.ok]
    with matplotlib.rc_context({"svg.fonttype": "none", "font.size": 8}):
        figure = Figure(figsize=(width, height))
        axes = figure.add_subplot()
        axes.plot([s.partitions for s in timed], [s.seconds_per_step * 1000 for s in timed],
                  "o", color="tab:blue", label="samples")
        if search.coefficients:
            low = min(s.partitions for s in timed)
            high = max(s.partitions for s in timed)
            grid = np.linspace(low, high, 200)
            axes.plot(grid, search.predicted(grid) * 1000, "-", color="tab:orange",
                      label="t(P) = a/P + b(P-1) + c")
        if failed:
            top = max(s.seconds_per_step for s in timed) * 1000
            axes.plot(failed, [top] * len(failed), "x", color="tab:red", label="failed")
        axes.axvline(search.chosen, color="gray", linestyle="--", linewidth=1,
                     label=f"chosen P={search.chosen}")
        axes.set_xscale("log", base=2)
        ticks = sorted({s.partitions for s in search.samples} | {search.chosen})
        axes.set_xticks(ticks, [str(p) for p in ticks])
        axes.minorticks_off()
        axes.set_xlabel("partitions P")
        axes.set_ylabel("ms per step")
        axes.legend(frameon=False)
        figure.tight_layout()
        out = io.StringIO()
        figure.savefig(out, format="svg")
    svg = out.getvalue()
    return svg[svg.index("<svg"):]   # drop the XML prolog: the SVG sits inside HTML

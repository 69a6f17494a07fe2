"""The run panel: the searches' trials while the run plans, then progress with ETA, live
plots (throughput, step time, loss and validation), a Stop button, then the summary or the
error (rank, host, traceback). It keeps updating after the cell has returned: a thread
refreshes it twice a second until the run is over."""
from __future__ import annotations

import html
import threading
import time
from typing import Optional

import ipywidgets as w

from ..views.run_view import RunView
from .panel import Panel
from .throughput_plots import ThroughputPlots, load_bokehjs

REFRESH_SECONDS = 0.5


class RunPanel(Panel):
    def __init__(self, title: str):
        load_bokehjs()
        self.title = title
        self.run = None
        self.view: Optional[RunView] = None
        self.plots: Optional[ThroughputPlots] = None
        self._phase = "analysing the program"
        self._outcome_text = ""
        self._header = w.HTML()
        self._progress = w.IntProgress(value=0, min=0, max=1, bar_style="info",
                                       layout=w.Layout(width="300px"))
        self._meter = w.Label()
        self._meter.add_class("parallax-meter")
        self._stop = w.Button(description="Stop", button_style="danger", icon="stop",
                              disabled=True)
        self._stop.on_click(lambda _: self._stop_clicked())
        self._startup = w.HTML()         # start-up as it happens (which phase, how long)
        self._startup.add_class("parallax-startup")
        self._trials = w.HTML()          # the searches' trials (runs that plan)
        self._trials.add_class("parallax-trials")
        self._trial_lines = []
        self._plots_box = w.Box()
        self._outcome = w.HTML()
        self._outcome.add_class("parallax-outcome")
        self.widget = w.VBox([self._header, w.HBox([self._progress, self._meter, self._stop]),
                              self._startup, self._trials, self._plots_box, self._outcome])
        self.widget.add_class("parallax-run-panel")
        self._render_header()

    # -- lifecycle ---------------------------------------------------------------------------
    def attach(self, run, view: RunView) -> None:
        """Follow ``run`` (whose metrics feed ``view``): a thread redraws until it is over."""
        self.run, self.view = run, view
        self.plots = ThroughputPlots(view.ranks)
        self._plots_box.children = [self.plots.widget]
        self._progress.max = run.config.steps
        self._stop.disabled = False
        if run.planning is not None:
            run.planning.on_trial(self._show_trial)
        threading.Thread(target=self._follow, daemon=True,
                         name=f"parallax-panel-{run.run_id}").start()

    def fail(self, error: BaseException) -> None:
        """An error before the run started (analysis, launch): show it like a run error."""
        self._phase = "failed"
        self._show_error(error)
        self._render_header()

    def _follow(self):
        try:
            while not self.run.done:
                self._redraw()
                time.sleep(REFRESH_SECONDS)
            self._redraw()
            if self.run.error is not None:
                self._show_error(self.run.error)
            else:
                report = self.run.report()
                self._outcome.value = report._repr_html_()
                self._outcome_text = str(report)
        except Exception as exc:  # a panel that stops drawing must still say why
            self._show_error(exc)
        finally:
            self._stop.disabled = True

    def _show_trial(self, trial) -> None:
        """A search trial started (shown as running) or ended (its figure replaces that)."""
        if self._trial_lines and self._trial_lines[-1][0] == (trial.search, trial.number):
            self._trial_lines.pop()
        self._trial_lines.append(((trial.search, trial.number), trial.text()))
        self._trials.value = "<br>".join(html.escape(text) for _, text in self._trial_lines)

    def _redraw(self):
        elapsed = time.time() - self.run.started_at
        self._progress.value = self.view.steps_done
        self._progress.bar_style = {"failed": "danger", "stopped": "warning",
                                    "finished": "success"}.get(self.run.status, "info")
        self._meter.value = self.view.progress(elapsed)
        self.plots.stream(*self.view.take_points())
        self.plots.stream_validation(self.view.take_validation_points())
        if self.view.phases.changed:
            self.plots.phases.show(self.view.phases.bars())
        startup = self.view.startup_lines(self.run, time.time())
        self._startup.value = "<br>".join(html.escape(line) for line in startup)
        self._render_header()

    def _stop_clicked(self):
        self._stop.disabled = True
        threading.Thread(target=self._stop_run, daemon=True).start()

    def _stop_run(self):
        try:
            self.run.stop()
        except Exception as exc:  # e.g. ranks still running after the timeout: say so
            self._show_error(exc)

    def _show_error(self, error: BaseException):
        self._outcome_text = f"error: {error}"
        self._outcome.value = (f'<pre style="color:#a94442;white-space:pre-wrap">'
                               f"{html.escape(str(error))}</pre>")

    # -- what is shown -----------------------------------------------------------------------
    @property
    def status(self) -> str:
        return self.run.status if self.run is not None else self._phase

    def _render_header(self):
        where = ""
        if self.run is not None and self.run.status == "planning":
            where = (f" &middot; run {self.run.run_id}, searching its plan for "
                     f"{self.run.device_count} device(s)")
        elif self.run is not None:
            hosts = {slot.host for slot in self.run.slots}
            where = (f" &middot; run {self.run.run_id}, {self.run.mode}, "
                     f"{len(self.run.slots)} rank(s) on {len(hosts)} host(s)")
            restarts = self.view.restart_text() if self.view is not None else ""
            if restarts:
                where += f" &middot; {html.escape(restarts)}"
        self._header.value = (f"<b>{html.escape(self.title)}</b>{where} &middot; "
                              f"<span class='parallax-status'>{html.escape(self.status)}</span>")

    def text(self) -> str:
        lines = [f"{self.title}: {self.status}"]
        if self.run is not None:
            lines = [f"{self.title}: run {self.run.run_id}, {self.run.mode}, "
                     f"{len(self.run.slots)} rank(s)",
                     self.view.run_text(self.run, time.time())]
        lines[1:1] = [text for _, text in self._trial_lines]
        if self._outcome_text:
            lines.append(self._outcome_text)
        return "\n".join(lines)

"""What the magics of one kernel share: the cluster, its device selection, the current run.

The cluster panel edits the selection kept here, and ``%%parallax train`` launches on it,
so a tick in the panel is a change of what the next run uses.
"""
from __future__ import annotations

import time
from typing import Optional

from ..cluster import ParallaxCluster, connect
from ..cluster.selection import Selection
from ..errors import ParallaxError
from .views.cluster_view import ClusterView
from .views.run_view import RunView

_current: Optional["NotebookSession"] = None


class NotebookSession:
    def __init__(self):
        self.cluster: Optional[ParallaxCluster] = None
        self.cluster_view: Optional[ClusterView] = None
        self.run = None
        self.run_view: Optional[RunView] = None
        self.panel = None

    def connect(self, address=None, **options) -> ParallaxCluster:
        """Connect (closing a cluster this session started before) and list its devices."""
        cluster = connect(address, **options)
        try:
            self.close()
        except BaseException:
            cluster.close()
            raise
        self.cluster = cluster
        self.refresh()
        return cluster

    def refresh(self) -> ClusterView:
        """Re-read the devices (a new view: ticks start from the default selection)."""
        cluster = self.require_cluster()
        self.cluster_view = ClusterView(cluster.devices(refresh=True), cluster.dashboard_link)
        return self.cluster_view

    def require_cluster(self) -> ParallaxCluster:
        if self.cluster is None:
            raise ParallaxError("not connected to a Dask cluster: run `%parallax connect` "
                                "(embedded local cluster) or `%parallax connect ADDRESS` first")
        return self.cluster

    @property
    def selection(self) -> Selection:
        """The devices ticked in the cluster panel: what the next run uses."""
        self.require_cluster()
        return self.cluster_view.selection

    def follow(self, run, panel=None) -> None:
        """Make ``run`` the current one: its metrics feed a RunView (and the panel, if any)."""
        self.run, self.panel = run, panel
        ranks = [slot.rank for slot in run.slots] or list(range(run.device_count))  # planning
        self.run_view = RunView(run.config.steps, ranks)
        run.on_metrics(self.run_view.add)
        if hasattr(run, "on_validation"):
            run.on_validation(self.run_view.add_validation)
        if hasattr(run, "on_restart"):
            run.on_restart(self.run_view.restarted)
        if panel is not None:
            panel.attach(run, self.run_view)

    def run_text(self) -> str:
        if self.panel is not None:
            return self.panel.text()
        run = self.require_run()
        trials = [f"{trial.text()}\n" for trial in run.planning.records] if run.planning else []
        return (f"run {run.run_id}: {run.mode}, {len(run.slots)} rank(s)\n" + "".join(trials)
                + self.run_view.run_text(run, time.time()))

    def require_run(self):
        if self.run is None:
            raise ParallaxError("no run in this session yet: start one with `%%parallax train`")
        return self.run

    def close(self) -> None:
        """Stop the current run and close the cluster (shutting it down if it is ours)."""
        try:
            if self.run is not None and not self.run.done:
                self.run.stop()
        finally:
            if self.cluster is not None:
                self.cluster.close()
            self.cluster = self.cluster_view = None


def current_session() -> NotebookSession:
    """The session of this kernel (created on first use, e.g. by ``%load_ext parallax_nb``)."""
    global _current
    if _current is None:
        _current = NotebookSession()
    return _current

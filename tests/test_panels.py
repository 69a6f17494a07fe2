"""The widget panels' wiring without a browser: ticks and text boxes change the views they
draw, and views changed in code redraw the widgets (the browser test covers rendering)."""
import ipywidgets as w

import parallax_nb as px
from parallax_nb.notebook.views.cluster_view import ClusterView
from parallax_nb.notebook.views.variables_view import VariablesView
from parallax_nb.notebook.widgets.cluster_panel import ClusterPanel
from parallax_nb.notebook.widgets.run_panel import RunPanel
from parallax_nb.notebook.widgets.variables_panel import VariablesPanel

import programs
from test_notebook_views import TWO_HOSTS


def checkboxes(widget):
    found = []
    if isinstance(widget, w.Checkbox):
        found.append(widget)
    for child in getattr(widget, "children", ()):
        found += checkboxes(child)
    return found


def test_cluster_panel_ticks_are_the_selection_both_ways():
    view = ClusterView(TWO_HOSTS, dashboard_link="/user/alice/proxy/8787/status")
    panel = ClusterPanel(view)
    assert [b.description for b in checkboxes(panel.widget)] == [
        "h0 (all)", "worker a0 slot 0", "worker a0 slot 1", "h1 (all)", "worker b0 slot 0",
        "worker b0 slot 1"]
    boxes = {b.description: b for b in checkboxes(panel.widget) if "(all)" in b.description}
    devices = [b for b in checkboxes(panel.widget) if "(all)" not in b.description]
    assert len(devices) == 4 and all(b.value for b in devices)
    devices[3].value = False                                    # the user unticks h1/cpu1
    assert len(view.selection) == 3 and view.host_state("h1") is None
    assert not boxes["h1 (all)"].value
    assert "3 of 4" in panel.text()
    boxes["h0 (all)"].value = False                             # select-all box of h0
    assert view.selection.hosts == ["h1"]
    assert [b.value for b in devices] == [False, False, True, False]
    view.set_host("h1", True)                                   # a change made in code
    assert devices[3].value and boxes["h1 (all)"].value
    assert '/user/alice/proxy/8787/status' in panel.widget.children[0].value
    bundle = panel._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/plain"] == view.text()                  # what nbval and logs read


def test_variables_panel_follows_partitions_box_and_cluster_ticks():
    report = px.analyze(programs.keras_embedding_program(rows=50), steps=2)
    cluster_view = ClusterView(TWO_HOSTS)
    panel = VariablesPanel(VariablesView(report, cluster_view.selection), cluster_view)
    partitions_box, message, table = panel.widget.children
    assert "0,1" in table.value and "2 machine(s) x 2 rank(s)" in message.value
    partitions_box.value = "4"
    assert "0,1,0,1" in table.value
    cluster_view.set_host("h1", False)
    assert "0,0,0,0" in table.value and "1 machine(s) x 2 rank(s)" in message.value
    partitions_box.value = "zero"
    assert "partitions" in message.value and "0,0,0,0" in table.value   # kept the last plan
    cluster_view.set_host("h0", False)                                   # nothing ticked
    assert "pick at least one device" in message.value


def test_run_panel_shows_an_error_before_the_run_started():
    panel = RunPanel("toy")
    assert panel.text() == "toy: analysing the program"
    panel.fail(px.ProgramError("model_fn() raised NameError: name 'Dnse' is not defined"))
    assert panel.text().startswith("toy: failed\nerror: model_fn() raised NameError")
    assert "Dnse" in panel.widget.children[-1].value


def test_run_panel_shows_each_search_trial_running_then_with_its_figure():
    from parallax_nb.plan import Planning
    from parallax_nb.tuning import TrialFailed

    panel = RunPanel("lm")
    planning = Planning()
    planning.on_trial(panel._show_trial)
    shown = []

    def measure(partitions):
        shown.append(panel._trials.value)           # what the panel shows during the trial
        if partitions == 4:
            raise TrialFailed("RankError: out of memory")
        return 0.0123 * partitions

    trial = planning.measured("partitions", 5, measure, lambda p: f"P={p}")
    trial(1)
    try:
        trial(4)
    except TrialFailed:
        pass
    assert shown == ["partitions search: trial 1 of at most 5, P=1: running",
                     "partitions search: trial 1 of at most 5, P=1: 12.30 ms/step<br>"
                     "partitions search: trial 2 of at most 5, P=4: running"]
    assert panel._trials.value.split("<br>") == [
        "partitions search: trial 1 of at most 5, P=1: 12.30 ms/step",
        "partitions search: trial 2 of at most 5, P=4: failed: RankError: out of memory"]

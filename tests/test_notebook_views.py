"""The models behind the notebook panels: what rows and numbers each shows for a given
cluster, analysis report and selection, and what selection train gets from the ticks."""
import pytest

import parallax_nb as px
from parallax_nb.cluster.devices import Device
from parallax_nb.cluster.selection import SelectionError
from parallax_nb.errors import ConfigError
from parallax_nb.notebook.views.cluster_view import ClusterView
from parallax_nb.notebook.views.run_view import RunView
from parallax_nb.notebook.views.variables_view import VariablesView, parse_partitions

import programs


def cpu(host, worker, index):
    return Device(host, worker, "CPU", index, f"cpu{index}", "CPU slot", 4_000_000_000,
                  worker_name=worker.split("//")[1][0] + "0")


def gpu(host, worker, index, used=1_000_000_000, util=35.0):
    return Device(host, worker, "GPU", index, f"GPU-{host}-{index}", "Tesla T4",
                  16_000_000_000, used, util)


TWO_HOSTS = [cpu("h0", "tcp://a:1", 0), cpu("h0", "tcp://a:1", 1),
             cpu("h1", "tcp://b:1", 0), cpu("h1", "tcp://b:1", 1)]


# -- cluster panel ---------------------------------------------------------------------------
def test_every_device_is_a_row_and_all_are_ticked_at_first():
    view = ClusterView(TWO_HOSTS, dashboard_link="http://hub/user/u/proxy/8787/status")
    rows = view.rows()
    assert [(r["host"], r["device"]) for r in rows] == [
        ("h0", "worker a0 slot 0"), ("h0", "worker a0 slot 1"), ("h1", "worker b0 slot 0"),
        ("h1", "worker b0 slot 1")]
    assert all(r["selected"] for r in rows)
    assert rows[0]["memory"] == "4.0 GB" and rows[0]["utilization"] == "-"
    assert view.selection.keys == [d.key for d in TWO_HOSTS]
    assert "http://hub/user/u/proxy/8787/status" in view.text()


def test_unticking_a_device_changes_the_selection_and_tells_observers():
    view = ClusterView(TWO_HOSTS)
    seen = []
    view.observe(lambda v: seen.append(len(v.selection)))
    view.set_selected("tcp://b:1/cpu1", False)
    assert view.selection.keys == ["tcp://a:1/cpu0", "tcp://a:1/cpu1", "tcp://b:1/cpu0"]
    assert view.selection.by_host() == {"h0": list(TWO_HOSTS[:2]), "h1": [TWO_HOSTS[2]]}
    assert view.host_state("h1") is None and view.host_state("h0") is True
    assert seen == [3]
    view.set_selected("tcp://b:1/cpu1", False)       # no change, no notification
    assert seen == [3]
    assert "3 of 4 device(s) selected on 2 host(s) (h0: 2, h1: 1)" in view.text()


def test_host_tick_selects_or_clears_the_whole_host():
    view = ClusterView(TWO_HOSTS)
    view.set_host("h0", False)
    assert view.selection.hosts == ["h1"] and view.host_state("h0") is False
    view.set_host("h0", True)
    assert len(view.selection) == 4


def test_nothing_ticked_is_an_error_naming_the_fix():
    view = ClusterView(TWO_HOSTS)
    view.set_host("h0", False)
    view.set_host("h1", False)
    with pytest.raises(SelectionError, match="pick at least one device"):
        view.selection
    with pytest.raises(KeyError, match="no device 'nope'"):
        view.set_selected("nope", True)


def test_gpus_show_nvml_memory_and_utilisation_and_cpu_slots_are_not_preselected():
    devices = [gpu("h0", "tcp://a:1", 0), gpu("h0", "tcp://a:1", 1, None, None),
               cpu("h0", "tcp://c:1", 0)]
    view = ClusterView(devices)
    rows = view.rows()
    assert rows[0]["memory"] == "1.0 GB / 16.0 GB" and rows[0]["utilization"] == "35%"
    assert rows[1]["memory"] == "16.0 GB" and rows[1]["utilization"] == "-"
    assert [r["selected"] for r in rows] == [True, True, False]   # GPUs preferred
    view.set_selected("tcp://c:1/cpu0", True)
    with pytest.raises(SelectionError):                          # mixed kinds
        view.selection


# -- variables view --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def embedding_report():
    return px.analyze(programs.keras_embedding_program(rows=50), steps=2)


def test_variables_view_rows_follow_the_selection_and_partitions(embedding_report):
    view = VariablesView(embedding_report, ClusterView(TWO_HOSTS).selection)
    rows = {r["name"]: r for r in view.rows()}
    emb = rows["emb/embeddings:0"]
    assert emb["sparse"] and emb["kind"] == "sparse" and emb["placement"] == "ps"
    assert emb["shape"] == "50x4" and emb["size"] == "800 B"
    assert emb["partitions"] == "2" and emb["servers"] == "0,1"     # one per selected host
    assert not rows["out/kernel:0"]["sparse"] and rows["out/kernel:0"]["partitions"] == "-"

    view.set_partitions(5)
    assert {r["name"]: r for r in view.rows()}["emb/embeddings:0"]["partitions"] == "5"
    one_host = ClusterView(TWO_HOSTS)
    one_host.set_host("h1", False)
    view.set_selection(one_host.selection)
    emb = {r["name"]: r for r in view.rows()}["emb/embeddings:0"]
    assert emb["partitions"] == "5" and emb["servers"] == "0,0,0,0,0"


def test_variables_view_costs_are_the_cost_model_for_the_selection(embedding_report):
    view = VariablesView(embedding_report, ClusterView(TWO_HOSTS).selection)
    expected = embedding_report.estimate(machines=2, workers_per_machine=2).totals
    assert view.costs() == expected
    assert view.recommended_mode == embedding_report.for_selection(
        ClusterView(TWO_HOSTS).selection).recommended_mode
    assert f"recommended {view.recommended_mode} (" in view.cost_line()
    single = ClusterView(TWO_HOSTS)
    single.set_host("h1", False)
    view.set_selection(single.selection)
    assert all(v == (0.0, 0.0) for v in view.costs().values())   # one machine: no network
    assert "emb/embeddings:0" in view.text() and "sparse" in view.html()


def test_partitions_text_is_parsed_and_checked():
    assert parse_partitions("") is None and parse_partitions(" 4 ") == 4
    with pytest.raises(ConfigError, match="partitions"):
        parse_partitions("lots")
    with pytest.raises(ConfigError, match="positive"):
        parse_partitions("0")


# -- run panel -------------------------------------------------------------------------------
def record(rank, step, eps, step_time=0.1, loss=1.0, time=None):
    return {"rank": rank, "host": "h0", "step": step, "loss": loss, "examples": 32,
            "step_time": step_time, "examples_per_sec": eps,
            "time": 1000.0 + step if time is None else time}


def test_a_step_is_done_when_every_rank_reported_it():
    view = RunView(total_steps=10, ranks=[0, 1])
    view.add([record(0, 1, 100.0), record(0, 2, 110.0, 0.2, 3.0), record(1, 1, 90.0)])
    assert view.steps_done == 1
    totals, per_rank = view.take_points()
    assert totals == {"step": [1], "examples_per_sec": [190.0], "step_time": [0.1],
                      "loss": [1.0]}
    assert per_rank[0] == {"step": [1, 2], "examples_per_sec": [100.0, 110.0]}
    assert per_rank[1] == {"step": [1], "examples_per_sec": [90.0]}
    assert view.take_points()[0]["step"] == []                   # handed out once
    view.add([record(1, 2, 120.0, 0.3, 1.0)])
    totals, per_rank = view.take_points()
    assert totals == {"step": [2], "examples_per_sec": [230.0], "step_time": [0.3],
                      "loss": [2.0]}
    assert view.steps_done == 2 and view.latest["examples_per_sec"] == 230.0


def test_progress_line_has_steps_and_an_eta_from_the_speed_after_the_first_step():
    view = RunView(total_steps=10, ranks=[0, 1])
    # The first step took 30 s (start-up); then one step every 0.5 s.
    view.add([record(r, 1, 100.0, time=1030.0) for r in (0, 1)])
    view.add([record(r, s, 100.0, time=1030.0 + (s - 1) / 2) for r in (0, 1)
              for s in range(2, 5)])
    assert view.steps_per_second == 2.0
    text = view.text("running", elapsed=31.5)
    assert "4/10" in text and "00:31<00:03" in text and "2.00step/s" in text
    assert "200 examples/s" in text

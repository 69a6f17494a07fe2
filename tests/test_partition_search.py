"""Automatic partition search: the search logic against synthetic cost functions with a known
optimum (fast, no cluster), the "auto" option and its threshold, the report, and the quick
benchmark, whose `px.train(partitions="auto")` on the bundled language model is the
integration test: search, chosen P, the real run placed with it, no process left behind."""
import json
import os
import re
import signal
import threading

import numpy as np
import pandas as pd
import pytest

import parallax_nb as px
import programs
from benchmarks import partition_search as benchmark
from cluster_tools import cluster_children, wait_for, wait_until_gone
from parallax_nb.examples import language_model
from parallax_nb.launch.report import RunReport
from parallax_nb.launch.checks import DevicesInUse
from parallax_nb.plan import searched_variables
from parallax_nb.tuning import (PartitionSearch, Sample, SearchFailed, TrialFailed, cost_model,
                                search_partitions, trial_bound)
from parallax_nb.tuning.partition_search import fit_cost_model, minimum_partitions


def cost(a, b, c):
    return lambda partitions: float(cost_model(partitions, a, b, c))


def tried(search):
    return [s.partitions for s in search.samples]


def true_optimum(function, upto=4096):
    return min(range(1, upto + 1), key=function)


# -- the search -------------------------------------------------------------------------------
def test_doubles_while_improving_and_fits_the_interior_optimum():
    t = cost(2.0, 0.05, 0.3)                         # optimum sqrt(2 / 0.05) = 6.3 -> 6
    search = search_partitions(t, start=1, minimum=1, maximum=1024)
    assert tried(search) == [1, 2, 4, 8, 16]         # 16 is the first one worse than 8
    assert search.chosen == 6 == true_optimum(t)     # between the samples: found by the fit
    assert search.method == "fit"
    assert search.coefficients == pytest.approx((2.0, 0.05, 0.3), rel=1e-6)
    assert search.predicted(6) == pytest.approx(t(6))


def test_halves_when_the_first_doubling_is_worse_and_stops_when_worse_again():
    t = cost(3.0, 0.4, 1.0)                          # optimum sqrt(7.5) = 2.7 -> 3
    search = search_partitions(t, start=4, minimum=1, maximum=64)
    assert tried(search) == [4, 8, 2, 1]             # 8 worse: halve; 1 worse than 2: stop
    assert search.chosen == 3 == true_optimum(t)


@pytest.mark.parametrize("seed", range(8))
def test_noisy_costs_land_within_five_percent_of_the_optimum(seed):
    rng = np.random.default_rng(seed)
    t = cost(2.0, 0.05, 0.3)
    search = search_partitions(lambda p: t(p) * (1 + rng.normal(0, 0.03)), start=1,
                               minimum=1, maximum=1024)
    assert 4 <= search.chosen <= 8
    assert t(search.chosen) <= 1.05 * t(true_optimum(t))


def test_optimum_at_the_lower_edge():
    t = cost(0.0, 0.05, 0.3)                         # every partition only adds overhead
    search = search_partitions(t, start=2, minimum=1, maximum=64)
    assert tried(search) == [2, 4, 1]
    assert search.chosen == 1


def test_optimum_at_the_upper_edge_stops_at_the_maximum():
    t = cost(1.0, 0.0, 0.3)                          # more partitions always help
    search = search_partitions(t, start=1, minimum=1, maximum=64)
    assert tried(search) == [1, 2, 4, 8, 16, 32, 64]
    assert search.chosen == 64


def test_never_goes_below_the_minimum():
    search = search_partitions(cost(0.0, 0.05, 0.3), start=4, minimum=4, maximum=64)
    assert tried(search) == [4, 8]                   # halving to 2 would not fit
    assert search.chosen == 4 and search.method == "best sample"


def test_a_failing_trial_is_recorded_and_the_search_moves_up():
    t = cost(2.0, 0.05, 0.3)

    def measure(partitions):
        if partitions < 4:
            raise TrialFailed(f"ResourceExhaustedError: OOM with {partitions} partition(s)")
        return t(partitions)

    search = search_partitions(measure, start=1, minimum=1, maximum=1024)
    assert tried(search) == [1, 2, 4, 8, 16]         # and never halves back to a failed P
    assert [s.ok for s in search.samples] == [False, False, True, True, True]
    assert search.samples[0].reason == "ResourceExhaustedError: OOM with 1 partition(s)"
    assert search.chosen == 6
    frame = search.to_frame()
    assert frame["seconds_per_step"].isna().tolist() == [True, True, False, False, False]


def test_a_failure_above_a_timed_sample_counts_as_worse():
    t = cost(2.0, 0.05, 0.3)

    def measure(partitions):
        if partitions > 4:
            raise TrialFailed("too many partitions")
        return t(partitions)

    search = search_partitions(measure, start=2, minimum=1, maximum=64)
    assert tried(search) == [2, 4, 8]
    assert search.chosen == 4 and search.method == "best sample"   # two timed samples


def test_every_trial_failing_says_what_failed_and_what_to_do():
    def measure(partitions):
        raise TrialFailed(f"RankError: rank 0 failed at P={partitions}")

    with pytest.raises(SearchFailed, match=r"every trial failed \(P=1: RankError: rank 0 "
                                           r"failed at P=1; P=2: .*; P=4: .*\).*"
                                           r"Config\(partitions=\.\.\.\)"):
        search_partitions(measure, start=1, minimum=1, maximum=4)


def test_bad_bounds_are_refused():
    with pytest.raises(ValueError, match="minimum <= start <= maximum"):
        search_partitions(cost(1, 0, 0), start=8, minimum=1, maximum=4)


@pytest.mark.parametrize("seed", range(40))
def test_the_trial_bound_holds_for_any_costs_and_is_reached(seed):
    """What "trial i of at most n" in the run panel promises."""
    rng = np.random.default_rng(seed)
    minimum = int(rng.integers(1, 4))
    start = int(rng.integers(minimum, 40))
    maximum = int(rng.integers(start, 5000))
    a, b, c = rng.uniform(0, 5), rng.uniform(0, 0.1), rng.uniform(0, 1)
    fails_below = int(rng.integers(0, 3)) * start    # some runs fail their first trials
    noise = rng.uniform(0.8, 1.2, size=64)

    def measure(partitions):
        if partitions < fails_below:
            raise TrialFailed("out of memory")
        return cost(a, b, c)(partitions) * noise[partitions % 64]

    try:
        search = search_partitions(measure, start, minimum, maximum)
        count = len(search.samples)
    except SearchFailed:
        count = None
    bound = trial_bound(start, minimum, maximum)
    if count is not None:
        assert count <= bound
    assert trial_bound(8, 1, 1024) == 1 + 7 + 3
    # a cost that keeps falling to the maximum uses every doubling
    assert len(search_partitions(cost(1e6, 0, 0), 8, 8, 1024).samples) == trial_bound(8, 8, 1024)


def test_search_time_is_the_whole_search_and_each_trial_its_own():
    now = [0.0]

    def clock():
        return now[0]

    def measure(partitions):
        now[0] += 10.0 * partitions                  # a trial's wall time grows with P
        return cost(2.0, 0.05, 0.3)(partitions)

    search = search_partitions(measure, start=1, minimum=1, maximum=1024, clock=clock)
    assert [s.trial_seconds for s in search.samples] == [10, 20, 40, 80, 160]
    assert search.seconds == 310


def test_the_fit_recovers_known_coefficients_and_keeps_them_non_negative():
    p = np.array([1, 2, 4, 8, 16])
    assert fit_cost_model(p, cost_model(p, 0.5, 0.01, 0.1)) == pytest.approx((0.5, 0.01, 0.1),
                                                                            rel=1e-5)
    a, b, c = fit_cost_model([1, 2, 4], [1.0, 1.1, 1.3])     # rising: no parallelism term
    assert a == pytest.approx(0.0, abs=1e-9) and b > 0


def test_minimum_partitions_that_fit_in_server_memory():
    gib = 2**30
    assert minimum_partitions(1 * gib, servers=2, server_memory=16 * gib, copies=3) == 1
    assert minimum_partitions(4 * gib, servers=2, server_memory=8 * gib, copies=3) == 2
    assert minimum_partitions(4 * gib, servers=4, server_memory=4 * gib, copies=3) == 3
    with pytest.raises(px.ConfigError, match=r"do not fit in 2 parameter server\(s\).*"
                                             r"add hosts or servers"):
        minimum_partitions(10 * gib, servers=2, server_memory=8 * gib, copies=3)


# -- the option and its threshold ---------------------------------------------------------------
def test_auto_is_the_default_and_fixed_counts_skip_the_search():
    assert px.Config().partitions == "auto" and px.Config(partitions="Auto").partitions == "auto"
    with pytest.raises(px.ConfigError, match=r"'auto' \(search\), an int, a dict"):
        px.Config(partitions="many")
    with pytest.raises(px.ConfigError, match="partition_search_min_bytes must be a positive"):
        px.Config(partition_search_min_bytes=0)
    program = language_model.make_program(vocab=2000, dim=8, hidden=8, num_sampled=16,
                                          examples=64)
    low = px.Config(partition_search_min_bytes=32_000)   # 2000 x 8 x 4 = 64 KB tables
    report = px.analyze(program, steps=1, config=low, machines=2)
    assert searched_variables(report) == ("embedding/embeddings:0", "softmax_weights:0")
    frame = report.to_frame().set_index("name")              # planned one per server
    assert frame.loc["embedding/embeddings:0", "partitions"] == 2
    assert searched_variables(report.replan(partitions=4)) == ()
    assert searched_variables(report.replan(partitions={"softmax_weights": 3})) == ()
    assert searched_variables(report.replan(partitions=None)) == ()
    assert searched_variables(report.replan(mode="AR")) == ()


def test_the_default_threshold_spares_the_test_suites_programs():
    """The bundled language model and the largest test table train without a search."""
    lm = px.analyze(language_model.make_program(dim=128, hidden=128), steps=1,
                    config=px.Config(batch_size=8))
    assert max(v.bytes for v in lm.variables) == 200_000 * 128 * 4
    assert searched_variables(lm) == ()
    big = px.analyze(programs.big_table_program(), steps=1, config=px.Config(batch_size=10))
    assert max(v.bytes for v in big.variables) == 1_000_000 * 64 * 4
    assert searched_variables(big) == ()


# -- the report ---------------------------------------------------------------------------------
SEARCH = PartitionSearch(
    chosen=6, start=1, seconds=123.4, variables=("embedding/embeddings:0",),
    coefficients=(2.0, 0.05, 0.3),
    samples=(Sample(1, None, 5.0, "RankError: rank 0 on host vm failed: OOM\ntraceback"),
             Sample(2, 1.35, 10.0), Sample(4, 0.95, 11.0), Sample(8, 0.9, 12.0),
             Sample(16, 1.175, 13.0)))


def report_with(search):
    empty = pd.DataFrame()
    return RunReport("r1", "finished", "HYBRID", (), {"vm": 2}, 0, None, 0.0, empty,
                     float("nan"), pd.DataFrame({"name": ["x"]}), empty,
                     partition_search=search)


def test_text_report_lists_the_choice_every_sample_and_the_search_time():
    text = str(report_with(SEARCH))
    assert ("partition search: P=6 for embedding/embeddings:0 (argmin of t(P) = a/P + b(P-1) "
            "+ c fitted to 4 samples, 5 trial(s) in 123.4 s)") in text
    rows = re.findall(r"^\s+(\d+)\s+(\S+)\s+([\d.]+)", text, re.M)
    assert rows == [("1", "failed", "5.0"), ("2", "1350.00", "10.0"), ("4", "950.00", "11.0"),
                    ("8", "900.00", "12.0"), ("16", "1175.00", "13.0")]
    assert "RankError: rank 0 on host vm failed: OOM" in text and "traceback" not in text
    assert "fit: a=2 s, b=0.05 s, c=0.3 s" in text
    assert "partition search" not in str(report_with(None))


def test_html_report_has_the_samples_and_a_plot_of_them_and_the_fit():
    html = report_with(SEARCH)._repr_html_()
    assert "P=6" in html and "123.4 s" in html
    assert re.findall(r"<tr><td>(\d+)</td>\s*<td>([^<]+)</td>", html) == [
        ("1", "failed"), ("2", "1350.00"), ("4", "950.00"), ("8", "900.00"), ("16", "1175.00")]
    svg = html[html.index("<svg"):html.index("</svg>")]
    assert "chosen P=6" in svg and "t(P) = a/P + b(P-1) + c" in svg and "failed" in svg
    assert "<svg" not in report_with(None)._repr_html_()


# -- on a cluster: the quick benchmark is the integration test ----------------------------------
@pytest.fixture(scope="module")
def quick_benchmark(tmp_path_factory, cluster):
    out = tmp_path_factory.mktemp("results")
    results = benchmark.main(["--quick", "--out", str(out)], cluster=cluster)
    leftovers = wait_until_gone([p.pid for p in cluster_children(cluster)])
    with open(out / "partition_search_quick.json") as f:
        written = json.load(f)
    return results, written, leftovers


@pytest.mark.timeout(400)
def test_auto_partitions_search_then_train_the_language_model_with_the_choice(quick_benchmark):
    results, _, leftovers = quick_benchmark
    search, final = results["search"], results["final_run"]
    assert search["variables"] == ["embedding/embeddings:0", "softmax_weights:0"]
    assert search["start"] == 1                      # one host, the tables fit in memory
    partitions = [s["partitions"] for s in search["samples"]]
    assert partitions[:2] == [1, 2] and len(partitions) >= 2
    timed = [s for s in search["samples"] if s["seconds_per_step"] is not None]
    assert timed and all(s["seconds_per_step"] > 0 for s in timed)
    assert min(partitions) <= search["chosen"] <= max(partitions)
    assert search["seconds"] >= sum(s["trial_seconds"] for s in search["samples"])
    # the real run trained with the chosen P; the small bias vector kept one per server
    assert final["status"] == "finished" and final["steps"] == benchmark.PLANS["quick"].final_steps
    assert final["partitions"] == {"embedding/embeddings:0": search["chosen"],
                                   "softmax_weights:0": search["chosen"],
                                   "softmax_biases:0": 1}
    assert leftovers == []                           # no rank or server process outlived it


def test_quick_benchmark_compares_with_a_sweep_and_writes_its_figures(quick_benchmark):
    results, written, _ = quick_benchmark
    assert written == json.loads(json.dumps(results))
    assert [s["partitions"] for s in results["sweep"]] == [1, 2, 3, 4]
    comparison = results["comparison"]
    timed = {s["partitions"]: s["seconds_per_step"] for s in results["sweep"]}  # one round
    assert comparison["reference_seconds_per_step"] == timed
    assert comparison["best_seconds_per_step"] == min(timed.values())
    chosen = results["search"]["chosen"]
    if chosen in timed:                              # the search may go beyond P = 4
        assert comparison["chosen_over_best"] == pytest.approx(timed[chosen] / min(timed.values()))
        assert comparison["within_5_percent"] == (comparison["chosen_over_best"] <= 1.05)
    else:
        assert comparison["chosen_over_best"] is None and not comparison["within_5_percent"]
    assert comparison["search_over_sweep_cost"] == pytest.approx(
        comparison["search_seconds"] / comparison["sweep_seconds"])
    assert comparison["sweep_trials"] == 4 and results["machine"]["nproc"] >= 1


@pytest.mark.timeout(300)
def test_a_searching_run_plans_in_the_background_shows_its_trials_and_stops_cleanly():
    """px.train returns at once with a run that plans; its trials are reported as they start;
    the devices are the run's meanwhile; Ctrl-C in run.wait() (Jupyter's "interrupt kernel")
    stops the trial under way, launches nothing and leaves no process."""
    program = language_model.make_program(vocab=20_000, dim=32, hidden=64, context=8,
                                          num_sampled=256, examples=4_096)
    config = px.Config(mode="HYBRID", steps=10, batch_size=32,
                       partition_search_min_bytes=2**20,     # both tables (2.6, 5.1 MB)
                       search_window_steps=100_000)          # a trial that would not end
    with px.connect(local=2) as cluster:
        run = px.train(program, cluster=cluster, select=2, config=config, progress=False)
        assert run.status == "planning" and run.slots == [] and run.analysis is None
        seen = []
        run.planning.on_trial(seen.append)
        with pytest.raises(DevicesInUse, match=f"in use by run {run.run_id}"):
            px.train(program, cluster=cluster, select=2, config=config.replace(partitions=1))

        def trial_has_trained():
            """A step record of the trial on any run's Dask event topic."""
            topics = cluster.client.get_events()
            return any(isinstance(message, dict) and message.get("type") == "steps"
                       for events in topics.values() for _, message in events)

        started = []

        def interrupt_once_the_trial_trains():
            started.append(wait_for(trial_has_trained, timeout=120, interval=0.5))
            os.kill(os.getpid(), signal.SIGINT)

        threading.Thread(target=interrupt_once_the_trial_trains, daemon=True).start()
        with pytest.raises(KeyboardInterrupt):
            run.wait()
        assert started == [True]                     # the trial was training
        assert run.status == "stopped" and run.done and run.error is None
        # P = 1, 2, 4 ... 16384 (the tables have 20,000 rows): 15 trials at most
        assert seen[0].text() == "partitions search: trial 1 of at most 15, P=1: running"
        assert run.planning.records == []            # stopped before its first trial ended
        assert seen[-1].text().endswith("P=1: cancelled") and run.planning.current is None
        assert run.metrics.empty and "stopped" in str(run.report())
        assert wait_until_gone([p.pid for p in cluster_children(cluster)], timeout=15) == []
        # the devices went with the run
        again = px.train(program, cluster=cluster, select=2, config=config.replace(
            partitions=1, steps=2))
        assert again.wait(timeout=120).status == "finished"


def test_a_trial_window_needs_its_steps_and_its_seconds():
    from parallax_nb.plan.trials import window_is_long_enough, window_seconds_per_step

    config = px.Config(search_warmup_steps=2, search_window_steps=3, search_window_seconds=1.0)

    def metrics(step_times):
        return pd.DataFrame([{"rank": rank, "step": i + 1, "step_time": t}
                             for rank in (0, 1) for i, t in enumerate(step_times)])

    assert not window_is_long_enough(pd.DataFrame(), config)
    assert not window_is_long_enough(metrics([9, 9, 0.5, 0.5]), config)        # 2 steps
    assert not window_is_long_enough(metrics([9, 9, 0.2, 0.2, 0.2]), config)   # 0.6 s
    assert window_is_long_enough(metrics([9, 9, 0.4, 0.4, 0.4]), config)
    assert window_seconds_per_step(metrics([9, 9, 0.4, 0.5, 0.4]), 2) == 0.4
    with pytest.raises(px.ConfigError, match="search_window_seconds must be a number"):
        px.Config(search_window_seconds=-1)

"""The scale benchmark (`benchmarks.scale`): its quick variant as `make bench-scale` runs it,
on 2 simulated hosts (the full run's 4 cost the suite 40 s more), and what its results must
show: every configuration measured, the link scaled from the nominal one by the measured
compute, bytes within 20% of the cost model for every mode, the speed-up set against the byte
saving; and the memory-bound case:
AR refused under a limit it cannot fit, HYBRID trained under it (the full run adds PS, and AR
without the limit peaking above it: `make bench-scale`)."""
import json
import subprocess
import sys

import pytest

from benchmarks import netns, scale, workloads
from benchmarks.accelerator_step import MODELS
from benchmarks.summary import TOLERANCE
from test_benchmarks import ROOT, leftovers, tagged_processes

NETNS = netns.unavailable_reason()
MODES = {"HYBRID", "PS", "AR"}


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    """`make bench-scale`'s quick variant, both parts in one invocation (the suite keeps one
    quick case per benchmark), and what it left: no namespace, no process."""
    if NETNS is not None:
        pytest.skip(f"simulated machines unavailable: {NETNS}")
    out = tmp_path_factory.mktemp("scale")
    process = subprocess.Popen([sys.executable, "-m", "benchmarks.scale", "--quick",
                                "--out", str(out)], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        output, _ = process.communicate(timeout=900)
    finally:
        if process.poll() is None:
            process.terminate()
            process.communicate(timeout=60)
    assert process.returncode == 0, output[-3000:]
    assert leftovers(process.pid) == []
    assert tagged_processes(f"{netns.PREFIX}{process.pid}") == []
    with open(out / "scale_quick.json") as f:
        return json.load(f), (out / "scale_quick.md").read_text()


def test_the_gpu_side_times_the_shapes_the_benchmark_trains():
    for name, shape in MODELS.items():
        workload = workloads.SCALE[name]
        assert shape["batch"] == workload.batch_size
        assert {k: v for k, v in shape.items() if k != "batch"}.items() <= \
            workload.sizes.items()
    with open(scale.ACCELERATOR) as f:
        measured = json.load(f)
    assert set(measured["models"]) == set(MODELS)
    assert all(measured["models"][m]["shape"] == MODELS[m] for m in MODELS)


def test_the_link_is_scaled_by_the_accelerator_over_this_machines_step():
    # a GPU step of 3 ms against 100 ms here: 1 Gbit/s becomes 30 Mbit/s
    assert scale.scaled_link("1gbit", 0.003, 0.100) == "30000kbit"
    assert scale.scaled_link("100mbit", 0.003, 0.100) == "3000kbit"
    assert netns.rate_bits(scale.scaled_link("1gbit", 0.0031, 0.0415)) == pytest.approx(
        1e9 * 0.0031 / 0.0415, rel=1e-3)


@pytest.mark.timeout(1000)
def test_quick_network_bound_case_on_simulated_hosts(quick):
    results, markdown = quick
    runs = results["runs"]
    assert all(r["status"] == "ok" and r["hosts"] == 2 for r in runs), \
        [r.get("error") for r in runs]
    (link,) = results["links"]
    assert link["nominal"] == "1gbit" and link["hosts"] == 2
    reference = [r for r in runs if r["nominal"] == "unshaped"]
    assert [r["config"] for r in reference] == ["AR"]
    (here,) = [r["examples_per_step"] / r["examples_per_sec"] for r in reference]
    assert link["step_here_unshaped"] == pytest.approx(here)
    assert netns.rate_bits(link["link"]) == pytest.approx(
        1e9 * link["accelerator_step"] / here, rel=1e-2)
    shaped = [r for r in runs if r["bandwidth"] == link["link"]]
    assert sorted(r["config"] for r in shaped) == ["AR", "HYBRID"]
    # HYBRID, first on the shaped link, was placed with a collective's cost as the AR run
    # before it measured it (px.train kept its StepCost on the cluster)
    (hybrid,) = [r for r in shaped if r["config"] == "HYBRID"]
    assert hybrid["priced_on"].endswith(
        f"(tc rate {link['link']}; fixed costs from 1 run(s) without servers and 0 with)")
    checked = {row["mode"] for row in results["summary"]["bytes"]}
    assert checked == {"AR", "HYBRID"}
    for row in results["summary"]["bytes"]:       # between machines the cost model holds
        assert row["hosts"] == 2
        assert abs(row["wire_ratio"] - 1) <= TOLERANCE, row
    (speedup,) = results["speedups"]
    assert speedup["bytes_ratio"] > 1              # AR moves more than HYBRID (LM: 1.16x)
    assert speedup["speedup_share_of_byte_saving"] == pytest.approx(
        speedup["throughput_ratio"] / speedup["bytes_ratio"])
    assert "| lm | 2x1 | 1gbit |" in markdown


@pytest.mark.timeout(1000)
def test_quick_memory_bound_case_refuses_ar_and_trains_hybrid(quick):
    results, markdown = quick
    memory = results["memory"]
    assert "skipped" not in memory, memory.get("skipped")
    planned = memory["planned_worker_bytes"]
    assert max(planned["HYBRID"], planned["PS"]) < memory["memory_limit"] < planned["AR"]
    outcome = {(r["mode"], r["memory_limit"]): r for r in memory["runs"]}
    refused = outcome[("AR", True)]
    assert refused["status"] == "refused"
    assert "the AR plan does not fit the workers' memory" in refused["error"]
    assert "what would fit: mode='HYBRID'" in refused["error"]
    # (PS, and AR without the limit, are the full run's)
    assert set(outcome) == {("AR", True), ("HYBRID", True)}
    hybrid = outcome[("HYBRID", True)]
    assert hybrid["status"] == "ok", hybrid.get("error")
    # HYBRID's busiest rank really stays under the limit AR's plan is refused by
    assert max(hybrid["rank_steps_peak"].values()) < memory["memory_limit"]
    # HYBRID's separate server holds its share of the tables (and its slots), measured;
    # the server inside the chief rank is the chief's process
    assert list(hybrid["server_life_peak"]) == ["1"]
    assert hybrid["server_life_peak"]["1"] > memory["table_bytes"] / 2
    assert set(hybrid["rank_life_peak"]) == {"0", "1"}
    assert "Memory-bound" in markdown and "refused" in markdown

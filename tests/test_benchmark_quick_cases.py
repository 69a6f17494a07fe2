"""One quick case of each benchmark that has no other test (the paper comparison, the scale
benchmark and the partition search have theirs): the harness runs as its make target runs
it, small, and its arithmetic holds; the mode-choice benchmark's runs are test_mode_search's
auto run, so only its arithmetic is checked here. The figures come from `make bench-*`."""
import json
import subprocess
import sys

import pytest

from test_benchmarks import ROOT

pytestmark = pytest.mark.timeout(400)


def bench(module, *args):
    """Run ``python -m benchmarks.<module> args``; its output, after checking it succeeded."""
    done = subprocess.run([sys.executable, "-m", f"benchmarks.{module}", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=360)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    return done.stdout


def last_json(output):
    return json.loads(output.strip().splitlines()[-1])


def test_soak_loses_a_process_recovers_and_trains_every_step_once():
    result = last_json(bench("soak", "--steps", "30", "--every", "15",
                             "--checkpoint-every", "5", "--vocab", "2000"))
    assert result["status"] == "finished" and result["kills"] == 1
    assert result["restarts"] == result["kills"]
    assert result["every_step_once"] and result["work_dirs_left"] == 0
    assert 0 <= result["steps_lost_mean"] <= 5        # at most the steps since a checkpoint
    assert 0 < result["seconds_per_restart_mean"] <= result["seconds_per_restart_max"]


def test_steady_steps_reports_the_step_time_distribution_and_the_epoch_boundary():
    result = last_json(bench("steady_steps", "--epochs", "2", "--batch-size", "2048",
                             "--vocab", "2000"))
    assert result["steps"] == 2 * result["steps_per_epoch"] > 2
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert len(result["boundary_ms"]) == 1 and result["boundary_ms"][0] <= result["max_ms"]
    assert all(2 <= s <= result["steps"] for s in result["slowest_steps"])


def test_step_path_times_every_configuration_and_its_ratios(tmp_path):
    bench("step_path", "--quick", "--models", "lm", "--out", str(tmp_path))
    results = json.loads((tmp_path / "step_path_quick.json").read_text())
    runs = results["runs"]
    assert {(r["config"], r["ranks"], r["optimizer"], r["pulls"]) for r in runs} == {
        ("plain", 1, "model's", "packed"), ("AR", 1, "model's", "packed"),
        ("HYBRID", 1, "model's", "packed"), ("AR", 2, "model's", "packed"),
        ("HYBRID", 2, "model's", "packed"), ("HYBRID", 2, "model's", "waiting")}
    assert all(r["status"] == "ok" and r["examples_per_sec"] > 0 for r in runs)
    (row,) = results["summary"]
    assert row["HYBRID_1_over_plain"] == pytest.approx(row["HYBRID_1"] / row["plain"])
    assert row["HYBRID_2_over_AR_2"] == pytest.approx(row["HYBRID_2"] / row["AR_2"])
    assert row["HYBRID_2_waiting_over_AR_2"] == pytest.approx(
        row["HYBRID_2_waiting"] / row["AR_2"])
    sdk = [r for r in runs if r["config"] != "plain"]
    assert all(r["phases_ms"] and r["step_ms"] > 0 for r in sdk)
    text = (tmp_path / "step_path_quick.md").read_text()
    assert "| lm |" in text
    # every 2-rank run puts both ranks' step on one clock
    assert all(sorted(r["timeline_ms"]) == ["0", "1"] for r in sdk if r["ranks"] == 2)
    assert "| lm | HYBRID | waiting | 1 |" in text


def test_mode_choice_pools_a_mode_under_the_one_it_ran_as_and_judges_auto_by_medians():
    """The mode-choice benchmark's arithmetic, on runs as `measure` returns them (a run of
    each mode and of auto per round); its runs themselves are what test_mode_search's auto
    run does (every mode timed, the fastest trained), so the suite does not repeat them."""
    from benchmarks.mode_choice import judge, markdown

    def run(asked, mode, rate):
        return {"asked": asked, "mode": mode, "examples_per_sec": rate,
                "choice_seconds": 4.0 if asked == "auto" else 0.0, "candidates": None}

    runs = [run("HYBRID", "AR", 900.0), run("PS", "PS", 500.0), run("AR", "AR", 1100.0),
            run("auto", "PS", 480.0), run("PS", "PS", 700.0), run("AR", "AR", 1000.0),
            run("HYBRID", "AR", 1200.0), run("auto", "AR", 1050.0)]
    row = judge(runs)
    assert row["ran_as"] == {"HYBRID": "AR", "PS": "PS", "AR": "AR"}
    assert row["runs_per_mode"] == {"AR": 4, "PS": 2}             # HYBRID pooled under AR
    assert row["median"] == {"AR": 1050.0, "PS": 600.0}
    assert row["spread"] == {"AR": 0.75, "PS": pytest.approx(5 / 7)}
    assert row["best"] == "AR" and row["auto_chose"] == ["PS", "AR"]
    assert row["chosen_over_best"] == [pytest.approx(600 / 1050), 1.0]
    assert row["worst_chosen_over_best"] == pytest.approx(600 / 1050)
    assert row["auto_examples_per_sec"] == [480.0, 1050.0]
    results = {"machine": {"date": "d", "nproc": 2, "load_average_at_start": [0.5],
                           "load_average_at_end": [1.0]},
               "plan": {"rounds": 2, "warmup": 10, "window_seconds": 0.5}, "minutes": 1.0,
               "rows": [{"workload": "lm", "setting": "1 rank", **row}]}
    text = markdown(results)
    assert "| lm | 1 rank | runs as AR | 600 (0.71, n=2) | 1,050 (0.75, n=4) | AR | PS, AR " \
           "| 0.57, 1.00 | 4 |" in text
    assert "Every auto run within 5% of the best in 0 of 1 settings." in text

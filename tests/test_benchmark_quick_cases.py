"""One quick case of each benchmark that has no other test (the paper comparison, the scale
benchmark and the partition search have theirs): the harness runs as its make target runs
it, small, and its arithmetic holds. The figures themselves come from `make bench-*`."""
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
        ("HYBRID", 2, "model's", "packed"), ("HYBRID", 2, "model's", "unpacked"),
        ("HYBRID", 2, "model's", "waiting"), ("HYBRID", 1, "sgd", "packed")}
    assert all(r["status"] == "ok" and r["examples_per_sec"] > 0 for r in runs)
    (row,) = results["summary"]
    assert row["HYBRID_1_over_plain"] == pytest.approx(row["HYBRID_1"] / row["plain"])
    assert row["HYBRID_2_over_AR_2"] == pytest.approx(row["HYBRID_2"] / row["AR_2"])
    assert row["HYBRID_2_unpacked_over_AR_2"] == pytest.approx(
        row["HYBRID_2_unpacked"] / row["AR_2"])
    assert row["HYBRID_2_waiting_over_AR_2"] == pytest.approx(
        row["HYBRID_2_waiting"] / row["AR_2"])
    sdk = [r for r in runs if r["config"] != "plain"]
    assert all(r["phases_ms"] and r["step_ms"] > 0 for r in sdk)
    assert "| lm |" in (tmp_path / "step_path_quick.md").read_text()


def test_mode_choice_times_every_mode_and_judges_auto_against_the_best(tmp_path):
    bench("mode_choice", "--quick", "--settings", "1x1", "--out", str(tmp_path))
    results = json.loads((tmp_path / "mode_choice_quick_1x1.json").read_text())
    (row,) = results["rows"]
    assert row["setting"] == "1 rank" and set(row["median"]) <= {"HYBRID", "PS", "AR"}
    assert row["best"] == max(row["median"], key=row["median"].get)
    (chose,) = row["auto_chose"]
    assert row["chosen_over_best"] == [pytest.approx(row["median"][chose] /
                                                     row["median"][row["best"]])]
    assert row["worst_chosen_over_best"] == min(row["chosen_over_best"])
    assert "| lm | 1 rank |" in (tmp_path / "mode_choice_quick_1x1.md").read_text()

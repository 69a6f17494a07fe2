"""mode="auto": the choice from predicted bytes, memory and measured trials."""
import re

import pytest

import parallax_nb as px
from parallax_nb.plan import Planning, SearchCancelled
from parallax_nb.tuning import TrialFailed, choose_mode

MODES = ("HYBRID", "AR", "PS")


def measuring(seconds):
    asked = []

    def measure(mode):
        asked.append(mode)
        if seconds[mode] is None:
            raise TrialFailed("out of memory")
        return seconds[mode]
    return measure, asked


def test_a_mode_moving_far_fewer_bytes_is_chosen_without_a_trial():
    measure, asked = measuring({"HYBRID": 1.0, "AR": 0.1, "PS": 0.1})
    choice = choose_mode({"HYBRID": 100.0, "AR": 700.0, "PS": 450.0},
                         dict.fromkeys(MODES, True), measure)
    assert choice.mode == "HYBRID" and asked == []
    assert choice.reason == "it moves 4.5x fewer bytes per step than any other mode that fits"


def test_on_one_machine_every_mode_is_timed_and_the_fastest_wins():
    measure, asked = measuring({"HYBRID": 0.012, "AR": 0.009, "PS": 0.020})
    planning = Planning()
    seen = []
    planning.on_trial(seen.append)
    choice = choose_mode(dict.fromkeys(MODES, 0.0), dict.fromkeys(MODES, True),
                         planning.measured("mode", 6, measure, str))
    assert choice.mode == "AR" and asked == list(MODES)
    assert [(t.number, t.setting, t.running, t.seconds_per_step) for t in seen] == [
        (1, "HYBRID", True, None), (1, "HYBRID", False, 0.012), (2, "AR", True, None),
        (2, "AR", False, 0.009), (3, "PS", True, None), (3, "PS", False, 0.020)]
    assert planning.records == [t for t in seen if not t.running]
    planning.cancel()
    with pytest.raises(SearchCancelled, match="stopped during its searches"):
        choose_mode(dict.fromkeys(MODES, 0.0), dict.fromkeys(MODES, True),
                    planning.measured("mode", 6, measure, str))
    assert asked == list(MODES)                     # no trial after the cancel
    assert list(choice.to_frame()["seconds_per_step"]) == [0.012, 0.009, 0.020]
    assert "the fastest of 3 measured trials" in choice.summary()


def test_trials_within_the_noise_of_the_fastest_are_timed_again_and_averaged():
    rounds = {"HYBRID": [0.0100, 0.0090], "AR": [0.0098, 0.0110], "PS": [0.0200]}
    asked = []

    def measure(mode):
        asked.append(mode)
        return rounds[mode].pop(0)
    choice = choose_mode(dict.fromkeys(MODES, 0.0), dict.fromkeys(MODES, True), measure)
    assert asked == ["HYBRID", "AR", "PS", "AR", "HYBRID"]
    assert choice.mode == "HYBRID"          # 9.5 ms mean against AR's 10.4 ms
    assert choice.to_frame().set_index("mode")["seconds_per_step"]["AR"] == \
        pytest.approx(0.0104)


def test_a_mode_that_does_not_fit_is_never_tried_and_a_failed_trial_is_skipped():
    measure, asked = measuring({"HYBRID": None, "AR": 0.001, "PS": 0.030})
    choice = choose_mode(dict.fromkeys(MODES, 0.0), {"HYBRID": True, "AR": False, "PS": True},
                         measure)
    assert choice.mode == "PS" and asked == ["HYBRID", "PS"]
    notes = choice.to_frame().set_index("mode")["note"]
    assert notes["AR"] == "does not fit in memory"
    assert notes["HYBRID"] == "trial failed: out of memory"
    with pytest.raises(px.ConfigError, match="no mode fits the workers' memory"):
        choose_mode(dict.fromkeys(MODES, 0.0), dict.fromkeys(MODES, False), measure)


def test_auto_is_a_mode_the_config_accepts_and_the_analysis_plans_with_its_recommendation():
    assert px.Config(mode="auto").mode == "AUTO"
    with pytest.raises(px.ConfigError, match=r"mode='fast' is not one of HYBRID, PS, AR or "
                                             r"'auto'"):
        px.Config(mode="fast")


@pytest.mark.timeout(600)
def test_auto_on_one_machine_times_every_mode_and_trains_in_the_fastest(capfd, cluster):
    import programs
    from cluster_tools import cluster_children, wait_until_gone

    run = px.train(programs.keras_embedding_program(), cluster=cluster, select=2,
                   config=px.Config(mode="auto", steps=4, batch_size=4,
                                    search_warmup_steps=2, search_window_steps=4))
    run.wait(timeout=300)
    children = [p.pid for p in cluster_children(cluster)]
    choice = run.mode_choice.to_frame().set_index("mode")
    assert sorted(choice.index) == ["AR", "HYBRID", "PS"]
    # each trial reported as it ended: in run.planning, and on the terminal (stderr)
    trials = run.planning.records
    assert [t.search for t in trials] == ["mode"] * len(trials) and 3 <= len(trials) <= 6
    assert [t.number for t in trials] == list(range(1, len(trials) + 1))
    assert sorted({t.setting for t in trials}) == ["AR", "HYBRID", "PS"]
    printed = capfd.readouterr().err
    for trial in trials:
        assert f"run {run.run_id}: {trial.text()}" in printed
        assert re.fullmatch(r"mode search: trial \d of at most 6, (AR|PS|HYBRID): "
                            r"\d+\.\d\d ms/step", trial.text())
    assert choice["seconds_per_step"].notna().all()            # one machine: all timed
    assert run.mode == choice["seconds_per_step"].idxmin() == run.mode_choice.mode
    assert run.mode_choice.summary() in run.notes
    assert wait_until_gone(children) == []

"""Where the time goes, live (#26 item 3): the view models of the run panel's start-up line
and phase bars, fed with records as the ranks send them (pure logic, no processes)."""
import math

import numpy as np

from parallax_nb.notebook.views.phases_view import PhaseBars, StartupView
from parallax_nb.runtime.profile import PHASES, phase_times


def sampled(rank, step, step_time, stamps, input_seconds=0.001):
    return {"rank": rank, "step": step, "step_time": step_time,
            **phase_times(stamps, step_time, input_seconds)}


def test_the_bars_tile_each_ranks_step_and_flag_the_slowest():
    bars = PhaseBars([0, 1])
    plain = {"rank": 0, "step": 3, "step_time": 0.02, **{f"t_{p}": math.nan for p in PHASES}}
    bars.add([sampled(0, 2, 0.010, [0, .001, .004, .004, .006, .008, .009]),
              sampled(1, 2, 0.015, [0, .002, .007, .008, .011, .013, .014]), plain])
    columns = bars.bars()
    assert columns["rank"] == ["rank 0", "rank 1"] and columns["step"] == [2, 2]
    totals = np.sum([columns[p] for p in PHASES], axis=0)
    np.testing.assert_allclose(totals, columns["step_ms"], rtol=1e-9)   # they tile the step
    assert columns["slowest"] == [False, True]
    assert columns["label"] == ["rank 0", "rank 1 (slowest)"]
    assert bars.text()[1].startswith("rank 1 (slowest) (step 2): input 1.00 | pull 2.00")
    assert bars.text()[1].endswith("= 15.00 ms")
    # a newer sample replaces a rank's bar; an unsampled step changes nothing
    bars.add([sampled(0, 52, 0.030, [0, .001, .02, .02, .025, .026, .028])])
    columns = bars.bars()
    assert columns["step"] == [52, 2] and columns["slowest"] == [True, False]


def test_start_up_says_which_phase_each_rank_is_in_and_for_how_long():
    view = StartupView(called_at=100.0, has_servers=False)
    assert view.lines("planning", None, {}, [0, 1], 103.0) == [
        "start-up 3.0 s: planning (analysis, searches)"]
    startup = {0: {"started": 105.0, "phases": {"horovod": 2.0, "model": 1.0}, "done": False}}
    lines = view.lines("starting", 104.0, startup, [0, 1], 110.0)
    assert lines[0] == "start-up 10.0 s: plan 4.0 s"
    # no servers: after model comes the optimizer, not connect
    assert lines[1] == "  rank 0: optimizer (2.0 s so far; process 1.00, horovod 2.00, model 1.00)"
    assert lines[2] == "  rank 1: process starting (6.0 s so far)"
    assert StartupView(100.0, has_servers=True).next_phase({"horovod": 1.0}) == "connect"
    done = {r: {"started": 105.0, "phases": {"first_step": 0.1}, "done": True} for r in (0, 1)}
    assert view.lines("running", 104.0, done, [0, 1], 120.0) == []


def test_the_timeline_puts_every_ranks_phases_on_the_first_ranks_clock():
    """launch.timeline: each phase's end after the step's earliest start, per rank (median
    over the steps every rank sampled), and when the rank's next step began."""
    import pandas as pd

    from parallax_nb.launch.timeline import COLUMNS, step_timeline

    def row(rank, step, started, stamps):
        record = sampled(rank, step, 0.012, stamps)
        return dict(record, step_started_at=started + stamps[0])

    ms = 1e-3
    graph = [0, 1 * ms, 3 * ms, 3 * ms, 4 * ms, 6 * ms, 7 * ms]   # pull 1, compute 2, ...
    late = [0, 4 * ms, 5 * ms, 5 * ms, 6 * ms, 7 * ms, 7 * ms]    # a pull of 4 ms
    frame = pd.DataFrame(
        [row(0, 2, 100.000, graph), row(1, 2, 100.002, late),
         row(0, 3, 100.010, graph), row(1, 3, 100.013, late),
         row(0, 4, 100.020, graph),                         # rank 1 did not sample step 4
         {"rank": 1, "step": 5, "step_time": 0.01}])         # an unsampled step
    timeline = step_timeline(frame, first=1)
    assert list(timeline.columns) == COLUMNS and list(timeline.index) == [0, 1]
    np.testing.assert_allclose(timeline.loc[0].to_numpy(),
                               [0, 1, 3, 3, 4, 6, 7, 10], atol=1e-6)
    # rank 1: started 2 and 3 ms after rank 0 (median 2.5), its pull ended 4 ms later;
    # its step 3 began 13 ms after step 2's origin (its step 4 was not sampled)
    np.testing.assert_allclose(timeline.loc[1].to_numpy(),
                               [2.5, 6.5, 7.5, 7.5, 8.5, 9.5, 9.5, 13], atol=1e-6)
    assert step_timeline(frame, first=3).empty   # no step after 3 that both ranks sampled
    assert step_timeline(frame.drop(columns="step_started_at")).empty


def test_the_timeline_takes_the_last_attempt_and_shows_no_column_no_step_filled():
    """After a restart only the last attempt's steps count (it may have fewer ranks, and it
    redid some steps); the report leaves out next_start where no next step was sampled
    (profile_every)."""
    import pandas as pd

    from parallax_nb.launch.report import RunReport
    from parallax_nb.launch.timeline import step_timeline

    ms = 1e-3
    graph = [0, 1 * ms, 3 * ms, 3 * ms, 4 * ms, 6 * ms, 7 * ms]

    def row(rank, step, started, attempt):
        return dict(sampled(rank, step, 0.012, graph), step_started_at=started,
                    attempt=attempt)

    lost = [row(0, 2, 100.0, 0), row(1, 2, 100.0, 0), row(2, 2, 100.0, 0),
            row(0, 52, 101.0, 0), row(1, 52, 101.0, 0), row(2, 52, 101.0, 0)]
    resumed = [row(0, 52, 200.000, 1), row(1, 52, 200.001, 1),     # redone, 2 ranks now
               row(0, 102, 201.000, 1), row(1, 102, 201.003, 1)]
    frame = pd.DataFrame(lost + resumed)
    timeline = step_timeline(frame)
    assert list(timeline.index) == [0, 1]
    np.testing.assert_allclose(timeline["start"], [0, 2], atol=1e-6)   # medians of 0,0; 1,3
    assert timeline["next_start"].isna().all()
    report = RunReport("r", "finished", "HYBRID", (), {"h": 2}, 102, 1.0, 1.0,
                       pd.DataFrame(), 1.0, pd.DataFrame(), pd.DataFrame(), metrics=frame)
    assert "next_start" not in report.shown_timeline().columns
    assert "one step across the ranks" in str(report)
    single = RunReport("r", "finished", "HYBRID", (), {"h": 1}, 102, 1.0, 1.0, pd.DataFrame(),
                       1.0, pd.DataFrame(), pd.DataFrame(), metrics=frame[frame["rank"] == 0])
    assert single.shown_timeline().empty and "one step across" not in str(single)

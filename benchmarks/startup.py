"""Start-up: how long a notebook user waits for the first step, and where it goes (#26).

    python -m benchmarks.startup [--quick]      (make bench-startup)

``make run``'s job (the bundled language model, HYBRID, 2 ranks, batch 32, 60 steps) on a
new embedded cluster of 2 workers, as a user meets it:

* cold: the first run after ``px.connect`` in a new Python process (a new kernel, ``make run``);
* warm: the same program again at once;
* warm after a pause: the same program again 5 s after the last run ended (a user reading
  its output before running the cell again);
* changed: a new ``model_fn`` (another embedding width, as a re-run cell makes), 5 s after;
* restart: a run with checkpoints loses rank 1 (SIGKILL) after 20 steps: from the loss
  being noticed to the first step after it.

Three configurations, each in a new Python process (so that every cold start pays the
client's own first imports), in turns within one invocation (this machine is shared and
noisy):

* ``spares at connect`` (the default): ``px.connect`` has each worker start its spare
  processes (TensorFlow and Horovod imported) at once, and keep two;
* ``spares after a run`` (as before #26's cold-start work): ``px.connect(spares=False)``,
  so a worker starts its spares only once a run's process there has started up;
* ``no spares``: ``Config(warm_start=False)``: every process starts cold.

Per run: seconds from ``px.train`` to the first metrics row as the client sees it, and the
phases of ``run.startup_seconds()`` (plan, process, horovod, connect, model, optimizer,
trace, first_step). Also the cost of the always-on step sample (``profile_every``): HYBRID
steps per second with it (50) and without (0), in turns on one warm cluster.
Results: ``benchmarks/results/startup.md`` and ``.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
STEPS, BATCH = 60, 32
PAUSE = 5.0         # seconds a user takes before running a cell again
PLANS = {"full": dict(rounds=2, sample_rounds=3, sample_steps=400),
         "quick": dict(rounds=1, sample_rounds=1, sample_steps=60)}
CONFIGURATIONS = {"spares at connect": dict(spares=True, warm=True),
                  "spares after a run": dict(spares=False, warm=True),
                  "no spares": dict(spares=False, warm=False)}
STARTS = ("cold", "warm", "warm after a pause", "changed")


def first_step_seconds(run, called: float, timeout: float = 300) -> float:
    """Seconds from ``px.train`` to the first metrics row, as the client sees it."""
    deadline = time.time() + timeout
    while not len(run.metrics) and not run.done and time.time() < deadline:
        time.sleep(0.02)
    if not len(run.metrics):
        run.wait(1)   # raises the run's error
        raise TimeoutError("no step within the timeout")
    return time.time() - called


def one_run(px, cluster, program, warm: bool, **options) -> dict:
    config = px.Config(mode="HYBRID", steps=STEPS, batch_size=BATCH, partitions=1,
                       warm_start=warm, **options)
    called = time.time()
    run = px.train(program, cluster=cluster, select=2, progress=False, config=config)
    seconds = first_step_seconds(run, called)
    run.wait(300)
    return {"seconds": round(seconds, 2),
            **{k: round(v, 2) for k, v in run.startup_seconds().items()}}


def restart_run(px, cluster, program, warm: bool) -> dict:
    directory = tempfile.mkdtemp(prefix="startup-ckpt-")
    try:
        config = px.Config(mode="HYBRID", steps=STEPS, batch_size=BATCH, partitions=1,
                           warm_start=warm, checkpoint_dir=directory,
                           checkpoint_every_steps=10, max_restarts=1)
        run = px.train(program, cluster=cluster, select=2, progress=False, config=config)
        while not run.done and (run.metrics["step"].max() if len(run.metrics) else 0) < 20:
            time.sleep(0.02)
        os.kill(run.pids[1], signal.SIGKILL)
        run.wait(300)
        record = run.restarts[0]
        return {"seconds": round(record["seconds"], 2), "resumed_from": record["resumed_from"]}
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def measure_starts(configuration: str) -> dict:
    """cold, warm, warm after a pause, changed and restart on a new cluster."""
    import parallax_nb as px
    from parallax_nb.examples import language_model

    options = CONFIGURATIONS[configuration]
    warm = options["warm"]
    program = language_model.make_program()
    with px.connect(local=2, spares=options["spares"]) as cluster:
        cold = one_run(px, cluster, program, warm)
        again = one_run(px, cluster, program, warm)
        time.sleep(PAUSE)
        paused = one_run(px, cluster, program, warm)
        time.sleep(PAUSE)
        changed = one_run(px, cluster, language_model.make_program(dim=48), warm)
        restart = restart_run(px, cluster, program, warm)
    return {"cold": cold, "warm": again, "warm after a pause": paused, "changed": changed,
            "restart": restart}


def measure_in_new_process(configuration: str) -> dict:
    """`measure_starts` in a new Python process: its cold start is a user's."""
    with tempfile.TemporaryDirectory(prefix="startup-") as directory:
        out = os.path.join(directory, "starts.json")
        subprocess.run([sys.executable, "-m", "benchmarks.startup", "--configuration",
                        configuration, "--out", out], check=True,
                       cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        with open(out) as f:
            return json.load(f)


def steps_per_second(px, cluster, program, every: int, steps: int) -> float:
    run = px.train(program, cluster=cluster, select=2, progress=False,
                   config=px.Config(mode="HYBRID", steps=steps, batch_size=BATCH,
                                    partitions=1, profile_every=every))
    run.wait(300)
    rows = run.metrics[(run.metrics["rank"] == 0) & (run.metrics["step"] > 10)]
    return float(len(rows) / rows["step_time"].sum())


def measure_sample_cost(px, language_model, rounds: int, steps: int) -> dict:
    program = language_model.make_program()
    speeds = {50: [], 0: []}
    with px.connect(local=2) as cluster:
        for round_ in range(rounds):
            for every in ((50, 0) if round_ % 2 == 0 else (0, 50)):
                speeds[every].append(steps_per_second(px, cluster, program, every, steps))
    with_sample, without = statistics.median(speeds[50]), statistics.median(speeds[0])
    return {"steps_per_sec_sampled": round(with_sample, 1),
            "steps_per_sec_no_stamps": round(without, 1),
            "ratio": round(with_sample / without, 3)}


def markdown(results: dict) -> list:
    phases = ["plan", "process", "horovod", "connect", "model", "optimizer", "trace",
              "first_step"]
    lines = ["# Start-up to the first step (benchmarks/startup.py)", "",
             f"`make run`'s job (language model, HYBRID, 2 ranks, batch {BATCH}), seconds from "
             f"`px.train` to the first metrics row, and the slowest rank's phases; each "
             f"configuration in a new Python process, {results['rounds']} round(s), the median "
             f"shown; load average {results['load']}. \"warm after a pause\" and \"changed\" "
             f"come {PAUSE:g} s after the run before them.", "",
             "| start | configuration | to first step | " + " | ".join(phases) + " |",
             "|---|---|---:|" + "---:|" * len(phases)]
    for start in STARTS:
        for label, row in ((label, starts[start])
                           for label, starts in results["starts"].items()):
            lines.append(f"| {start} | {label} | {row['seconds']:.1f} | " +
                         " | ".join(f"{row.get(p, 0):.2f}" for p in phases) + " |")
    lines += ["", "| restart (loss noticed -> first step after it) | seconds |", "|---|---:|"]
    for label, starts in results["starts"].items():
        lines.append(f"| {label} | {starts['restart']['seconds']:.1f} |")
    cost = results["sample_cost"]
    lines += ["", f"Always-on step sample (`profile_every=50`, timestamps in every step): "
              f"{cost['steps_per_sec_sampled']} steps/s against "
              f"{cost['steps_per_sec_no_stamps']} without (`profile_every=0`): "
              f"ratio {cost['ratio']}."]
    return lines


def median_rows(rounds: list) -> dict:
    """Per start kind, the run with the median time to the first step."""
    merged = {}
    for kind in rounds[0]:
        rows = sorted((r[kind] for r in rounds), key=lambda r: r["seconds"])
        merged[kind] = rows[len(rows) // 2]
    return merged


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--configuration", choices=sorted(CONFIGURATIONS),
                        help=argparse.SUPPRESS)   # one configuration's starts, in this process
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.configuration:
        with open(args.out, "w") as f:
            json.dump(measure_starts(args.configuration), f)
        return {}
    plan = PLANS["quick" if args.quick else "full"]

    import parallax_nb as px
    from parallax_nb.examples import language_model

    rounds = {label: [] for label in CONFIGURATIONS}
    for round_ in range(plan["rounds"]):
        order = list(CONFIGURATIONS) if round_ % 2 == 0 else list(CONFIGURATIONS)[::-1]
        for label in order:
            rounds[label].append(measure_in_new_process(label))
    results = {"rounds": plan["rounds"], "load": round(os.getloadavg()[0], 1),
               "starts": {label: median_rows(runs) for label, runs in rounds.items()},
               "sample_cost": measure_sample_cost(px, language_model, plan["sample_rounds"],
                                                  plan["sample_steps"])}
    name = "startup_quick" if args.quick else "startup"
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"{name}.json"), "w") as f:
        json.dump(results, f, indent=1)
    from .summary import write_lines

    print(write_lines(markdown(results), os.path.join(RESULTS, f"{name}.md")))
    return results


if __name__ == "__main__":
    main()

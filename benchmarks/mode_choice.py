"""``mode="auto"`` against every mode, measured with repeats: ``python -m benchmarks.mode_choice``.

For the bundled language model and the dense CNN (`workloads.py`), at 1 rank, 2 ranks on one
host and 2 simulated hosts (workers labelled as two machines, loopback between them), each
round trains every mode and then ``mode="auto"`` once, the order turning by one each round
(so a trend in the machine's load does not always fall on the same mode). Every run is
measured the same way: its steps after a warm-up, for at least ``window_seconds`` of rank 0's
step time, then the run is stopped; its figure is the median examples/s of each rank in that
window, summed over ranks.

A mode that runs as another (the CNN has no sparse variable, so its HYBRID runs as AR:
``run.mode``) is the same configuration: its runs are pooled under the mode that ran. A mode's figure is the median over its runs; the spread (slowest over fastest run of
one mode) is the machine's noise, printed beside it, since a choice can only be judged to
within it. The goal: each auto run's chosen mode within 5% of the best mode's median.

Results: ``benchmarks/results/mode_choice[_quick].json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

from .machine import machine_facts
from .throughput import run_throughput
from .workloads import FULL, QUICK

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
SETTINGS = (("1 rank", 1, 1), ("2 ranks, 1 host", 2, 1), ("2 hosts", 2, 2))
MODES = ("HYBRID", "PS", "AR")
GOAL = 0.95
# trial_window_seconds: Config.search_window_seconds of auto's trials (2 s: the SDK's
# default). The quick variant checks the harness, not the choice: its 4 runs and up to 6
# trials time 0.5 s windows each (the suite tests judge() and markdown() on their own;
# tests/test_mode_search.py runs what measure() runs: auto timing every mode).
PLANS = {"full": dict(rounds=3, warmup=20, window_seconds=6.0, trial_window_seconds=2.0,
                      workloads=FULL),
         "quick": dict(rounds=1, warmup=10, window_seconds=0.5, trial_window_seconds=0.5,
                       workloads=QUICK)}
MAX_STEPS = 1_000_000   # a run is stopped once its window is measured, long before this


def measure(cluster, program, workload, mode, ranks, warmup, window_seconds,
            trial_window_seconds=2.0) -> dict:
    """One run of ``mode`` (or "auto": its trials first), stopped once rank 0 has stepped
    ``warmup`` steps and then ``window_seconds`` of steps."""
    import parallax_nb as px
    from parallax_nb.plan.trials import STOP_SECONDS, stop_within, window_is_long_enough

    config = px.Config(mode=mode, steps=MAX_STEPS, batch_size=workload.batch_size,
                       search_warmup_steps=3, search_window_steps=8,
                       search_window_seconds=trial_window_seconds)
    # auto's trials keep their own short windows; the measured run's window is this one
    window = config.replace(search_warmup_steps=warmup, search_window_seconds=window_seconds)
    run = px.train(program, cluster=cluster, select=ranks, config=config, progress=False)
    try:
        while not run.done and not window_is_long_enough(run.metrics, window):
            time.sleep(0.2)
        if run.done:    # it ended by itself: an error (raised here) or too few steps
            run.wait()
            raise RuntimeError(f"{mode} ended before its window was measured")
    finally:
        if not run.done:
            stop_within(run, STOP_SECONDS)
    # the steps after the warm-up that every rank finished (the stop cuts the last ones short)
    last = int(run.metrics.groupby("rank")["step"].max().min()) - 1
    return {"asked": mode, "mode": run.mode,
            "examples_per_sec": run_throughput(run.metrics, warmup, last),
            "choice_seconds": run.started_at - run.train_called_at if mode == "auto" else 0.0,
            "candidates": run.mode_choice.to_frame().to_dict("records")
            if run.mode_choice is not None else None}


def judge(runs) -> dict:
    """From every run of one workload and setting: each configuration's median and spread,
    the best, and per auto run its chosen configuration's median over the best."""
    pooled = {}
    for r in runs:
        if r["asked"] != "auto":
            pooled.setdefault(r["mode"], []).append(r["examples_per_sec"])
    medians = {m: statistics.median(v) for m, v in pooled.items()}
    spread = {m: min(v) / max(v) for m, v in pooled.items()}
    best = max(medians, key=medians.get)
    autos = [r for r in runs if r["asked"] == "auto"]
    ratios = [medians[a["mode"]] / medians[best] for a in autos]
    return {"ran_as": {r["asked"]: r["mode"] for r in runs if r["asked"] != "auto"},
            "runs_per_mode": {m: len(v) for m, v in pooled.items()},
            "examples_per_sec": pooled, "median": medians, "spread": spread, "best": best,
            "auto_chose": [a["mode"] for a in autos], "chosen_over_best": ratios,
            "worst_chosen_over_best": min(ratios),
            "choice_seconds": [a["choice_seconds"] for a in autos],
            "candidates": [a["candidates"] for a in autos],
            "auto_examples_per_sec": [a["examples_per_sec"] for a in autos]}


def main(argv=None) -> int:
    import parallax_nb as px

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small CI variant")
    parser.add_argument("--settings", default=None,
                        help="a subset of the settings, by rank count and host count, e.g. "
                             "'1x1' (1 rank) or '1x1,2x2'; results then go to "
                             "mode_choice[_quick]_<subset>.*")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)
    settings = SETTINGS
    if args.settings:
        wanted = set(args.settings.split(","))
        settings = [s for s in SETTINGS if f"{s[1]}x{s[2]}" in wanted]
        if len(settings) != len(wanted):
            parser.error(f"unknown setting(s) in {args.settings!r}; choose from "
                         f"{', '.join(f'{r}x{h}' for _, r, h in SETTINGS)}")
    plan = PLANS["quick" if args.quick else "full"]
    facts = machine_facts()
    began = time.time()
    rows = []
    for name, workload in plan["workloads"].items():
        program = workload.program()
        for label, ranks, hosts in settings:
            runs = []
            with px.connect(local=2, simulate_hosts=hosts if hosts > 1 else None) as cluster:
                for round_ in range(plan["rounds"]):
                    order = list(MODES) + ["auto"]
                    order = order[round_ % len(order):] + order[:round_ % len(order)]
                    for mode in order:
                        runs.append(measure(cluster, program, workload, mode, ranks,
                                            plan["warmup"], plan["window_seconds"],
                                            plan["trial_window_seconds"]))
            row = {"workload": name, "setting": label, "ranks": ranks, "hosts": hosts,
                   **judge(runs)}
            rows.append(row)
            print(f"{name:<4} {label:<16} best {row['best']:<6} auto "
                  f"{','.join(row['auto_chose']):<20} chosen/best "
                  f"{', '.join(f'{x:.2f}' for x in row['chosen_over_best'])}", flush=True)
    facts["load_average_at_end"] = list(os.getloadavg())
    suffix = ("_quick" if args.quick else "") + \
        (f"_{args.settings.replace(',', '_')}" if args.settings else "")
    results = {"machine": facts, "plan": {k: v for k, v in plan.items() if k != "workloads"},
               "minutes": (time.time() - began) / 60, "rows": rows}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, f"mode_choice{suffix}.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)
    with open(os.path.join(args.out, f"mode_choice{suffix}.md"), "w") as f:
        f.write(markdown(results))
    return 0


def markdown(results) -> str:
    facts, plan, rows = results["machine"], results["plan"], results["rows"]
    start, end = facts.get("load_average_at_start") or ["?"], facts["load_average_at_end"]
    lines = [f"# mode=\"auto\" against every mode ({facts.get('date', '')}, "
             f"{facts.get('nproc', '?')} cores, load average {start[0]:.1f} at start, "
             f"{end[0]:.1f} at end, {results['minutes']:.0f} min)", "",
             f"{plan['rounds']} round(s); every run measured over {plan['window_seconds']:g} s "
             f"of steps after {plan['warmup']} warm-up steps. Per mode: median examples/s "
             f"over its runs, and in brackets its spread (slowest run over fastest; a mode "
             f"that runs as another is pooled under it). Goal: every auto run's choice "
             f"within {1 - GOAL:.0%} of the best.", "",
             "| workload | setting | " + " | ".join(f"{m} ex/s" for m in MODES) +
             " | best | auto chose | chosen / best | choice cost (s) |",
             "|---|---|" + "---:|" * len(MODES) + "---|---|---|---:|"]
    for r in rows:
        cells = [f"{r['median'][m]:,.0f} ({r['spread'][m]:.2f}, n={r['runs_per_mode'][m]})"
                 if r["ran_as"][m] == m else f"runs as {r['ran_as'][m]}" for m in MODES]
        lines.append(f"| {r['workload']} | {r['setting']} | " + " | ".join(cells) +
                     f" | {r['best']} | {', '.join(r['auto_chose'])} | "
                     f"{', '.join(f'{x:.2f}' for x in r['chosen_over_best'])} | "
                     f"{statistics.mean(r['choice_seconds']):.0f} |")
    met = sum(r["worst_chosen_over_best"] >= GOAL for r in rows)
    lines += ["", f"Every auto run within {1 - GOAL:.0%} of the best in {met} of {len(rows)} "
                  f"settings."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

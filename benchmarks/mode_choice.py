"""``mode="auto"`` against every mode run in full: ``python -m benchmarks.mode_choice``.

For the bundled language model and the dense CNN (`workloads.py`), at 1 rank, 2 ranks on one
host and 2 simulated hosts (workers labelled as two machines, loopback between them): every
mode trained for the same steps, its throughput measured after a warm-up, then a run with
``mode="auto"``: which mode it chose, what its trials cost (seconds before its real run
starts), and the chosen mode's throughput over the best mode's (from the exhaustive runs of
the same invocation: the machine's noise hits all alike). The goal: within 5% of the best.

Results: ``benchmarks/results/mode_choice[_quick].json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from .machine import machine_facts
from .throughput import run_throughput, window
from .workloads import FULL, QUICK

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
SETTINGS = (("1 rank", 1, 1), ("2 ranks, 1 host", 2, 1), ("2 hosts", 2, 2))
PLANS = {"full": dict(steps=120, warmup=20, workloads=FULL),
         "quick": dict(steps=40, warmup=10, workloads=QUICK)}


def measure(cluster, program, workload, mode, ranks, steps, warmup) -> dict:
    import parallax_nb as px

    config = px.Config(mode=mode, steps=steps, batch_size=workload.batch_size,
                       search_warmup_steps=3, search_window_steps=8)
    run = px.train(program, cluster=cluster, select=ranks, config=config, progress=False)
    run.wait()   # under "auto" the run plans (its trials) first, then launches
    first, last = window(steps, warmup, run.metrics)
    return {"mode": run.mode, "examples_per_sec": run_throughput(run.metrics, first, last),
            "choice_seconds": run.started_at - run.train_called_at if mode == "auto" else 0.0,
            "candidates": run.mode_choice.to_frame().to_dict("records")
            if run.mode_choice is not None else None}


def main(argv=None) -> int:
    import parallax_nb as px

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the small CI variant")
    args = parser.parse_args(argv)
    plan = PLANS["quick" if args.quick else "full"]
    facts = machine_facts()
    rows = []
    for name, workload in plan["workloads"].items():
        program = workload.program()
        for label, ranks, hosts in SETTINGS:
            with px.connect(local=2, simulate_hosts=hosts if hosts > 1 else None) as cluster:
                exhaustive = {mode: measure(cluster, program, workload, mode, ranks,
                                            plan["steps"], plan["warmup"])
                              for mode in ("HYBRID", "PS", "AR")}
                auto = measure(cluster, program, workload, "auto", ranks, plan["steps"],
                               plan["warmup"])
            best = max(exhaustive, key=lambda m: exhaustive[m]["examples_per_sec"])
            chosen = exhaustive.get(auto["mode"], exhaustive[best])
            row = {"workload": name, "setting": label, "ranks": ranks, "hosts": hosts,
                   **{f"{m}_examples_per_sec": r["examples_per_sec"]
                      for m, r in exhaustive.items()},
                   "best": best, "auto_chose": auto["mode"],
                   "chosen_over_best": chosen["examples_per_sec"] /
                   exhaustive[best]["examples_per_sec"],
                   "auto_examples_per_sec": auto["examples_per_sec"],
                   "choice_seconds": auto["choice_seconds"], "candidates": auto["candidates"]}
            rows.append(row)
            print(f"{name:<4} {label:<16} best {best:<6} auto {auto['mode']:<6} "
                  f"chosen/best {row['chosen_over_best']:.2f}  choice {row['choice_seconds']:.0f} s",
                  flush=True)
    suffix = "_quick" if args.quick else ""
    os.makedirs(RESULTS, exist_ok=True)
    with open(os.path.join(RESULTS, f"mode_choice{suffix}.json"), "w") as f:
        json.dump({"machine": facts, "rows": rows}, f, indent=1, default=str)
    with open(os.path.join(RESULTS, f"mode_choice{suffix}.md"), "w") as f:
        f.write(markdown(rows, facts))
    return 0


def markdown(rows, facts) -> str:
    load = facts.get("load_average_at_start") or ("?",)
    lines = [f"# mode=\"auto\" against every mode ({facts.get('date', '')}, "
             f"{facts.get('nproc', '?')} cores, load average {load[0]} at start)", "",
             "| workload | setting | HYBRID ex/s | PS ex/s | AR ex/s | best | auto chose | "
             "chosen / best | choice cost (s) |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['workload']} | {r['setting']} | {r['HYBRID_examples_per_sec']:,.0f} "
                     f"| {r['PS_examples_per_sec']:,.0f} | {r['AR_examples_per_sec']:,.0f} | "
                     f"{r['best']} | {r['auto_chose']} | {r['chosen_over_best']:.2f} | "
                     f"{r['choice_seconds']:.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

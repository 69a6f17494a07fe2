"""The paper's comparison, measured side by side: ``python -m benchmarks.paper_comparison``.

Two parts, each interleaved: every repeat runs every configuration once, in the same order,
so the noise of a shared machine hits all of them alike.

1. **One machine** (a LocalCluster on loopback): per model, plain TensorFlow (no SDK) and the
   SDK in HYBRID, PS and AR at 1, 2 and 4 ranks: examples per second.
2. **Simulated machines** (benchmarks/netns.py), the language model: 2 network namespaces x
   1 or 2 ranks, links shaped to 10 Gbit/s, 1 Gbit/s and 100 Mbit/s: examples per second,
   and the bytes each host sends and receives per step, predicted by the cost model,
   accounted by the SDK and counted on the links (benchmarks/traffic.py).

``--quick`` is the seconds-long variant CI runs (a small language model, 2 ranks, one link
speed).
Results: ``<out>/paper_comparison[_quick].json``, a markdown summary (``.md``) and two PNG
plots; benchmarks/README.md explains them.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
from typing import Dict, List, Optional, Tuple

from parallax_nb.config import MODES  # HYBRID, PS, AR

from . import netns, traffic
from .machine import machine_facts
from .summary import summarise, write_markdown
from .throughput import COOLDOWN, plain_throughput, run_throughput, window
from .workloads import FULL, QUICK, Workload

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


@dataclasses.dataclass(frozen=True)
class Plan:
    workloads: Dict[str, Workload]
    ranks: Tuple[int, ...]                   # one-machine rank counts
    steps: int                               # per run; the first `warmup` are not measured
    warmup: int
    repeats: int                             # of the one-machine part
    multihost_models: Tuple[str, ...]
    multihost_repeats: int
    shapes: Tuple[Tuple[int, int], ...]      # (hosts, ranks per host)
    bandwidths: Tuple[str, ...]              # tc rates of every host's link
    run_timeout: float                       # seconds one run may take, start-up included
    # Config.warm_start of every SDK run: True (the SDK's default) keeps a spare process per
    # worker for the next run. The CI variants turn it off: their few runs per cluster would
    # pay for spares (a TensorFlow import each, on the same 2 cores as the measured steps)
    # that mostly go unused when the cluster closes.
    warm_start: bool = True
    # Place by time on each run's shaped link (its rate, the default exchange and collective
    # costs; Config.link). Off here: this benchmark compares the paper's own rule, by bytes.
    priced_on_link: bool = False
    local_modes: Tuple[str, ...] = tuple(MODES)   # the one-machine part's modes


PLANS = {
    "full": Plan(FULL, ranks=(1, 2, 4), steps=80, warmup=10, repeats=2,
                 multihost_models=("lm",), multihost_repeats=1, shapes=((2, 1), (2, 2)),
                 bandwidths=("10gbit", "1gbit", "100mbit"), run_timeout=300.0),
    "quick": Plan(QUICK, ranks=(2,), steps=60, warmup=10, repeats=1,
                  multihost_models=("lm",), multihost_repeats=1, shapes=((2, 1),),
                  bandwidths=("1gbit",),
                  run_timeout=120.0, warm_start=False,
                  # PS's run on one machine adds nothing the simulated machines' does not
                  # check (its bytes; without network namespaces, i.e. without root, PS
                  # then runs in neither part); the suite's budget leaves it out here
                  local_modes=("HYBRID", "AR")),
}


@dataclasses.dataclass
class Bench:
    """What every run of one invocation shares: the plan, the programs and their analyses."""

    plan: Plan
    programs: dict
    reports: dict
    records: List[dict] = dataclasses.field(default_factory=list)

    def record(self, **fields) -> dict:
        self.records.append(fields)
        status = fields.get("status")
        rate = fields.get("examples_per_sec")
        where = (f"{fields['hosts']}x{fields['ranks_per_host']} @ {fields['bandwidth']}"
                 if fields["part"] == "multihost" else f"{fields['ranks']} rank(s)")
        shown = (f"{rate:10,.0f} ex/s ({fields['seconds']:.0f} s)" if rate
                 else f"{status}: {fields.get('error', '')}")
        print(f"[{fields['part']} r{fields['repeat']}] {fields['model']:<4} "
              f"{fields['config']:<6} {where:<22} {shown}", flush=True)
        return fields


def sdk_run(bench: Bench, cluster, model: str, mode: str, select, sim=None,
            bandwidth: Optional[str] = None, report=None) -> dict:
    """Train one configuration to its end (bounded in time); its throughput and bytes.

    On simulated machines (``sim``) the links run unshaped while the run starts and are
    shaped to ``bandwidth`` once it trains: start-up moves the whole model (the chief writes
    every table to the servers, AR broadcasts them), which is not what is measured and would
    take minutes on a slow link. The window then starts after the shaping.
    """
    import parallax_nb as px

    plan, workload = bench.plan, bench.plan.workloads[model]
    report = report or planned_report(bench, model, mode, select, bandwidth)
    config = px.Config(mode=mode_of(mode), steps=plan.steps, batch_size=workload.batch_size,
                       warm_start=plan.warm_start, placement=report.config.placement,
                       profile=bool(sim),   # every step's phases: the link's calibration
                       **({"overlap_allreduce": False} if mode == WAITING else {}))
    log = traffic.CounterLog(sim.counters) if sim else contextlib.nullcontext()
    shaped_at, run = None, None
    if sim:
        sim.shape(None)
    try:
        run = px.train(bench.programs[model], cluster=cluster, select=select, config=config,
                       report=report)
        with log:
            if sim:
                shaped_at = _shape_while_measured(run, sim, bandwidth, plan)
            run.wait(plan.run_timeout)
        first, last = window(plan.steps, plan.warmup, run.metrics, after=shaped_at)
    except TimeoutError:
        return {"status": "timed out", "error": f"not done after {plan.run_timeout:g} s"}
    except Exception as exc:   # recorded; the other configurations still run
        return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}
    finally:   # a run that failed to be measured must not train on beside the next one
        if run is not None and not run.done:
            with contextlib.suppress(Exception):
                run.stop()
    result = {"status": "ok", "ran_as": run.mode, "seconds": run.finished_at - run.started_at,
              "window": [first, last],
              "examples_per_sec": run_throughput(run.metrics, first, last),
              "per_host": run.report().communication_per_host()}
    if sim:
        result["wire"] = traffic.wire_per_step(log, run.metrics, first, last)
    return result


def _shape_while_measured(run, sim, bandwidth: str, plan: Plan) -> float:
    """Shape the links from the run's first step to the last measured one (afterwards rank 0
    reads the trained tables back from the servers: not measured either). Returns when the
    links were shaped."""
    deadline = time.time() + plan.run_timeout
    last = plan.steps - COOLDOWN

    def wait_for(step):
        while not run.done and (run.metrics.empty or run.metrics["step"].max() < step):
            if time.time() > deadline:
                raise TimeoutError
            time.sleep(0.02)

    wait_for(1)
    sim.shape(bandwidth)
    shaped_at = time.time()
    wait_for(last)
    sim.shape(None)
    return shaped_at


def one_machine(bench: Bench) -> None:
    """Part 1: plain TensorFlow and every mode at every rank count, round robin."""
    import parallax_nb as px

    plan = bench.plan
    configs = [(model, "plain", 1) for model in plan.workloads] + \
        [(model, mode, ranks) for model in plan.workloads for ranks in plan.ranks
         for mode in plan.local_modes]
    with px.connect(local=max(plan.ranks)) as cluster:
        for repeat in range(plan.repeats):
            for model, config, ranks in configs:
                base = dict(part="local", model=model, config=config, ranks=ranks,
                            repeat=repeat)
                if config == "plain":
                    workload = plan.workloads[model]
                    began = time.time()
                    rate = plain_throughput(bench.programs[model], plan.steps,
                                            workload.batch_size, plan.warmup)
                    bench.record(**base, status="ok", examples_per_sec=rate,
                                 seconds=time.time() - began)
                    continue
                result = sdk_run(bench, cluster, model, config, ranks)
                per_host = result.pop("per_host", None)
                if per_host is not None:
                    result["accounted"] = traffic.accounted_local(per_host)
                bench.record(**base, **result)


def simulated_machines(bench: Bench) -> Optional[str]:
    """Part 2: every (model, shape, mode) at every link speed, round robin. Returns why it
    could not run, or None."""
    plan = bench.plan
    reason = netns.unavailable_reason()
    if reason:
        return reason
    hosts = max(h for h, _ in plan.shapes)
    with netns.SimulatedHosts(hosts=hosts, slots_per_host=max(g for _, g in plan.shapes)
                              ) as sim:
        for repeat in range(plan.multihost_repeats):
            for bandwidth in plan.bandwidths:
                for model in plan.multihost_models:
                    for machines, per_host in plan.shapes:
                        selection = per_host_selection(sim.cluster, machines, per_host)
                        for mode in MODES:
                            bench.record(**multihost_run(bench, sim, model, mode, machines,
                                                         per_host, selection, bandwidth),
                                         part="multihost", model=model, config=mode,
                                         ranks=machines * per_host, hosts=machines,
                                         ranks_per_host=per_host, bandwidth=bandwidth,
                                         repeat=repeat)
    return None


BY_BYTES = "HYBRID_BYTES"   # HYBRID placed by bytes alone: the placement before #24's time model
WAITING = "HYBRID_WAITING"  # HYBRID whose AllReduce waits for the pushes: before #24's overlap


def mode_of(configuration: str) -> str:
    return "HYBRID" if configuration in (BY_BYTES, WAITING) else configuration


def planned_report(bench, model: str, configuration: str, selection, bandwidth=None,
                   cluster=None):
    """The model's analysis as the run plans it: placed by time on the shaped link where the
    plan says so (its rate; the exchange and collective costs calibrated by the runs
    finished on these workers, `ParallaxCluster.step_costs`, else the defaults), and for
    BY_BYTES with every variable pinned where the bytes-only rule puts it
    (`Config.placement`)."""
    from parallax_nb.analysis.placement import plan_placement
    from parallax_nb.analysis.timing import DEFAULT_LINK, calibrate

    report = bench.reports[model]
    if bandwidth and selection is not None and bench.plan.priced_on_link:
        link = dataclasses.replace(DEFAULT_LINK, bytes_per_second=netns.rate_bits(bandwidth) / 8,
                                   source=f"tc rate {bandwidth}")
        report = report.with_link(calibrate(link, cluster.step_costs(selection))
                                  if cluster is not None else link)
    if configuration != BY_BYTES or selection is None:
        return report
    placed = report.for_selection(selection)
    by_bytes = plan_placement(placed.variables, "HYBRID", placed.servers, placed.config,
                              placed.machines, placed.workers_per_machine, link=None)
    pinned = {vp.variable.name: vp.placement for vp in by_bytes if vp.variable.kind == "sparse"}
    return dataclasses.replace(report, config=report.config.replace(placement=pinned))


def multihost_run(bench, sim, model, mode, machines, per_host, selection, bandwidth) -> dict:
    report = planned_report(bench, model, mode, selection, bandwidth, sim.cluster)
    result = sdk_run(bench, sim.cluster, model, mode, selection, sim=sim, bandwidth=bandwidth,
                     report=report)
    result["examples_per_step"] = machines * per_host * bench.plan.workloads[model].batch_size
    per_host_frame = result.pop("per_host", None)
    if result["status"] != "ok":
        return result
    # Only the selected hosts' links: a simulation of more hosts than the run uses has idle
    # ones, whose zero bytes are no measurement of this run.
    used = {device.host for device in selection.devices}
    result["wire"] = {host: moved for host, moved in result["wire"].items() if host in used}
    # Bytes are compared for the mode that really ran (HYBRID runs as AR without sparse
    # variables).
    report = report.for_selection(selection)
    result["priced_on"] = report.link.describe() if report.link is not None else None
    placed = [vp for vp in report.replan(mode=result["ran_as"]).placements
              if vp.variable.kind == "sparse"]
    result["sparse"] = len(placed)
    result["sparse_on_servers"] = sum(vp.placement == "ps" for vp in placed)
    result["predicted"] = traffic.predicted_per_host(report, result["ran_as"], machines,
                                                     per_host)
    result["accounted"] = traffic.accounted_per_host(per_host_frame, machines, per_host)
    result["wire_vs_predicted"] = traffic.compare(result["wire"], result["predicted"])
    result["accounted_vs_predicted"] = traffic.compare(result["accounted"],
                                                       result["predicted"])
    return result


def per_host_selection(cluster, machines: int, per_host: int):
    """``per_host`` devices on each of the first ``machines`` hosts."""
    by_host: Dict[str, list] = {}
    for device in cluster.devices(refresh=True):
        by_host.setdefault(device.host, []).append(device)
    hosts = sorted(by_host)[:machines]
    return cluster.select(keys=[d.key for h in hosts for d in by_host[h][:per_host]])


def analyse_workloads(plan: Plan):
    import parallax_nb as px

    programs, reports = {}, {}
    for name, workload in plan.workloads.items():
        programs[name] = workload.program()
        reports[name] = px.analyze(programs[name], steps=5,
                                   config=px.Config(batch_size=workload.batch_size))
    return programs, reports


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.paper_comparison",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="a small language model, 2 ranks, one link speed (the CI variant)")
    parser.add_argument("--out", default=RESULTS, help="directory for JSON, markdown, PNGs")
    parser.add_argument("--parts", default="local,multihost",
                        help="comma-separated subset of: local, multihost")
    parser.add_argument("--bandwidths", default=None,
                        help="comma-separated link speeds of the simulated machines "
                             "(default: the plan's, e.g. 10gbit,1gbit,100mbit)")
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    unknown = parts - {"local", "multihost"}
    if unknown:
        parser.error(f"unknown part(s) {sorted(unknown)}; use local and/or multihost")
    # SIGTERM unwinds like Ctrl-C, so the simulated machines are always torn down.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    variant = "quick" if args.quick else "full"
    plan = PLANS[variant]
    if args.bandwidths:
        plan = dataclasses.replace(plan, bandwidths=tuple(args.bandwidths.split(",")))
    started = time.time()
    facts = machine_facts()
    programs, reports = analyse_workloads(plan)
    bench = Bench(plan, programs, reports)
    skipped = {}
    if "local" in parts:
        one_machine(bench)
    if "multihost" in parts:
        reason = simulated_machines(bench)
        if reason:
            skipped["multihost"] = reason
            print(f"simulated machines skipped: {reason}", flush=True)
    facts["load_average_at_end"] = os.getloadavg()
    results = {
        "variant": variant, "machine": facts, "seconds": round(time.time() - started, 1),
        "plan": plan_description(plan), "skipped": skipped, "runs": bench.records,
        "summary": summarise(bench.records, plan.multihost_models),
    }
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "paper_comparison" + ("_quick" if args.quick else ""))
    with open(stem + ".json", "w") as f:
        json.dump(results, f, indent=1, default=float)
    from .plots import plot_bytes, plot_throughput

    plot_throughput(results, stem + "_throughput.png")
    plot_bytes(results, stem + "_bytes.png")
    print(write_markdown(results, stem + ".md"))
    failed = [r for r in bench.records if r["status"] != "ok"]
    return 1 if failed else 0


def plan_description(plan: Plan) -> dict:
    described = dataclasses.asdict(plan)
    described["workloads"] = {name: {"description": w.description,
                                     "batch_size_per_rank": w.batch_size, "sizes": w.sizes}
                              for name, w in plan.workloads.items()}
    return described


if __name__ == "__main__":
    sys.exit(main())

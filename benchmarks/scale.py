"""Where Parallax wins: 4 simulated machines on links as slow, for their compute, as a GPU
cluster's, and a model whose tables do not fit every rank. ``python -m benchmarks.scale``.

1. **Network-bound.** 4 network namespaces with one Dask worker each (`netns.py`); the
   language model and the Criteo-shaped recommender (`workloads.SCALE`) in HYBRID, PS and AR
   at 2x1 and 4x1 ranks. Two shared cores compute a step tens of times slower than a GPU, so
   a real 1 Gbit/s link would be a small share of their step. Each (model, shape) is first
   run unshaped: its fastest mode's step time is the compute here. The links are then
   scaled by the accelerator's compute over this compute (`accelerator_step.py` timed the
   same models on an H100: `results/accelerator_step.json`):

       link here = nominal link x (accelerator step / step here, unshaped)

   so that moving a step's bytes takes the share of the step it would take on GPU machines
   joined by the nominal link (1 Gbit/s and 100 Mbit/s). Every figure stands next to the
   throughput its measured bytes allow on that link, and the bytes are checked against the
   cost model (within 20%).
2. **Memory-bound.** The recommender with tables of about 1.5 GB (`memory_bound_program`) on
   2 hosts whose Dask workers get a memory limit between what HYBRID and AR need per worker
   (the analysis's memory plan): AR, which keeps every table and its optimizer slot in every
   rank, is refused before it starts; HYBRID and PS train, and each process's measured peak
   memory (ranks: their own peak RSS; servers: VmHWM) stands next to the plan's figure. AR is
   then run without the limit to show what it would have used.

``--quick`` (CI): the small language model at 2x1 with one nominal link, and the memory case
with smaller tables: AR refused and HYBRID trained (PS and AR without the limit are the
full run's). Results: ``results/scale[_quick].json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import sys
import threading
import time
from statistics import median
from typing import Dict, List, Optional, Tuple

from parallax_nb.config import MODES  # HYBRID, PS, AR

from . import netns, paper_comparison
from .machine import machine_facts
from .paper_comparison import BY_BYTES, WAITING
from .summary import bytes_bound, summarise, write_lines
from .workloads import SCALE, SCALE_QUICK

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
ACCELERATOR = os.path.join(RESULTS, "accelerator_step.json")
UNSHAPED = "10gbit"   # the reference runs: the veth then runs as fast as the CPUs copy


@dataclasses.dataclass(frozen=True)
class Plan:
    workloads: dict
    shapes: Tuple[Tuple[int, int], ...]      # (hosts, ranks per host)
    nominal: Tuple[str, ...]                 # GPU-cluster links the simulated ones stand for
    steps: int
    warmup: int
    run_timeout: float
    memory_sizes: dict                       # recommender sizes of the memory-bound case
    memory_steps: int
    modes: Tuple[str, ...] = tuple(MODES)    # timed on the scaled links
    memory_modes: Tuple[str, ...] = ("HYBRID", "PS")   # trained under the memory limit
    memory_alone: bool = True                # AR also without the limit, for its real peak
    reference_modes: Tuple[str, ...] = tuple(MODES)   # timed unshaped: the step here
    warm_start: bool = True                  # Config.warm_start (paper_comparison.Plan)
    repeats: int = 1                         # rounds of the shaped runs, modes rotated


PLANS = {
    # HYBRID_BYTES: HYBRID placed by bytes alone, the placement before the time model (#24);
    # HYBRID_WAITING: HYBRID whose AllReduce waits for the pushes, before #24's overlap
    "full": Plan(SCALE, shapes=((2, 1), (4, 1)), nominal=("1gbit", "100mbit"), steps=40,
                 warmup=8, run_timeout=600.0,
                 memory_sizes=dict(scale=0.35, dim=32, hidden=64, dense_features=13,
                                   examples=8192), memory_steps=20,
                 modes=("HYBRID", BY_BYTES, WAITING, "PS", "AR")),
    # CI: 3 runs on 2 hosts (AR unshaped for the step here, then HYBRID and AR shaped; the
    # full run's 4 hosts cost the suite about 40 s more: 3 server processes, 4 ranks). The
    # links are shaped once the client sees step 1, by when a fast start has run ~20 steps
    # unshaped: 40 steps keep 10 or more in the window. No warm spares: with 3 runs per
    # cluster most of them (up to 2 per worker, a TensorFlow import each) would start during
    # the measured steps and be thrown away at the cluster's close.
    "quick": Plan(SCALE_QUICK, shapes=((2, 1),), nominal=("1gbit",), steps=40, warmup=6,
                  run_timeout=180.0,
                  memory_sizes=dict(scale=0.25, dim=32, hidden=32, dense_features=13,
                                    examples=2048), memory_steps=6,
                  modes=("HYBRID", "AR"), reference_modes=("AR",), warm_start=False,
                  # AR refused and HYBRID trained under the limit; PS and AR's unlimited
                  # peak (a 3 GB rank per worker, about 110 s here) are left to the full run
                  memory_modes=("HYBRID",), memory_alone=False),
}


def scaled_link(nominal: str, accelerator_seconds: float, seconds_here: float) -> str:
    """The tc rate that gives this machine's step the communication share a GPU step has on
    ``nominal`` (kbit granularity)."""
    bits = netns.rate_bits(nominal) * accelerator_seconds / seconds_here
    return f"{max(int(bits / 1000), 8)}kbit"


def accelerator_seconds(model: str) -> Tuple[float, str]:
    with open(ACCELERATOR) as f:
        measured = json.load(f)
    return measured["models"][model]["seconds_per_step"], measured["device"]


# -- part 1 ------------------------------------------------------------------------------------
def network_bound(plan: Plan, bench: paper_comparison.Bench, links: List[dict]) -> None:
    hosts = max(h for h, _ in plan.shapes)
    with netns.SimulatedHosts(hosts=hosts, slots_per_host=max(g for _, g in plan.shapes)
                              ) as sim:
        for model in plan.workloads:
            accelerator, device = accelerator_seconds(model)
            for machines, per_host in plan.shapes:
                selection = paper_comparison.per_host_selection(sim.cluster, machines,
                                                                per_host)

                def measure(mode, link, repeat=0, **fields):
                    record = paper_comparison.multihost_run(bench, sim, model, mode, machines,
                                                            per_host, selection, link)
                    return bench.record(**record, part="multihost", model=model, config=mode,
                                        ranks=machines * per_host, hosts=machines,
                                        ranks_per_host=per_host, bandwidth=link,
                                        repeat=repeat, **fields)

                reference = [measure(mode, UNSHAPED, nominal="unshaped")
                             for mode in plan.reference_modes]
                timed = [r["examples_per_step"] / r["examples_per_sec"] for r in reference
                         if r["status"] == "ok"]
                if not timed:
                    continue
                here = min(timed)
                for nominal in plan.nominal:
                    link = scaled_link(nominal, accelerator, here)
                    links.append({"model": model, "hosts": machines, "ranks_per_host": per_host,
                                  "nominal": nominal, "link": link,
                                  "step_here_unshaped": here, "accelerator_step": accelerator,
                                  "accelerator": device})
                    for repeat in range(plan.repeats):   # each round in another order
                        turn = repeat % len(plan.modes)
                        for mode in plan.modes[turn:] + plan.modes[:turn]:
                            measure(mode, link, repeat, nominal=nominal)


def speedups(records: List[dict], links: List[dict]) -> List[dict]:
    """Per (model, shape, nominal link): HYBRID's throughput over AR's against AR's wire
    bytes over HYBRID's (the issue's bar: the first at least 0.9 of the second); with
    several rounds, medians, and the HYBRID/AR of each round (``round_ratios``)."""
    rows = []
    for link in links:
        runs: Dict[str, List[dict]] = {}
        for r in records:
            if r["status"] == "ok" and r["model"] == link["model"] and \
                    r["hosts"] == link["hosts"] and \
                    r["ranks_per_host"] == link["ranks_per_host"] and \
                    r["bandwidth"] == link["link"]:
                runs.setdefault(r["config"], []).append(r)
        row = dict(link)
        for mode, done in runs.items():
            row[f"{mode}_examples_per_sec"] = median(r["examples_per_sec"] for r in done)
            row[f"{mode}_of_bound"] = median(r["examples_per_sec"] / bytes_bound(r)
                                             for r in done)
            row[f"{mode}_wire_bytes"] = median(_wire_bytes(r) for r in done)
        for mode, key in (("HYBRID", "round_ratios"), (BY_BYTES, "by_bytes_round_ratios"),
                          (WAITING, "waiting_round_ratios")):
            if mode in runs and "AR" in runs:
                ar = {r["repeat"]: r["examples_per_sec"] for r in runs["AR"]}
                row[key] = [r["examples_per_sec"] / ar[r["repeat"]] for r in runs[mode]
                            if r["repeat"] in ar]
        if "HYBRID" in runs and "AR" in runs:
            row["throughput_ratio"] = (row["HYBRID_examples_per_sec"]
                                       / row["AR_examples_per_sec"])
            row["bytes_ratio"] = row["AR_wire_bytes"] / row["HYBRID_wire_bytes"]
            row["speedup_share_of_byte_saving"] = row["throughput_ratio"] / row["bytes_ratio"]
        for mode, key in ((BY_BYTES, "by_bytes_ratio"), (WAITING, "waiting_ratio")):
            if mode in runs and "AR" in runs:
                row[key] = row[f"{mode}_examples_per_sec"] / row["AR_examples_per_sec"]
        rows.append(row)
    return rows


def _wire_bytes(run: dict) -> float:
    """Bytes per step on the wire, busiest host and direction (what the link limits)."""
    return max(max(h["sent"], h["received"]) for h in run["wire"].values())


# -- part 2 ------------------------------------------------------------------------------------
def memory_bound_program(sizes: dict):
    from parallax_nb.examples import recommender

    return recommender.make_program(**sizes)


def memory_bound(plan: Plan) -> dict:
    """HYBRID (and PS: ``plan.memory_modes``) under a per-worker memory limit AR cannot fit;
    AR refused, and (``plan.memory_alone``) AR without the limit for its real peak."""
    import parallax_nb as px
    from parallax_nb.plan.fit import worker_needs, worker_total

    program = memory_bound_program(plan.memory_sizes)
    config = px.Config(steps=plan.memory_steps, batch_size=128, log_every=1, partitions=None,
                       warm_start=plan.warm_start)
    report = px.analyze(program, steps=2, config=config)
    out = {"sizes": plan.memory_sizes, "table_bytes": sum(v.bytes for v in report.variables
                                                          if v.kind == "sparse"),
           "runs": []}
    # 2 hosts x 1 rank without a limit: the plan's needs per worker, and AR's real peak
    with px.connect(local=2, simulate_hosts=2) as cluster:
        selection = cluster.resolve(None)
        needs = {mode: worker_needs(report.for_selection(selection, mode=mode), selection)
                 for mode in MODES}
        peak = {mode: max(worker_total(p) for p in needs[mode].values()) for mode in MODES}
        out["planned_worker_bytes"] = peak
        out["planned_processes"] = {mode: {w: dict(p) for w, p in needs[mode].items()}
                                    for mode in MODES}
        if not max(peak["HYBRID"], peak["PS"]) < peak["AR"]:
            out["skipped"] = ("not memory-bound at this size: HYBRID's or PS's busiest "
                              "worker needs as much as AR's")
            return out
        if plan.memory_alone:
            out["runs"].append(memory_run(program, cluster, config.replace(mode="AR"), report,
                                          plan, limited=False))
    limit = int((max(peak["HYBRID"], peak["PS"]) + peak["AR"]) / 2)
    out["memory_limit"] = limit
    with netns.SimulatedHosts(hosts=2, memory_limit=limit) as sim:
        for mode in ("AR",) + plan.memory_modes:
            out["runs"].append(memory_run(program, sim.cluster, config.replace(mode=mode),
                                          report, plan, limited=True))
    return out


def memory_run(program, cluster, config, report, plan: Plan, limited: bool) -> dict:
    """One run of the memory-bound case: its outcome, and per process its peak memory
    during the steps (ranks' own peak RSS), over its whole life (VmHWM: start-up, the
    steps, and rank 0 reading the trained tables back for ``run.result()``) and what the
    plan says it holds plus TensorFlow's baseline."""
    import parallax_nb as px
    from parallax_nb.analysis.memory import PROCESS_BASELINE_BYTES

    row = {"mode": config.mode, "memory_limit": limited}
    began = time.time()
    try:
        run = px.train(program, cluster=cluster, config=config, report=report)
    except px.ConfigError as exc:
        return dict(row, status="refused", error=str(exc), seconds=time.time() - began)
    peaks = ProcessPeaks(run)
    try:
        run.wait(plan.run_timeout)
    except Exception as exc:
        return dict(row, status="failed", error=f"{type(exc).__name__}: {exc}")
    finally:
        peaks.stop()
        if not run.done:
            with contextlib.suppress(Exception):
                run.stop()
    steps = run.metrics.groupby("rank")["peak_rss"].max()
    planned = run.analysis.memory()
    return dict(row, status="ok", seconds=time.time() - began,
                rank_steps_peak={int(r): int(v) for r, v in steps.items()},
                rank_life_peak=peaks.ranks,
                rank_planned={r: int(planned.peak(r)) + PROCESS_BASELINE_BYTES
                              for r in planned.ranks},
                server_life_peak=peaks.servers,
                server_planned={int(t): int(b) + PROCESS_BASELINE_BYTES
                                for t, b in planned.servers.items() if t in peaks.servers})


class ProcessPeaks:
    """The high-water mark (VmHWM) of each rank and separate server process of a run, read
    from /proc while it runs (network namespaces share this machine's process table). A
    server inside the chief rank's process is the rank's."""

    def __init__(self, run, interval: float = 0.25):
        self.run, self.ranks, self.servers = run, {}, {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, args=(interval,), daemon=True)
        self._thread.start()

    def _poll(self, interval):
        while not self._stop.wait(interval):
            ranks = dict(self.run.pids)
            for rank, pid in ranks.items():
                _raise(self.ranks, int(rank), _vm_hwm(pid))
            for task, started in dict(self.run.servers_started).items():
                if started.get("pid") not in ranks.values():
                    _raise(self.servers, int(task), _vm_hwm(started.get("pid")))

    def stop(self):
        self._stop.set()
        self._thread.join()


def _raise(peaks: dict, key: int, value: Optional[int]) -> None:
    if value:
        peaks[key] = max(peaks.get(key, 0), value)


def _vm_hwm(pid) -> Optional[int]:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, TypeError, ValueError):
        return None
    return None


# -- results -----------------------------------------------------------------------------------
def write_markdown(results: dict, path: str) -> str:
    machine = results["machine"]
    lines = [f"Measured {machine['date']} on {machine['nproc']} cores ({machine['cpu_model']}), "
             f"{machine['memory_gb']} GB; load average "
             f"{', '.join(f'{v:.1f}' for v in machine['load_average_at_start'])} at start, "
             f"{', '.join(f'{v:.1f}' for v in machine['load_average_at_end'])} at end; "
             f"variant {results['variant']}, {results['seconds'] / 60:.1f} min.", ""]
    if results["speedups"]:
        modes = [m for m in ("HYBRID", BY_BYTES, WAITING, "PS", "AR")
                 if any(f"{m}_examples_per_sec" in r for r in results["speedups"])]
        befores = [(m, key, label) for m, key, label in
                   ((BY_BYTES, "by_bytes_ratio", "by bytes/AR"),
                    (WAITING, "waiting_ratio", "waiting/AR")) if m in modes]
        hosts = sorted({link["hosts"] for link in results["links"]})
        lines += [f"Network-bound ({'/'.join(map(str, hosts))} simulated hosts; the link "
                  "scaled from the nominal one by "
                  "the accelerator's step over this machine's unshaped step): examples/s, "
                  "and in brackets the share of what the run's wire bytes allow on that "
                  "link; HYBRID over AR in throughput and in bytes"
                  + (f" ({BY_BYTES}: HYBRID placed by bytes alone, as before the time "
                     f"model)" if BY_BYTES in modes else "")
                  + (f" ({WAITING}: HYBRID whose AllReduce waits for the pushes, as before "
                     f"the overlap)" if WAITING in modes else "") + ":", "",
                  "| model | hosts x ranks | nominal | link here | step here / on "
                  "the GPU | " + " | ".join(modes) + " | "
                  + "".join(f"{label} | " for _, _, label in befores)
                  + "HYBRID/AR throughput | AR/HYBRID bytes | share |",
                  "|---|---|---|---|---|" + "---:|" * (len(modes) + 3 + len(befores))]
        for r in results["speedups"]:
            cells = [f"{r[f'{m}_examples_per_sec']:,.0f} ({r[f'{m}_of_bound']:.0%})"
                     if f"{m}_examples_per_sec" in r else "-" for m in modes]
            for _, key, _ in befores:
                cells.append(f"{r[key]:.2f}" if key in r else "-")
            share = r.get("speedup_share_of_byte_saving")
            lines.append(
                f"| {r['model']} | {r['hosts']}x{r['ranks_per_host']} | {r['nominal']} | "
                f"{r['link']} | {r['step_here_unshaped'] * 1e3:.0f} / "
                f"{r['accelerator_step'] * 1e3:.1f} ms | " + " | ".join(cells) + " | "
                + (f"{r['throughput_ratio']:.2f} | {r['bytes_ratio']:.2f} | {share:.2f}"
                   f"{'' if share >= 0.9 else ' **below 0.9**'} |" if share is not None
                   else "- | - | - |"))
        lines.append("")
        lines += lowest_ratio_lines(results["speedups"]) + [""]
        lines += plan_lines(results["runs"])
    if results["summary"]["bytes"]:
        lines += ["Bytes per host per step between machines, measured over predicted (mean "
                  "over hosts, sent and received; in brackets single hosts):", "",
                  "| model | hosts x ranks | mode | predicted KB | wire / predicted | "
                  "accounted / predicted |", "|---|---|---|---:|---:|---:|"]
        for r in results["summary"]["bytes"]:
            flag = lambda s: "" if r[f"{s}_within_20pct"] else " **off by more than 20%**"  # noqa
            lines.append(
                f"| {r['model']} | {r['hosts']}x{r['ranks_per_host']} | {r['mode']} | "
                f"{(r['predicted_sent'] + r['predicted_received']) / 2e3:,.0f} | "
                f"{r['wire_ratio']:.2f} ({r['wire_host_ratio_min']:.2f}-"
                f"{r['wire_host_ratio_max']:.2f}){flag('wire')} | "
                f"{r['accounted_ratio']:.2f}{flag('accounted')} |")
        lines.append("")
    memory = results.get("memory")
    if memory:
        lines += [f"Memory-bound: the recommender with {memory['table_bytes'] / 1e9:.2f} GB of "
                  f"tables on 2 hosts x 1 rank; the plan's busiest worker needs "
                  + ", ".join(f"{m} {b / 1e9:.2f} GB" for m, b in
                              memory["planned_worker_bytes"].items()) + "."]
        if memory.get("skipped"):
            lines.append(memory["skipped"])
        else:
            lines += [f"Dask memory limit per worker: {memory['memory_limit'] / 1e9:.2f} GB. "
                      "Per process, GB: planned (what it holds, plus TensorFlow's baseline) / "
                      "peak during the steps / peak over its life (VmHWM):",
                      "", "| mode | limit | outcome | ranks | separate servers |",
                      "|---|---|---|---|---|"]
            for r in memory["runs"]:
                limit = "yes" if r["memory_limit"] else "none"
                if r["status"] != "ok":
                    lines.append(f"| {r['mode']} | {limit} | {r['status']}: "
                                 f"{r.get('error', '')[:300]} | | |")
                    continue
                ranks = ", ".join(
                    f"rank {k}: {_gb(r['rank_planned'], k)} / {_gb(r['rank_steps_peak'], k)} / "
                    f"{_gb(r['rank_life_peak'], k)}" for k in sorted(r["rank_steps_peak"]))
                servers = ", ".join(
                    f"server {k}: {_gb(r['server_planned'], k)} / - / "
                    f"{_gb(r['server_life_peak'], k)}" for k in sorted(r["server_life_peak"]))
                lines.append(f"| {r['mode']} | {limit} | trained | {ranks} | "
                             f"{servers or '-'} |")
        lines.append("")
    failed = [r for r in results["runs"] if r["status"] != "ok"]
    lines += [f"FAILED: {r['model']} {r['config']} {r['hosts']}x{r['ranks_per_host']} "
              f"@ {r['bandwidth']}: {r['status']} {r.get('error', '')}" for r in failed]
    return write_lines(lines, path)


def plan_lines(runs: List[dict]) -> List[str]:
    """Where each shaped HYBRID run put the sparse variables, and the link it was priced on
    (its fixed costs calibrated by the runs before it on the same workers)."""
    lines = [f"- {r['model']} {r['hosts']}x{r['ranks_per_host']} {r['nominal']}, round "
             f"{r['repeat']}: HYBRID put {r['sparse_on_servers']} of {r['sparse']} sparse "
             f"variable(s) on the servers, priced on {r['priced_on']}"
             for r in runs if r["status"] == "ok" and r["config"] == "HYBRID"
             and r.get("priced_on") and r["nominal"] != "unshaped"]
    return (["HYBRID's plan per shaped run:", ""] + lines + [""]) if lines else []


def lowest_ratio_lines(speedups: List[dict]) -> List[str]:
    """Per workload, the lowest HYBRID/AR over all its cells (the issue's bar: >= 1.0; the
    median of a cell's rounds), and the same for HYBRID placed by bytes where it ran; with
    each round's ratios, so the noise shows."""
    lines = []
    for model in sorted({r["model"] for r in speedups}):
        for key, rounds, label in (("throughput_ratio", "round_ratios", "HYBRID/AR"),
                                   ("by_bytes_ratio", "by_bytes_round_ratios",
                                    "HYBRID by bytes/AR"),
                                   ("waiting_ratio", "waiting_round_ratios",
                                    "HYBRID waiting/AR")):
            cells = [r for r in speedups if r["model"] == model and key in r]
            if cells:
                low = min(cells, key=lambda r: r[key])
                each = ", ".join(f"{x:.2f}" for x in low.get(rounds, []))
                lines.append(f"- {model}: lowest {label} {low[key]:.2f} "
                             f"({low['hosts']}x{low['ranks_per_host']}, {low['nominal']}; "
                             f"rounds {each}) over {len(cells)} cell(s)")
    return lines


def _gb(figures: dict, key) -> str:
    value = figures.get(key, figures.get(str(key)))
    return "-" if value is None else f"{value / 1e9:.2f}"


def subset(plan: Plan, models=None, shapes=None, nominal=None) -> Plan:
    """The plan narrowed to the named models, shapes ("4x1") and nominal links."""
    def pick(given, available, label):
        chosen = tuple(x for x in available if given is None or label(x) in given.split(","))
        if given is not None and len(chosen) != len(given.split(",")):
            raise SystemExit(f"unknown {given!r}; choose from "
                             f"{', '.join(label(x) for x in available)}")
        return chosen

    return dataclasses.replace(
        plan, workloads={m: plan.workloads[m] for m in pick(models, tuple(plan.workloads), str)},
        shapes=pick(shapes, plan.shapes, lambda s: f"{s[0]}x{s[1]}"),
        nominal=pick(nominal, plan.nominal, str))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.scale",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="the CI variant (about 3 min)")
    parser.add_argument("--parts", default="network,memory",
                        help="comma-separated subset of: network, memory")
    parser.add_argument("--models", default=None,
                        help="comma-separated subset of the network part's models")
    parser.add_argument("--shapes", default=None,
                        help="comma-separated subset of its hosts x ranks shapes, e.g. 4x1")
    parser.add_argument("--nominal", default=None,
                        help="comma-separated subset of its nominal links, e.g. 1gbit")
    parser.add_argument("--repeats", type=int, default=None,
                        help="rounds of the shaped runs, modes rotated (default: the plan's)")
    parser.add_argument("--modes", default=None,
                        help="comma-separated subset of the shaped runs' configurations, e.g. "
                             f"HYBRID,{WAITING},AR")
    parser.add_argument("--out", default=RESULTS)
    args = parser.parse_args(argv)
    parts = set(args.parts.split(","))
    if parts - {"network", "memory"}:
        parser.error(f"unknown part(s) {sorted(parts - {'network', 'memory'})}; use network "
                     f"and/or memory")
    reason = netns.unavailable_reason()
    if reason:
        print(f"simulated machines unavailable: {reason}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))   # tear the namespaces down
    variant = "quick" if args.quick else "full"
    plan = subset(PLANS[variant], args.models, args.shapes, args.nominal)
    if args.repeats:
        plan = dataclasses.replace(plan, repeats=args.repeats)
    if args.modes:
        modes = tuple(args.modes.split(","))
        unknown = set(modes) - set(PLANS["full"].modes)
        if unknown:
            parser.error(f"unknown configuration(s) {sorted(unknown)}; use some of "
                         f"{', '.join(PLANS['full'].modes)}")
        plan = dataclasses.replace(plan, modes=modes)
    started, facts = time.time(), machine_facts()
    bench_plan = paper_comparison.Plan(
        plan.workloads, ranks=(), steps=plan.steps, warmup=plan.warmup, repeats=0,
        multihost_models=tuple(plan.workloads), multihost_repeats=1, shapes=plan.shapes,
        bandwidths=(), run_timeout=plan.run_timeout, warm_start=plan.warm_start,
        priced_on_link=True)
    links: List[dict] = []
    bench = None
    if "network" in parts:
        bench = paper_comparison.Bench(bench_plan, *paper_comparison.analyse_workloads(
            bench_plan))
        network_bound(plan, bench, links)
    records = bench.records if bench else []
    memory = memory_bound(plan) if "memory" in parts else None
    facts["load_average_at_end"] = os.getloadavg()
    results = {"variant": variant, "machine": facts, "seconds": time.time() - started,
               "runs": records, "links": links, "speedups": speedups(records, links),
               "summary": summarise(records, tuple(plan.workloads)),
               "memory": memory}
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "scale" + ("_quick" if args.quick else ""))
    with open(stem + ".json", "w") as f:
        json.dump(results, f, indent=1, default=float)
    from .plots import plot_scale

    plot_scale(results, stem + ".png")
    print(write_markdown(results, stem + ".md"))
    return 1 if any(r["status"] != "ok" for r in records) else 0


if __name__ == "__main__":
    raise SystemExit(main())

"""From the runs of one invocation to the tables of the README: medians over repeats, ratios
between configurations of the same run, and the bytes check (measured within 20% of the
cost model)."""
from __future__ import annotations

from typing import Dict, List

import pandas as pd

from parallax_nb.config import MODES  # HYBRID, PS, AR

from .netns import rate_bits

TOLERANCE = 0.20   # measured bytes per step must be within 20% of the prediction
SLOWER = 0.10      # the SDK at one rank may be at most 10% slower than plain TensorFlow


def summarise(records: List[dict], multihost_models=()) -> Dict[str, list]:
    ok = pd.DataFrame([r for r in records if r["status"] == "ok"])
    if ok.empty:
        return {"one_machine": [], "sdk_overhead": [], "multihost": [], "bytes": []}
    local = ok[ok["part"] == "local"] if "part" in ok else ok.iloc[:0]
    remote = ok[ok["part"] == "multihost"] if "part" in ok else ok.iloc[:0]
    return {"one_machine": _one_machine(local), "sdk_overhead": _sdk_overhead(local),
            "multihost": _multihost(remote), "bytes": _bytes(remote)}


def _one_machine(local: pd.DataFrame) -> list:
    if local.empty:
        return []
    table = (local.groupby(["model", "config", "ranks"])["examples_per_sec"].median()
             .reset_index())
    plain = table[table["config"] == "plain"].set_index("model")["examples_per_sec"]
    ar = table[table["config"] == "AR"].set_index(["model", "ranks"])["examples_per_sec"]
    table["vs_plain"] = [row.examples_per_sec / plain.get(row.model, float("nan"))
                         for row in table.itertuples()]
    table["vs_ar"] = [row.examples_per_sec / ar.get((row.model, row.ranks), float("nan"))
                      for row in table.itertuples()]
    return table.to_dict("records")


def _sdk_overhead(local: pd.DataFrame) -> list:
    """The SDK at one rank against plain TensorFlow, per model and mode."""
    rows = [r for r in _one_machine(local) if r["ranks"] == 1 and r["config"] != "plain"]
    return [{"model": r["model"], "mode": r["config"], "vs_plain": r["vs_plain"],
             "slower_than_plain_by": 1.0 - r["vs_plain"],
             "more_than_10pct_slower": bool(r["vs_plain"] < 1.0 - SLOWER)} for r in rows]


def _multihost(remote: pd.DataFrame) -> list:
    if remote.empty:
        return []
    keys = ["model", "hosts", "ranks_per_host", "bandwidth"]
    remote = remote.astype({"hosts": int, "ranks_per_host": int})
    remote = remote.assign(of_bound=[
        row["examples_per_sec"] / bytes_bound(row) if row.get("wire") else float("nan")
        for row in remote.to_dict("records")])
    table = remote.groupby(keys + ["config"])[["examples_per_sec", "of_bound"]].median() \
        .reset_index()
    ar = table[table["config"] == "AR"].set_index(keys)["examples_per_sec"]
    table["vs_ar"] = [row["examples_per_sec"] / ar.get(tuple(row[k] for k in keys),
                                                       float("nan"))
                      for row in table.to_dict("records")]
    return table.to_dict("records")


def bytes_bound(run: dict) -> float:
    """Examples/s the run's link allows for the bytes it moved: the busiest host and
    direction on the wire, per step, against the link's rate (sent and received are shaped
    separately: each end of a veth pair has its own token bucket)."""
    busiest = max(max(h["sent"], h["received"]) for h in run["wire"].values())
    steps_per_second = rate_bits(run["bandwidth"]) / 8 / busiest
    return steps_per_second * run["examples_per_step"]


def _bytes(remote: pd.DataFrame) -> list:
    """Per (model, shape, mode): bytes per host per step, mean over hosts and median over
    repeats and link speeds (bytes per step do not depend on the speed).

    The cost model predicts the mean over machines, so the check compares means:
    ``<source>_ratio`` (sent and received together) must be within 20% of 1. How far single
    hosts stray from the mean is kept as ``<source>_host_ratio_min/max``: a variable placed
    whole on one server (PS mode's dense ones) makes its host serve more than the others.
    """
    if remote.empty:
        return []
    rows = []
    for (model, hosts, per_host, mode), runs in remote.groupby(
            ["model", "hosts", "ranks_per_host", "config"]):
        row = {"model": model, "hosts": int(hosts), "ranks_per_host": int(per_host),
               "mode": mode, "ran_as": runs["ran_as"].iloc[0]}
        for source in ("predicted", "accounted", "wire"):
            for direction in ("sent", "received"):
                row[f"{source}_{direction}"] = float(pd.Series(
                    [_mean_over_hosts(r, direction) if source != "predicted"
                     else r[direction] for r in runs[source]]).median())
        predicted = row["predicted_sent"] + row["predicted_received"]
        for source in ("wire", "accounted"):
            ratio = (row[f"{source}_sent"] + row[f"{source}_received"]) / predicted
            per_host = [v for r in runs[f"{source}_vs_predicted"] for h in r.values()
                        for v in h.values()]
            row[f"{source}_ratio"] = ratio
            row[f"{source}_within_20pct"] = bool(abs(ratio - 1.0) <= TOLERANCE)
            row[f"{source}_host_ratio_min"] = min(per_host)
            row[f"{source}_host_ratio_max"] = max(per_host)
        rows.append(row)
    return rows


def _mean_over_hosts(per_host: dict, direction: str) -> float:
    return sum(h[direction] for h in per_host.values()) / len(per_host)


# -- markdown ---------------------------------------------------------------------------------
def write_markdown(results: dict, path: str) -> str:
    """The summary tables as markdown (pasted into the README), written to ``path``."""
    summary, machine = results["summary"], results["machine"]
    lines = [f"Measured {machine['date']} on {machine['nproc']} cores ({machine['cpu_model']}), "
             f"{machine['memory_gb']} GB, Linux {machine['kernel']}; load average "
             f"{_load(machine['load_average_at_start'])} at start, "
             f"{_load(machine['load_average_at_end'])} at end; variant {results['variant']}, "
             f"{results['seconds'] / 60:.1f} min.", ""]
    if summary["one_machine"]:
        lines += ["One machine (loopback): examples/s, median over repeats, and in brackets "
                  "relative to plain TensorFlow:", "",
                  "| model | ranks | plain TF | " + " | ".join(MODES) + " |",
                  "|---|---:|---:|" + "---:|" * len(MODES)]
        cells = {(r["model"], r["config"], r["ranks"]): r for r in summary["one_machine"]}
        for model, ranks in sorted({(m, n) for m, c, n in cells if c != "plain"}):
            plain = cells.get((model, "plain", 1)) if ranks == 1 else None
            row = [f"{plain['examples_per_sec']:,.0f}" if plain else ""]
            row += [_rate(cells.get((model, mode, ranks)), "vs_plain") for mode in MODES]
            lines.append(f"| {model} | {ranks} | " + " | ".join(row) + " |")
        lines.append("")
    if summary["multihost"]:
        lines += ["Simulated machines (network namespaces, shaped links): examples/s, in "
                  "brackets relative to AR, then the share of the throughput the link allows "
                  "for the bytes the run moved (busiest host and direction):", "",
                  "| model | hosts x ranks | link | " + " | ".join(MODES) + " |",
                  "|---|---|---|" + "---:|" * len(MODES)]
        cells = {(r["model"], r["hosts"], r["ranks_per_host"], r["bandwidth"], r["config"]): r
                 for r in summary["multihost"]}
        shapes = sorted({key[:4] for key in cells}, key=lambda k: (k[0], k[1], k[2],
                                                                   -rate_bits(k[3])))
        for model, hosts, per_host, link in shapes:
            row = [_rate(cells.get((model, hosts, per_host, link, mode)), "vs_ar") +
                   _bound(cells.get((model, hosts, per_host, link, mode)))
                   for mode in MODES]
            lines.append(f"| {model} | {hosts}x{per_host} | {link} | " + " | ".join(row) + " |")
        lines.append("")
    if summary["bytes"]:
        lines += ["Bytes per host per step between machines (sent / received, mean over "
                  "hosts); measured / predicted, and in brackets the range over single "
                  "hosts and directions:", "",
                  "| model | hosts x ranks | mode | predicted | accounted | wire | "
                  "accounted / predicted | wire / predicted |",
                  "|---|---|---|---:|---:|---:|---:|---:|"]
        for r in summary["bytes"]:
            lines.append(
                f"| {r['model']} | {r['hosts']}x{r['ranks_per_host']} | {r['mode']}"
                f"{'' if r['ran_as'] == r['mode'] else ' (as ' + r['ran_as'] + ')'} | "
                f"{_kb(r, 'predicted')} | {_kb(r, 'accounted')} | {_kb(r, 'wire')} | "
                f"{_check(r, 'accounted')} | {_check(r, 'wire')} |")
        lines.append("")
    for part, reason in results["skipped"].items():
        lines.append(f"{part} skipped: {reason}")
    failed = [r for r in results["runs"] if r["status"] != "ok"]
    lines += [f"FAILED: {r['part']} {r['model']} {r['config']} {r['ranks']} rank(s): "
              f"{r['status']} {r.get('error', '')}" for r in failed]
    return write_lines(lines, path)


def write_lines(lines: List[str], path: str) -> str:
    """The markdown lines as one text, written to ``path`` and returned."""
    text = "\n".join(lines).rstrip() + "\n"
    with open(path, "w") as f:
        f.write(text)
    return text


def _rate(row, ratio: str) -> str:
    return "-" if row is None else f"{row['examples_per_sec']:,.0f} ({row[ratio]:.2f})"


def _bound(row) -> str:
    if not row or row.get("of_bound") != row.get("of_bound"):   # missing or NaN
        return ""
    return f", {row['of_bound']:.0%} of the link's"


def _check(row: dict, source: str) -> str:
    flag = "" if row[f"{source}_within_20pct"] else " **off by more than 20%**"
    return (f"{row[source + '_ratio']:.2f} ({row[source + '_host_ratio_min']:.2f}-"
            f"{row[source + '_host_ratio_max']:.2f}){flag}")


def _kb(row: dict, source: str) -> str:
    return f"{row[source + '_sent'] / 1e3:,.0f} / {row[source + '_received'] / 1e3:,.0f} KB"


def _load(values) -> str:
    return ", ".join(f"{v:.1f}" for v in values)

"""The two PNGs of the README: throughput per mode, and bytes per step measured vs predicted."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt  # noqa: E402

from parallax_nb.config import MODES  # noqa: E402  (HYBRID, PS, AR)

from .netns import rate_bits  # noqa: E402

COLOURS = {"plain": "black", "HYBRID": "tab:green", "PS": "tab:orange", "AR": "tab:blue"}


def plot_throughput(results: dict, path: str) -> None:
    """Left: one machine, examples/s against ranks per mode (plain TF as a dashed line), one
    panel per model. Right: simulated machines, HYBRID's and PS's examples/s relative to AR
    (the same shape and link) for every shape and link: where fewer bytes pay off."""
    local, remote = results["summary"]["one_machine"], results["summary"]["multihost"]
    models = sorted({r["model"] for r in local})
    remote_models = sorted({r["model"] for r in remote})
    panels = len(models) + len(remote_models)
    if not panels:
        return
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 3.6), squeeze=False)
    for ax, model in zip(axes[0], models):
        rows = [r for r in local if r["model"] == model]
        for mode in MODES:
            points = sorted((r["ranks"], r["examples_per_sec"]) for r in rows
                            if r["config"] == mode)
            if points:
                ax.plot(*zip(*points), marker="o", label=mode, color=COLOURS[mode])
        for r in rows:
            if r["config"] == "plain":
                ax.axhline(r["examples_per_sec"], ls="--", color=COLOURS["plain"],
                           label="plain TF")
        ax.set_xticks(sorted({r["ranks"] for r in rows}))
        ax.set(title=f"{model}: one machine", xlabel="ranks", ylabel="examples/s")
        ax.set_ylim(bottom=0)
        ax.legend(fontsize=8, loc="best")
    for ax, model in zip(axes[0][len(models):], remote_models):
        rows = [r for r in remote if r["model"] == model]
        groups = sorted({(r["hosts"], r["ranks_per_host"], r["bandwidth"]) for r in rows},
                        key=lambda g: (g[0], g[1], -rate_bits(g[2])))
        others = [m for m in MODES if m != "AR"]
        width = 0.8 / len(others)
        for k, mode in enumerate(others):
            values = [next((r["vs_ar"] for r in rows if r["config"] == mode and
                            (r["hosts"], r["ranks_per_host"], r["bandwidth"]) == g), 0.0)
                      for g in groups]
            ax.bar([i + (k - 0.5) * width for i in range(len(groups))], values, width,
                   label=mode, color=COLOURS[mode])
        ax.axhline(1.0, color=COLOURS["AR"], label="AR")
        ax.set_xticks(range(len(groups)),
                      [f"{h}x{g}\n{bw}" for h, g, bw in groups], fontsize=8)
        ax.set(title=f"{model}: simulated machines", ylabel="examples/s relative to AR",
               xlabel="hosts x ranks per host, link")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_bytes(results: dict, path: str) -> None:
    """Bytes per host per step between machines: predicted, accounted, on the wire."""
    rows = results["summary"]["bytes"]
    if not rows:
        return
    fig, ax = plt.subplots(figsize=(max(6.0, 1.1 * len(rows)), 3.8))
    sources = (("predicted", "cost model", "lightgray"), ("accounted", "SDK accounting",
                                                          "tab:purple"),
               ("wire", "link counters", "tab:red"))
    width = 0.8 / len(sources)
    for k, (source, label, colour) in enumerate(sources):
        values = [(r[f"{source}_sent"] + r[f"{source}_received"]) / 2 / 1e3 for r in rows]
        ax.bar([i + (k - 1) * width for i in range(len(rows))], values, width, label=label,
               color=colour)
    ax.set_xticks(range(len(rows)), [f"{r['model']} {r['hosts']}x{r['ranks_per_host']}\n"
                                     f"{r['mode']}" for r in rows], fontsize=8)
    ax.set(ylabel="KB per host per step (mean of sent, received)",
           title="bytes between machines per step: measured vs predicted")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)



def plot_scale(results: dict, path: str) -> None:
    """The scale benchmark: per model, HYBRID's and PS's examples/s relative to AR for each
    shape and scaled link (bars), beside AR's bytes over HYBRID's (the speed-up the byte
    saving would give on a saturated link: black ticks)."""
    rows = results["speedups"]
    models = sorted({r["model"] for r in rows})
    if not models:
        return
    fig, axes = plt.subplots(1, len(models), figsize=(5.2 * len(models), 3.8), squeeze=False)
    for ax, model in zip(axes[0], models):
        cases = [r for r in rows if r["model"] == model and "AR_examples_per_sec" in r]
        labels = [f"{r['hosts']}x{r['ranks_per_host']}\n{r['nominal']}" for r in cases]
        for offset, mode in ((-0.2, "HYBRID"), (0.2, "PS")):
            ax.bar([i + offset for i in range(len(cases))],
                   [r.get(f"{mode}_examples_per_sec", 0) / r["AR_examples_per_sec"]
                    for r in cases], width=0.4, color=COLOURS[mode], label=f"{mode} / AR")
        ax.scatter([i - 0.2 for i in range(len(cases))],
                   [r.get("bytes_ratio", float("nan")) for r in cases], marker="_", s=400,
                   color="black", label="AR bytes / HYBRID bytes", zorder=3)
        ax.axhline(1.0, color=COLOURS["AR"], lw=1)
        ax.set_xticks(range(len(cases)))
        ax.set_xticklabels(labels, fontsize=8)
        hosts = "/".join(str(h) for h in sorted({r["hosts"] for r in cases}))
        ax.set(title=f"{model}: {hosts} simulated machines, scaled links",
               ylabel="throughput relative to AR")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)

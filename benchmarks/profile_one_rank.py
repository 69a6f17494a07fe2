"""Where one rank's step time goes, next to plain TensorFlow's:
``python -m benchmarks.profile_one_rank [--model lm] [--seconds 8]``.

The benchmark found the SDK at one rank slower than plain TensorFlow (benchmarks/README.md);
this samples the training loop's thread with py-spy (``pip install py-spy``; it attaches to a
running process, as root or with ptrace allowed) in three processes training the benchmark's
model: the plain loop, and a one-rank SDK run in AR and in HYBRID mode, each after warm-up.
Samples are sorted into what the loop was doing, and each share is turned into milliseconds
per step with the step time measured during the sampling. Results:
``benchmarks/results/profile_one_rank.{json,md}``.
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

from .machine import machine_facts
from .paper_comparison import RESULTS
from .workloads import FULL

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

WARMUP_STEPS = 50
OTHER = "other Python in the loop"
# What the loop's thread was doing, by the functions on its stack (first match wins).
BUCKETS = (
    ("next batch (tf.data)", ("endless_batches", "OwnedIterator.__next__")),
    ("step function: graph execution (compute, Horovod, servers)", ("quick_execute",)),
    ("step function: Python dispatch of tf.function", ("Function.__call__",)),
    ("step record to the supervisor (JSON, pipe)", ("EventWriter.send",)),
    ("step outputs to Python numbers", ("__float__", "__int__", "_numpy")),
)
LOOPS = ("Trainer.run", "train_single_device")   # the two training loops


def function_name(frame: str) -> str:
    """``Function.__call__`` of py-spy's ``Function.__call__ (path/file.py:833)``."""
    return frame.split(" (")[0]


def matches(name: str, marks) -> bool:
    return any(name == mark or name.endswith("." + mark) for mark in marks)


def classify(stacks: dict) -> dict:
    """``{bucket: share of the loop thread's samples}`` from py-spy's raw stacks."""
    counts = collections.Counter()
    for stack, samples in stacks.items():
        names = [function_name(f) for f in stack.split(";")]
        loop = next((i for i, n in enumerate(names) if matches(n, LOOPS)), None)
        if loop is None:
            continue   # another thread: Horovod's, the parent watch, TensorFlow's pools
        below = names[loop + 1:]
        bucket = next((name for name, marks in BUCKETS
                       if any(matches(n, marks) for n in below)), OTHER)
        counts[bucket] += samples
    total = sum(counts.values())
    return {name: counts[name] / total for name in [b for b, _ in BUCKETS] + [OTHER]}


def sample(pid: int, seconds: int) -> dict:
    """py-spy's raw stacks of process ``pid`` over ``seconds``: ``{stack: samples}``.

    ``--idle`` keeps samples of a thread waiting (for Horovod, for a server), ``--nonblocking``
    does not pause the process to read its stack, so the sampling does not slow it down.
    """
    spy = shutil.which("py-spy") or os.path.join(os.path.dirname(sys.executable), "py-spy")
    if not os.path.exists(spy):
        raise SystemExit("py-spy is needed: pip install py-spy")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "stacks.txt")
        subprocess.run([spy, "record", "--pid", str(pid), "--duration", str(seconds),
                        "--rate", "200", "--idle", "--nonblocking", "--format", "raw",
                        "-o", out], check=True, capture_output=True, timeout=seconds + 60)
        stacks = collections.Counter()
        with open(out) as f:
            for line in f:
                stack, _, count = line.rstrip().rpartition(" ")
                stacks[stack] += int(count)
        return dict(stacks)


def profile_plain(model: str, seconds: int) -> dict:
    """The plain loop in a child process (``--plain-loop``), sampled after warm-up; the
    child logs each step's end time and duration so the step time during sampling is known."""
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "steps.txt")
        child = subprocess.Popen([sys.executable, "-m", "benchmarks.profile_one_rank",
                                  "--model", model, "--plain-loop", log],
                                 stdout=subprocess.PIPE, text=True, cwd=ROOT)
        try:
            if child.stdout.readline().strip() != "warm":
                raise RuntimeError("the plain loop ended before it was warm")
            began = time.time()
            stacks = sample(child.pid, seconds)
            ended = time.time()
        finally:
            child.kill()
            child.wait()
        with open(log) as f:
            rows = [tuple(map(float, line.split())) for line in f if line.strip()]
    during = [duration for moment, duration in rows if began <= moment <= ended]
    return {"stacks": stacks, "step_ms": float(np.median(during)) * 1000}


def plain_loop(model: str, log_path: str) -> None:
    """Child: train the plain loop until killed; say "warm" after warm-up."""
    from parallax_nb.runtime.single import train_single_device

    workload = FULL[model]
    log = open(log_path, "w", buffering=1)
    previous = [time.perf_counter()]

    def on_step(step, *_):
        now = time.perf_counter()
        log.write(f"{time.time()} {now - previous[0]}\n")
        previous[0] = now
        if step == WARMUP_STEPS:
            print("warm", flush=True)

    train_single_device(workload.program(), 10 ** 7, batch_size=workload.batch_size,
                        on_step=on_step)


def profile_sdk(model: str, mode: str, seconds: int) -> dict:
    """A one-rank SDK run of ``mode`` on an embedded cluster, its rank sampled after warm-up."""
    import parallax_nb as px

    workload = FULL[model]
    program = workload.program()
    report = px.analyze(program, steps=2, config=px.Config(batch_size=workload.batch_size))
    with px.connect(local=1) as cluster:
        run = px.train(program, cluster=cluster, select=1, report=report,
                       config=px.Config(mode=mode, steps=10 ** 7,
                                        batch_size=workload.batch_size))
        try:
            while run.metrics.empty or run.metrics["step"].max() < WARMUP_STEPS:
                if run.done:
                    run.wait()   # raises the run's error
                time.sleep(0.1)
            began = time.time()
            stacks = sample(run.pids[0], seconds)
            ended = time.time()
            metrics = run.metrics
        finally:
            run.stop()
    during = metrics[(metrics["time"] >= began) & (metrics["time"] <= ended)]
    return {"stacks": stacks, "step_ms": float(during["step_time"].median()) * 1000}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.profile_one_rank",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="lm", choices=sorted(FULL))
    parser.add_argument("--seconds", type=int, default=8, help="sampling time per process")
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--plain-loop", metavar="LOG", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.plain_loop:
        plain_loop(args.model, args.plain_loop)
        return 0
    profiles = {"plain": profile_plain(args.model, args.seconds)}
    for mode in ("AR", "HYBRID"):
        profiles[f"SDK {mode}, 1 rank"] = profile_sdk(args.model, mode, args.seconds)
    table = {name: {"step_ms": p["step_ms"],
                    "ms_per_step": {bucket: share * p["step_ms"]
                                    for bucket, share in classify(p["stacks"]).items()}}
             for name, p in profiles.items()}
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, f"profile_one_rank_{args.model}")
    with open(stem + ".json", "w") as f:
        json.dump({"model": args.model, "machine": machine_facts(), "profiles": table}, f,
                  indent=1)
    text = markdown(args.model, table)
    with open(stem + ".md", "w") as f:
        f.write(text)
    print(text)
    return 0


def markdown(model: str, table: dict) -> str:
    names = list(table)
    lines = [f"Where the step time goes, {model}, ms per step (py-spy samples of the training "
             f"loop's thread):", "", "| | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(names),
             "| **step time** | " + " | ".join(f"**{table[n]['step_ms']:.2f}**" for n in names)
             + " |"]
    for bucket in [b for b, _ in BUCKETS] + [OTHER]:
        lines.append(f"| {bucket} | " + " | ".join(
            f"{table[n]['ms_per_step'].get(bucket, 0.0):.2f}" for n in names) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())

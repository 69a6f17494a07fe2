"""The client's memory while ``run.model()`` builds the trained Keras model.

    python -m benchmarks.model_memory [--quick] [--tables 4] [--rows 1464844] [--dim 64]
                                      [--ranks 2] [--steps 2] [--out benchmarks/results]

Trains, in HYBRID on an embedded LocalCluster (``--ranks`` ranks, 2 partitions per table,
SGD, batch 8, ``--steps`` steps), a tf_keras model of ``--tables`` embedding tables of
``rows x dim`` float32 (the default: 4 tables of 375 MB, 1.5 GB, Keras' default random
uniform initializer) and a Dense head, takes ``run.result()`` (the trained tables, in the
client once the run ends), then measures in the client the peak RSS above what it held just
before of:

* ``run.model()`` (``new``): the model built with zeros for initial values and every table
  assigned in blocks of rows (`parallax_nb.runtime.export`);
* the path ``run.model()`` took before (``old``): ``model_fn()`` with its initializers, then
  ``variable.assign(whole table)`` per variable.

Both in this one process, ``new`` first (so it gets no memory ``old`` may have left to the
allocator). The peak is the larger of the kernel's high-water mark (``VmHWM``, reset through
``/proc/self/clear_refs`` before each measurement) and a thread sampling RSS every 5 ms. Each
is compared with "table bytes + largest partition bytes", the bound ``run.model()`` must stay
under (issue 23). Before both, a tiny model is built and assigned once, so TensorFlow's and
Keras' one-time start-up in this process is not counted as the model's. TensorFlow runs
without oneDNN here (``TF_ENABLE_ONEDNN_OPTS=0``): oneDNN's allocator keeps freed memory for
reuse, and the client had freed a model of the same size (its analysis). ``--quick``: 2 tables
of 32 MB. Results: ``results/model_memory[_quick].json`` and ``.md``.
"""
from __future__ import annotations

import argparse
import functools
import gc
import json
import os
import threading
import time

import numpy as np

MB = 2**20


# -- the program (shipped by value: ranks need not import `benchmarks`) -----------------------
def tables_model(tables: int, rows: int, dim: int):
    import tensorflow as tf

    ids = tf.keras.Input(shape=(tables,), dtype="int64")
    looked_up = [tf.keras.layers.Embedding(rows, dim, name=f"table{i}")(ids[:, i])
                 for i in range(tables)]
    x = tf.keras.layers.Concatenate()(looked_up) if tables > 1 else looked_up[0]
    return tf.keras.Model(ids, tf.keras.layers.Dense(1, name="head")(x))


def squared_error(model, batch):
    import tensorflow as tf

    ids, target = batch
    return tf.reduce_mean(tf.square(model(ids)[:, 0] - target))


def id_batches(shard, num_shards, batch_size=8, tables=4, rows=1000, steps=4):
    import tensorflow as tf

    rng = np.random.default_rng(shard)
    ids = rng.integers(0, rows, size=(batch_size * steps, tables))
    return tf.data.Dataset.from_tensor_slices(
        (ids, np.ones(len(ids), np.float32))).batch(batch_size)


def sgd():
    import tensorflow as tf

    return tf.keras.optimizers.SGD(0.1)


def make_program(tables: int, rows: int, dim: int):
    import cloudpickle

    import parallax_nb as px

    cloudpickle.register_pickle_by_value(__import__(__name__, fromlist=["_"]))
    return px.Program(functools.partial(tables_model, tables, rows, dim), squared_error,
                      functools.partial(id_batches, tables=tables, rows=rows), sgd,
                      name=f"{tables} tables of {rows}x{dim}")


def table_sizes(tables: int, rows: int, dim: int, partitions: int = 2) -> dict:
    """Bytes of all tables and of the largest partition (the SDK splits rows evenly, the
    first partitions taking the remainder)."""
    return {"table_bytes": tables * rows * dim * 4,
            "largest_partition_bytes": -(-rows // partitions) * dim * 4}


# -- measuring -------------------------------------------------------------------------------
def rss() -> int:
    return _status("VmRSS")


def _status(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_high_water_mark() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PeakRSS:
    """``with PeakRSS() as peak: ...``: this process's RSS just before (``before``), at its
    highest inside (``peak``: VmHWM after a reset, and a 5 ms sampling thread) and after
    (``after``); ``increase = peak - before``."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval

    def __enter__(self):
        gc.collect()
        self.before = rss()
        self.hwm_reset = _reset_high_water_mark()
        self.sampled = self.before
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self.began = time.perf_counter()
        return self

    def _sample(self):
        while not self._stop.is_set():
            self.sampled = max(self.sampled, rss())
            self._stop.wait(self.interval)

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self.began
        self._stop.set()
        self._thread.join()
        self.after = rss()
        self.hwm = _status("VmHWM") if self.hwm_reset else None
        self.peak = max(self.sampled, self.hwm or 0, self.after)
        self.increase = self.peak - self.before
        return False

    def figures(self) -> dict:
        return {"rss_before": self.before, "rss_peak": self.peak, "rss_after": self.after,
                "peak_increase": self.increase, "vm_hwm": self.hwm,
                "sampled_peak": self.sampled, "seconds": self.seconds}


def old_model(program, weights: dict):
    """What ``run.model()`` did before: ``model_fn()`` with its initializers, then each
    variable's whole value assigned at once."""
    from parallax_nb.keras3 import variable_names
    from parallax_nb.runtime.export import build_model

    model = build_model(program, initial_values=True)
    for name, variable in zip(variable_names(model.variables), model.variables):
        variable.assign(weights[name])
    return model


def warm_up() -> None:
    """Build and fill a tiny model once both ways: TensorFlow's and Keras' one-time costs."""
    from parallax_nb.runtime.export import assign_rows, assign_weights, build_model

    program = make_program(1, 1000, 4)
    model = build_model(program)
    weights = {v.name: v.numpy() for v in build_model(program, initial_values=True).variables}
    assign_weights(model, weights)
    assign_rows(model.variables[0], 0, weights[model.variables[0].name], block_bytes=4096)
    old_model(program, weights)


def measure(run, program, sizes: dict) -> dict:
    """Peak RSS of ``run.model()`` (new) and of the old path, in this process."""
    bound = sizes["table_bytes"] + sizes["largest_partition_bytes"]
    weights = run.result()
    out = {"rss_with_result": rss(), "result_bytes": int(sum(
        getattr(v, "nbytes", 0) for v in weights.values()))}
    gc.collect()   # cyclic garbage px.train left in the client (about the tables' size)
    out["rss_with_result_after_gc"] = rss()
    warm_up()
    for path, build in (("new", run.model), ("old", lambda: old_model(program, weights))):
        with PeakRSS() as peak:
            model = build()
        out[path] = dict(peak.figures(), below_bound=peak.increase < bound,
                         of_table=peak.increase / sizes["table_bytes"])
        del model
        gc.collect()
    out["bound_bytes"] = bound
    return out


def run_benchmark(tables: int, rows: int, dim: int, ranks: int, steps: int) -> dict:
    import parallax_nb as px

    from .machine import machine_facts

    program = make_program(tables, rows, dim)
    sizes = table_sizes(tables, rows, dim)
    facts = machine_facts()
    began = time.time()
    with px.connect(local=ranks, spares=False) as cluster:
        run = px.train(program, cluster=cluster, select=ranks, progress=False,
                       config=px.Config(mode="HYBRID", steps=steps, batch_size=8,
                                        partitions=2))
        run.result(timeout=1800)
        trained = time.time() - began
        figures = measure(run, program, sizes)
    return {"machine": facts, "tables": tables, "rows": rows, "dim": dim, "ranks": ranks,
            "steps": steps, "mode": "HYBRID", "partitions": 2, "train_seconds": trained,
            **sizes, **figures}


def write_markdown(results: dict, path: str) -> str:
    machine = results["machine"]
    bound = results["bound_bytes"]

    def mb(x):
        return f"{x / MB:,.0f}"

    lines = [
        "# run.model(): the client's memory",
        "",
        f"Measured {machine['date']} on {machine['nproc']} cores ({machine['cpu_model']}), "
        f"{machine['memory_gb']} GB; load average at start "
        f"{', '.join(f'{x:.1f}' for x in machine['load_average_at_start'])}; TensorFlow "
        f"{machine['versions'].get('tensorflow', '?')}, tf_keras "
        f"{machine['versions'].get('tf_keras', '?')}.",
        "",
        f"{results['tables']} tf_keras embedding tables of {results['rows']:,} x "
        f"{results['dim']} float32 ({mb(results['table_bytes'])} MiB in all, largest partition "
        f"{mb(results['largest_partition_bytes'])} MiB), HYBRID, {results['ranks']} rank(s), "
        f"2 partitions per table, {results['steps']} steps (trained in "
        f"{results['train_seconds']:.0f} s). The client held run.result() "
        f"({mb(results['result_bytes'])} MiB) before each measurement: RSS "
        f"{mb(results['rss_with_result'])} MiB when run.result() returned, "
        f"{mb(results['rss_with_result_after_gc'])} MiB after a `gc.collect()` (cyclic "
        f"garbage px.train leaves in the client; each measurement starts after one). "
        f"Bound: table bytes + largest partition = {mb(bound)} MiB.",
        "",
        "| path | RSS before (MiB) | peak (MiB) | after (MiB) | peak increase (MiB) | "
        "x tables | below the bound | seconds |",
        "|---|---:|---:|---:|---:|---:|---|---:|",
    ]
    names = {"new": "run.model() now (zeros, blocks of rows)",
             "old": "before (initializers, whole-table assign)"}
    for way in ("new", "old"):
        r = results[way]
        lines.append(f"| {names[way]} | {mb(r['rss_before'])} | {mb(r['rss_peak'])} | "
                     f"{mb(r['rss_after'])} | {mb(r['peak_increase'])} | {r['of_table']:.2f} | "
                     f"{'yes' if r['below_bound'] else 'NO'} | {r['seconds']:.1f} |")
    lines += ["", "Peak: the larger of VmHWM (reset via /proc/self/clear_refs before each "
              "path) and RSS sampled every 5 ms. `new` ran first, then `old`, in one process."]
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def main(argv=None) -> int:
    # oneDNN's CPU allocator (TensorFlow's default on CPUs with AVX-512 VNNI or AMX) keeps
    # what it frees for reuse: the client's analysis builds the model once, so run.model()
    # found its tables' memory resident already and RSS could not see them. Without it,
    # TensorFlow allocates from malloc and every byte shows.
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="2 tables of 32 MB (seconds) instead of 4 of 375 MB")
    parser.add_argument("--tables", type=int)
    parser.add_argument("--rows", type=int)
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--ranks", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results"))
    args = parser.parse_args(argv)
    tables = args.tables or (2 if args.quick else 4)
    rows = args.rows or (131_072 if args.quick else 1_464_844)
    results = run_benchmark(tables, rows, args.dim, args.ranks, args.steps)
    stem = os.path.join(args.out, "model_memory_quick" if args.quick else "model_memory")
    os.makedirs(args.out, exist_ok=True)
    with open(stem + ".json", "w") as f:
        json.dump(results, f, indent=1)
    print(open(write_markdown(results, stem + ".md")).read())
    return 0 if results["new"]["below_bound"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

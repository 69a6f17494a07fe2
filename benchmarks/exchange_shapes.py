"""What a step's exchanges with a parameter server cost by their shape, TensorFlow alone:
``python -m benchmarks.exchange_shapes``.

One TensorFlow gRPC server in its own process (job "ps", as `parallax_nb.runtime.server`
starts it) and this process as a client of its own job (as a rank joins,
`runtime.server_variables`), a table of the step-path language model's size on the server,
and one ``tf.function`` step per shape, each run side by side in rounds (every shape once
per round, in the same order):

* ``local``: the step's own work (a gather from a table in this process, a product, a sum):
  what every shape below pays besides its exchange;
* ``pull``: the step's ids sent to the server in one call, its rows back (a HYBRID rank's
  packed exchange, `runtime.packed_pulls`);
* ``pull, ids already there``: the same gather where the ids are on the server before the
  step (what sending the next step's ids a step early would leave to do);
* ``pull + push``: the pull, then the gradient rows pushed to the server and applied there
  (ids and values, two tensors; the step ends once the server has applied them): a reader
  rank's step today;
* ``pull + push in one tensor``: the same, the ids carried inside the values' tensor (their
  bits reinterpreted, ``tf.bitcast``), so the push is one crossing, not two;
* ``push(t-1) + pull(t) merged``: one call that applies the gradients of the step before
  and then gathers this step's rows (the gradients carried from one call to the next): the
  "one exchange per server per step" of #24 item 3.

The ids are a fixed draw per step shape; what is timed is the exchange machinery (TensorFlow
partitions the step at the device boundary: each tensor that crosses is its own RPC, and the
server's part runs as one component function per step). Results: ``<out>/exchange_shapes.json``
and ``.md``; benchmarks/README.md and the performance guide say what they mean.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

from .machine import machine_facts

RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")
ROWS, WIDTH, IDS = 300_000, 64, 1_024     # the step-path language model's table and lookups
SHAPES = ("local", "pull", "pull, ids already there", "pull + push",
          "pull + push in one tensor", "push(t-1) + pull(t) merged")


def serve(address: str) -> None:
    import tensorflow as tf

    cluster = tf.train.ClusterSpec({"ps": [address]})
    tf.distribute.Server(cluster, job_name="ps", task_index=0, protocol="grpc",
                         start=True).join()


def steps(tf, server: str) -> dict:
    """One callable per shape: ``call()`` runs one step and returns once it is done."""
    with tf.device(server):
        table = tf.Variable(tf.random.uniform([ROWS, WIDTH]))
        ids_there = tf.Variable(tf.random.uniform([IDS], 0, ROWS, tf.int64))
    local_table = tf.Variable(tf.random.uniform([ROWS, WIDTH]))
    ids = tf.random.uniform([IDS], 0, ROWS, tf.int64)

    def on_server(fn):
        function = tf.function(fn, autograph=False)

        def call(*args):
            with tf.device(server):
                return function(*args)
        return call

    gather = on_server(lambda i: tf.gather(table, i))
    gather_there = on_server(lambda: tf.gather(table, ids_there))

    def apply_then_gather(pushed_ids, pushed_values, i):
        # one resource: tf.function runs the update before the gather, in program order
        table.scatter_add(tf.IndexedSlices(pushed_values, pushed_ids))
        return tf.gather(table, i)

    merged_call = on_server(apply_then_gather)

    def grads(rows):
        return rows * 1e-9   # the gradient rows of this step (tiny: the table stays finite)

    @tf.function
    def local(i):
        return tf.reduce_sum(grads(tf.gather(local_table, i)))

    @tf.function
    def pull(i):
        return tf.reduce_sum(grads(gather(i)))

    @tf.function
    def pull_there(i):
        return tf.reduce_sum(grads(gather_there())) + tf.cast(tf.size(i), tf.float32)

    @tf.function
    def pull_push(i):
        g = grads(gather(i))
        with tf.device(server):
            table.scatter_add(tf.IndexedSlices(g, i))
        return tf.reduce_sum(g)

    def apply_packed(message):
        pushed_ids = tf.bitcast(tf.reshape(message[:2 * IDS], [IDS, 2]), tf.int64)
        table.scatter_add(tf.IndexedSlices(tf.reshape(message[2 * IDS:], [IDS, WIDTH]),
                                           pushed_ids))
        return tf.constant(True)

    push_packed = on_server(apply_packed)

    @tf.function
    def pull_push_packed(i):
        g = grads(gather(i))
        message = tf.concat([tf.reshape(tf.bitcast(i, tf.float32), [-1]),
                             tf.reshape(g, [-1])], 0)
        return tf.reduce_sum(g) + tf.cast(push_packed(message), tf.float32)

    @tf.function
    def merged(i, carried_ids, carried_values):
        g = grads(merged_call(carried_ids, carried_values, i))
        return tf.reduce_sum(g), i, g

    carried = [ids, tf.zeros([IDS, WIDTH])]

    def merged_step():
        _, carried[0], carried[1] = merged(ids, *carried)
        return carried[1]

    return {"local": lambda: local(ids), "pull": lambda: pull(ids),
            "pull, ids already there": lambda: pull_there(ids),
            "pull + push": lambda: pull_push(ids),
            "pull + push in one tensor": lambda: pull_push_packed(ids),
            "push(t-1) + pull(t) merged": merged_step}


def measure(rounds: int, count: int, warmup: int) -> dict:
    """ms per step of every shape, per round."""
    import tensorflow as tf
    from distributed.utils import open_port

    address = f"127.0.0.1:{open_port('127.0.0.1')}"
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.exchange_shapes",
                               "--serve", address])
    try:
        own = f"127.0.0.1:{open_port('127.0.0.1')}"
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec({"ps": [address], "w1": [own]}), rpc_layer="grpc")
        tf.config.experimental_connect_to_cluster(resolver, job_name="w1", task_index=0,
                                                  make_master_device_default=False)
        shapes = steps(tf, "/job:ps/replica:0/task:0/device:CPU:0")
        times = {name: [] for name in SHAPES}
        for _ in range(rounds):
            for name in SHAPES:
                step = shapes[name]
                for _ in range(warmup):
                    np.asarray(step())
                began = time.perf_counter()
                for _ in range(count):
                    np.asarray(step())
                times[name].append((time.perf_counter() - began) / count * 1e3)
        return times
    finally:
        server.kill()
        server.wait()


def markdown(results: dict) -> str:
    machine, times = results["machine"], results["ms_per_step"]
    median = {name: float(np.median(values)) for name, values in times.items()}
    lines = [f"# Exchange shapes: {machine['date']}, {machine['nproc']} cores "
             f"({machine['cpu_model']}), load {machine['load_average_at_start'][0]:.1f} at "
             f"start", "",
             f"One server process, this process its client; table {ROWS:,} x {WIDTH} float32, "
             f"{IDS:,} ids per step; {results['steps']} steps per shape and round, "
             f"{results['rounds']} rounds in turns. ms per step:", "",
             "| shape | median | per round | over local |", "|---|---:|---|---:|"]
    for name in SHAPES:
        lines.append(f"| {name} | {median[name]:.3f} | "
                     f"{', '.join(f'{v:.3f}' for v in times[name])} | "
                     f"{median[name] - median['local']:+.3f} |")
    lines += ["", f"- the ids' own crossing (pull against ids already there): "
                  f"{median['pull'] - median['pull, ids already there']:+.3f} ms per step",
              f"- the push's crossings (pull + push against pull): "
              f"{median['pull + push'] - median['pull']:+.3f} ms per step",
              f"- the push as one tensor (against pull + push): "
              f"{median['pull + push in one tensor'] - median['pull + push']:+.3f} ms per step",
              f"- merging the push into the next pull (merged against pull + push): "
              f"{median['push(t-1) + pull(t) merged'] - median['pull + push']:+.3f} ms per "
              f"step"]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.exchange_shapes",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--out", default=RESULTS)
    parser.add_argument("--serve", help=argparse.SUPPRESS)   # the server process
    args = parser.parse_args(argv)
    if args.serve:
        serve(args.serve)
        return 0
    facts, began = machine_facts(), time.time()
    times = measure(args.rounds, args.steps, warmup=50)
    results = {"machine": facts, "rounds": args.rounds, "steps": args.steps,
               "seconds": round(time.time() - began, 1), "ms_per_step": times}
    os.makedirs(args.out, exist_ok=True)
    stem = os.path.join(args.out, "exchange_shapes")
    with open(stem + ".json", "w") as f:
        json.dump(results, f, indent=1)
    text = markdown(results)
    with open(stem + ".md", "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

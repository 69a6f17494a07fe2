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
  (each row once, as the SDK pushes them: the unique ids and the summed values, two tensors
  made on the client; the step ends once the server has applied them): a reader rank's step;
* ``pull + push, stored not applied``: the same push, stored on the server as it comes (what
  the push costs without its update);
* ``pull + push in one tensor``: the push's ids carried inside the values' tensor (their bits
  reinterpreted, ``tf.bitcast``) and cut on the server, so the push is one crossing, not two;
* ``push(t-1) + pull(t) merged``: one call that applies the gradients of the step before
  and then gathers this step's rows (the gradients carried from one call to the next): the
  "one exchange per server per step" of #24 item 3.

The ids are one fixed draw; what is timed is the exchange machinery (TensorFlow partitions
the step at the device boundary: each tensor that crosses is its own RPC, counted per shape
as the SDK's profile counts them, and the server's part runs as one component function per
step). Results: ``<out>/exchange_shapes.json``
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
          "pull + push, stored not applied", "pull + push in one tensor",
          "push(t-1) + pull(t) merged")


def serve(address: str) -> None:
    import tensorflow as tf

    cluster = tf.train.ClusterSpec({"ps": [address]})
    tf.distribute.Server(cluster, job_name="ps", task_index=0, protocol="grpc",
                         start=True).join()


class Shape:
    """One step shape: ``call()`` runs one step and returns once it is done; ``traced`` is
    its traced function (for the crossings it makes, `runtime.profile.server_messages`)."""

    def __init__(self, function, args):
        self.function, self.args = function, list(args)

    def call(self):
        return self.function(*self.args)

    @property
    def traced(self):
        return self.function.get_concrete_function(*self.args)


class Carried(Shape):
    """A step whose pushed gradients go with the next step's call (its last two outputs
    are the next call's last two inputs)."""

    def call(self):
        loss, pushed_ids, values = self.function(*self.args)
        self.args[1:] = [pushed_ids, values]
        return loss


def shapes(tf, server: str) -> dict:
    """Every shape of `SHAPES`, over one table on ``server`` (see the module docstring)."""
    with tf.device(server):
        table = tf.Variable(tf.random.uniform([ROWS, WIDTH]))
        ids_there = tf.Variable(tf.random.uniform([IDS], 0, ROWS, tf.int64))
        kept = tf.Variable(tf.zeros([0]), shape=tf.TensorShape(None))
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

    def push(i, rows):
        """The gradient rows of this step, each row once, as the SDK pushes them
        (`server_sync`): new tensors, made on the client (tiny: the table stays finite)."""
        unique, position = tf.unique(i)
        return unique, tf.math.unsorted_segment_sum(rows * 1e-9, position, tf.size(unique))

    @tf.function
    def local(i):
        return tf.reduce_sum(push(i, tf.gather(local_table, i))[1])

    @tf.function
    def pull(i):
        return tf.reduce_sum(push(i, gather(i))[1])

    @tf.function
    def pull_there(i):
        return tf.reduce_sum(push(i, gather_there())[1])

    @tf.function
    def pull_push(i):
        pushed_ids, values = push(i, gather(i))
        with tf.device(server):
            table.scatter_add(tf.IndexedSlices(values, pushed_ids))
        return tf.reduce_sum(values)

    @tf.function
    def pull_push_stored(i):
        pushed_ids, values = push(i, gather(i))
        with tf.device(server):   # one store of both tensors: the crossings of pull + push
            kept.assign(tf.concat([tf.reshape(tf.bitcast(pushed_ids, tf.float32), [-1]),
                                   tf.reshape(values, [-1])], 0))
        return tf.reduce_sum(values)

    @tf.function
    def pull_push_one_tensor(i):
        pushed_ids, values = push(i, gather(i))
        message = tf.concat([tf.reshape(tf.bitcast(pushed_ids, tf.float32), [-1]),
                             tf.reshape(values, [-1])], 0)
        with tf.device(server):   # the message crosses once; it is cut on the server
            count = tf.size(message) // (2 + WIDTH)   # each row: its id (2 floats), values
            unpacked = tf.bitcast(tf.reshape(message[:2 * count], [count, 2]), tf.int64)
            table.scatter_add(tf.IndexedSlices(tf.reshape(message[2 * count:], [-1, WIDTH]),
                                               unpacked))
        return tf.reduce_sum(values)

    @tf.function
    def merged(i, carried_ids, carried_values):
        pushed_ids, values = push(i, merged_call(carried_ids, carried_values, i))
        return tf.reduce_sum(values), pushed_ids, values

    nothing = [tf.zeros([0], tf.int64), tf.zeros([0, WIDTH])]   # the first call pushes none
    return {"local": Shape(local, [ids]), "pull": Shape(pull, [ids]),
            "pull, ids already there": Shape(pull_there, [ids]),
            "pull + push": Shape(pull_push, [ids]),
            "pull + push, stored not applied": Shape(pull_push_stored, [ids]),
            "pull + push in one tensor": Shape(pull_push_one_tensor, [ids]),
            "push(t-1) + pull(t) merged": Carried(merged, [ids, *nothing])}


def measure(rounds: int, count: int, warmup: int):
    """ms per step of every shape, per round; and the tensors each step's shape sends to or
    receives from the server (each one RPC)."""
    import tensorflow as tf
    from distributed.utils import open_port

    from parallax_nb.runtime.profile import server_messages

    address = f"127.0.0.1:{open_port('127.0.0.1')}"
    server = subprocess.Popen([sys.executable, "-m", "benchmarks.exchange_shapes",
                               "--serve", address])
    try:
        own = f"127.0.0.1:{open_port('127.0.0.1')}"
        resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
            tf.train.ClusterSpec({"ps": [address], "w1": [own]}), rpc_layer="grpc")
        tf.config.experimental_connect_to_cluster(resolver, job_name="w1", task_index=0,
                                                  make_master_device_default=False)
        made = shapes(tf, "/job:ps/replica:0/task:0/device:CPU:0")
        crossings = {name: server_messages(made[name].traced, None) for name in SHAPES}
        times = {name: [] for name in SHAPES}
        for _ in range(rounds):
            for name in SHAPES:
                step = made[name]
                for _ in range(warmup):
                    np.asarray(step.call())
                began = time.perf_counter()
                for _ in range(count):
                    np.asarray(step.call())
                times[name].append((time.perf_counter() - began) / count * 1e3)
        return times, crossings
    finally:
        server.kill()
        server.wait()


def markdown(results: dict) -> str:
    machine, times, crossings = results["machine"], results["ms_per_step"], results["crossings"]
    median = {name: float(np.median(values)) for name, values in times.items()}

    def against(name, base):
        return f"{median[name] - median[base]:+.3f} ms per step"

    lines = [f"# Exchange shapes: {machine['date']}, {machine['nproc']} cores "
             f"({machine['cpu_model']}), load {machine['load_average_at_start'][0]:.1f} at "
             f"start", "",
             f"One server process, this process its client; table {ROWS:,} x {WIDTH} float32, "
             f"{IDS:,} ids per step; {results['steps']} steps per shape and round, "
             f"{results['rounds']} rounds in turns. ms per step, and the tensors a step "
             f"moves between the client and the server (each one RPC):", "",
             "| shape | crossings | median | per round | over local |",
             "|---|---:|---:|---|---:|"]
    for name in SHAPES:
        lines.append(f"| {name} | {crossings[name]} | {median[name]:.3f} | "
                     f"{', '.join(f'{v:.3f}' for v in times[name])} | "
                     f"{median[name] - median['local']:+.3f} |")
    lines += ["", "- the ids' own crossing (pull against ids already there): " +
              against("pull", "pull, ids already there"),
              "- the push (pull + push against pull): " + against("pull + push", "pull"),
              "- its update (pull + push against the same, stored not applied): " +
              against("pull + push", "pull + push, stored not applied"),
              "- the push as one tensor (against pull + push): " +
              against("pull + push in one tensor", "pull + push"),
              "- merging the push into the next pull (merged against pull + push): " +
              against("push(t-1) + pull(t) merged", "pull + push")]
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
    times, crossings = measure(args.rounds, args.steps, warmup=50)
    results = {"machine": facts, "rounds": args.rounds, "steps": args.steps,
               "seconds": round(time.time() - began, 1), "ms_per_step": times,
               "crossings": crossings}
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

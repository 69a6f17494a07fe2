"""Step times over several epochs: is there a stall at the epoch boundaries?

    python -m benchmarks.steady_steps [--epochs 3] [--ranks 1] [--per-epoch-iterators]

Trains the bundled language model (20k words, batch 64, the example's 60k windows) through
the SDK on an embedded LocalCluster for ``epochs`` epochs of one rank's shard and prints the
distribution of step times (p50, p99, max), the steps at epoch boundaries and the slowest
steps. ``--per-epoch-iterators`` feeds the same batches through a new tf.data iterator per
epoch, as `runtime.data.endless_batches` did before it used ``Dataset.repeat()``: the
"before" figures.
"""
from __future__ import annotations

import argparse
import functools
import json

import numpy as np


class PerEpochIterators:
    """A tf.data dataset behind a plain iterable: every ``iter`` makes a new tf.data iterator
    (the SDK then starts each epoch with a new one, as it used to)."""

    def __init__(self, dataset):
        self.dataset = dataset

    def __iter__(self):
        return iter(self.dataset)


def per_epoch(dataset_fn, shard, num_shards, batch_size=64):
    return PerEpochIterators(dataset_fn(shard, num_shards, batch_size=batch_size))


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--ranks", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--vocab", type=int, default=20_000)
    parser.add_argument("--per-epoch-iterators", action="store_true")
    args = parser.parse_args(argv)

    import cloudpickle

    import parallax_nb as px
    from parallax_nb.examples import language_model

    cloudpickle.register_pickle_by_value(__import__(__name__))
    program = language_model.make_program(vocab=args.vocab)
    batches = sum(1 for _ in program.dataset(0, args.ranks, args.batch_size))
    if args.per_epoch_iterators:
        program = px.Program(program.model_fn, program.loss_fn,
                             functools.partial(per_epoch, program.dataset_fn),
                             program.optimizer_fn, name=program.name + " per-epoch iterators")
    steps = batches * args.epochs
    with px.connect(local=args.ranks) as cluster:
        run = px.train(program, cluster=cluster, select=args.ranks,
                       config=px.Config(mode="AR", steps=steps, batch_size=args.batch_size))
        run.wait()
    frame = run.metrics
    slowest = frame.groupby("step")["step_time"].max().sort_index()
    times = slowest.iloc[1:].to_numpy()          # after the first step (tracing)
    boundaries = [batches * e + 1 for e in range(1, args.epochs)]
    result = {"variant": "per-epoch iterators" if args.per_epoch_iterators else "repeat()",
              "steps": steps, "steps_per_epoch": batches,
              "p50_ms": float(np.percentile(times, 50) * 1e3),
              "p99_ms": float(np.percentile(times, 99) * 1e3),
              "max_ms": float(times.max() * 1e3),
              "boundary_ms": [float(slowest.loc[b] * 1e3) for b in boundaries],
              "slowest_steps": [int(s) for s in slowest.iloc[1:].nlargest(5).index]}
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()

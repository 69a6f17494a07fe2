"""Validation inside a run: every rank evaluates its shard, the ranks sum what they counted.

Each rank runs the program's ``validation_fn(rank, size)`` once through the model with the
current weights (``training=False``; server rows are gathered as in a training step, one
batch's rows at a time; nothing is updated). It keeps, per validation, the loss summed over
its examples, its examples, the rows it gathered from the servers (and checks, once, that
the traced evaluation reads no sparse table whole: `whole_table_reads`), and its Keras metrics'
states (`keras_metrics`). One Horovod AllReduce sums them over the ranks; every rank then
has the values one device would get evaluating the whole validation set with these weights
(``model.evaluate``: the loss is weighted by the batches' sizes as Keras weighs it), also
when the shards differ in length. Every rank calls the AllReduce once per validation,
however many batches its shard has, so none waits for another's extra batch.

The validation loss is that of the run's ``loss_fn``; for a compile-style program it is
``model.compute_loss`` on ``model(x, training=False)`` (as ``evaluate`` computes it), for
others ``loss_fn(model, batch)`` as written, and the metrics then take ``model(x,
training=False)`` in a second call.
"""
from __future__ import annotations

import time
from typing import Dict, Tuple

from ..keras3 import TF_KERAS, flavour
from ..keras_metrics import MetricSet
from ..keras_program import unpack
from ..program import Program
from ..tf_env import step_function, tensorflow, user_function
from .data import is_tf_dataset
from .gathers import pulled_rows

SUMS = ("loss", "examples", "rows_gathered")


def prediction_spec(model, x):
    """The shape and dtype of ``model(x)`` (traced, not run: no server row is read)."""
    tf = tensorflow()
    traced = tf.function(lambda inputs: model(inputs, training=False), autograph=False)
    return traced.get_concrete_function(x).structured_outputs


def build_metrics(returned, model, batch) -> MetricSet:
    """``MetricSet`` of ``returned`` (a ``metrics_fn()`` result), made for ``model``'s
    outputs and ``batch``'s labels."""
    metrics = MetricSet(returned, flavour(model) or TF_KERAS)
    if metrics:
        x, y, _ = unpack(batch)
        metrics.build(y, prediction_spec(model, x))
    return metrics


def whole_table_reads(concrete_function, tables) -> int:
    """Ops of a traced function that take a sparse table's partition for anything but
    gathering rows (a read of the whole partition, say): 0 where it costs what it reads."""
    handles = {id(table.handle) for table in tables}
    inside = [internal for external, internal in concrete_function.graph.captures
              if id(external) in handles]
    return sum(consumer.type != "ResourceGather"
               for tensor in inside for consumer in tensor.consumers())


class Validation:
    def __init__(self, program: Program, model, rank: int, size: int, batch_size, hvd,
                 example_batch, tables=()):
        tf = tensorflow()
        self.program, self.model, self.hvd = program, model, hvd
        self.rank, self.size, self.batch_size = rank, size, batch_size
        self.metrics = build_metrics(program.metrics(), model, example_batch)
        self.sums = tf.Variable(tf.zeros([len(SUMS)], tf.float64), trainable=False,
                                name="parallax_validation_sums")
        self._predictions = getattr(program.loss_fn, "predictions", None)
        self._loss_fn = user_function(program.loss_fn)
        self._evaluate = step_function(self._evaluate_batch)
        self._dataset = None
        self._tables = list(tables)   # the sparse tables' server partitions
        self.table_reads = None       # ops that read a whole one (counted at the first batch)

    def _evaluate_batch(self, batch):
        tf = tensorflow()
        with pulled_rows() as pulled:
            if self._predictions is not None:
                loss, y, y_pred, weight = self._predictions(self.model, batch, training=False)
            else:
                loss = self._loss_fn(self.model, batch)
                if self.metrics:
                    x, y, weight = unpack(batch)
                    y_pred = self.model(x, training=False)
        examples = tf.cast(tf.shape(tf.nest.flatten(batch)[0])[0], tf.float64)
        rows = tf.add_n([tf.cast(tf.reduce_prod(tf.shape(r)[:-1]), tf.float64)
                         for r in pulled]) if pulled else tf.constant(0.0, tf.float64)
        self.sums.assign_add(tf.stack([tf.cast(loss, tf.float64) * examples, examples, rows]))
        if self.metrics:
            self.metrics.update(y, y_pred, weight)

    def _batches(self):
        """This rank's shard, one pass (a ``tf.data`` dataset is made once and iterated
        anew; other iterables are asked for again each time)."""
        if self._dataset is not None:
            return self._dataset
        dataset = self.program.validation(self.rank, self.size, self.batch_size)
        if is_tf_dataset(dataset):
            self._dataset = dataset
        return dataset

    def run(self) -> Tuple[Dict[str, float], Dict[str, float]]:
        """Evaluate this rank's shard and sum over the ranks: ``(values, facts)``, values
        ``{"val_loss": ..., "val_<metric>": ...}``, facts the examples, rows gathered and
        seconds it took (the same values on every rank)."""
        tf = tensorflow()
        started = time.perf_counter()
        self.sums.assign(tf.zeros_like(self.sums))
        self.metrics.reset()
        for batch in self._batches():
            if self.table_reads is None:
                self.table_reads = whole_table_reads(
                    self._evaluate.get_concrete_function(batch), self._tables)
            self._evaluate(batch)
        self._sum_over_ranks([self.sums] + self.metrics.variables)
        loss, examples, rows = (float(v) for v in self.sums.numpy())
        if examples == 0:
            from ..errors import ProgramError

            raise ProgramError(f"validation_fn(shard, {self.size}) yielded no examples on any "
                               f"of the {self.size} shards: give it validation data")
        values = {"val_loss": loss / examples,
                  **{f"val_{name}": value for name, value in self.metrics.results().items()}}
        facts = {"val_examples": int(examples), "val_rows_gathered": int(rows),
                 "val_table_reads": self.table_reads or 0,
                 "val_seconds": time.perf_counter() - started}
        return values, facts

    def _sum_over_ranks(self, variables) -> None:
        """One AllReduce (sum) of every state, in float64, written back in place."""
        tf = tensorflow()
        if self.size == 1:
            return
        flat = tf.concat([tf.reshape(tf.cast(v, tf.float64), [-1]) for v in variables], 0)
        total = self.hvd.allreduce(flat, op=self.hvd.Sum, name="parallax_validation")
        start = 0
        for variable in variables:
            count = int(variable.shape.num_elements())
            part = tf.reshape(total[start:start + count], variable.shape)
            variable.assign(tf.cast(part, variable.dtype))
            start += count

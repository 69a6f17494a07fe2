"""The plain single-device training loop: no SDK in the way.

It is the reference the distributed runs are checked against (a run of N ranks with batch b
must equal this loop with batch N*b over the same examples) and the baseline of the
benchmarks. Deliberately minimal: tape, gradients, apply.
"""
from __future__ import annotations

import itertools
from typing import Optional

from ..keras3 import variable_name
from ..program import Program
from ..row_updates import LocalRowUpdates
from ..tf_env import fresh_keras_names, step_function, tensorflow, trainable_variables, \
    user_function
from .data import endless_batches, named_weights


def train_single_device(program: Program, steps: int, batch_size: Optional[int] = None,
                        on_step=None, gradient_scale: Optional[dict] = None,
                        sparse_scale: float = 1.0, per_epoch: Optional[int] = None):
    """Train ``steps`` steps on shard 0 of 1; return (weights dict, losses list).

    gradient_scale: ``{variable name: factor}`` multiplies those gradients.
    sparse_scale: multiplies every sparse gradient, e.g. by N to state what summed sparse
    gradients of N ranks mean (``Config(average_sparse=False)``; `parallax_nb.reference`).
    per_epoch: batches per pass over the data (``Config(epochs=...)``).
    """
    scale = dict(gradient_scale or {})
    tf = tensorflow()
    with fresh_keras_names():   # the names a rank gives the variables
        model = program.model()
    optimizer = program.optimizer()
    batches = endless_batches(program, 0, 1, batch_size, per_epoch)
    first = next(batches)
    # Sparse variables (an IndexedSlices gradient, the analysis's rule) take their row rule,
    # as in every mode of a distributed run: one gradient of the first batch tells which.
    with tf.GradientTape() as tape:
        probe = program.loss_fn(model, first)
    variables = trainable_variables(model)
    row_updates = LocalRowUpdates(optimizer, [
        v for g, v in zip(tape.gradient(probe, variables), variables)
        if isinstance(g, tf.IndexedSlices)])

    loss_fn = user_function(program.loss_fn)

    @step_function
    def step(batch):
        with tf.GradientTape() as tape:
            loss = loss_fn(model, batch)
        grads = [g if g is None else
                 _scaled(g, scale.get(variable_name(v), 1.0) *
                         (sparse_scale if isinstance(g, tf.IndexedSlices) else 1.0))
                 for g, v in zip(tape.gradient(loss, variables), variables)]
        row_updates.apply(optimizer, [(g, v) for g, v in zip(grads, variables)
                                      if g is not None])
        return loss

    losses = []
    for batch in itertools.islice(itertools.chain([first], batches), steps):
        losses.append(float(step(batch)))
        if on_step is not None:
            on_step(len(losses), losses[-1], batch)
    return dict(named_weights(model.variables)), losses


def _scaled(grad, factor):
    tf = tensorflow()
    if isinstance(grad, tf.IndexedSlices):
        return tf.IndexedSlices(grad.values * factor, grad.indices, grad.dense_shape)
    return grad * factor

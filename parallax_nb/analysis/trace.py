"""Run k single-device steps of the user's program and record what each gradient looks like.

A variable whose gradient is a ``tf.IndexedSlices`` in every step is *sparse*: only the rows
a step looked up get a gradient (embeddings, sampled-softmax weights). One with a dense
gradient is *dense*. Nothing is updated: the gradients are only inspected.
"""
from __future__ import annotations

import dataclasses
import itertools
from typing import List, Optional, Tuple

import numpy as np

from ..errors import ProgramError
from ..keras3 import check_one_keras, tf_variable, variable_names
from ..program import Program
from ..tf_env import fresh_keras_names, tensorflow, trainable_variables


@dataclasses.dataclass(frozen=True)
class VariableTrace:
    """What k steps showed about one trainable variable."""

    index: int                 # creation order: how ranks find the same variable again
    name: str                  # as reported (`keras3.variable_names`: unique)
    shape: Tuple[int, ...]
    dtype: str
    bytes: int
    kind: str                  # "sparse", "dense", or "unused" (no gradient in any step)
    alpha: float               # mean fraction of rows touched per step (1.0 when dense)
    slices_per_step: float     # gradient rows per step before de-duplication (sparse only)
    union_alphas: Tuple[float, ...] = ()  # rows touched by g consecutive batches, g = 1, 2, ...
    index_bytes: int = 8       # bytes of one gradient index (int64 unless the ids are int32)
    tf_name: str = ""          # TensorFlow's name: what a rank's variable creator sees
    dense_note: str = ""       # why a dense variable is dense, where the model says (a regularizer)

    @property
    def rows(self) -> int:
        return self.shape[0] if self.shape else 1

    @property
    def row_bytes(self) -> int:
        return self.bytes // max(self.rows, 1)

    def alpha_for(self, batches: int) -> float:
        """Fraction of rows touched by ``batches`` batches together (local aggregation).

        Measured from the traced batches where there were enough of them, otherwise
        extrapolated assuming independent rows: 1 - (1 - alpha) ** batches.
        """
        if self.kind != "sparse":
            return 1.0
        if 1 <= batches <= len(self.union_alphas):
            return self.union_alphas[batches - 1]
        return 1.0 - (1.0 - self.alpha) ** batches


@dataclasses.dataclass(frozen=True)
class GradientTrace:
    variables: Tuple[VariableTrace, ...]
    steps: int
    examples_per_step: Optional[int]
    warnings: Tuple[str, ...]


def trace_gradients(program: Program, steps: int = 5, batch_size: Optional[int] = None
                    ) -> GradientTrace:
    """Compute (without applying) ``steps`` gradients on shard 0 of 1."""
    tf = tensorflow()
    if steps < 1:
        raise ProgramError(f"steps must be at least 1, got {steps}")
    with fresh_keras_names():
        model = program.model()
    check_one_keras(model, program.optimizer())
    batches = list(itertools.islice(iter(program.dataset(0, 1, batch_size)), steps))
    if not batches:
        raise ProgramError("dataset_fn(0, 1) yielded no batches: it must yield at least one "
                           "batch (check the data source and that batch_size <= its size)")

    per_step: List[list] = []
    variables = None
    for batch in batches:
        with tf.GradientTape() as tape:
            loss = compute_loss(program, model, batch)
        if variables is None:
            variables = trainable_variables(model)
            if not variables:
                raise ProgramError("the model has no trainable variables after a call of "
                                   "loss_fn: there is nothing to train")
        per_step.append(tape.gradient(loss, variables))

    notes = regularized(model)
    traces = tuple(_summarise(i, v, name, [grads[i] for grads in per_step],
                              notes.get(id(tf_variable(v)), ""))
                   for i, (v, name) in enumerate(zip(variables, variable_names(variables))))
    warnings = tuple(f"{t.name} got no gradient from loss_fn in {len(batches)} step(s): "
                     f"it is not trained (is it used by the loss?)"
                     for t in traces if t.kind == "unused")
    return GradientTrace(traces, len(batches), examples_in(batches[0]), warnings)


def compute_loss(program: Program, model, batch):
    """Call ``loss_fn`` and insist on a scalar floating-point loss."""
    tf = tensorflow()
    try:
        loss = program.loss_fn(model, batch)
    except Exception as exc:
        raise ProgramError(f"loss_fn(model, batch) raised {type(exc).__name__}: {exc}") from exc
    try:
        loss = tf.convert_to_tensor(loss)
    except (TypeError, ValueError) as exc:
        raise ProgramError(f"loss_fn must return a scalar tensor, got {type(loss).__name__}") \
            from exc
    if loss.shape.rank != 0:
        raise ProgramError(f"loss_fn must return a scalar, got shape {tuple(loss.shape)}: "
                           f"reduce it, e.g. with tf.reduce_mean(...)")
    if not loss.dtype.is_floating:
        raise ProgramError(f"loss_fn must return a floating-point scalar, got {loss.dtype.name}")
    return loss


def examples_in(batch) -> Optional[int]:
    """Leading dimension of the first tensor in a batch (None when it has none)."""
    tf = tensorflow()
    for leaf in tf.nest.flatten(batch):
        shape = getattr(leaf, "shape", None)
        if shape is not None and len(shape) > 0 and shape[0] is not None:
            return int(shape[0])
    return None


def regularized(model) -> dict:
    """``{id(tf variable): why it is dense}`` for the weights of Keras layers with a
    regularizer: a regularizer reads every row, so even an embedding's gradient is dense."""
    layers = getattr(model, "_flatten_layers", None)
    notes = {}
    for layer in (layers() if callable(layers) else []):
        for attribute, value in vars(layer).items():
            if not attribute.endswith("_regularizer") or value is None:
                continue
            weight = getattr(layer, attribute[:-len("_regularizer")], None)
            if weight is not None and hasattr(weight, "shape"):
                notes[id(tf_variable(weight))] = (
                    f"its {attribute} ({type(value).__name__}) reads every row, so its "
                    f"gradient is dense; without it, it would be sparse")
    return notes


def _summarise(index, variable, name, grads, dense_note="") -> VariableTrace:
    tf = tensorflow()
    variable = tf_variable(variable)
    shape = tuple(int(d) for d in variable.shape)
    dtype = tf.as_dtype(variable.dtype).base_dtype
    size = int(np.prod(shape, dtype=np.int64)) * dtype.size
    rows = shape[0] if shape else 1
    present = [g for g in grads if g is not None]
    if not present:
        kind = "unused"
    elif all(isinstance(g, tf.IndexedSlices) for g in present):
        kind = "sparse"
    else:
        kind = "dense"
    alpha, slices, unions, index_bytes = 1.0, 0.0, (), 8
    if kind == "sparse":
        index_bytes = present[0].indices.dtype.size
        touched = [np.unique(g.indices.numpy()) if g is not None else np.empty(0, np.int64)
                   for g in grads]
        alpha = float(np.mean([t.size / rows for t in touched]))
        slices = float(np.mean([int(g.indices.shape[0]) if g is not None else 0 for g in grads]))
        unions = tuple(_union_alpha(touched, g, rows) for g in range(1, len(touched) + 1))
    elif kind == "unused":
        alpha = 0.0
    return VariableTrace(index, name, shape, dtype.name, size, kind, alpha, slices,
                         unions, index_bytes, variable.name,
                         dense_note if kind == "dense" else "")


def _union_alpha(touched, group, rows) -> float:
    """Mean fraction of rows touched by ``group`` consecutive batches together."""
    windows = [np.unique(np.concatenate(touched[i:i + group]))
               for i in range(0, len(touched) - group + 1)]
    return float(np.mean([w.size / rows for w in windows]))

"""A program written the Keras way: ``model_fn()`` returns a *compiled* model, and the loss, the
optimizer and the metrics come from its ``compile`` (tf_keras or Keras 3).

`Program.from_keras` turns it into the four-function contract, so every mode, the analysis
and the single-device reference treat it like any other program:

* ``loss_fn(model, batch)`` is ``model.compute_loss`` on ``model(x, training=True)``: the
  compiled loss (with its ``loss_weights``), the batch's sample weights and the model's own
  regularisation losses, as ``model.fit`` computes them. Batches are ``(x, y)`` or
  ``(x, y, sample_weight)``, as Keras takes them.
* ``optimizer_fn()`` makes a new optimizer from the compiled one's serialised config (read
  once, here on the client), so a rank never builds a second model to get an optimizer.
* ``metrics_fn()`` gives compile's ``metrics`` and ``weighted_metrics`` from the same
  serialised config (`keras_metrics` makes them on the rank). Since the loss is computed from
  ``model(x)`` here, a rank also updates them while it trains (`CompiledLoss.predictions`).
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Tuple

from .errors import ProgramError
from .keras3 import KERAS3, flavour
from .tf_env import fresh_keras_names


def unpack(batch) -> Tuple[Any, Any, Any]:
    """``(x, y, sample_weight)`` of a Keras batch: ``(x, y)`` or ``(x, y, sample_weight)``."""
    if isinstance(batch, (tuple, list)) and len(batch) in (2, 3):
        x, y, *weight = batch
        return x, y, (weight[0] if weight else None)
    raise ProgramError(f"a Keras program's batches are (x, y) or (x, y, sample_weight); "
                       f"dataset_fn yielded a {type(batch).__name__}"
                       f"{f' of {len(batch)}' if isinstance(batch, (tuple, list)) else ''}")


class CompiledLoss:
    """``loss_fn`` of a compiled model: the loss ``model.fit`` minimises (module doc)."""

    def __call__(self, model, batch):
        return self.predictions(model, batch)[0]

    @staticmethod
    def predictions(model, batch, training: bool = True):
        """``(loss, y, y_pred, sample_weight)``: the loss with what the metrics take."""
        x, y, sample_weight = unpack(batch)
        y_pred = model(x, training=training)
        loss = model.compute_loss(x=x, y=y, y_pred=y_pred, sample_weight=sample_weight)
        return loss, y, y_pred, sample_weight


compiled_loss = CompiledLoss()


def optimizers_of(keras_flavour: str):
    """The ``optimizers`` module of Keras 3 or of tf_keras."""
    if keras_flavour == KERAS3:
        import keras

        return keras.optimizers
    import tf_keras

    return tf_keras.optimizers


def make_optimizer(keras_flavour: str, config: dict):
    """A new optimizer from ``serialize(model.optimizer)`` of the compiled model."""
    return optimizers_of(keras_flavour).deserialize(config)


def compiled_metrics(metrics, weighted_metrics) -> dict:
    """``metrics_fn()`` of a compiled model: compile's serialised metrics (`keras_metrics`
    turns names and configs into metric objects of the model's Keras)."""
    return {"metrics": metrics, "weighted_metrics": weighted_metrics}


def shippable(specs, keras_flavour: str):
    """compile's metrics as they can travel to the ranks: names and functions as given,
    metric objects (which hold variables) as their serialised configs."""
    from .keras_metrics import metrics_module

    if specs is None:
        return None
    if isinstance(specs, dict):
        raise ProgramError(f"metrics per output ({sorted(specs)}) are not supported yet: "
                           f"compile one list of metrics for the model's single output")
    module = metrics_module(keras_flavour)
    specs = list(specs) if isinstance(specs, (list, tuple)) else [specs]
    return [module.serialize(s) if isinstance(s, module.Metric) else s for s in specs]


def keras_program_parts(model_fn: Callable[[], Any]) -> Tuple[Callable, Callable, Callable]:
    """(loss_fn, optimizer_fn, metrics_fn) of a compiled ``model_fn``; builds the model once
    to read its ``compile`` (with the names a rank would give it, so no name is used up
    here)."""
    with fresh_keras_names():
        try:
            model = model_fn()
        except Exception as exc:
            raise ProgramError(f"model_fn() raised {type(exc).__name__}: {exc}") from exc
    made_by = flavour(model)
    optimizer = getattr(model, "optimizer", None)
    if made_by is None or optimizer is None or getattr(model, "loss", None) is None:
        raise ProgramError(
            "Program.from_keras needs model_fn() to return a compiled Keras model "
            "(model.compile(optimizer=..., loss=...) inside model_fn); got "
            f"{type(model).__name__}{' without compile' if made_by else ''}. For a model "
            "without compile, use px.Program(model_fn, loss_fn, dataset_fn, optimizer_fn).")
    config = optimizers_of(made_by).serialize(optimizer)
    compiled = getattr(getattr(model, "_compile_config", None), "config", None) or {}
    metrics_fn = functools.partial(
        compiled_metrics, shippable(compiled.get("metrics"), made_by),
        shippable(compiled.get("weighted_metrics"), made_by))
    return compiled_loss, functools.partial(make_optimizer, made_by, config), metrics_fn

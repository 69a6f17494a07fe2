"""Keras metrics in a run: what a program names (``compile``'s metrics, or ``metrics_fn``'s)
made into metric objects of the model's Keras, and the *states* they keep.

A Keras metric keeps sums and counts: a mean's total and count, accuracy's matches and
examples, AUC's true and false positives and negatives per threshold. They all add up, so
each rank updates its own metrics on its own shard, the ranks sum the states
(`runtime.validation`), and the result is what one device gets updating them on all the
data: exact for AUC and for shards of unequal length, where an average of the ranks' values
is not (horovod#1095). A metric whose state does not add up (a running maximum, say) would
not be exact this way; no built-in Keras metric keeps one.

Names as ``compile`` gives them: ``"accuracy"``/``"acc"`` (and ``"crossentropy"``/``"ce"``)
become the binary, sparse categorical or categorical metric by the shapes of the labels and
the predictions, as Keras decides; other names and configs are looked up in the model's
Keras; a plain function is averaged over the examples (``MeanMetricWrapper``).
"""
from __future__ import annotations

from typing import Dict, List, Tuple

import numpy as np

from .errors import ProgramError
from .keras3 import KERAS3, tf_variable

ACCURACY = ("accuracy", "acc")
CROSSENTROPY = ("crossentropy", "ce")


def metrics_module(keras_flavour: str):
    """The ``metrics`` module of Keras 3 or of tf_keras."""
    if keras_flavour == KERAS3:
        import keras

        return keras.metrics
    import tf_keras

    return tf_keras.metrics


def metric_specs(returned) -> List[Tuple[object, bool]]:
    """``(spec, weighted)`` pairs of what ``metrics_fn()`` returned: a list (compile's
    ``metrics``: no sample weights) or ``{"metrics": [...], "weighted_metrics": [...]}``."""
    if returned is None:
        return []
    if isinstance(returned, dict):
        unknown = sorted(set(returned) - {"metrics", "weighted_metrics"})
        if unknown:
            raise ProgramError(f"metrics_fn() returned a dict with keys {unknown}: it takes "
                               f"'metrics' and 'weighted_metrics' (lists of Keras metrics)")
        return [(s, False) for s in _as_list(returned.get("metrics"), "metrics")] + \
            [(s, True) for s in _as_list(returned.get("weighted_metrics"), "weighted_metrics")]
    return [(s, False) for s in _as_list(returned, "metrics")]


def _as_list(specs, what: str) -> list:
    if specs is None:
        return []
    if isinstance(specs, dict):
        raise ProgramError(f"{what} per output ({sorted(specs)}) is not supported yet: give "
                           f"one list of metrics for the model's single output")
    return list(specs) if isinstance(specs, (list, tuple)) else [specs]


class MetricSet:
    """Metrics of one kind (a run's validation, or one rank's training window).

    ``build(y, y_pred)`` makes the metric objects (eagerly, before any step function is
    traced; ``y_pred`` may be a `tf.TensorSpec`: only shapes are read); ``update`` runs
    inside step functions; ``variables`` are the additive states.
    """

    def __init__(self, returned, keras_flavour: str):
        self.specs = metric_specs(returned)
        self.keras_flavour = keras_flavour
        self.metrics: List[Tuple[object, bool]] = []

    def __bool__(self) -> bool:
        return bool(self.specs)

    def build(self, y, y_pred) -> None:
        module = metrics_module(self.keras_flavour)
        self.metrics = [(_resolve(spec, y, y_pred, module), weighted)
                        for spec, weighted in self.specs]
        names = [metric.name for metric, _ in self.metrics]
        clashes = sorted({n for n in names if names.count(n) > 1 or n == "loss"})
        if clashes:
            raise ProgramError(f"metric names {clashes} are used twice (or clash with the "
                               f"loss): give the metrics distinct names (name=...)")

    @property
    def names(self) -> List[str]:
        return [metric.name for metric, _ in self.metrics]

    def update(self, y, y_pred, sample_weight=None) -> None:
        for metric, weighted in self.metrics:
            metric.update_state(y, y_pred,
                                sample_weight=sample_weight if weighted else None)

    @property
    def variables(self) -> list:
        return [tf_variable(v) for metric, _ in self.metrics for v in metric.variables]

    def results(self) -> Dict[str, object]:
        """``{name: value}``: a float, or a list for a metric with several values."""
        values = {}
        for metric, _ in self.metrics:
            value = np.asarray(metric.result())
            values[metric.name] = float(value) if value.size == 1 else value.tolist()
        return values

    def reset(self) -> None:
        for metric, _ in self.metrics:
            metric.reset_state()


def _resolve(spec, y, y_pred, module):
    """A metric object for one spec (module doc)."""
    if isinstance(spec, module.Metric):
        return spec
    if isinstance(spec, str) and spec.lower() in ACCURACY + CROSSENTROPY:
        kind = _by_shapes(y, y_pred) + ("Accuracy" if spec.lower() in ACCURACY
                                        else "Crossentropy")
        return getattr(module, kind)(name=spec)
    try:
        found = module.get(spec) if not callable(spec) else spec
    except Exception as exc:   # Keras raises ValueError/TypeError for unknown names
        raise ProgramError(f"the metric {spec!r} names no Keras metric of the model's Keras: "
                           f"{type(exc).__name__}: {exc}") from exc
    if isinstance(found, type) and issubclass(found, module.Metric):
        found = found()
    if isinstance(found, module.Metric):
        if isinstance(spec, str) and module.__name__.startswith("keras"):
            found.name = spec   # Keras 3 names a metric given by name after the name
        return found
    if callable(found):
        name = spec if isinstance(spec, str) else getattr(found, "__name__", "metric")
        return module.MeanMetricWrapper(found, name=name)
    raise ProgramError(f"the metric {spec!r} is not a Keras metric, a metric name of the "
                       f"model's Keras (tf_keras takes class names such as 'AUC') or a "
                       f"function of (y_true, y_pred)")


def _by_shapes(y, y_pred) -> str:
    """"Binary", "SparseCategorical" or "Categorical", by Keras' rule for "accuracy"."""
    y_shape, p_shape = list(y.shape), list(y_pred.shape)
    binary = p_shape[-1] == 1
    sparse = len(y_shape) < len(p_shape) or (y_shape[-1] == 1 and p_shape[-1] > 1)
    return "Binary" if binary else "SparseCategorical" if sparse else "Categorical"

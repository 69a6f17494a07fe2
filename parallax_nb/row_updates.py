"""Optimizer updates that cost the rows a step touched, never the whole table.

A sparse variable's gradient holds only the rows a step looked up, but several optimizers
update every row of their slots each step anyway: tf_keras's ``SGD`` keeps a momentum slot
even at momentum 0 and rewrites it whole (160-370 ms a step on a 300k x 128 table, against
1 ms for the legacy SGD), and every Adam and RMSprop decays its moments everywhere. On a
parameter server that is the whole table read and written every step.

So every sparse variable, in every mode and in the single-device reference
(`runtime.single`), is updated by a *row rule* built from the user's optimizer's own
hyper-parameters:

=========  ==========================================================================
SGD        ``w[i] -= lr * g``: exact (equal to the optimizer's own sparse update)
Momentum   ``m[i] = mu*m[i] - lr*g; w[i] += m[i]`` (Nesterov: ``w[i] += mu*m[i] - lr*g``):
           lazy, as TensorFlow's own sparse momentum kernel (rows move when touched)
Adagrad    ``a[i] += g^2; w[i] -= lr*g / sqrt(a[i] + eps)`` (legacy Adagrad:
           ``/ (sqrt(a[i]) + eps)``): exact
Adam       lazy Adam (TensorFlow Addons' LazyAdam): moments of touched rows only, bias
           correction by the step count
RMSprop    lazy RMSprop (TensorFlow's sparse RMSProp kernels): moments of touched rows only
=========  ==========================================================================

Duplicate rows in a gradient are summed first, as Keras and TensorFlow do. Anything else
(another optimizer, gradient clipping, weight decay, AMSGrad) keeps the optimizer's own
update, and the analysis report says so and why it may cost the whole table.
"""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple

from .keras3 import KERAS3, flavour, tf_variable
from .tf_env import tensorflow

UNSUPPORTED_OPTIONS = ("clipnorm", "clipvalue", "global_clipnorm", "weight_decay", "decay",
                       "use_ema", "amsgrad", "loss_scale_factor", "gradient_accumulation_steps")


@dataclasses.dataclass(frozen=True)
class RowRule:
    """Which row-wise update runs for a sparse variable, with its hyper-parameters."""

    kind: str            # sgd, momentum, adagrad, adam, rmsprop
    hyper: dict          # learning_rate (float or serialised schedule), momentum, epsilon, ...
    legacy: bool         # a tf.keras.optimizers.legacy optimizer (Adagrad's epsilon differs)
    keras3: bool = False  # a Keras 3 optimizer (its schedules serialise differently)

    @property
    def slot_count(self) -> int:
        """Slots per variable (each the variable's size), as `RowUpdater` makes them."""
        if self.kind == "rmsprop":
            return 1 + bool(self.hyper.get("momentum")) + bool(self.hyper.get("centered"))
        return {"sgd": 0, "momentum": 1, "adagrad": 1, "adam": 2}[self.kind]

    @property
    def exact(self) -> bool:
        return self.kind in ("sgd", "adagrad")

    def describe(self) -> str:
        name = {"sgd": "SGD", "momentum": "SGD with momentum", "adagrad": "Adagrad",
                "adam": "Adam", "rmsprop": "RMSprop"}[self.kind]
        if self.exact:
            return f"{name}, row-wise (exact: only touched rows and their slots change)"
        return (f"lazy {name}: rows and their slots are updated when a step touches them "
                f"(the optimizer's own update decays every row every step)")


def row_rule(optimizer) -> Tuple[Optional[RowRule], str]:
    """The row rule for ``optimizer``'s sparse updates (None: its own update runs), and one
    sentence for the report saying which update runs and why."""
    name = type(optimizer).__name__
    try:
        config = dict(optimizer.get_config())
    except Exception as exc:   # an optimizer without a config: nothing to build a rule from
        return None, f"{name}: its own update ({type(exc).__name__} reading its config)"
    set_options = [k for k in UNSUPPORTED_OPTIONS if config.get(k) not in (None, 0, 0.0, False)]
    if set_options:
        return None, (f"{name} with {', '.join(set_options)}: its own update, which may read "
                      f"and write every row of a sparse table each step (no row-wise rule "
                      f"with {', '.join(set_options)})")
    legacy = hasattr(optimizer, "_create_all_weights")
    lr = config.get("learning_rate", config.get("lr"))
    kind = {"SGD": "momentum" if config.get("momentum") else "sgd", "Adagrad": "adagrad",
            "Adam": "adam", "RMSprop": "rmsprop"}.get(name)
    if kind is None or lr is None:
        return None, (f"{name}: its own update, which may read and write every row of a "
                      f"sparse table each step (row-wise rules exist for SGD, Adagrad, Adam "
                      f"and RMSprop)")
    keys = {"sgd": (), "momentum": ("momentum", "nesterov"),
            "adagrad": ("initial_accumulator_value", "epsilon"),
            "adam": ("beta_1", "beta_2", "epsilon"),
            "rmsprop": ("rho", "momentum", "epsilon", "centered")}[kind]
    hyper = {"learning_rate": lr, **{k: config[k] for k in keys if k in config}}
    rule = RowRule(kind, hyper, legacy, flavour(optimizer) == KERAS3)
    return rule, f"{name}: {rule.describe()}"


class RowUpdater:
    """Slots and update of one sparse variable (or one server partition of it).

    Made under the caller's device scope, so a partition's slots live beside it on its
    server. ``checkpointed()`` is what a checkpoint saves of it.
    """

    def __init__(self, rule: RowRule, variable, make=None):
        """make(name, shape, dtype, initial) creates a slot variable (default: a local
        ``tf.Variable``; on servers, a shared-name one)."""
        tf = tensorflow()
        self.rule, self.variable = rule, variable
        h = rule.hyper
        make = make or _local_variable
        self.iterations = make("iterations", (), tf.int64, tf.constant(0, tf.int64))
        self._schedule = None
        if isinstance(h["learning_rate"], dict):
            if rule.keras3:
                import keras

                self._schedule = keras.optimizers.schedules.deserialize(h["learning_rate"])
            else:
                self._schedule = tf.keras.optimizers.schedules.deserialize(h["learning_rate"])

        def slot(slot_name, fill=0.0):
            return make(slot_name, variable.shape, variable.dtype,
                        lambda: tf.fill(variable.shape, tf.cast(fill, variable.dtype)))

        self.slots = {}
        if rule.kind == "momentum":
            self.slots["momentum"] = slot("momentum")
        elif rule.kind == "adagrad":
            self.slots["accumulator"] = slot("accumulator", h.get("initial_accumulator_value",
                                                                  0.1))
        elif rule.kind == "adam":
            self.slots["m"], self.slots["v"] = slot("m"), slot("v")
        elif rule.kind == "rmsprop":
            self.slots["velocity"] = slot("velocity")
            if h.get("momentum"):
                self.slots["momentum"] = slot("momentum")
            if h.get("centered"):
                self.slots["average_gradient"] = slot("average_gradient")

    def checkpointed(self) -> dict:
        return {"iterations": self.iterations, **self.slots}

    def variables(self):
        return [self.iterations, *self.slots.values()]

    def _learning_rate(self, dtype):
        tf = tensorflow()
        lr = self._schedule(self.iterations) if self._schedule is not None else \
            self.rule.hyper["learning_rate"]
        return tf.cast(lr, dtype)

    def apply(self, grad):
        """Apply an ``IndexedSlices`` gradient; returns an op that is done when the rows are."""
        tf = tensorflow()
        var, h, kind = self.variable, self.rule.hyper, self.rule.kind
        unique, position = tf.unique(tf.cast(grad.indices, tf.int64))
        g = tf.math.unsorted_segment_sum(grad.values, position, tf.shape(unique)[0])
        lr = self._learning_rate(var.dtype)
        one = tf.constant(1.0, var.dtype)

        def rows(slot):
            return tf.gather(slot, unique)

        def put(slot, value):
            return slot.scatter_update(tf.IndexedSlices(value, unique))

        if kind == "sgd":
            done = var.scatter_sub(tf.IndexedSlices(lr * g, unique))
        elif kind == "momentum":
            mu = tf.constant(h["momentum"], var.dtype)
            m = mu * rows(self.slots["momentum"]) - lr * g
            put(self.slots["momentum"], m)
            step = mu * m - lr * g if h.get("nesterov") else m
            done = var.scatter_add(tf.IndexedSlices(step, unique))
        elif kind == "adagrad":
            eps = tf.constant(h.get("epsilon", 1e-7), var.dtype)
            a = rows(self.slots["accumulator"]) + g * g
            put(self.slots["accumulator"], a)
            scale = tf.sqrt(a) + eps if self.rule.legacy else tf.sqrt(a + eps)
            done = var.scatter_sub(tf.IndexedSlices(lr * g / scale, unique))
        elif kind == "adam":
            b1, b2 = (tf.constant(h.get(k, d), var.dtype) for k, d in
                      (("beta_1", 0.9), ("beta_2", 0.999)))
            eps = tf.constant(h.get("epsilon", 1e-7), var.dtype)
            t = tf.cast(self.iterations + 1, var.dtype)
            alpha = lr * tf.sqrt(one - tf.pow(b2, t)) / (one - tf.pow(b1, t))
            m = b1 * rows(self.slots["m"]) + (one - b1) * g
            v = b2 * rows(self.slots["v"]) + (one - b2) * g * g
            put(self.slots["m"], m)
            put(self.slots["v"], v)
            done = var.scatter_sub(tf.IndexedSlices(alpha * m / (tf.sqrt(v) + eps), unique))
        else:   # rmsprop
            rho = tf.constant(h.get("rho", 0.9), var.dtype)
            eps = tf.constant(h.get("epsilon", 1e-7), var.dtype)
            velocity = rho * rows(self.slots["velocity"]) + (one - rho) * g * g
            put(self.slots["velocity"], velocity)
            denominator = velocity
            if "average_gradient" in self.slots:
                average = rho * rows(self.slots["average_gradient"]) + (one - rho) * g
                put(self.slots["average_gradient"], average)
                denominator = velocity - average * average
            increment = lr * g / tf.sqrt(denominator + eps)
            if "momentum" in self.slots:
                increment = tf.constant(h["momentum"], var.dtype) * \
                    rows(self.slots["momentum"]) + increment
                put(self.slots["momentum"], increment)
            done = var.scatter_sub(tf.IndexedSlices(increment, unique))
        with tf.control_dependencies([done]):
            return self.iterations.assign_add(1)


class LocalRowUpdates:
    """Row rules for the sparse variables a process holds itself (AR ranks, the
    single-device reference); the optimizer updates the rest."""

    def __init__(self, optimizer, sparse_variables):
        rule, self.note = row_rule(optimizer)
        self.updaters = {id(tf_variable(v)): RowUpdater(rule, tf_variable(v))
                         for v in sparse_variables} if rule else {}

    def covers(self, variable) -> bool:
        return id(tf_variable(variable)) in self.updaters

    def variables(self):
        return [s for u in self.updaters.values() for s in u.variables()]

    def checkpointed(self):
        return [u.checkpointed() for u in self.updaters.values()]

    def apply(self, optimizer, grads_and_vars):
        """Apply ``(gradient, variable)`` pairs: a row rule where a sparse variable has one,
        the optimizer for the others. Returns what the updates return (to wait for)."""
        tf = tensorflow()
        rows = [(g, v) for g, v in grads_and_vars
                if self.covers(v) and isinstance(g, tf.IndexedSlices)]
        rest = [(g, v) for g, v in grads_and_vars
                if not (self.covers(v) and isinstance(g, tf.IndexedSlices))]
        done = [optimizer.apply_gradients(rest)] if rest else []
        return done + [self.updaters[id(tf_variable(v))].apply(g) for g, v in rows]


def _local_variable(name, shape, dtype, initial):
    tf = tensorflow()
    return tf.Variable(initial() if callable(initial) else initial, dtype=dtype,
                       trainable=False, name=name)

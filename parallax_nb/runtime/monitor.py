"""Watching one validation value: early stopping and the best checkpoint.

Every rank runs the same validations and gets the same (summed) values, so every rank's
monitor makes the same decision at the same step: early stopping needs no extra message
between the ranks. The state (best value, its step, validations since) is kept in variables
that go into the run's checkpoint, so a run restarted after a loss carries on counting.
The rule is Keras' ``EarlyStopping``: a value improves on the best by more than
``min_delta``; after ``patience`` validations in a row without one, the run stops.
"""
from __future__ import annotations

import math
from typing import Dict, Optional

from ..errors import ConfigError
from ..tf_env import tensorflow


class Monitor:
    def __init__(self, option: str, monitor: str, mode: str, min_delta: float = 0.0,
                 patience: Optional[int] = None):
        tf = tensorflow()
        self.option, self.monitor, self.mode = option, monitor, mode
        self.min_delta, self.patience = min_delta, patience
        worst = math.inf if mode == "min" else -math.inf
        self.best = tf.Variable(worst, dtype=tf.float64, trainable=False)
        self.best_step = tf.Variable(0, dtype=tf.int64, trainable=False)
        self.wait = tf.Variable(0, dtype=tf.int64, trainable=False)

    @classmethod
    def of(cls, option: str, settings: Optional[Dict[str, object]]) -> Optional["Monitor"]:
        """The monitor of a checked Config option (``early_stopping``, ``keep_best``)."""
        return None if settings is None else cls(option, **settings)

    @property
    def variables(self) -> list:
        return [self.best, self.best_step, self.wait]

    def update(self, values: Dict[str, float], step: int) -> bool:
        """Take one validation's values; True where the monitored one improved."""
        if self.monitor not in values:
            raise ConfigError(f"{self.option} monitors {self.monitor!r}, which the validation "
                              f"does not give: it gives {', '.join(sorted(values))}")
        value = float(values[self.monitor])
        best = float(self.best.numpy())
        improved = (value < best - self.min_delta if self.mode == "min"
                    else value > best + self.min_delta)
        if improved:
            self.best.assign(value)
            self.best_step.assign(step)
            self.wait.assign(0)
        else:
            self.wait.assign_add(1)
        return improved

    @property
    def should_stop(self) -> bool:
        return self.patience is not None and int(self.wait.numpy()) > 0 and \
            int(self.wait.numpy()) >= self.patience

    def reason(self, step: int) -> str:
        """The note of an early stop at ``step``."""
        return (f"early stopping at step {step}: {self.monitor} did not improve "
                f"({self.mode}, min_delta {self.min_delta:g}) for {int(self.wait.numpy())} "
                f"validation(s); the best was {float(self.best.numpy()):.6g} at step "
                f"{int(self.best_step.numpy())}")

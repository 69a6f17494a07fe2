"""TensorBoard scalars of a run, written by rank 0 alone (``Config(tensorboard_dir=...)``).

One writer, one events file per attempt: the loss, examples/s, step time and compiled
metrics of each logged step, the step's phases (seconds) when the step is profiled, and
the validation values (``val_loss``, ``val_<metric>``) at each validation's step. ``%load_ext tensorboard``
then ``%tensorboard --logdir <dir>`` in the same notebook shows them as the run goes.
"""
from __future__ import annotations

from typing import Dict

from ..tf_env import tensorflow


class ScalarWriter:
    def __init__(self, directory: str):
        self._writer = tensorflow().summary.create_file_writer(directory)

    def write(self, step: int, scalars: Dict[str, float]) -> None:
        tf = tensorflow()
        with self._writer.as_default(step=step):
            for name, value in scalars.items():
                tf.summary.scalar(name, float(value))

    def close(self) -> None:
        self._writer.flush()
        self._writer.close()

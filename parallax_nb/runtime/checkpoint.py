"""Checkpoints written by the chief and restored on relaunch.

Writing, numbering, the "latest" pointer and pruning are TensorFlow's
``tf.train.CheckpointManager``: it writes a save completely before it names it in the
directory's ``checkpoint`` state file (itself replaced atomically), so a crash mid-save
leaves the previous checkpoint as the one a restore finds, never a half-written one.
What this module adds is *when* to save: every N steps and/or every S seconds.
"""
from __future__ import annotations

import time
from typing import Optional

from ..tf_env import tensorflow

KEEP = 2


def manager(checkpoint, directory: str):
    return tensorflow().train.CheckpointManager(checkpoint, directory, max_to_keep=KEEP,
                                                checkpoint_name="ckpt")


def step_of(prefix: str) -> int:
    """The step a checkpoint was saved at (``.../ckpt-40`` -> 40)."""
    return int(prefix.rsplit("-", 1)[1])


class CheckpointPolicy:
    """When to save: every N steps and/or every S seconds (either may be off)."""

    def __init__(self, every_steps: Optional[int], every_seconds: Optional[float]):
        self.every_steps = every_steps
        self.every_seconds = every_seconds
        self._last = time.monotonic()

    def due(self, step: int) -> bool:
        by_steps = bool(self.every_steps) and step % self.every_steps == 0
        by_time = bool(self.every_seconds) and time.monotonic() - self._last >= self.every_seconds
        if by_steps or by_time:
            self._last = time.monotonic()
            return True
        return False

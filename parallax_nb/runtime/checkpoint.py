"""Checkpoints written by the chief, atomically, and restored on relaunch.

Layout of ``checkpoint_dir``::

    step-00000040/ckpt.index, ckpt.data-*   one tf.train.Checkpoint per save
    latest                                  the name of the newest complete save

A save is written into a hidden temporary directory, renamed into place, and only then
named in ``latest`` (itself replaced atomically), so a crash mid-save leaves the previous
checkpoint intact and never a half-written one where a restore would look.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import time
from typing import Optional

LATEST = "latest"
PREFIX = "ckpt"
KEEP = 2


def latest_checkpoint(directory: str) -> Optional[str]:
    """Path prefix of the newest complete checkpoint, or None."""
    try:
        with open(os.path.join(directory, LATEST)) as f:
            name = f.read().strip()
    except FileNotFoundError:
        return None
    prefix = os.path.join(directory, name, PREFIX)
    return prefix if os.path.exists(prefix + ".index") else None


def step_of(prefix: str) -> int:
    return int(os.path.basename(os.path.dirname(prefix)).split("-")[1])


def save_atomically(checkpoint, directory: str, step: int) -> str:
    """Write ``checkpoint`` (a tf.train.Checkpoint) for ``step``; return its prefix."""
    os.makedirs(directory, exist_ok=True)
    name = f"step-{step:08d}"
    staging = tempfile.mkdtemp(prefix=f".{name}-", dir=directory)
    checkpoint.write(os.path.join(staging, PREFIX))
    final = os.path.join(directory, name)
    if os.path.exists(final):
        shutil.rmtree(final)
    os.replace(staging, final)
    pointer = os.path.join(directory, f".{LATEST}.partial")
    with open(pointer, "w") as f:
        f.write(name)
        f.flush()
        os.fsync(f.fileno())
    os.replace(pointer, os.path.join(directory, LATEST))
    _prune(directory, keep=KEEP)
    return os.path.join(final, PREFIX)


def _prune(directory: str, keep: int) -> None:
    saves = sorted(d for d in os.listdir(directory) if d.startswith("step-"))
    for old in saves[:-keep]:
        shutil.rmtree(os.path.join(directory, old), ignore_errors=True)


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

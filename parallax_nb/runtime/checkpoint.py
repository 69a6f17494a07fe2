"""Checkpoints written by the chief and restored on relaunch.

Writing, numbering, the "latest" pointer and pruning are TensorFlow's
``tf.train.CheckpointManager``: it writes a save completely before it names it in the
directory's ``checkpoint`` state file (itself replaced atomically), so a crash mid-save
leaves the previous checkpoint as the one a restore finds, never a half-written one.
What this module adds is *when* to save (every N steps and/or every S seconds), and the
removal of what an interrupted save leaves behind: a process killed mid-save (or a server
still writing its part when its chief died) leaves ``ckpt-N_temp/`` folders (the servers'
parts, TensorFlow's ``.tempstate`` files: as large as the tables), ``ckpt-N.*`` files no
state names, and ``checkpoint.tmp*`` files. They go when the directory is opened for a
run (before the restore) and after every successful save.
"""
from __future__ import annotations

import os
import re
import shutil
import time
from typing import List, Optional

from ..tf_env import tensorflow

KEEP = 2
NAME = "ckpt"
BEST = "best"


def best_directory(checkpoint_dir: str) -> str:
    """Where ``Config(keep_best=...)`` keeps the best validation's checkpoint."""
    return f"{checkpoint_dir}/{BEST}"


def variable_key(name: str) -> str:
    """A variable's name as a key of the run's checkpoint (`export` reads them back)."""
    return name.split(":")[0].replace("/", ".")


def manager(checkpoint, directory: str, keep: int = KEEP):
    """TensorFlow's CheckpointManager that also clears interrupted saves (module doc),
    keeping the newest ``keep`` checkpoints."""
    tf = tensorflow()

    class Manager(tf.train.CheckpointManager):
        def save(self, *args, **kwargs):
            path = super().save(*args, **kwargs)
            remove_interrupted_saves(self.directory, self.checkpoints)
            return path

    made = Manager(checkpoint, directory, max_to_keep=keep, checkpoint_name=NAME)
    remove_interrupted_saves(made.directory, made.checkpoints)
    return made


_PART = re.compile(rf"^{NAME}-(\d+)(_temp$|\.index$|\.data-|\.index\.tempstate|\.tempstate)")


def remove_interrupted_saves(directory: str, complete) -> List[str]:
    """Remove the leftovers of saves that did not complete in ``directory``: anything of a
    checkpoint not in ``complete`` (the prefixes the state file names), temporary folders
    and files. No save of this run may be under way (the chief calls it between saves).
    Only a local or mounted directory is cleaned (a URL is left to its store's lifecycle).
    Returns what it removed."""
    if "://" in directory or not os.path.isdir(directory):
        return []
    keep = {os.path.basename(p) for p in complete}
    removed = []
    for name in os.listdir(directory):
        match = _PART.match(name)
        stale = (match and (match.group(2) == "_temp" or "tempstate" in name or
                            f"{NAME}-{match.group(1)}" not in keep)) or \
            name.startswith("checkpoint.tmp")
        if not stale:
            continue
        path = os.path.join(directory, name)
        if os.path.isdir(path):
            shutil.rmtree(path, ignore_errors=True)
        else:
            try:
                os.remove(path)
            except OSError:
                continue
        removed.append(name)
    return removed


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

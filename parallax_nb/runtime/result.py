"""The trained weights rank 0 hands to its supervisor: a file of (name, value) pickles.

Rank 0 reads the server tables back one partition at a time and writes each before reading
the next, so the end of a run costs the memory of the largest partition, not a second copy
of every table. A name written more than once is one variable's partitions, in row order:
the supervisor joins them when it reads the file into ``{name: numpy array}`` for
``run.result()``. The file appears under its final name only once complete.
"""
from __future__ import annotations

import os
import pickle
from typing import Iterable, Tuple

import numpy as np


def write_weights(path: str, weights: Iterable[Tuple[str, object]]) -> None:
    partial = f"{path}.partial"
    with open(partial, "wb") as f:
        for name, value in weights:
            pickle.dump((name, value), f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(partial, path)


def read_weights(path: str) -> dict:
    parts = {}
    with open(path, "rb") as f:
        while True:
            try:
                name, value = pickle.load(f)
            except EOFError:
                break
            parts.setdefault(name, []).append(value)
    return {name: rows[0] if len(rows) == 1 else np.concatenate(rows, axis=0)
            for name, rows in parts.items()}

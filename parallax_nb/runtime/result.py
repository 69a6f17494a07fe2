"""The trained weights rank 0 hands to its supervisor: a file of (name, value) pickles.

Rank 0 reads the server tables back one variable at a time and writes each before reading
the next, so the end of a run costs the memory of the largest variable, not a second copy of
every table (the memory plan counts it so). The file appears under its final name only once
complete; the supervisor reads it into ``{name: numpy array}`` for ``run.result()``.
"""
from __future__ import annotations

import os
import pickle
from typing import Iterable, Tuple


def write_weights(path: str, weights: Iterable[Tuple[str, object]]) -> None:
    partial = f"{path}.partial"
    with open(partial, "wb") as f:
        for name, value in weights:
            pickle.dump((name, value), f, protocol=pickle.HIGHEST_PROTOCOL)
    os.replace(partial, path)


def read_weights(path: str) -> dict:
    weights = {}
    with open(path, "rb") as f:
        while True:
            try:
                name, value = pickle.load(f)
            except EOFError:
                return weights
            weights[name] = value

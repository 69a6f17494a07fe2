"""The two models of the paper's comparison, at full and at quick (CI) size.

Both are the bundled examples with some sizes changed, so the benchmark trains exactly what a
user of the SDK would:

* ``lm``: the language model shaped like the paper's LM1B model (input embedding and
  sampled-softmax weights as two large sparse tables around a small dense MLP body), its
  vocabulary scaled from 793,470 words to what two cores and a few GB hold;
* ``cnn``: a dense convolutional network (no sparse variable: HYBRID falls back to AR).
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict

from parallax_nb.examples import cnn, language_model
from parallax_nb.program import Program


@dataclasses.dataclass(frozen=True)
class Workload:
    name: str
    description: str
    batch_size: int                 # examples per rank and step
    make: Callable[[], Program]
    sizes: dict

    def program(self) -> Program:
        return self.make()


def _lm(batch_size: int, **sizes) -> Workload:
    return Workload("lm", f"language model, vocabulary {sizes['vocab']:,}, sampled softmax "
                          f"({sizes['num_sampled']} samples), MLP body",
                    batch_size, lambda: language_model.make_program(**sizes), sizes)


def _cnn(batch_size: int, **sizes) -> Workload:
    return Workload("cnn", f"dense CNN, filters {sizes['filters']}, {sizes['size']}x"
                           f"{sizes['size']} images", batch_size,
                    lambda: cnn.make_program(**sizes), sizes)


FULL: Dict[str, Workload] = {
    "lm": _lm(128, vocab=300_000, dim=64, hidden=128, context=8, num_sampled=512,
              examples=20_000),
    "cnn": _cnn(64, size=28, classes=10, examples=4096, filters=(32, 64)),
}

# CI: the language model only (the comparison's point), small enough to start in seconds,
# big enough that its bytes per step dwarf the protocols' fixed overhead per step.
QUICK: Dict[str, Workload] = {
    "lm": _lm(128, vocab=20_000, dim=32, hidden=64, context=8, num_sampled=256,
              examples=4_096),
}


def _recommender(batch_size: int, **sizes) -> Workload:
    from parallax_nb.examples import recommender

    return Workload("recommender", f"Criteo-shaped Wide & Deep: 26 tables (scale "
                                   f"{sizes['scale']}), 13 dense features, MLP", batch_size,
                    lambda: recommender.make_program(**sizes), sizes)


# The step-path benchmark (issue: HYBRID at the speed of the wire): the language model at the
# held-out program's size (300k-word tables, batch 64) and a model shaped differently, with
# many small tables and a few large ones.
STEP_PATH: Dict[str, Workload] = {
    "lm": _lm(64, vocab=300_000, dim=64, hidden=128, context=8, num_sampled=512,
              examples=20_000),
    "recommender": _recommender(64, scale=0.03, dim=16, hidden=64, dense_features=13,
                                examples=8192),
}
STEP_PATH_QUICK: Dict[str, Workload] = {
    "lm": QUICK["lm"],
    "recommender": _recommender(64, scale=0.003, dim=8, hidden=32, dense_features=13,
                                examples=2048),
}


# The scale benchmark (`benchmarks.scale`): the language model at the comparison's size and
# the Criteo-shaped recommender, batch 128 per rank, the shapes `accelerator_step.py` times
# on a GPU. Quick: the small language model only (its figures test the harness).
SCALE: Dict[str, Workload] = {
    "lm": FULL["lm"],
    "recommender": _recommender(128, scale=0.03, dim=16, hidden=64, dense_features=13,
                                examples=8192),
}
SCALE_QUICK: Dict[str, Workload] = {"lm": QUICK["lm"]}

"""A click-through-rate recommender shaped like the public Criteo models (Wide & Deep).

26 categorical features, each an embedding table of its own size, beside 13 dense features,
into an MLP with a sigmoid output: the shape HET's and DLRM's Criteo benchmarks use. The table
sizes follow the spread of Criteo's feature cardinalities (from a few rows to millions),
scaled by ``scale`` so that the largest fits this machine. Ids are Zipf-distributed (a few hot
values per feature, a long tail), labels depend on the ids and dense features so the model
learns.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import tf_env  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from ..program import Program
from .data import shard_batches, with_defaults

# Cardinalities of the 26 Criteo Kaggle categorical features (C1..C26), as DLRM's and HET's
# Criteo pipelines report them.
CRITEO_CARDINALITIES = (
    1460, 583, 10131227, 2202608, 305, 24, 12517, 633, 3, 93145, 5683, 8351593, 3194, 27,
    14992, 5461306, 10, 5652, 2173, 4, 7046547, 18, 15, 286181, 105, 142572)

DEFAULTS = dict(scale=0.03, dim=16, hidden=64, dense_features=13, examples=8192)


def table_sizes(scale: float):
    """Each Criteo cardinality times ``scale``, at least 3 rows (small tables stay small)."""
    return tuple(max(3, int(c * scale)) if c > 1000 else c for c in CRITEO_CARDINALITIES)


@functools.lru_cache(maxsize=4)
def click_log(scale: float, dense_features: int, examples: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    sizes = table_sizes(scale)
    ids = np.empty((examples, len(sizes)), np.int64)
    for j, rows in enumerate(sizes):
        weights = 1.0 / np.arange(1, rows + 1, dtype=np.float64) ** 1.05
        cdf = np.cumsum(weights / weights.sum())
        drawn = np.minimum(np.searchsorted(cdf, rng.random(examples), side="right"), rows - 1)
        ids[:, j] = rng.permutation(rows)[drawn]
    dense = rng.normal(size=(examples, dense_features)).astype(np.float32)
    score = dense[:, 0] + 0.5 * ((ids[:, :4] % 7) - 3).sum(axis=1) / 4
    labels = (score + rng.normal(scale=0.5, size=examples) > 0).astype(np.float32)
    return ids, dense, labels


def build_model(scale, dim, hidden, dense_features, **_):
    import tensorflow as tf

    sizes = table_sizes(scale)
    categorical = tf.keras.Input(shape=(len(sizes),), dtype="int64", name="categorical")
    numeric = tf.keras.Input(shape=(dense_features,), name="numeric")
    embedded = [tf.keras.layers.Embedding(rows, dim, name=f"c{j + 1}")(categorical[:, j])
                for j, rows in enumerate(sizes)]
    deep = tf.keras.layers.Concatenate()(embedded + [numeric])
    deep = tf.keras.layers.Dense(hidden, activation="relu", name="deep1")(deep)
    deep = tf.keras.layers.Dense(hidden // 2, activation="relu", name="deep2")(deep)
    logit = tf.keras.layers.Dense(1, name="logit")(deep)
    return tf.keras.Model([categorical, numeric], logit, name="wide_and_deep")


def loss(model, batch):
    import tensorflow as tf

    categorical, numeric, labels = batch
    logits = tf.squeeze(model([categorical, numeric]), axis=1)
    return tf.reduce_mean(tf.nn.sigmoid_cross_entropy_with_logits(labels=labels, logits=logits))


def batches(shard, num_shards, batch_size=64, scale=DEFAULTS["scale"],
            dense_features=DEFAULTS["dense_features"], examples=DEFAULTS["examples"], **_):
    return shard_batches(click_log(scale, dense_features, examples), shard, num_shards,
                         batch_size)


def adagrad():
    import tensorflow as tf

    return tf.keras.optimizers.Adagrad(learning_rate=0.05)


def make_program(**options) -> Program:
    """The recommender with some sizes changed, e.g. ``make_program(scale=0.01)``."""
    settings = with_defaults(DEFAULTS, options)
    return Program(
        model_fn=functools.partial(build_model, **settings),
        loss_fn=loss,
        dataset_fn=functools.partial(batches, **{k: settings[k] for k in
                                                 ("scale", "dense_features", "examples")}),
        optimizer_fn=adagrad,
        name=f"recommender(scale={settings['scale']})",
    )


program = make_program()

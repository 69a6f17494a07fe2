"""A recommender written the Keras way, with validation data: `Program.from_keras`.

Two id features (a user and an item), each an embedding table, into a small MLP with a
sigmoid output, compiled with ``binary_crossentropy`` and ``accuracy`` and ``AUC`` metrics.
The labels come from a hidden logistic model of the ids (a weight per user and per item), so
there is something to learn: validation AUC rises well above 0.5 within a few hundred steps.
Training and validation examples are drawn apart (other seeds) from the same hidden model;
shards stride over the examples (shard r of N holds examples r, r+N, ...), so shards of the
validation set may differ in length by one.
"""
from __future__ import annotations

import functools

import numpy as np

from .. import tf_env  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from ..program import Program

USERS, ITEMS, DIM = 1_000, 2_000, 8
TRAIN_EXAMPLES, VALIDATION_EXAMPLES = 40_000, 5_001


@functools.lru_cache(maxsize=4)
def clicks(examples: int, seed: int):
    """``(ids (n, 2) int64: user, item; labels (n, 1) float32)``."""
    hidden = np.random.default_rng(0)
    user_bias, item_bias = hidden.normal(0, 1.5, USERS), hidden.normal(0, 1.5, ITEMS)
    rng = np.random.default_rng(seed)
    ids = np.stack([rng.integers(0, USERS, examples), rng.integers(0, ITEMS, examples)], 1)
    chance = 1 / (1 + np.exp(-(user_bias[ids[:, 0]] + item_bias[ids[:, 1]])))
    labels = (rng.random(examples) < chance).astype(np.float32).reshape(-1, 1)
    return ids.astype(np.int64), labels


def _shard(examples: int, seed: int, shard: int, num_shards: int, batch_size: int,
           shuffle: bool):
    import tensorflow as tf

    ids, labels = clicks(examples, seed)
    data = tf.data.Dataset.from_tensor_slices((ids[shard::num_shards],
                                               labels[shard::num_shards]))
    if shuffle:
        data = data.shuffle(4096, seed=shard, reshuffle_each_iteration=True)
    return data.batch(batch_size)


def dataset_fn(shard: int, num_shards: int, batch_size: int = 64):
    return _shard(TRAIN_EXAMPLES, 1, shard, num_shards, batch_size, shuffle=True)


def validation_fn(shard: int, num_shards: int, batch_size: int = 64):
    return _shard(VALIDATION_EXAMPLES, 2, shard, num_shards, batch_size, shuffle=False)


def model_fn():
    import tensorflow as tf

    k = tf.keras
    ids = k.Input(shape=(2,), dtype="int64", name="ids")
    user = k.layers.Embedding(USERS, DIM, name="users")(ids[:, 0])
    item = k.layers.Embedding(ITEMS, DIM, name="items")(ids[:, 1])
    hidden = k.layers.Dense(32, activation="relu", name="hidden")(
        k.layers.Concatenate()([user, item]))
    click = k.layers.Dense(1, activation="sigmoid", name="click")(hidden)
    model = k.Model(ids, click, name="clicks")
    model.compile(optimizer=k.optimizers.Adagrad(0.5), loss="binary_crossentropy",
                  metrics=["accuracy", k.metrics.AUC(name="auc")])
    return model


def program() -> Program:
    return Program.from_keras(model_fn, dataset_fn, validation_fn, name="clicks")

"""Synthetic data sets made on the spot (this project loads nothing from a hub).

Each corpus is generated once per process from a fixed seed, and sharded by example index
(example j goes to shard j % num_shards), so N shards of batch b cover exactly the examples
one process sees with batch N*b.
"""
from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=8)
def zipf_corpus(vocab: int, examples: int, length: int, exponent: float = 1.1,
                seed: int = 0) -> np.ndarray:
    """``examples`` sequences of ``length`` word ids with Zipf-like frequencies, as in text."""
    rng = np.random.default_rng(seed)
    weights = 1.0 / np.arange(1, vocab + 1, dtype=np.float64) ** exponent
    cdf = np.cumsum(weights / weights.sum())
    ids = np.searchsorted(cdf, rng.random(examples * length), side="right")
    # Shuffle which ids are frequent, so hot rows are spread over all partitions.
    permutation = rng.permutation(vocab)
    return permutation[np.minimum(ids, vocab - 1)].reshape(examples, length).astype(np.int64)


@functools.lru_cache(maxsize=4)
def image_set(examples: int, size: int, classes: int, seed: int = 0):
    """Random images whose class is encoded in their mean brightness (learnable)."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, classes, size=examples)
    images = rng.normal(0.0, 1.0, size=(examples, size, size, 1)).astype(np.float32)
    images += (labels / classes).astype(np.float32)[:, None, None, None]
    return images, labels.astype(np.int64)


def shard_batches(arrays, shard: int, num_shards: int, batch_size: int):
    """A tf.data pipeline over one shard of some arrays, in fixed-size batches."""
    import tensorflow as tf

    sharded = tuple(a[shard::num_shards] for a in arrays)
    return tf.data.Dataset.from_tensor_slices(sharded).batch(batch_size, drop_remainder=True)


def with_defaults(defaults: dict, options: dict) -> dict:
    """An example's sizes: ``defaults`` with ``options`` changed; an unknown name is an error
    that lists the known ones."""
    unknown = set(options) - set(defaults)
    if unknown:
        raise TypeError(f"unknown option(s) {sorted(unknown)}; known: {sorted(defaults)}")
    return {**defaults, **options}

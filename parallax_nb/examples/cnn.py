"""A small dense CNN: no sparse variable, so HYBRID falls back to AllReduce."""
from __future__ import annotations

import functools

from .. import tf_env  # noqa: F401
from ..program import Program
from .data import image_set, shard_batches

DEFAULTS = dict(size=28, classes=10, examples=4096, filters=(8, 16))


def build_model(size, classes, filters=DEFAULTS["filters"], **_):
    """filters: channels of the two convolutions (wider ones make a compute-bound model)."""
    import tensorflow as tf

    return tf.keras.Sequential([
        tf.keras.Input(shape=(size, size, 1)),
        tf.keras.layers.Conv2D(filters[0], 3, activation="relu"),
        tf.keras.layers.MaxPooling2D(),
        tf.keras.layers.Conv2D(filters[1], 3, activation="relu"),
        tf.keras.layers.GlobalAveragePooling2D(),
        tf.keras.layers.Dense(classes),
    ], name="cnn")


def cross_entropy(model, batch, **_):
    import tensorflow as tf

    images, labels = batch
    logits = model(images)
    return tf.reduce_mean(
        tf.keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))


def images(shard, num_shards, batch_size=32, size=28, classes=10, examples=4096, **_):
    return shard_batches(image_set(examples, size, classes), shard, num_shards, batch_size)


def sgd():
    import tensorflow as tf

    return tf.keras.optimizers.SGD(learning_rate=0.05)


def make_program(**options) -> Program:
    settings = {**DEFAULTS, **options}
    return Program(model_fn=functools.partial(build_model, **settings),
                   loss_fn=cross_entropy,
                   dataset_fn=functools.partial(images, **settings),
                   optimizer_fn=sgd, name="cnn")


program = make_program()

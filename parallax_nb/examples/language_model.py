"""A language model shaped like the paper's LM1B model, scaled to a small machine.

Two large sparse tables — the input word embedding and the sampled-softmax weights (plus
its biases) — around a small dense MLP body that reads a window of previous words and
predicts the next one. Data: a synthetic Zipf-distributed corpus.
"""
from __future__ import annotations

import functools

from .. import tf_env  # noqa: F401  (selects Keras 2 before TensorFlow is imported)
from ..program import Program
from .data import shard_batches, with_defaults, zipf_corpus

DEFAULTS = dict(vocab=200_000, dim=64, hidden=128, context=8, num_sampled=256,
                examples=20_000)


def build_model(vocab, dim, hidden, context, **_):
    import tensorflow as tf

    words = tf.keras.Input(shape=(context,), dtype="int64", name="words")
    embedded = tf.keras.layers.Embedding(vocab, dim, name="embedding")(words)
    pooled = tf.keras.layers.Flatten()(embedded)
    hidden_state = tf.keras.layers.Dense(hidden, activation="tanh", name="body")(pooled)
    model = tf.keras.Model(words, hidden_state, name="language_model")
    # The output layer's weights live beside the body: sampled softmax only touches the rows
    # of the true and the sampled words, so they are sparse like the input embedding.
    model.softmax_weights = model.add_weight(
        name="softmax_weights", shape=(vocab, hidden),
        initializer=tf.keras.initializers.RandomNormal(stddev=0.05, seed=1))
    model.softmax_biases = model.add_weight(name="softmax_biases", shape=(vocab,),
                                            initializer="zeros")
    return model


def sampled_softmax_loss(model, batch, vocab, num_sampled, **_):
    import tensorflow as tf

    words, next_word = batch
    hidden_state = model(words)
    losses = tf.nn.sampled_softmax_loss(
        weights=model.softmax_weights, biases=model.softmax_biases,
        labels=tf.reshape(next_word, (-1, 1)), inputs=hidden_state,
        num_sampled=num_sampled, num_classes=vocab)
    return tf.reduce_mean(losses)


def windows(shard, num_shards, batch_size=32, vocab=DEFAULTS["vocab"], context=8,
            examples=DEFAULTS["examples"], **_):
    corpus = zipf_corpus(vocab, examples, context + 1)
    return shard_batches((corpus[:, :context], corpus[:, context]), shard, num_shards,
                         batch_size)


def adagrad():
    import tensorflow as tf

    return tf.keras.optimizers.Adagrad(learning_rate=0.1)


def make_program(**options) -> Program:
    """The language model with some sizes changed, e.g. ``make_program(vocab=50_000)``."""
    settings = with_defaults(DEFAULTS, options)
    return Program(
        model_fn=functools.partial(build_model, **settings),
        loss_fn=functools.partial(sampled_softmax_loss, **settings),
        dataset_fn=functools.partial(windows, **{k: settings[k] for k in
                                                 ("vocab", "context", "examples")}),
        optimizer_fn=adagrad,
        name=f"language_model(vocab={settings['vocab']})",
    )


program = make_program()

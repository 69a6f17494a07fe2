"""Small training programs used by the tests (module-level so they pickle cleanly)."""
from __future__ import annotations

import functools
import threading

import numpy as np

import keras
import parallax_nb as px
import tensorflow as tf


# -- a tf_keras Embedding --------------------------------------------------------------------
def keras_embedding_model(rows=50, dim=4, length=3):
    return tf.keras.Sequential([
        tf.keras.Input(shape=(length,), dtype="int64"),
        tf.keras.layers.Embedding(rows, dim, embeddings_initializer=tf.keras.initializers
                                  .RandomUniform(seed=3), name="emb"),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(1, kernel_initializer=tf.keras.initializers.GlorotUniform(seed=4),
                              name="out"),
    ])


def regression_loss(model, batch):
    ids, target = batch
    return tf.reduce_mean(tf.square(model(ids)[:, 0] - target))


def id_batches(shard, num_shards, batch_size=4, rows=50, length=3, examples=64, seed=0):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, rows, size=(examples, length))
    target = rng.normal(size=examples).astype(np.float32)
    return tf.data.Dataset.from_tensor_slices((ids[shard::num_shards], target[shard::num_shards])
                                              ).batch(batch_size, drop_remainder=True)


def sgd(learning_rate=0.1):
    return tf.keras.optimizers.SGD(learning_rate=learning_rate)


def adam():
    return tf.keras.optimizers.Adam(learning_rate=0.01)


def adagrad():
    return tf.keras.optimizers.Adagrad(learning_rate=0.1)


def keras_embedding_program(optimizer_fn=sgd, **sizes):
    return px.Program(functools.partial(keras_embedding_model, **sizes), regression_loss,
                      functools.partial(id_batches, **sizes), optimizer_fn,
                      name="keras_embedding")


# -- Keras 3 (`import keras`): a transformer-style text model -----------------------------------
class PositionEmbedding(keras.layers.Layer):
    """keras-io's position embedding: int32 positions (``ops.arange``) beside int64 ids."""

    def __init__(self, length, dim, **kwargs):
        super().__init__(**kwargs)
        self.table = keras.layers.Embedding(
            length, dim, embeddings_initializer=keras.initializers.RandomUniform(seed=6),
            name="table")

    def call(self, tokens):
        return self.table(keras.ops.arange(0, keras.ops.shape(tokens)[1]))


def keras3_transformer_model(rows=50, dim=4, length=3):
    ids = keras.Input(shape=(length,), dtype="int64")
    tokens = keras.layers.Embedding(rows, dim, name="tokens", embeddings_initializer=keras
                                    .initializers.RandomUniform(seed=3))(ids)
    x = tokens + PositionEmbedding(length, dim, name="positions")(tokens)
    x = keras.layers.MultiHeadAttention(
        2, 2, name="attention", use_bias=False,
        kernel_initializer=keras.initializers.GlorotUniform(seed=5))(x, x)
    x = keras.layers.Flatten()(x)
    out = keras.layers.Dense(1, name="out",
                             kernel_initializer=keras.initializers.GlorotUniform(seed=4))(x)
    return keras.Model(ids, out)


def keras3_embedding_model(rows=50, dim=4, length=3):
    return keras.Sequential([
        keras.Input(shape=(length,), dtype="int64"),
        keras.layers.Embedding(rows, dim, name="emb", embeddings_initializer=keras.initializers
                               .RandomUniform(seed=3)),
        keras.layers.Flatten(),
        keras.layers.Dense(1, name="out",
                           kernel_initializer=keras.initializers.GlorotUniform(seed=4)),
    ])


KERAS3_OPTIMIZERS = {"sgd": lambda: keras.optimizers.SGD(0.1),
                     "adam": lambda: keras.optimizers.Adam(0.01),
                     "adagrad": lambda: keras.optimizers.Adagrad(0.1)}


def keras3_optimizer(name):
    return KERAS3_OPTIMIZERS[name]()


def keras3_program(model="transformer", optimizer="sgd", **sizes):
    model_fn = {"transformer": keras3_transformer_model, "embedding": keras3_embedding_model,
                "big": keras3_big_table_model}[model]
    data = functools.partial(distinct_ids, rows=100_000) if model == "big" else \
        functools.partial(id_batches, **sizes)
    return px.Program(functools.partial(model_fn, **sizes), regression_loss, data,
                      functools.partial(keras3_optimizer, optimizer), name=f"keras3_{model}")


def keras3_big_table_model(rows=100_000, dim=16):
    return keras.Sequential([
        keras.Input(shape=(1,), dtype="int64"),
        keras.layers.Embedding(rows, dim, name="big"),
        keras.layers.Flatten(),
        keras.layers.Dense(1, name="head"),
    ])


def mixed_keras_program():
    """A tf_keras model with a Keras 3 optimizer: refused, with what to change."""
    return px.Program(keras_embedding_model, regression_loss, id_batches,
                      functools.partial(keras3_optimizer, "sgd"), name="mixed_keras")


# -- several dtypes and a variable without a gradient ---------------------------------------
class MixedDtypeModel(tf.Module):
    """A float16 table and a bfloat16 one beside float32 ones, int32 and int64 ids, and a
    variable the loss never uses."""

    def __init__(self, rows=40, dim=3):
        super().__init__()
        init = tf.random.stateless_normal
        self.half = tf.Variable(tf.cast(init([rows, dim], seed=[1, 2]), tf.float16), name="half")
        self.brain = tf.Variable(tf.cast(init([rows, dim], seed=[7, 8]), tf.bfloat16),
                                 name="brain")
        self.single = tf.Variable(init([rows, dim], seed=[3, 4]), name="single")
        self.weights = tf.Variable(init([dim, 1], seed=[5, 6]), name="weights")
        self.scale = tf.Variable(tf.ones([1], tf.float16), name="scale")
        self.unused = tf.Variable(tf.zeros([2]), name="unused")

    def __call__(self, ids):
        half = tf.cast(tf.gather(self.half, ids) * self.scale, tf.float32)
        brain = tf.cast(tf.gather(self.brain, tf.cast(ids, tf.int32)), tf.float32)
        rows = half + brain + tf.gather(self.single, tf.cast(ids, tf.int32))
        return tf.matmul(tf.reduce_sum(rows, axis=1), self.weights)


def mixed_dtype_program():
    return px.Program(MixedDtypeModel, regression_loss,
                      functools.partial(id_batches, rows=40), sgd, name="mixed_dtypes")


# -- raw tf.Variables in a tf.Module ---------------------------------------------------------
class GatherModel(tf.Module):
    """A table read with tf.gather and a second one with tf.nn.embedding_lookup."""

    def __init__(self, rows=40, dim=3):
        super().__init__()
        init = tf.random.stateless_normal
        self.gathered = tf.Variable(init([rows, dim], seed=[1, 2]), name="gathered")
        self.looked_up = tf.Variable(init([rows, dim], seed=[3, 4]), name="looked_up")
        self.weights = tf.Variable(init([dim, 1], seed=[5, 6]), name="weights")

    def __call__(self, ids):
        rows = tf.gather(self.gathered, ids) + tf.nn.embedding_lookup(self.looked_up, ids)
        return tf.matmul(tf.reduce_sum(rows, axis=1), self.weights)


def gather_program():
    return px.Program(GatherModel, regression_loss,
                      functools.partial(id_batches, rows=40), sgd, name="gather")


class ChainedLookupModel(GatherModel):
    """A second lookup whose ids come from the rows of the first (a step's exchange cannot
    bring both: the second is gathered on its own, `runtime.packed_pulls`)."""

    def __call__(self, ids):
        first = tf.gather(self.gathered, ids)
        then = tf.nn.embedding_lookup(
            self.looked_up, tf.cast(tf.abs(first[:, :, 0]) * 10, tf.int64) % 40)
        return tf.matmul(tf.reduce_sum(first + then, axis=1), self.weights)


def chained_lookup_program():
    return px.Program(ChainedLookupModel, regression_loss,
                      functools.partial(id_batches, rows=40), sgd, name="chained_lookup")


# -- a table used densely (matmul with the whole table) --------------------------------------
class DenseTableModel(tf.Module):
    def __init__(self, rows=40, dim=3):
        super().__init__()
        self.rows = rows
        self.table = tf.Variable(tf.random.stateless_normal([rows, dim], seed=[1, 1]),
                                 name="table")

    def __call__(self, ids):
        one_hot = tf.one_hot(ids, self.rows)                 # [batch, length, rows]
        return tf.reduce_sum(tf.matmul(one_hot, self.table), axis=[1, 2])[:, None]


def dense_table_program():
    return px.Program(DenseTableModel, regression_loss,
                      functools.partial(id_batches, rows=40), sgd, name="dense_table")


# -- batches with known indices (hand-computed alpha) ----------------------------------------
class KnownTableModel(tf.Module):
    def __init__(self):
        super().__init__()
        self.table = tf.Variable(tf.ones([10, 2]), name="table")
        self.unused = tf.Variable(tf.zeros([2]), name="unused")

    def __call__(self, ids):
        return tf.reduce_sum(tf.gather(self.table, ids), axis=[1, 2])[:, None]


def known_batches(shard, num_shards):
    # rows touched: step 1 -> {0, 1, 2} of 10, step 2 -> {5} of 10; together {0, 1, 2, 5}
    ids = [np.array([[0, 1], [1, 2]]), np.array([[5, 5], [5, 5]])]
    return [(i, np.zeros(2, np.float32)) for i in ids]


def known_program():
    return px.Program(KnownTableModel, regression_loss, known_batches, sgd, name="known")


# -- broken programs -------------------------------------------------------------------------
def raising_model():
    raise RuntimeError("typo in model_fn")


def vector_loss(model, batch):
    ids, target = batch
    return tf.square(model(ids)[:, 0] - target)


def empty_batches(shard, num_shards):
    return []


class NoVariables(tf.Module):
    def __call__(self, ids):
        return tf.cast(tf.reduce_sum(ids, axis=1, keepdims=True), tf.float32)


LOCK = threading.Lock()


def optimizer_holding_a_lock():
    with LOCK:
        return sgd()


# -- programs that fail inside a rank ----------------------------------------------------------
def failing_model():
    import os

    if os.environ.get("HOROVOD_RANK") == "1":
        raise ValueError("model_fn broke on rank 1")
    return keras_embedding_model()


def failing_program():
    return px.Program(failing_model, regression_loss, id_batches, sgd, name="failing")


def crashing_loss(model, batch):
    import os
    import signal

    if os.environ.get("HOROVOD_RANK") == "0":
        os.kill(os.getpid(), signal.SIGKILL)
    return regression_loss(model, batch)


def crashing_program():
    return px.Program(keras_embedding_model, crashing_loss, id_batches, sgd, name="crashing")


# -- a big table, few rows per step ------------------------------------------------------------
def big_table_model(rows=1_000_000, dim=64):
    return tf.keras.Sequential([
        tf.keras.Input(shape=(1,), dtype="int64"),
        tf.keras.layers.Embedding(rows, dim, name="big"),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(1, name="head"),
    ])


def distinct_ids(shard, num_shards, batch_size=100, rows=1_000_000, steps=8):
    # every batch looks up `batch_size` distinct rows
    rng = np.random.default_rng(7)
    ids = rng.choice(rows, size=batch_size * steps * num_shards, replace=False)[:, None]
    target = np.ones(len(ids), np.float32)
    return tf.data.Dataset.from_tensor_slices((ids[shard::num_shards],
                                               target[shard::num_shards])).batch(batch_size)


def big_table_program():
    return px.Program(big_table_model, regression_loss, distinct_ids, adagrad, name="big_table")


def big_tables_model(tables=4, rows=781_250, dim=64):
    ids = tf.keras.Input(shape=(tables,), dtype="int64")
    looked_up = [tf.keras.layers.Embedding(rows, dim, name=f"big{i}")(ids[:, i])
                 for i in range(tables)]
    return tf.keras.Model(ids, tf.keras.layers.Dense(1, name="head")(
        tf.keras.layers.Concatenate()(looked_up)))


def several_ids(shard, num_shards, batch_size=100, tables=4, rows=781_250, steps=4):
    rng = np.random.default_rng(shard)
    ids = rng.integers(0, rows, size=(batch_size * steps, tables))
    return tf.data.Dataset.from_tensor_slices(
        (ids, np.ones(len(ids), np.float32))).batch(batch_size)


def big_tables_program(**sizes):
    """Several big tables, Adagrad: a rank in AR holds them all with their slots; HYBRID's
    chief makes each table's initial value in turn and keeps only its server's share."""
    return px.Program(functools.partial(big_tables_model, **sizes), regression_loss,
                      functools.partial(several_ids, **sizes), adagrad, name="big_tables")


def many_tables_model(tables=8, rows=40, dim=3):
    """One id feature per table, seeded (the same weights in every run): the recommender's
    shape, small."""
    ids = tf.keras.Input(shape=(tables,), dtype="int64")
    looked_up = [tf.keras.layers.Embedding(
        rows, dim, embeddings_initializer=tf.keras.initializers.RandomUniform(seed=10 + i),
        name=f"table{i}")(ids[:, i]) for i in range(tables)]
    return tf.keras.Model(ids, tf.keras.layers.Dense(
        1, kernel_initializer=tf.keras.initializers.GlorotUniform(seed=4), name="head")(
        tf.keras.layers.Concatenate()(looked_up)))


def many_tables_program(tables=8, rows=40):
    return px.Program(functools.partial(many_tables_model, tables=tables, rows=rows),
                      regression_loss, functools.partial(id_batches, rows=rows, length=tables),
                      adagrad, name=f"tables{tables}")


# -- the same kind of program as notebook code: the body of a `%%parallax train` cell ---------
# (`{dense}` is the Dense layer's class name, so a test can put a typo there)
CELL = """
import numpy as np
import tensorflow as tf

ROWS = 40

def model_fn():
    return tf.keras.Sequential([
        tf.keras.Input(shape=(3,), dtype="int64"),
        tf.keras.layers.Embedding(ROWS, 4, name="words"),
        tf.keras.layers.Flatten(),
        tf.keras.layers.{dense}(1, name="out")])

def loss_fn(model, batch):
    ids, target = batch
    return tf.reduce_mean(tf.square(model(ids)[:, 0] - target))

def dataset_fn(shard, num_shards, batch_size=4):
    rng = np.random.default_rng(0)
    ids, target = rng.integers(0, ROWS, (64, 3)), rng.normal(size=64).astype("float32")
    return tf.data.Dataset.from_tensor_slices(
        (ids[shard::num_shards], target[shard::num_shards])).batch(batch_size, drop_remainder=True)

def optimizer_fn():
    return tf.keras.optimizers.SGD(0.1)
"""


# -- runs that survive (tests/test_failures.py, tests/test_recovery.py) ----------------------
def nan_batches(shard, num_shards, batch_size=4, bad_step=3):
    """The last shard's batch ``bad_step`` has a NaN target (a bad input row)."""
    rng = np.random.default_rng(shard)
    batches = []
    for step in range(1, 9):
        ids = rng.integers(0, 50, size=(batch_size, 3))
        target = rng.normal(size=batch_size).astype(np.float32)
        if shard == num_shards - 1 and step == bad_step:
            target[0] = np.nan
        batches.append((ids, target))
    return batches


def nan_program():
    return px.Program(keras_embedding_model, regression_loss, nan_batches, sgd, name="nan")


def not_an_optimizer():
    return object()


class SlowBatches:
    """Re-iterable batches that take ``delay`` seconds each (a run long enough to kill a
    process mid-way), the same for a shard whatever happened before."""

    def __init__(self, shard, num_shards, batch_size=4, delay=0.05, examples=256):
        rng = np.random.default_rng(0)
        ids = rng.integers(0, 50, size=(examples, 3))
        target = rng.normal(size=examples).astype(np.float32)
        self.ids, self.target = ids[shard::num_shards], target[shard::num_shards]
        self.batch_size, self.delay = batch_size, delay

    def __iter__(self):
        import time

        for start in range(0, len(self.ids) - self.batch_size + 1, self.batch_size):
            time.sleep(self.delay)
            yield (self.ids[start:start + self.batch_size],
                   self.target[start:start + self.batch_size])


def slow_program(delay=0.05):
    return px.Program(keras_embedding_model, regression_loss,
                      functools.partial(SlowBatches, delay=delay), adagrad, name="slow")


# -- an embedding with a regularizer: dense, and the analysis says why -------------------------
def regularized_embedding_model(rows=50, dim=4, length=3):
    return tf.keras.Sequential([
        tf.keras.Input(shape=(length,), dtype="int64"),
        tf.keras.layers.Embedding(rows, dim, name="emb",
                                  embeddings_regularizer=tf.keras.regularizers.L2(1e-4)),
        tf.keras.layers.Flatten(),
        tf.keras.layers.Dense(1, name="out"),
    ])


def regularized_program():
    return px.Program(regularized_embedding_model, regularization_loss, id_batches, sgd,
                      name="regularized")


def regularization_loss(model, batch):
    return regression_loss(model, batch) + tf.add_n(model.losses)


def big_table_ar_program(rows=1_000_000):
    """The big table, Adagrad: a known memory footprint (table + accumulator)."""
    return px.Program(functools.partial(big_table_model, rows=rows), regression_loss,
                      functools.partial(distinct_ids, rows=rows), adagrad, name="big_table")


# -- written the Keras way: compiled models (Program.from_keras) -----------------------------
def compiled_keras_model():
    model = keras_embedding_model()
    model.compile(optimizer=tf.keras.optimizers.Adagrad(0.1), loss="mse")
    return model


def compiled_keras3_model():
    model = keras3_embedding_model()
    model.compile(optimizer=keras.optimizers.Adagrad(0.1), loss="mse")
    return model


def weighted_id_batches(shard, num_shards, batch_size=4):
    """(ids, target, sample_weight) batches, striding shards like id_batches."""
    rng = np.random.default_rng(1)
    weight = rng.uniform(0.5, 2.0, size=64).astype(np.float32)
    pairs = id_batches(0, 1, batch_size=1).unbatch()
    ids = np.stack([i for i, _ in pairs.as_numpy_iterator()])
    target = np.stack([t for _, t in pairs.as_numpy_iterator()])
    return tf.data.Dataset.from_tensor_slices(
        (ids[shard::num_shards], target[shard::num_shards], weight[shard::num_shards])
    ).batch(batch_size, drop_remainder=True)


def compiled_programs():
    return {"tf_keras": px.Program.from_keras(compiled_keras_model, weighted_id_batches,
                                              name="compiled_tf_keras"),
            "keras3": px.Program.from_keras(compiled_keras3_model, id_batches,
                                            name="compiled_keras3")}


# -- a classifier with a learnable signal and validation data (validation, metrics) --------
CLICK_IDS = 60   # ids 0-29 say "user", 30-59 "item"; a hidden weight per id makes the label


def click_data(examples, seed):
    """``(ids (n, 2) int64, labels (n, 1) float32)``: labels drawn from a logistic model of
    hidden per-id weights, so a model of the ids can learn them (AUC well above 0.5)."""
    hidden = np.random.default_rng(0).normal(size=CLICK_IDS) * 2
    rng = np.random.default_rng(seed)
    ids = np.stack([rng.integers(0, 30, examples), rng.integers(30, 60, examples)], 1)
    chance = 1 / (1 + np.exp(-(hidden[ids[:, 0]] + hidden[ids[:, 1]])))
    labels = (rng.random(examples) < chance).astype(np.float32).reshape(-1, 1)
    return ids.astype(np.int64), labels


def click_batches(shard, num_shards, batch_size=8, examples=96, seed=1):
    ids, labels = click_data(examples, seed)
    return tf.data.Dataset.from_tensor_slices(
        (ids[shard::num_shards], labels[shard::num_shards])).batch(batch_size)


def click_validation(shard, num_shards, batch_size=8):
    """103 examples: shards of 52 and 51 at 2 ranks, each ending in a short batch."""
    return click_batches(shard, num_shards, batch_size, examples=103, seed=2)


def click_model(keras_module=None):
    k = keras_module or tf.keras
    model = k.Sequential([
        k.Input(shape=(2,), dtype="int64"),
        k.layers.Embedding(CLICK_IDS, 4, name="ids",
                           embeddings_initializer=k.initializers.RandomUniform(seed=3)),
        k.layers.Flatten(),
        k.layers.Dense(1, activation="sigmoid", name="click",
                       kernel_initializer=k.initializers.GlorotUniform(seed=4)),
    ])
    model.compile(optimizer=k.optimizers.Adagrad(0.5), loss="binary_crossentropy",
                  metrics=["accuracy", k.metrics.AUC(name="auc")])
    return model


def click_keras3_model():
    return click_model(keras)


def click_programs():
    """The same classifier written the compile way, in tf_keras and in Keras 3."""
    return {"tf_keras": px.Program.from_keras(click_model, click_batches, click_validation,
                                              name="clicks"),
            "keras3": px.Program.from_keras(click_keras3_model, click_batches,
                                            click_validation, name="clicks_keras3")}


def click_loss(model, batch):
    ids, labels = batch
    return tf.reduce_mean(tf.keras.losses.binary_crossentropy(labels, model(ids)))


def click_metrics():
    return ["accuracy", tf.keras.metrics.AUC(name="auc")]


def uncompiled_click_model():
    model = click_model()
    return tf.keras.Sequential(model.layers, name="uncompiled")


def click_plain_program():
    """The four functions with validation_fn and metrics_fn."""
    return px.Program(uncompiled_click_model, click_loss, click_batches, adagrad_half,
                      name="clicks_plain", validation_fn=click_validation,
                      metrics_fn=click_metrics)


def adagrad_half():
    return tf.keras.optimizers.Adagrad(0.5)

"""One exchange per server for a step's lookups (#24), in one process: the packed rows and
gradients equal the per-lookup gathers', and a step whose ids cannot be known ahead says why
and gathers as before. (Across processes: test_hybrid, the messages a step sends.)"""
import re

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.distribute.sharded_variable import ShardedVariable

from parallax_nb.runtime import gathers
from parallax_nb.runtime.packed_pulls import PackedPulls, server_gradients

HERE = "/job:localhost/replica:0/task:0/device:CPU:0"


@pytest.fixture(scope="module")
def tables():
    rng = np.random.default_rng(0)
    table = gathers.server_table_class()
    a = table(rng.normal(size=(10, 4)).astype("float32"))
    parts = [table(rng.normal(size=(5, 3)).astype("float32")) for _ in range(2)]
    head = tf.Variable(rng.normal(size=(7, 1)).astype("float32"))
    return a, parts, ShardedVariable(parts), head


def forward(tables, batch):
    a, _, sharded, head = tables
    ids, more = batch
    first = tf.nn.embedding_lookup(a, ids % 10)            # one table, twice below
    second = tf.nn.embedding_lookup(sharded, more)         # two partitions ("div")
    again = tf.gather(a, more // 2)
    features = tf.concat([tf.reduce_sum(first, 1), second], 1)
    return tf.reduce_sum(tf.matmul(features, head) ** 2) + tf.reduce_sum(again)


def gradients(tables, batch, pulls, model=forward):
    a, parts, _, head = tables
    partitions = [a] + parts

    @tf.function
    def step(batch):
        lookups = pulls.prefetch(lambda: model(tables, batch)) if pulls else None
        with tf.GradientTape() as tape, \
                (gathers.replaying(lookups) if lookups else gathers.pulled_rows()) as pulled:
            if lookups:
                tape.watch(pulled)
            loss = model(tables, batch)
        grads = tape.gradient(loss, [head] + partitions + (pulled if lookups else []))
        server = grads[1:4]
        if lookups:
            server = server_gradients(tf, partitions, server, lookups, grads[4:])
        return loss, [grads[0]] + [tf.zeros_like(p) if g is None else tf.convert_to_tensor(g)
                                   for g, p in zip(server, partitions)]

    return step(batch)


def test_packed_rows_and_gradients_equal_the_gathers_own(tables):
    rng = np.random.default_rng(1)
    batch = (tf.constant(rng.integers(0, 30, size=(6, 2))),
             tf.constant(rng.integers(0, 10, size=(6,)), tf.int32))
    pulls = PackedPulls(lambda table: HERE)
    loss, grads = gradients(tables, batch, pulls)
    plain_loss, plain_grads = gradients(tables, batch, None)
    assert pulls.reason is None
    assert pulls.lookups_per_server == {HERE: 4}   # a twice, each partition of the other
    assert float(loss) == pytest.approx(float(plain_loss), rel=1e-6)
    for packed, plain in zip(grads, plain_grads):
        np.testing.assert_allclose(packed.numpy(), plain.numpy(), rtol=1e-6, atol=1e-7)
        assert np.abs(plain.numpy()).sum() > 0


def chained(tables, batch):
    a, _, _, head = tables
    ids, _ = batch
    first = tf.nn.embedding_lookup(a, ids % 10)
    then = tf.nn.embedding_lookup(a, tf.cast(tf.abs(first[:, 0, 0]) * 5, tf.int64) % 10)
    return tf.reduce_sum(then) + tf.reduce_sum(head)


def drawn(tables, batch):
    a, _, _, head = tables
    ids = tf.random.uniform([4], maxval=10, dtype=tf.int64)
    return tf.reduce_sum(tf.nn.embedding_lookup(a, ids)) + tf.reduce_sum(head)


@pytest.mark.parametrize("model, reason", [
    (chained, "the ids of a lookup from a server table depend on rows looked up before it"),
    (drawn, r"the ids of a lookup from a server table come from RandomUniformInt \(.*\), an "
            r"op with side effects that would run twice"),
])
def test_ids_that_cannot_be_known_ahead_are_gathered_one_by_one_and_say_why(
        tables, model, reason):
    batch = (tf.constant([[1, 2], [3, 4]], tf.int64), tf.constant([1, 2], tf.int32))
    pulls = PackedPulls(lambda table: HERE)
    loss, grads = gradients(tables, batch, pulls, model)
    assert pulls.reason is not None and re.fullmatch(reason, pulls.reason)
    assert np.isfinite(float(loss)) and np.abs(grads[1].numpy()).sum() > 0

"""One exchange per server for a step's lookups (#24), in one process: the packed rows and
gradients equal the per-lookup gathers', ids drawn by an op with side effects are drawn once,
and a lookup whose ids need rows looked up before it is gathered on its own and says why. (Across processes: test_hybrid, the messages a step sends.)"""
import threading

import numpy as np
import pytest
import tensorflow as tf
from tensorflow.python.distribute.sharded_variable import ShardedVariable

from parallax_nb.runtime import gathers
from parallax_nb.runtime.packed_pulls import PackedPulls, server_gradients
from parallax_nb.runtime.server_sync import SharedQueue

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


def gradients(tables, batch, pulls, model=forward, tokens=None):
    a, parts, _, head = tables
    partitions = [a] + parts

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape, \
                (pulls.deferred(tape.watch, tokens) if pulls else gathers.pulled_rows()):
            loss = model(tables, batch)
        packed = pulls.lookups if pulls else []
        grads = tape.gradient(loss, [head] + partitions + [lookup.rows for lookup in packed])
        server = grads[1:4]
        if packed:
            server = server_gradients(tf, partitions, server, packed, grads[4:])
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
    return tf.reduce_sum(then ** 2) + tf.reduce_sum(first * head[:4, 0])


def test_a_lookup_whose_ids_need_rows_looked_up_before_it_is_gathered_on_its_own(tables):
    batch = (tf.constant([[1, 2], [3, 4]], tf.int64), tf.constant([1, 2], tf.int32))
    pulls = PackedPulls(lambda table: HERE)
    loss, grads = gradients(tables, batch, pulls, chained)
    plain_loss, plain_grads = gradients(tables, batch, None, chained)
    assert pulls.reason == ("1 lookup(s) from server tables gathered on their own, one "
                            "exchange each: their ids depend on rows looked up before them")
    assert pulls.lookups_per_server == {HERE: 1}
    assert float(loss) == pytest.approx(float(plain_loss), rel=1e-6)
    for packed, plain in zip(grads, plain_grads):
        np.testing.assert_allclose(packed.numpy(), plain.numpy(), rtol=1e-6, atol=1e-7)


def test_ids_drawn_by_an_op_with_side_effects_are_packed_and_drawn_once(tables):
    """A candidate sampler, a random draw, a counter: the pass's own ids, computed once."""
    a, _, _, head = tables
    draws = tf.Variable(0, dtype=tf.int64)

    def drawn(tables, batch):
        ids = (batch[0] + draws.assign_add(1)) % 10
        return tf.reduce_sum(tf.nn.embedding_lookup(a, ids) ** 2) + tf.reduce_sum(head)

    batch = (tf.constant([[1, 2], [3, 4]], tf.int64), tf.constant([1, 2], tf.int32))
    pulls = PackedPulls(lambda table: HERE)
    loss, grads = gradients(tables, batch, pulls, drawn)
    assert int(draws.numpy()) == 1 and pulls.reason is None
    assert pulls.lookups_per_server == {HERE: 1}
    draws.assign(0)
    plain_loss, plain_grads = gradients(tables, batch, None, drawn)
    assert float(loss) == pytest.approx(float(plain_loss), rel=1e-6)
    np.testing.assert_allclose(grads[1].numpy(), plain_grads[1].numpy(), rtol=1e-6)
    assert np.abs(grads[1].numpy()).sum() > 0


def test_ids_drawn_after_an_effect_on_earlier_rows_are_gathered_on_their_own(tables):
    """TensorFlow runs ops with side effects in the order they were made (tf.function's
    automatic control dependencies): ids sampled after a print of deferred rows cannot travel
    in the exchange those rows wait for."""
    a, _, _, head = tables

    def printed(tables, batch):
        first = tf.nn.embedding_lookup(a, batch[0] % 10)
        tf.print(tf.reduce_sum(first), output_stream="file:///dev/null")
        sampled, _, _ = tf.random.log_uniform_candidate_sampler(
            batch[0] % 10, num_true=2, num_sampled=4, unique=True, range_max=10, seed=4)
        return (tf.reduce_sum(first) + tf.reduce_sum(tf.nn.embedding_lookup(a, sampled) ** 2)
                + tf.reduce_sum(head))

    batch = (tf.constant([[1, 2], [3, 4]], tf.int64), tf.constant([1, 2], tf.int32))
    pulls = PackedPulls(lambda table: HERE)
    loss, grads = gradients(tables, batch, pulls, printed)
    assert pulls.reason == (
        "1 lookup(s) from server tables gathered on their own, one exchange each: their ids "
        "come from an op with side effects that runs after one on rows looked up before them")
    assert pulls.lookups_per_server == {HERE: 1}
    assert np.isfinite(float(loss)) and np.abs(grads[1].numpy()).sum() > 0


def test_an_exchange_gathers_once_the_last_steps_update_has_announced_itself(tables):
    """server_sync's applied queues: with tokens, a server's exchange takes one from each of
    its queues before it gathers, so a reader never reads rows an update is still writing;
    without one there, it waits."""
    batch = (tf.constant([[1, 2], [3, 4]], tf.int64), tf.constant([1, 2], tf.int32))
    applied = SharedQueue("test_packed_pulls/applied", [tf.int32], HERE, capacity=4)
    size = lambda: int(tf.raw_ops.QueueSizeV2(handle=applied.handle))
    pulls = PackedPulls(lambda table: HERE)

    @tf.function
    def step(batch):
        with tf.GradientTape() as tape, pulls.deferred(tape.watch, lambda device: [applied]):
            return forward(tables, batch)

    step.get_concrete_function(batch)                  # traced: a call is milliseconds
    applied.enqueue_tokens(1)
    loss = step(batch)
    assert size() == 0                                 # the step took the token
    results = []
    waiting = threading.Thread(target=lambda: results.append(step(batch)))
    waiting.start()
    waiting.join(2.0)
    assert waiting.is_alive() and not results          # no update announced: it waits
    applied.enqueue_tokens(1)
    waiting.join(60)
    assert results and float(results[0]) == pytest.approx(float(loss), rel=1e-6)
    assert size() == 0


def test_a_steps_own_reads_of_a_table_are_found_not_those_inside_the_calls_it_makes(tables):
    """What keeps the AllReduce after the pushes (trainer): a read of another process's
    server made by the step itself would not wait for the servers' announced updates; the
    packed exchange's reads happen inside the function it calls on the server."""
    from parallax_nb.runtime.trainer import reads_of

    a, parts, _, head = tables

    @tf.function
    def step(ids):
        exchange = tf.function(lambda i: tf.gather(a, i))
        return tf.reduce_sum(exchange(ids)) + tf.reduce_sum(tf.stop_gradient(a) * 0.0)

    graph = step.get_concrete_function(tf.constant([1, 2], tf.int64)).graph
    assert reads_of(graph, [a]) == 1          # the whole read; the gather is inside the call
    assert reads_of(graph, parts) == 0

"""Row gathers from the server tables: the one place where a step's lookups are seen.

Every row a model gathers from a server partition (``tf.gather``, ``tf.nn.embedding_lookup``,
Keras' ``Embedding``, Keras 3's ``take`` as `keras3` routes it) reaches
`ServerTable.sparse_read`. What it does there depends on what the step is doing around it:

* nothing (the default): gather on the partition's server;
* `pulled_rows`: the same, and report the rows (the step profile waits for them; validation
  counts them);
* `deferring`: from a server in another process, gather nothing yet: note the partition
  and its ids and return a stand-in for the rows, which `packed_pulls` then fetches with one
  exchange per server for all of them and puts in the stand-in's place.

The modes are set only while a step function is traced, in the rank process.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import List, Optional

from ..tf_env import side_effect_order, tensorflow

_mode = None


@functools.lru_cache(maxsize=None)
def server_table_class():
    """A ResourceVariable whose row gathers go through this module's current mode."""
    from tensorflow.python.ops import resource_variable_ops

    class ServerTable(resource_variable_ops.ResourceVariable):
        def sparse_read(self, indices, name=None):
            def gather():
                return super(ServerTable, self).sparse_read(indices, name=name)

            return gather() if _mode is None else _mode.read(self, indices, gather)

    return ServerTable


@contextlib.contextmanager
def _in_mode(mode):
    global _mode
    previous, _mode = _mode, mode
    try:
        yield mode
    finally:
        _mode = previous


class _Recording:
    def __init__(self):
        self.rows: List = []

    def read(self, table, indices, gather):
        rows = gather()
        self.rows.append(rows)
        return rows


@contextlib.contextmanager
def pulled_rows():
    """Gather as usual; the list it yields holds every gathered rows tensor, as traced."""
    with _in_mode(_Recording()) as recording:
        yield recording.rows


@dataclasses.dataclass
class Lookup:
    """One gather from another process's server that the forward pass deferred: it got a
    stand-in for its rows, which `packed_pulls` rewires to the rows its server's one exchange
    brings back."""

    table: object                   # the partition (a ServerTable)
    ids: object                     # the ids the pass asked for (the gradient's indices)
    rows: object                    # the stand-in the pass computed with (an Identity)


AFTER_ROWS = "their ids depend on rows looked up before them"
AFTER_EFFECT = ("their ids come from an op with side effects that runs after one on rows "
                "looked up before them")


class _Deferring:
    """Defers each lookup ``defer(table)`` names whose ids can be known before the deferred
    rows: it gets a stand-in of the right shape, watched by ``watch`` (the step's tape). A
    lookup whose ids cannot is gathered where it is made, as is every other, and
    `gathered_alone` says why."""

    def __init__(self, defer, watch):
        self.defer, self.watch = defer, watch
        self.lookups: List[Lookup] = []
        self.rows: List = []              # the rows gathered where they were made
        self.gathered_alone: List[str] = []   # why, for each deferrable lookup not deferred

    def read(self, table, indices, gather):
        tf = tensorflow()
        if self.defer(table):
            indices = tf.convert_to_tensor(indices)
            why = _why_not_deferred(indices, {lookup.rows.op for lookup in self.lookups})
            if why is None:
                return self._stand_in(tf, table, indices)
            self.gathered_alone.append(why)
        rows = gather()
        self.rows.append(rows)
        return rows

    def _stand_in(self, tf, table, indices):
        # Not where the lookup is made: embedding_lookup colocates it with the table, i.e.
        # on the server, where the stand-in would fetch the rows back.
        graph = tf.compat.v1.get_default_graph()
        with graph.colocate_with(None, ignore_existing=True), graph.device(None):
            shape = tf.concat([tf.shape(indices, out_type=tf.int32),
                               tf.constant(table.shape[1:].as_list(), tf.int32)], 0)
            stand_in = tf.identity(tf.raw_ops.Empty(shape=shape, dtype=table.dtype))
        stand_in.set_shape(indices.shape.concatenate(table.shape[1:]))
        self.watch(stand_in)
        self.lookups.append(Lookup(table, indices, stand_in))
        return stand_in


def _why_not_deferred(ids, stand_ins) -> Optional[str]:
    """Why ``ids`` cannot go in the exchange that brings the rows of ``stand_ins`` (None:
    they can). The exchange waits for the ids, and everything made on those rows waits for
    the exchange: so the ids must not be computed from those rows, nor by an op with side
    effects that tf.function runs after one made on them (it orders such ops as they were
    made: `tf_env.side_effect_order`)."""
    if not stand_ins:
        return None
    before = _ops_reached(ids.op,
                          follow=lambda op: [t.op for t in op.inputs] + op.control_inputs)
    if before & stand_ins:
        return AFTER_ROWS
    chained, resources = _orders(before)
    if not chained and not resources:
        return None
    after_chained, after_resources = _orders(_ops_reached(
        *stand_ins, follow=lambda op: [c for t in op.outputs for c in t.consumers()]))
    return AFTER_EFFECT if (chained and after_chained) or resources & after_resources \
        else None


def _ops_reached(*start, follow) -> set:
    seen, stack = set(), list(start)
    while stack:
        op = stack.pop()
        if op not in seen:
            seen.add(op)
            stack.extend(follow(op))
    return seen


def _orders(ops):
    """Whether any of ``ops`` is chained with the ops with side effects, and every resource
    they use."""
    chained, resources = False, set()
    for op in ops:
        in_chain, used = side_effect_order(op)
        chained, resources = chained or in_chain, resources | used
    return chained, resources


def deferring(defer, watch):
    """Defer the lookups ``defer`` names (yields the `_Deferring` with them)."""
    return _in_mode(_Deferring(defer, watch))

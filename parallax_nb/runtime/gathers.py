"""Row gathers from the server tables: the one place where a step's lookups are seen.

Every row a model gathers from a server partition (``tf.gather``, ``tf.nn.embedding_lookup``,
Keras' ``Embedding``, Keras 3's ``take`` as `keras3` routes it) reaches
`ServerTable.sparse_read`. What it does there depends on what the step is doing around it:

* nothing (the default): gather on the partition's server;
* `pulled_rows`: the same, and report the rows (the step profile waits for them; validation
  counts them);
* `collecting`: gather nothing, return zeros of the right shape and note the partition and
  its ids (`packed_pulls` traces the forward pass this way once, to learn every lookup's ids
  before the real pass);
* `replaying`: return the rows `packed_pulls` already fetched for this lookup (one exchange
  per server for all of them), and note the ids the real pass asked for (the gradient's
  indices).

The modes are set only while a step function is traced, in the rank process.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
from typing import List

from ..errors import ProgramError
from ..tf_env import tensorflow

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
    """One gather the forward pass makes: from which partition, with which ids."""

    table: object                   # the partition (a ServerTable)
    ids: object                     # the ids, in the graph that traced the lookup
    packed: bool = False            # its rows come with its server's one exchange
    rows: object = None             # the rows fetched for it (packed) or gathered (not)
    real_ids: object = None         # the ids the real pass asked for (replay)


class _Collecting:
    """Gathers nothing: notes each lookup and gives zeros, so a forward pass can be traced
    only to learn its ids."""

    def __init__(self):
        self.lookups: List[Lookup] = []
        self.fake_rows = set()       # the zeros' ops: ids must not depend on them

    def read(self, table, indices, gather):
        tf = tensorflow()
        indices = tf.convert_to_tensor(indices)
        self.lookups.append(Lookup(table, indices))
        shape = tf.concat([tf.shape(indices, out_type=tf.int32),
                           tf.constant(table.shape[1:].as_list(), tf.int32)], 0)
        rows = tf.zeros(shape, table.dtype)
        rows.set_shape(indices.shape.concatenate(table.shape[1:]))
        self.fake_rows.add(rows.op)
        return rows


def collecting():
    """Trace lookups without gathering (yields the `_Collecting` with their lookups)."""
    return _in_mode(_Collecting())


class _Replaying:
    """Gives each packed lookup the rows fetched for it, in the order the lookups were
    collected; gathers the others (on a server in this process) where they are made."""

    def __init__(self, lookups: List[Lookup]):
        self.lookups = lookups
        self.next = 0
        self.rows = [lookup.rows for lookup in lookups if lookup.packed]

    def read(self, table, indices, gather):
        if self.next >= len(self.lookups) or self.lookups[self.next].table is not table:
            raise ProgramError(
                "the model's lookups from server tables changed between two traces of one "
                "step (a different table or order): model_fn and loss_fn must make the same "
                "lookups every time they are called; Config(pack_pulls=False) gathers each "
                "lookup on its own")
        lookup = self.lookups[self.next]
        self.next += 1
        lookup.real_ids = tensorflow().convert_to_tensor(indices)
        if not lookup.packed:
            lookup.rows = gather()
            self.rows.append(lookup.rows)
        return lookup.rows

    def check_complete(self) -> None:
        if self.next != len(self.lookups):
            raise ProgramError(
                f"the model made {self.next} lookups from server tables in the step but "
                f"{len(self.lookups)} when its ids were collected: model_fn and loss_fn must "
                f"make the same lookups every time; Config(pack_pulls=False) gathers each "
                f"lookup on its own")


@contextlib.contextmanager
def replaying(lookups: List[Lookup]):
    """Replay ``lookups``; yields every lookup's rows as the body makes them (what the step
    profile waits for): the packed ones' from the start."""
    mode = _Replaying(lookups)
    with _in_mode(mode):
        yield mode.rows
    mode.check_complete()

"""One exchange per server for every row a step gathers from the servers.

TensorFlow runs a step that gathers from server tables as a multi-device function: the part
placed on a server runs as one component function there, and every tensor that crosses
between the rank and the server is its own Send/Recv pair, i.e. its own ``RecvTensor`` RPC. A
model with 26 tables on one server therefore made 52 crossings to it per step (26 id tensors
out, 26 row tensors back), each a round trip (about 190 us on loopback; `../shared/DESIGN.md`,
"Many tables, one exchange"). `PackedPulls.deferred` makes them two per server, whatever
the number of tables and partitions:

1. the forward pass is traced once, with `gathers.deferring`: a lookup from another
   process's server gathers nothing; it notes its partition and ids and computes on with a
   stand-in of the rows' shape (an Identity of an uninitialised tensor: no value that
   tracing could fold into a constant), watched by the step's tape;
2. once the pass is traced, per server, the ids of all its lookups are packed into one int64
   tensor (their counts first), each partition's rows are gathered on the server and sent
   back as one flat tensor per dtype, and cut per lookup on the rank;
3. each stand-in's input is rewired to its rows (`tf_env.rewire_input`), so every op
   the pass made on the stand-in computes on the real rows.

The ids are the pass's own tensors, computed once: a candidate sampler or a random draw
among them runs once, as it does without packing. Nothing the pass computes from the rows
can run before the exchange, and the exchange needs only the ids, so TensorFlow starts it
as soon as they are known. The gradients are the gather's own: the tape's gradient with
respect to each stand-in, with the lookup's ids, as IndexedSlices per partition
(`server_gradients`), all made on the rank, so the backward pass crosses to no server (the
pushes are packed per server by `server_sync`). A lookup whose ids depend on rows deferred
before it, or come from an op with side effects that tf.function orders after one made on
such rows, cannot travel in the exchange those rows wait for (it would wait for itself): it
is gathered where it is made, on its own, and `reason` says so (`gathers.deferring`).
"""
from __future__ import annotations

import collections
import contextlib
from typing import Callable, List, Optional

from ..tf_env import rewire_input, tensorflow
from .gathers import Lookup, deferring
from .on_server import call_on


class PackedPulls:
    """Fetches a step's rows with one exchange per server (see the module docstring)."""

    def __init__(self, device_of: Callable[[object], str], own_device: Optional[str] = None):
        self.device_of = device_of          # a server partition -> its server's device
        self.own_device = own_device        # the server in this process: its lookups are
                                            # local calls, gathered where they are made
        self.reason: Optional[str] = None   # why some lookups of the last traced step are
                                            # gathered on their own
        self.lookups: List[Lookup] = []     # the last traced step's packed lookups

    def remote_devices(self, partitions) -> List[str]:
        """The servers of ``partitions`` in another process than this one."""
        return [d for d in dict.fromkeys(self.device_of(p) for p in partitions)
                if d != self.own_device]

    @property
    def lookups_per_server(self) -> dict:
        """Server device -> how many lookups of the last traced step its message packs."""
        return dict(collections.Counter(self.device_of(lookup.table) for lookup in self.lookups))

    @contextlib.contextmanager
    def deferred(self, watch: Callable[[object], None],
                 tokens: Optional[Callable[[str], list]] = None):
        """Trace the forward pass inside (while a step is traced); ``watch`` is the step's
        tape's. Yields a list that holds, once the block is left, every row tensor the pass
        looked up (what the step profile waits for); `lookups` then holds the packed ones,
        whose rows the tape differentiates with respect to. ``tokens(device)``: queues on
        that server the exchange takes one element from before it gathers (the last step's
        updates announce themselves there: `server_sync`)."""
        tf = tensorflow()
        pulled: list = []
        with deferring(lambda table: self.device_of(table) != self.own_device,
                       watch) as mode:
            yield pulled
        by_server = collections.defaultdict(list)
        for lookup in mode.lookups:
            by_server[self.device_of(lookup.table)].append(lookup)
        for device, group in by_server.items():
            waits = tokens(device) if tokens else []
            for lookup, rows in zip(group, _exchange(tf, device, group, waits)):
                rewire_input(lookup.rows.op, 0, rows)
        self.lookups = mode.lookups
        alone = mode.gathered_alone
        self.reason = (f"{len(alone)} lookup(s) from server tables gathered on their own, "
                       f"one exchange each: {'; '.join(sorted(set(alone)))}"
                       if alone else None)
        pulled += [lookup.rows for lookup in mode.lookups] + mode.rows


def _exchange(tf, device: str, group: List[Lookup], tokens=()) -> list:
    """One server's lookups: ids out as one message, rows back as one per dtype; the rows of
    each lookup, in order. On the server, the gathers wait for an element of each queue in
    ``tokens``."""
    flat_ids = [tf.reshape(tf.cast(lookup.ids, tf.int64), [-1]) for lookup in group]
    counts = tf.stack([tf.size(i, out_type=tf.int64) for i in flat_ids])
    message = tf.concat([counts] + flat_ids, 0)
    k = len(group)
    dtypes = list(dict.fromkeys(lookup.table.dtype for lookup in group))

    def serve(message):
        """On the server: cut the message per lookup, gather, pack the rows per dtype."""
        parts = tf.split(message[k:], message[:k], num=k) if k > 1 else [message[k:]]
        rows = {dtype: [] for dtype in dtypes}
        with tf.control_dependencies([t for queue in tokens for t in queue.dequeue()]):
            for lookup, part in zip(group, parts):
                rows[lookup.table.dtype].append(tf.reshape(tf.raw_ops.ResourceGather(
                    resource=lookup.table.handle, indices=part, dtype=lookup.table.dtype),
                    [-1]))
        return [tf.concat(rows[dtype], 0) if len(rows[dtype]) > 1 else rows[dtype][0]
                for dtype in dtypes]

    replies = call_on(tf, device, serve, message)
    fetched = [None] * k
    for dtype, reply in zip(dtypes, replies):
        positions = [p for p, lookup in enumerate(group) if lookup.table.dtype == dtype]
        widths = [int(group[p].table.shape[1:].num_elements()) for p in positions]
        sizes = [counts[p] * w for p, w in zip(positions, widths)]
        pieces = tf.split(reply, tf.stack(sizes), num=len(positions)) \
            if len(positions) > 1 else [reply]
        for p, piece in zip(positions, pieces):
            lookup = group[p]
            width = lookup.table.shape[1:]
            shape = tf.concat([tf.shape(lookup.ids, out_type=tf.int64),
                               tf.constant(width.as_list(), tf.int64)], 0)
            rows = tf.reshape(piece, shape)
            rows.set_shape(lookup.ids.shape.concatenate(width))
            fetched[p] = rows
    return fetched


def server_gradients(tf, partitions, tape_gradients, lookups: List[Lookup], row_gradients):
    """Each partition's gradient: the tape's (a whole read of it, if any) joined with its
    lookups' row gradients as IndexedSlices, as the gather's own gradient would be."""
    by_table = collections.defaultdict(list)
    for lookup, grad in zip(lookups, row_gradients):
        if grad is not None:
            by_table[id(lookup.table)].append((lookup, grad))
    gradients = []
    for partition, grad in zip(partitions, tape_gradients):
        found = by_table.get(id(partition))
        if not found:
            gradients.append(grad)
            continue
        width = partition.shape[1:].as_list()
        values = [tf.reshape(tf.convert_to_tensor(g), [-1] + width) for _, g in found]
        indices = [tf.reshape(tf.cast(lookup.ids, tf.int64), [-1]) for lookup, _ in found]
        if isinstance(grad, tf.IndexedSlices):
            values.append(grad.values)
            indices.append(tf.cast(grad.indices, tf.int64))
        rows = tf.IndexedSlices(tf.concat(values, 0) if len(values) > 1 else values[0],
                                tf.concat(indices, 0) if len(indices) > 1 else indices[0],
                                tf.constant(partition.shape.as_list(), tf.int64))
        gradients.append(rows if grad is None or isinstance(grad, tf.IndexedSlices)
                         else grad + tf.convert_to_tensor(rows))
    return gradients


"""One exchange per server for every row a step gathers from the servers.

TensorFlow runs a step that gathers from server tables as a multi-device function: the part
placed on a server runs as one component function there, and every tensor that crosses
between the rank and the server is its own Send/Recv pair, i.e. its own ``RecvTensor`` RPC. A
model with 26 tables on one server therefore made 52 crossings to it per step (26 id tensors
out, 26 row tensors back), each a round trip (about 190 us on loopback; `../shared/DESIGN.md`,
"Many tables, one exchange"). `PackedPulls.prefetch` makes them two per server, whatever
the number of tables and partitions:

1. trace the forward pass once in a scratch graph with `gathers.collecting` (no rows: zeros
   of the right shape) to learn every lookup's partition and ids, as ops of the batch;
2. copy into the step only the ops those ids depend on (TensorFlow's ``lift_to_graph``): the
   ids are computed from the batch once more, and nothing else of that trace ever runs;
3. per server, pack the ids of all its lookups into one int64 tensor (their counts first),
   gather each partition's rows on the server and send them back as one flat tensor per
   dtype, cut per lookup on the rank;
4. the real forward pass then finds each lookup's rows already there (`gathers.replaying`).

The gradients are the gather's own: each lookup's row gradients with the ids the real pass
asked for, as IndexedSlices per partition (`server_gradients`), all made on the rank, so the
backward pass crosses to no server (the pushes are packed per server by `server_sync`).

The result is the same as gathering each lookup where the model does: the ids are the same
values, and the rows are read at the same point of the step, before any update of it. When
the ids cannot be computed ahead, i.e. they depend on rows looked up before them or on an op
with side effects (a random draw would then run twice), the step gathers each lookup on its
own, as before, and `reason` says why.
"""
from __future__ import annotations

import collections
from typing import Callable, List, Optional

from ..tf_env import tensorflow
from .gathers import Lookup, collecting
from .on_server import call_on

# Ops with side effects that only read: computing ids with them twice changes nothing.
READ_ONLY = frozenset({"ReadVariableOp", "ResourceGather", "ResourceGatherNd",
                       "LookupTableFindV2", "LookupTableSizeV2", "VarHandleOp"})


class PackedPulls:
    """Fetches a step's rows with one exchange per server (see the module docstring)."""

    def __init__(self, device_of: Callable[[object], str], own_device: Optional[str] = None):
        self.device_of = device_of          # a server partition -> its server's device
        self.own_device = own_device        # the server in this process: its lookups are
                                            # local calls, gathered where they are made
        self.reason: Optional[str] = None   # why the last traced step gathers unpacked
        self.lookups_per_server: dict = {}  # server device -> lookups packed into its message

    def prefetch(self, forward: Callable[[], object]) -> Optional[List[Lookup]]:
        """Trace ``forward`` for its lookups and fetch their rows (while a step is traced).

        Returns every lookup, the packed ones with their rows, for `gathers.replaying`, or
        None when the step makes no lookup from another process's server or must gather each
        one itself (`reason`).
        """
        tf = tensorflow()
        from tensorflow.python.framework import func_graph

        step_graph = tf.compat.v1.get_default_graph()
        scratch = func_graph.FuncGraph("parallax_lookup_ids")
        with scratch.as_default(), collecting() as collected:
            forward()
        lookups = collected.lookups
        remote = [lookup for lookup in lookups
                  if self.device_of(lookup.table) != self.own_device]
        self.reason = _why_not_ahead(remote, collected.fake_rows) if remote else None
        if not remote or self.reason:
            return None
        ids = _lift(tf, scratch, step_graph, [lookup.ids for lookup in remote])
        by_server = collections.defaultdict(list)
        for lookup, lookup_ids in zip(remote, ids):
            lookup.packed = True
            by_server[self.device_of(lookup.table)].append((lookup, lookup_ids))
        self.lookups_per_server = {device: len(group) for device, group in by_server.items()}
        for device, group in by_server.items():
            _exchange(tf, device, group)
        return lookups


def _why_not_ahead(lookups: List[Lookup], fake_rows) -> Optional[str]:
    """Why the lookups' ids cannot be computed before the forward pass (None: they can)."""
    seen, stack = set(), [lookup.ids.op for lookup in lookups]
    while stack:
        op = stack.pop()
        if op in seen:
            continue
        seen.add(op)
        if op in fake_rows:
            return ("the ids of a lookup from a server table depend on rows looked up "
                    "before it")
        if op._is_stateful and op.type not in READ_ONLY:   # noqa: SLF001 (no public API)
            return (f"the ids of a lookup from a server table come from {op.type} "
                    f"({op.name}), an op with side effects that would run twice")
        stack.extend(tensor.op for tensor in op.inputs)
        stack.extend(op.control_inputs)
    return None


def _lift(tf, scratch, step_graph, ids):
    """Copy the ops ``ids`` depend on from the scratch graph into the step's graph.

    The copy stops where the scratch graph reads the step: a captured input (the batch, a
    variable's handle) becomes the step's own tensor or capture, and a tensor the model made
    in the step's graph itself (Keras converts some inputs there) is used as it is.
    """
    from tensorflow.python.eager.lift_to_graph import _copy_non_source   # noqa: PLC2701
    from tensorflow.python.util import object_identity

    for function in scratch._functions.values():       # noqa: SLF001 (cond/while bodies)
        if function.name not in step_graph._functions:  # noqa: SLF001
            step_graph._add_function_recursive(function)  # noqa: SLF001
    captured = object_identity.ObjectIdentityDictionary()
    for external, internal in scratch.captures:
        captured[internal] = external
    copied = object_identity.ObjectIdentityDictionary()

    def outside(tensor):
        return tensor if tensor.graph is step_graph else step_graph.capture(tensor)

    # depth first, each op after its inputs
    stack = [(tensor.op, False) for tensor in ids]
    with step_graph.as_default():
        while stack:
            op, ready = stack.pop()
            if op in copied:
                continue
            if op.graph is not scratch:
                copied[op] = op
                for tensor in op.outputs:
                    copied[tensor] = outside(tensor)
                continue
            if op.type == "Placeholder":
                copied[op] = op
                copied[op.outputs[0]] = outside(captured[op.outputs[0]])
                continue
            if not ready:
                stack.append((op, True))
                stack.extend((t.op, False) for t in op.inputs if t.op not in copied)
                stack.extend((c, False) for c in op.control_inputs if c not in copied)
                continue
            _copy_non_source(op=op, graph=step_graph, op_map=copied, base_graph=scratch)
    return [copied[tensor] for tensor in ids]


def _exchange(tf, device: str, group) -> None:
    """One server's lookups: ids out as one message, rows back as one per dtype."""
    flat_ids = [tf.reshape(tf.cast(ids, tf.int64), [-1]) for _, ids in group]
    counts = tf.stack([tf.size(i, out_type=tf.int64) for i in flat_ids])
    message = tf.concat([counts] + flat_ids, 0)
    k = len(group)
    dtypes = list(dict.fromkeys(lookup.table.dtype for lookup, _ in group))

    def serve(message):
        """On the server: cut the message per lookup, gather, pack the rows per dtype."""
        parts = tf.split(message[k:], message[:k], num=k) if k > 1 else [message[k:]]
        rows = {dtype: [] for dtype in dtypes}
        for (lookup, _), part in zip(group, parts):
            rows[lookup.table.dtype].append(tf.reshape(tf.raw_ops.ResourceGather(
                resource=lookup.table.handle, indices=part, dtype=lookup.table.dtype), [-1]))
        return [tf.concat(rows[dtype], 0) if len(rows[dtype]) > 1 else rows[dtype][0]
                for dtype in dtypes]

    replies = call_on(tf, device, serve, message)
    for dtype, reply in zip(dtypes, replies):
        positions = [p for p, (lookup, _) in enumerate(group) if lookup.table.dtype == dtype]
        widths = [int(group[p][0].table.shape[1:].num_elements()) for p in positions]
        sizes = [counts[p] * w for p, w in zip(positions, widths)]
        pieces = tf.split(reply, tf.stack(sizes), num=len(positions)) \
            if len(positions) > 1 else [reply]
        for p, piece in zip(positions, pieces):
            lookup, ids = group[p]
            width = lookup.table.shape[1:]
            shape = tf.concat([tf.shape(ids, out_type=tf.int64),
                               tf.constant(width.as_list(), tf.int64)], 0)
            lookup.rows = tf.reshape(piece, shape)
            lookup.rows.set_shape(ids.shape.concatenate(width))


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
        indices = [tf.reshape(tf.cast(lookup.real_ids, tf.int64), [-1]) for lookup, _ in found]
        if isinstance(grad, tf.IndexedSlices):
            values.append(grad.values)
            indices.append(tf.cast(grad.indices, tf.int64))
        rows = tf.IndexedSlices(tf.concat(values, 0) if len(values) > 1 else values[0],
                                tf.concat(indices, 0) if len(indices) > 1 else indices[0],
                                tf.constant(partition.shape.as_list(), tf.int64))
        gradients.append(rows if grad is None or isinstance(grad, tf.IndexedSlices)
                         else grad + tf.convert_to_tensor(rows))
    return gradients


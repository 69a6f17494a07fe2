"""Synchronous updates of the variables on the parameter servers (HYBRID and PS modes).

Per step and per partition:

1. every rank de-duplicates its gradient rows (a word seen 5 times is pushed once);
2. with local aggregation, the ranks of a host allgather their rows over the host's Horovod
   process set and only the host's first rank pushes, so each host sends one gradient; the
   ranks on the chief's host push straight to server 0 instead (it lives in the chief, so
   the allgather would be one more collective for the same local hop);
3. the partition's *applier*, the first rank on its server's host (`launch.servers`), takes
   the other pushes from a FIFO queue on the server (a shared-name queue every rank opens),
   adds its own, sums them (averages them with ``average_sparse``; dense gradients in PS
   mode are always averaged) and applies them *on the server*, where its push lands: a
   sparse partition by its row rule (`parallax_nb.row_updates`, slots beside the partition),
   anything else by the user's optimizer built under the server's device. On one host the
   applier is the chief and the server lives in its process, so a step's updates are local
   calls there and the other ranks' pushes need no separate round trip to apply them.

A partition whose update is the user's own optimizer is applied by the chief, which owns that
optimizer's slots (a Keras optimizer's slots are private to the process that made them, and the
chief checkpoints them); row-rule slots are shared-name variables any rank can open, so the
chief checkpoints those too without applying them.

No rank may gather rows for step t+1 before step t is applied. Two ways keep that order:

* **the AllReduce waits** (where the next way is not exact, or ``overlap_allreduce`` is
  off): the step's Horovod AllReduce runs after the pushes (and, on appliers, after the
  updates), so it doubles as the barrier;
* **the updates announce themselves** (``announce``; the trainer's choice where every read
  of another process's server travels in the step's packed exchanges, `packed_pulls`, and
  only sparse variables live on the servers): each channel's applier,
  having applied step t, puts one token per reader in the channel's *applied* queue on the
  server (a reader: every rank but the one that hosts the server), and each reader's
  exchange takes one token from every channel of that server before it gathers (`tokens`).
  The dense AllReduce then runs while the pushes travel and the updates are applied. A
  reader cannot take a token of step t+1's update early: it pulls step t+1 only after step
  t's AllReduce, which every rank joins only after its own pull of step t (the trainer
  makes the AllReduce wait for the pulled rows), so the tokens left are those of updates
  already applied (and the ones every applier put there at the start, for the first step).
  For the same reason a queue never holds more than two steps' tokens: step t+1's update
  needs every rank's step t+1, so every reader has taken its token of step t. `settle`
  proves the same before a rank reads the servers between steps (validation, the chief's
  saves, the final weights): it takes one token from each such channel and puts it back.
"""
from __future__ import annotations

import dataclasses
from typing import List, Optional

from ..row_updates import RowUpdater, row_rule
from ..tf_env import build_optimizer, ps_handle_variable, tensorflow
from .allreduce import grouped_by_dtype, stable_names
from .on_server import call_on, function_on
from .spec import CHIEF_SERVER


@dataclasses.dataclass
class Entry:
    """One partition on a server and how its step's gradients reach it."""

    variable: object             # the partition (a tf.Variable on its server)
    server: int
    device: str
    sparse: bool
    applier: int                 # the rank that applies its updates
    pushes: int                  # pushes it takes per step
    direct: bool                 # this rank pushes to it without local aggregation
    update: object = None        # RowUpdater (sparse, supported optimizer) or a Keras optimizer
    saved: object = None         # what the chief checkpoints of its optimizer state


class ServerSync:
    def __init__(self, hvd, spec, server_variables, optimizer_fn, host_set):
        tf = tensorflow()
        self.hvd = hvd
        self.tf = tf
        self.spec = spec
        self.config = spec.config
        self.host_set = host_set
        self.aggregate = self.config.local_aggregation and spec.local_size > 1
        self.is_pusher = spec.local_rank == 0 or not self.aggregate
        chief_host = spec.host_ranks[0] if spec.host_ranks else (0,)
        rule, _ = row_rule(optimizer_fn())
        self.entries: List[Entry] = []
        for variable in server_variables.variables:
            sparse = variable.placement.variable.kind == "sparse"
            for part_var, part, device in zip(variable.partitions, variable.placement.partitions,
                                              variable.devices()):
                index = len(self.entries)
                by_rule = sparse and rule is not None
                applier = spec.appliers[part.server] if by_rule else 0
                in_chief = part.server == CHIEF_SERVER
                pushes = spec.hosts if self.config.local_aggregation else spec.size
                if self.config.local_aggregation and in_chief:
                    pushes += len(chief_host) - 1
                direct = self.aggregate and in_chief and spec.rank in chief_host
                entry = Entry(part_var, part.server, device, sparse, applier, pushes, direct)
                stem = f"{spec.run_id}/{variable.name}/part{index}/update"
                if by_rule and (spec.rank == applier or spec.rank == 0):
                    with tf.device(device):
                        entry.update = RowUpdater(rule, part_var, _shared_slot(
                            stem, device, initialise=spec.rank == applier))
                    entry.saved = entry.update.checkpointed()
                elif not by_rule and spec.rank == 0:
                    entry.update = optimizer_fn()
                    with tf.device(device):
                        build_optimizer(entry.update, [part_var])
                    entry.saved = entry.update
                self.entries.append(entry)
        # Announcing needs every server read in a packed exchange (the trainer checks the
        # traced step) and only sparse variables on the servers (dense ones are read whole).
        self.may_announce = (self.config.pack_pulls and self.config.overlap_allreduce and
                             all(e.sparse for e in self.entries))
        self.channels = _channels(spec.run_id, self.entries,
                                  self.readers if self.may_announce else lambda server: 0)
        self._settles = None
        for channel in self.channels:   # the first step's pulls wait for nothing
            if channel.applied is not None and channel.applier == spec.rank:
                with tf.device(channel.device):
                    channel.applied.enqueue_tokens(channel.readers)

    def readers(self, server: int) -> int:
        """Ranks whose step reads the server's rows through an exchange: all of them but the
        one that hosts it in its process (the chief, server 0), which reads them in place."""
        return self.spec.size - (1 if server == CHIEF_SERVER else 0)

    @property
    def variables(self) -> List:
        return [e.variable for e in self.entries]

    def remote_servers(self) -> int:
        """Server processes a step of this rank exchanges with (its own server excluded)."""
        return len({e.server for e in self.entries} - {self.spec.server_task})

    def checkpointed(self):
        """The optimizer state of every partition (the chief's view), for its checkpoint."""
        return [e.saved for e in self.entries if e.saved is not None]

    def tokens(self, device: str) -> List["SharedQueue"]:
        """The applied queues of every channel of the server on ``device``: a reader's
        exchange there takes one token from each before it gathers (``announce``)."""
        return [c.applied for c in self.channels if c.device == device and c.applied is not None]

    def settle(self) -> None:
        """Return once every update of the last step this rank finished is applied (with
        ``announce``; see the module docstring): a token taken and put back per channel
        applied by another rank, one call per server (traced at the first)."""
        tf = self.tf
        if self._settles is None:
            by_device = {}
            for channel in self.channels:
                if channel.applied is not None and channel.applier != self.spec.rank:
                    by_device.setdefault(channel.device, []).append(channel.applied)

            def take_and_return(queues):
                returned = [q.enqueue_tokens(1, after=q.dequeue()) for q in queues]
                with tf.control_dependencies(returned):
                    return tf.constant(True)

            self._settles = [function_on(tf, device, lambda q=queues: take_and_return(q))
                             for device, queues in by_device.items()]
        for settle in self._settles:
            settle()

    # -- inside the step function ---------------------------------------------------------------
    def push(self, grads, announce: bool = False):
        """Send this rank's (or host's) gradients; apply the partitions this rank applies
        (and, with ``announce``, put their readers' tokens in its applied queue).

        Returns (ops to wait for, bytes pushed to the servers, bytes the host's ranks
        exchanged for local aggregation).
        """
        tf = self.tf
        sparse_idx = [i for i, e in enumerate(self.entries) if e.sparse]
        dense_idx = [i for i, e in enumerate(self.entries) if not e.sparse]
        gathered_sparse = [i for i in sparse_idx if not self.entries[i].direct]
        summed_dense = [i for i in dense_idx if not self.entries[i].direct]
        payload = {}
        for i in sparse_idx:
            g = grads[i]
            if g is None:
                g = tf.IndexedSlices(tf.zeros((0,) + tuple(self.entries[i].variable.shape[1:]),
                                              self.entries[i].variable.dtype),
                                     tf.zeros((0,), tf.int64))
            payload[i] = (tf.cast(g.indices, tf.int64), g.values)
        if self.aggregate and gathered_sparse:
            flat = [payload[i][0] for i in gathered_sparse] + \
                [payload[i][1] for i in gathered_sparse]
            gathered = grouped_by_dtype(
                lambda group: self.hvd.grouped_allgather(group, process_set=self.host_set),
                stable_names(flat, "parallax_local_sparse"))
            n = len(gathered_sparse)
            for k, i in enumerate(gathered_sparse):
                payload[i] = (gathered[k], gathered[n + k])
        dense = {i: grads[i] if grads[i] is not None else tf.zeros_like(self.entries[i].variable)
                 for i in dense_idx}
        if self.aggregate and summed_dense:
            summed = self.hvd.grouped_allreduce(
                stable_names([dense[i] for i in summed_dense], "parallax_local_dense"),
                op=self.hvd.Sum, process_set=self.host_set)
            dense.update(zip(summed_dense, summed))
        # A rank that does not push must still run its half of the local collectives, or
        # the host's pusher waits for it forever. Horovod's ops are not stateful, so one
        # whose result nothing reads is pruned: such a rank returns the results as its
        # "ops to wait for", and the step function returns them (see Trainer._make_step).
        local = tf.constant(0, tf.int64)
        collective_results = []
        if self.aggregate:
            collective_results = [t for i in gathered_sparse for t in payload[i]] + \
                                 [dense[i] for i in summed_dense]
            for t in collective_results:
                local += tf.size(t, out_type=tf.int64) * t.dtype.size
        self.collective_results = collective_results   # for the step profile
        # A push that stays on this host (direct, not the applier's own) is local traffic,
        # as local aggregation's would have been.
        ops = [] if self.is_pusher else list(collective_results)
        pushed = tf.constant(0, tf.int64)
        for channel in self.channels:
            if not (self.is_pusher or channel.direct):
                continue
            pushes = []
            for i in channel.entries:
                components = list(_deduplicate(tf, *payload[i])) if channel.sparse \
                    else [dense[i]]
                size = sum(tf.size(c, out_type=tf.int64) * c.dtype.size for c in components)
                if channel.direct and channel.applier != self.spec.rank and not self.is_pusher:
                    local += size
                else:
                    pushed += size
                pushes.append(components)
            ops += self._deliver(channel, pushes, announce)
        return ops, pushed, local

    def _deliver(self, channel: "Channel", pushes, announce: bool):
        """Send a channel's pushes to its applier as one packed message, or, on the applier,
        take the other pushes, combine each partition's and apply the updates."""
        tf = self.tf
        if channel.applier != self.spec.rank:
            packed = channel.pack(pushes)   # here, so that one message crosses to the server
            with tf.device(channel.device):
                return [channel.queue.enqueue(packed)]
        def apply(own):
            """On the server: this rank's and the others' pushes, combined and applied."""
            items = [own] + \
                [channel.unpack(channel.queue.dequeue()) for _ in range(channel.pushes - 1)]
            done = []
            for k, i in enumerate(channel.entries):
                entry = self.entries[i]
                if entry.sparse:
                    indices = tf.concat([item[k][0] for item in items], axis=0)
                    values = tf.concat([item[k][1] for item in items], axis=0)
                    if self.config.average_sparse:
                        values = values / self.spec.size
                    grad = tf.IndexedSlices(values, indices,
                                            tf.shape(entry.variable, out_type=tf.int64))
                else:
                    grad = tf.add_n([item[k][0] for item in items]) / self.spec.size
                if isinstance(entry.update, RowUpdater):
                    done.append(entry.update.apply(grad))
                    continue
                entry.update.apply_gradients([(grad, entry.variable)])
                # What apply_gradients returns is the optimizer's step counter, not the
                # variable's update. A one-row read of the partition is ordered after the
                # update by tf.function's automatic control dependencies (same resource),
                # so waiting for it means waiting for the update.
                done.append(entry.variable.sparse_read([0]))
            if announce and channel.applied is not None:
                done = [channel.applied.enqueue_tokens(channel.readers, after=done)]
            with tf.control_dependencies(done):
                return tf.constant(True)

        if self.entries[channel.entries[0]].server == self.spec.server_task:
            with tf.device(channel.device):   # this process's server: local calls anyway
                return [apply(pushes)]
        return [call_on(tf, channel.device, lambda *message: apply(channel.unpack(message)),
                        *channel.pack(pushes))]


@dataclasses.dataclass
class Channel:
    """The partitions of one server that share an applier, a kind and a dtype: a pusher
    sends all their gradients of a step as one message, packed before it leaves the rank (two
    tensors for sparse ones: the counts and indices, the values; one for dense), so a step
    costs one transfer per server, not one per partition."""

    entries: List[int]           # positions in ServerSync.entries
    shapes: List[tuple]          # each partition's shape
    sparse: bool
    dtype: object
    device: str
    applier: int
    pushes: int
    direct: bool
    queue: Optional["SharedQueue"]    # the other pushes, on their way to the applier
    readers: int = 0                  # tokens per applied update (ServerSync.readers)
    applied: Optional["SharedQueue"] = None   # the tokens of applied updates

    def pack(self, pushes):
        """[(indices, values)] or [(dense,)] per partition -> the message's tensors."""
        tf = tensorflow()
        values = tf.concat([tf.reshape(p[-1], [-1]) for p in pushes], axis=0)
        if not self.sparse:
            return [values]
        counts = tf.stack([tf.size(p[0], out_type=tf.int64) for p in pushes])
        return [tf.concat([counts] + [p[0] for p in pushes], axis=0), values]

    def unpack(self, message):
        """The message's tensors -> [(indices, values)] or [(dense,)] per partition."""
        tf = tensorflow()
        widths = [int(_product(shape[1:])) for shape in self.shapes]
        if not self.sparse:
            sizes = [int(_product(shape)) for shape in self.shapes]
            return [(tf.reshape(v, shape),) for v, shape in
                    zip(tf.split(message[0], sizes), self.shapes)]
        k = len(self.shapes)
        ids, values = message
        counts, indices = ids[:k], ids[k:]
        rows = tf.unstack(counts, num=k)
        parts = tf.split(values, tf.stack([r * w for r, w in zip(rows, widths)]),
                         num=len(self.shapes))
        return [(i, tf.reshape(v, (-1,) + tuple(shape[1:]))) for i, v, shape in
                zip(tf.split(indices, counts, num=len(self.shapes)), parts, self.shapes)]


def _channels(run_id, entries, readers) -> List[Channel]:
    groups = {}
    for i, e in enumerate(entries):
        key = (e.server, e.applier, e.sparse, e.variable.dtype.name)
        groups.setdefault(key, []).append(i)
    channels = []
    for (server, applier, sparse, dtype), members in groups.items():
        first = entries[members[0]]
        dtypes = [tensorflow().int64, first.variable.dtype] if sparse else [first.variable.dtype]
        name = f"{run_id}/server{server}/applier{applier}/{'sparse' if sparse else 'dense'}/" \
               f"{dtype}"
        queue = (SharedQueue(name, dtypes, first.device, capacity=first.pushes * 4)
                 if first.pushes > 1 else None)
        # at most two steps' tokens are ever there (the module docstring says why)
        applied = (SharedQueue(f"{name}/applied", [tensorflow().int32], first.device,
                               capacity=readers(server) * 4) if readers(server) else None)
        channels.append(Channel(members, [tuple(entries[i].variable.shape) for i in members],
                                sparse, first.variable.dtype, first.device, applier,
                                first.pushes, first.direct, queue, readers(server), applied))
    return channels


def _product(values) -> int:
    result = 1
    for v in values:
        result *= int(v)
    return result


def _shared_slot(stem, device, initialise):
    """A row-rule slot every rank can open by name on the server (see the module docstring):
    the applier creates and initialises it, the chief opens it for its checkpoints."""
    def make(name, shape, dtype, initial):
        variable = ps_handle_variable(shared_name=f"{stem}/{name}", name=f"{stem}/{name}",
                                      shape=shape, dtype=dtype, device=device, trainable=False)
        if initialise:
            variable.assign(initial() if callable(initial) else initial)
        return variable

    return make


class SharedQueue:
    """A FIFO queue on a server that every rank opens by name.

    ``tf.queue.FIFOQueue`` swaps the shared name for a unique one in eager mode (so that
    queues are never shared by accident); here sharing is the point, so the raw ops are used.
    """

    def __init__(self, shared_name, dtypes, device, capacity):
        tf = tensorflow()
        self.dtypes = list(dtypes)
        self.device = device
        with tf.device(device):
            self.handle = tf.raw_ops.FIFOQueueV2(component_types=self.dtypes, shapes=[],
                                                 capacity=capacity, container="",
                                                 shared_name=shared_name)

    def enqueue(self, components):
        return tensorflow().raw_ops.QueueEnqueueV2(handle=self.handle, components=components)

    def dequeue(self):
        return tensorflow().raw_ops.QueueDequeueV2(handle=self.handle,
                                                   component_types=self.dtypes)

    def enqueue_tokens(self, count: int, after=()):
        """``count`` tokens (an int32 queue's elements), once ``after`` is done."""
        tf = tensorflow()
        with tf.control_dependencies(tf.nest.flatten(after)):
            return tf.raw_ops.QueueEnqueueManyV2(handle=self.handle,
                                                 components=[tf.zeros([count], tf.int32)])


def _deduplicate(tf, indices, values):
    unique, position = tf.unique(indices)
    summed = tf.math.unsorted_segment_sum(values, position, tf.shape(unique)[0])
    return unique, summed

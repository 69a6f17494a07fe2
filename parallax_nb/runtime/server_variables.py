"""Variables that live on the parameter servers, as every rank sees them.

The user's unchanged model code creates its variables as usual; a variable creator scope
swaps each variable the plan puts on the servers for partitions on those servers: real
``tf.Variable`` objects whose resource is a shared-name handle on a "ps" task, grouped in a
TensorFlow ``ShardedVariable`` when there is more than one. Keras layers, ``tf.gather``,
``tf.nn.embedding_lookup`` and ``tf.nn.sampled_softmax_loss`` then gather on the server that
owns the rows (TensorFlow's "div" sharding, the plan's row splits), so only the looked-up
rows travel, and their gradients are ``IndexedSlices`` per partition. (Keras 3 layers hold
the table inside a Keras variable and ``take`` from it: `keras3` makes that gather too.)
"""
from __future__ import annotations

import collections
import dataclasses
from typing import Iterator, List, Tuple

from ..errors import ProgramError
from ..keras3 import gather_rows_where_they_live
from ..tf_env import ps_handle_variable, tensorflow
from .gathers import server_table_class


def server_device(task: int) -> str:
    return f"/job:ps/replica:0/task:{task}/device:CPU:0"


def connect_to_servers(hvd, spec, own_host: str = "127.0.0.1", on_serving=None):
    """Join the servers' TensorFlow cluster, one rank after the other.

    The rank that hosts a server in its own process (``spec.server_task``, the chief) joins
    as that "ps" task: its variables there are local to it. Every other rank is a job of its
    own ("w<rank>"): with one shared "worker" job listing every rank, every client would try
    to manage every other one. Ranks connect in turn, the server's host first (a Horovod
    barrier between them): two eager contexts created on a server at the same instant have
    crashed it (SIGSEGV in TensorFlow 2.18.1's eager service). ``on_serving()`` runs once this
    rank's own server listens.
    """
    for turn in range(spec.size):
        if turn == spec.rank:
            _connect(spec, own_host)
            if spec.server_task is not None and on_serving is not None:
                on_serving()
        hvd.allreduce(tensorflow().constant(0.0), name=f"parallax_connect_{turn}")


def _connect(spec, own_host: str) -> None:
    from distributed.utils import open_port

    tf = tensorflow()
    if spec.server_task is not None:
        cluster, job, task = {"ps": list(spec.servers)}, "ps", spec.server_task
    else:
        job, task = f"w{spec.rank}", 0
        cluster = {"ps": list(spec.servers), job: [f"{own_host}:{open_port(own_host)}"]}
    resolver = tf.distribute.cluster_resolver.SimpleClusterResolver(
        tf.train.ClusterSpec(cluster), rpc_layer="grpc")
    tf.config.experimental_connect_to_cluster(resolver, job_name=job, task_index=task,
                                              make_master_device_default=False)
    # The context connects lazily, at its first operation: make it now, in this rank's turn.
    tf.constant(0.0).numpy()


@dataclasses.dataclass
class ServerVariable:
    """One variable of the model placed on the servers: its plan and its partitions."""

    name: str                       # the name the single-device model gives it
    placement: object               # analysis VariablePlacement
    partitions: List                # tf.Variable per partition, plan order
    handle: object                  # what the model holds: the variable or a ShardedVariable

    def devices(self):
        return [server_device(p.server) for p in self.placement.partitions]


class ServerVariables:
    """The variable creator that moves planned variables onto the servers."""

    def __init__(self, run_id: str, placements, is_chief: bool):
        self.run_id = run_id
        self.is_chief = is_chief
        self._plan = collections.defaultdict(list)
        for vp in placements:
            if vp.placement == "ps":   # found again by TensorFlow's name, in creation order
                self._plan[vp.variable.tf_name or vp.variable.name].append(vp)
        self._seen = collections.Counter()
        self.variables: List[ServerVariable] = []

    def scope(self):
        gather_rows_where_they_live(self.is_server_table)
        return tensorflow().variable_creator_scope(self._create)

    def ids(self):
        """``id()`` of every server table and partition (what local variables are not)."""
        return {id(x) for v in self.variables for x in [v.handle, *v.partitions]}

    def device_of(self, partition) -> str:
        """The server device of one of the tables' partitions."""
        for v in self.variables:
            for p, device in zip(v.partitions, v.devices()):
                if p is partition:
                    return device
        raise KeyError(f"{partition.name} is not a server partition of this run")

    def is_server_table(self, table) -> bool:
        return any(table is v.handle for v in self.variables)

    def _create(self, next_creator, **kwargs):
        tf = tensorflow()
        scope = tf.get_current_name_scope()
        base = kwargs.get("name") or "Variable"
        name = f"{scope}/{base}:0" if scope else f"{base}:0"
        occurrence = self._seen[name]
        self._seen[name] += 1
        planned = self._plan.get(name, [])
        if occurrence >= len(planned) or not _trainable(tf, kwargs):
            return next_creator(**kwargs)
        placement = planned[occurrence]
        shape = tuple(tf.TensorShape(kwargs.get("shape")).as_list()) if kwargs.get("shape") \
            is not None else None
        initial = kwargs["initial_value"]
        dtype = tf.as_dtype(kwargs.get("dtype") or placement.variable.dtype)
        if shape is None:
            initial = initial() if callable(initial) else initial
            initial = tf.convert_to_tensor(initial, dtype)
            shape = tuple(initial.shape.as_list())
        if shape != placement.variable.shape:
            raise ProgramError(f"variable {name} has shape {shape} in this rank but "
                               f"{placement.variable.shape} in the analysis: model_fn must "
                               f"build the same model every time it is called, and "
                               f"variables that share a name (tf.Variable without name=) "
                               f"are told apart only by the order they are made in: "
                               f"name them")
        stem = name.split(":")[0] + (f"_{occurrence}" if occurrence else "")
        partitions = []
        for part in placement.partitions:
            part_shape = (part.row_stop - part.row_start,) + shape[1:]
            partitions.append(ps_handle_variable(
                shared_name=f"{self.run_id}/{stem}/part_{part.index}", name=f"{stem}/part_{part.index}",
                shape=part_shape, dtype=dtype, device=server_device(part.server),
                variable_class=server_table_class()))
        if self.is_chief:
            self._initialise(partitions, placement, initial, dtype)
        if len(partitions) == 1:
            handle = partitions[0]
        else:
            from tensorflow.python.distribute.sharded_variable import ShardedVariable

            handle = ShardedVariable(partitions, name=stem)
        self.variables.append(ServerVariable(placement.variable.name, placement, partitions,
                                             handle))
        return handle

    @staticmethod
    def _initialise(partitions, placement, initial, dtype):
        """The chief computes the initial value once, exactly as one device would, and
        writes each partition's rows to its server.

        Each of several partitions gets a copy of its rows: a slice of the first dimension
        shares the whole value's buffer, and a partition on the chief's own server would keep
        all of it alive (the other partitions' rows too) for the rest of the run.
        """
        tf = tensorflow()
        value = tf.convert_to_tensor(initial() if callable(initial) else initial, dtype)
        for variable, part in zip(partitions, placement.partitions):
            rows = value[part.row_start:part.row_stop]
            variable.assign(tf.raw_ops.DeepCopy(x=rows) if len(partitions) > 1 else rows)

    def sparse_partitions(self):
        """The partitions of the sparse tables (read only row by row, never whole)."""
        return [p for v in self.variables if v.placement.variable.kind == "sparse"
                for p in v.partitions]

    def partition_variables(self):
        return [p for v in self.variables for p in v.partitions]

    def values(self) -> Iterator[Tuple[str, object]]:
        """``(single-device name, rows)`` per partition of every variable, in row order, read
        back one partition at a time: the chief then holds one partition beside its tables,
        not a joined copy (`runtime.result` joins a variable's partitions in the driver)."""
        for v in self.variables:
            for p in v.partitions:
                yield v.name, p.numpy()


def _trainable(tf, kwargs) -> bool:
    """What a variable made with ``kwargs`` is: ``tf.Variable`` passes trainable=None,
    meaning trainable unless its synchronization is ON_READ (Keras passes True or False)."""
    trainable = kwargs.get("trainable")
    if trainable is None:
        return kwargs.get("synchronization") != tf.VariableSynchronization.ON_READ
    return bool(trainable)

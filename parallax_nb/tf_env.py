"""Importing TensorFlow the way this SDK needs it, and the few private TF/Keras hooks it uses.

`tf.keras` stays Keras 2 (tf_keras), as programs written for TensorFlow 2 expect; Keras 3
(``import keras``) works beside it (`keras3`). TensorFlow picks the Keras behind ``tf.keras``
when it is first touched, so the environment variable is set before any import, and the
first import of TensorFlow is made quiet (`native_noise`). Private APIs are kept in this one
module and pinned by tests (TensorFlow 2.18.1).
"""
from __future__ import annotations

import contextlib
import os

from .native_noise import quiet_tensorflow_import

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
quiet_tensorflow_import()


def tensorflow():
    """The tensorflow module, imported lazily: the notebook layer must not pay for it up
    front (and its start-up noise is filtered, `native_noise`, whoever imports it first)."""
    import tensorflow as tf

    return tf


@contextlib.contextmanager
def fresh_keras_names():
    """Build a model with the layer names a fresh process would give it.

    Keras numbers layers per session ("embedding", "embedding_1", ...), so a model built a
    second time in a notebook gets other variable names than in a rank process. Analysis
    and the single-device reference run model_fn inside this scope so their names match the
    ranks'; the notebook's own counters are restored afterwards. Both Kerases.
    """
    from tf_keras.src import backend

    from .keras3 import fresh_names

    saved_uids = dict(backend.PER_GRAPH_OBJECT_NAME_UIDS)
    saved_observed = set(backend.OBSERVED_NAMES)
    backend.reset_uids()
    try:
        with fresh_names():
            yield
    finally:
        backend.reset_uids()
        backend.PER_GRAPH_OBJECT_NAME_UIDS.update(saved_uids)
        backend.OBSERVED_NAMES.update(saved_observed)


def step_function(body):
    """``tf.function`` for a training step the SDK writes around the user's loss.

    AutoGraph is off for the step itself: none of the SDK's step code (nor Horovod's, which
    it calls) branches on tensors, and converting it costs most of a rank's start-up (8-24 s
    of source transformation per process on 2 cores, measured; the graph is the same). The
    user's ``loss_fn`` is called through `user_function`, so it is converted as in any
    ``tf.function``.
    """
    return tensorflow().function(body, reduce_retracing=True, autograph=False)


def user_function(fn):
    """``fn`` as AutoGraph converts a function called inside an AutoGraph ``tf.function``
    (Python ``if``/``for`` on tensors become graph control flow; a function without source,
    e.g. one shipped by value from a notebook, runs as written, as it would there)."""
    tf = tensorflow()
    from tensorflow.python.autograph.core import ag_ctx

    return tf.__internal__.autograph.tf_convert(
        fn, ag_ctx.ControlStatusCtx(status=ag_ctx.Status.ENABLED))


def trainable_variables(model):
    """The trainable variables of a Keras Model (either Keras) or a tf.Module, in creation
    order."""
    tf = tensorflow()
    from .errors import ProgramError

    if not isinstance(model, tf.Module) and not hasattr(model, "trainable_variables"):
        raise ProgramError(f"model_fn must return a Keras Model or a tf.Module, "
                           f"got {type(model).__name__}")
    return list(model.trainable_variables)


def rewire_input(op, index: int, tensor) -> None:
    """Make ``op`` (in a graph being traced) read ``tensor`` as its input ``index``: what a
    packed pull does to the stand-ins of deferred lookups (`runtime.packed_pulls`).
    ``Operation._update_input``, private, pinned to 2.18."""
    op._update_input(index, tensor)   # noqa: SLF001 (no public API)


def side_effect_order(op):
    """How tf.function orders ``op`` among the ops with side effects it makes (automatic
    control dependencies; `runtime.gathers` keeps a deferred lookup out of their way):
    whether it is chained, in the order ops were made, with every other such op that uses
    no resource, and the ids of the resources it uses (ordered with the ops that use them).
    ``auto_control_deps.op_is_stateful``, private, pinned to 2.18."""
    tf = tensorflow()
    from tensorflow.python.framework import auto_control_deps, ops

    resources = {ops.tensor_id(t) for t in op.inputs if t.dtype == tf.resource}
    return auto_control_deps.op_is_stateful(op) and not resources, resources


def ps_handle_variable(shared_name: str, name: str, shape, dtype, device: str,
                       trainable: bool = True, variable_class=None):
    """A real ``tf.Variable`` whose resource is the shared-name handle on ``device``.

    Every process that asks for the same shared name on the same server gets the same
    resource. ``tf.Variable`` refuses a shared name in eager mode, so the handle is made
    with ``VarHandleOp`` and given its shape/dtype data (which Keras functional tracing and
    the optimizers need) before it is wrapped, in ``variable_class`` (a ResourceVariable
    subclass; the server tables' routes their row gathers, `runtime.gathers`). Private
    TensorFlow APIs, pinned to 2.18.
    """
    tf = tensorflow()
    from tensorflow.python.framework import ops
    from tensorflow.python.ops import handle_data_util, resource_variable_ops

    shape = tf.TensorShape(shape)
    with ops.init_scope(), tf.device(device):
        handle = tf.raw_ops.VarHandleOp(dtype=dtype, shape=shape, container="",
                                        shared_name=shared_name)
        handle_data_util.set_handle_data(handle,
                                         handle_data_util.create_handle_data(shape, dtype))
        handle._unique_id = f"{shared_name}_{ops.uid()}"  # what optimizers key slots by
        handle._name = f"{name}:0"
        cls = variable_class or resource_variable_ops.ResourceVariable
        return cls(handle=handle, shape=shape, dtype=dtype, trainable=trainable)


def build_optimizer(optimizer, variables):
    """Create an optimizer's slots for ``variables`` now (under the caller's device scope),
    not lazily at the first update: server partitions get their slots on their server, and a
    checkpoint restore finds the slots it has values for.

    A partition of a ShardedVariable points back to it (``_sharded_container``), and Keras
    then waits for every shard's slot before it tracks them; each partition has its own
    optimizer in this SDK, so that link is hidden while the slots are made.
    """
    containers = {id(v): v.__dict__.pop("_sharded_container", None) for v in variables}
    try:
        if hasattr(optimizer, "_create_all_weights"):      # tf.keras.optimizers.legacy.*
            optimizer._create_all_weights(variables)
        else:
            optimizer.build(variables)
    finally:
        for v in variables:
            if containers[id(v)] is not None:
                v._sharded_container = containers[id(v)]

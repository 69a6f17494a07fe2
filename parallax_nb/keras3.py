"""Keras 3 models beside tf_keras ones: what the rest of the SDK needs to treat them alike.

``import parallax_nb`` keeps ``tf.keras`` on tf_keras (Keras 2, see `tf_env`), and a program
may use Keras 3 through ``import keras`` instead. Four things differ, and are handled here so
no other module has to know which Keras built a model:

- A Keras 3 variable wraps a ``tf.Variable`` (and reports ``dtype`` as a string, ``name``
  without its layer): `tf_variable` gives the TensorFlow one, `variable_name` a name with
  its layers (its ``path``).
- Keras 3 numbers layer names per process, as tf_keras does: `fresh_names` resets both.
- Keras 3's ``Embedding`` calls ``ops.take``, which converts the whole table to a tensor
  before gathering: on a parameter server that reads every row each step.
  `gather_rows_where_they_live` makes ``take`` gather on the server instead (the same
  values, so the same maths), for server tables only.
- A model of one Keras with an optimizer of the other fails deep inside TensorFlow or
  Horovod: `check_one_keras` says so before anything runs.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Optional

from .errors import ProgramError

KERAS3 = "Keras 3"
TF_KERAS = "tf_keras"


def flavour(obj) -> Optional[str]:
    """Which Keras made ``obj`` (a model, layer or optimizer), or None for neither."""
    for cls in type(obj).__mro__:
        module = cls.__module__ or ""
        if module == "keras" or module.startswith("keras."):
            return KERAS3
        if module.startswith("tf_keras."):
            return TF_KERAS
    return None


def is_keras3_variable(variable) -> bool:
    keras = sys.modules.get("keras")
    return keras is not None and isinstance(variable, getattr(keras, "Variable", ()))


def tf_variable(variable):
    """The ``tf.Variable`` (or server table) behind a Keras 3 variable; others unchanged.

    ``_value`` rather than ``value``: the property casts under a mixed-precision scope.
    """
    return variable._value if is_keras3_variable(variable) else variable


def variable_name(variable) -> str:
    """The name the SDK reports for a variable: ``layer/weight:0`` for both Kerases.

    TensorFlow's own name for tf_keras and tf.Module variables; Keras 3's ``path`` for Keras 3
    ones (their ``name`` is the weight's alone, ``embeddings``, and their TensorFlow name
    leaves out the layers nested inside a custom layer, so two tables can share it).
    """
    if is_keras3_variable(variable):
        return f"{variable.path}:0"
    return variable.name


def variable_names(variables) -> list:
    """`variable_name` of each, made unique in order: a repeated name gets ``#2``, ``#3``..."""
    names, seen = [], set()
    for variable in variables:
        base = variable_name(variable)
        name, n = base, 1
        while name in seen:
            n += 1
            name = f"{base}#{n}"
        seen.add(name)
        names.append(name)
    return names


def check_one_keras(model, optimizer) -> None:
    """Refuse a model of one Keras trained by an optimizer of the other."""
    made_by = {"model_fn": flavour(model), "optimizer_fn": flavour(optimizer)}
    if None in made_by.values() or made_by["model_fn"] == made_by["optimizer_fn"]:
        return
    raise ProgramError(
        f"model_fn returns a {made_by['model_fn']} model but optimizer_fn a "
        f"{made_by['optimizer_fn']} optimizer; one program must use one Keras. "
        f"tf.keras is tf_keras here (parallax_nb sets TF_USE_LEGACY_KERAS=1) and "
        f"`import keras` is Keras 3: build both with `keras.` (Keras 3), or both with "
        f"`tf.keras.` (tf_keras).")


@contextlib.contextmanager
def fresh_names():
    """Keras 3's half of `tf_env.fresh_keras_names`: its layer-name counters start afresh
    inside, and the caller's are restored afterwards."""
    if "keras.src.backend.common.global_state" not in sys.modules:
        yield
        return
    from keras.src.backend.common import global_state

    saved = global_state.get_global_attribute("object_name_uids")
    global_state.set_global_attribute("object_name_uids", None)
    try:
        yield
    finally:
        global_state.set_global_attribute("object_name_uids", saved)


def gather_rows_where_they_live(is_server_table) -> None:
    """Make Keras 3's ``take(table, ids, axis=0)`` gather the rows on the table's server
    when ``is_server_table(table)``, instead of reading the whole table first.

    Installed once per rank process (it only changes server tables, which exist only in
    ranks); negative ids are wrapped as Keras wraps them, so the values are the same.
    """
    if "keras" not in sys.modules:
        return
    from keras.src.backend.tensorflow import numpy as backend_numpy

    if getattr(backend_numpy.take, "parallax_rows", False):
        return
    keras_take = backend_numpy.take

    def take(x, indices, axis=None):
        import tensorflow as tf

        table = tf_variable(x)
        if axis != 0 or not is_server_table(table) or \
                isinstance(indices, (tf.SparseTensor, tf.RaggedTensor)):
            return keras_take(x, indices, axis=axis)
        indices = tf.convert_to_tensor(indices)
        rows = tf.cast(x.shape[0], indices.dtype)
        return tf.nn.embedding_lookup(table, tf.where(indices < 0, indices + rows, indices))

    take.parallax_rows = True
    backend_numpy.take = take

"""The trained model out of a run: the user's own Keras model, on one device, with the run's
weights, so ``evaluate``, ``predict`` and ``save`` work as they do after ``model.fit``.

The model is built by ``model_fn`` with the names a rank gives its variables
(`tf_env.fresh_keras_names`), so the weights a run reports by name go back one to one; a
model whose variables appear only at its first call is called once on a batch of shard 0.
From a checkpoint, a server table is filled one partition at a time (rows ``start:end``
assigned in place), so the client holds the table and one partition, never two copies.

Memory: the model's values are about to be overwritten, so `build_model` makes its variables
as zeros of their shape and dtype instead of running their initializers (`zeros_for_initializers`:
a Keras random initializer holds about three copies of a table while it draws it, see
`analysis.memory.INITIALIZER_COPIES`), and every large value goes in by blocks of rows
(`assign_rows`: TensorFlow's strided-slice assignment on the variable's handle, in place;
``variable.assign(whole table)`` holds two more copies of it for a moment, and
``variable[a:b].assign`` copies the whole variable, as the slice it reads is still alive).
``run.model()`` therefore adds the tables and one block of rows to the client, not three
copies of the largest table (measured: ``benchmarks/model_memory.py``).
"""
from __future__ import annotations

import contextlib
import os
import re
from typing import Dict, Iterable, List, Optional, Tuple

from ..errors import ConfigError, ProgramError
from ..keras3 import KERAS3, flavour, is_keras3_variable, tf_variable, variable_names
from ..program import Program
from ..tf_env import fresh_keras_names, tensorflow
from .checkpoint import variable_key

SAVE_FORMATS = ("keras", "tf")


# Rows assigned at once into a model's variable (a table is filled block by block, in place).
ASSIGN_BLOCK_BYTES = 4 * 2**20


def build_model(program: Program, initial_values: bool = False):
    """``model_fn()`` built, named as on a rank (its variables exist, their values are not
    the run's yet). ``initial_values=False`` (for a model whose every variable is assigned
    next, as `assign_weights` and `load_from_checkpoint` do): the model's variables are
    zeros instead of their initializers' values (`zeros_for_initializers`); a variable that
    model_fn makes outside the model's ``variables`` keeps its initial value."""
    from ..analysis.trace import compute_loss
    from .data import endless_batches

    made: List[tuple] = []
    scope = contextlib.nullcontext() if initial_values else zeros_for_initializers(made)
    with fresh_keras_names(), scope:
        model = program.model()
        if not model.variables:
            compute_loss(program, model, next(endless_batches(program, 0, 1, None)))
    if made:   # what model_fn made beside the model (nothing assigns it): its initial value
        kept = {id(getattr(tf_variable(v), "_variable", tf_variable(v)))   # AutoCast
                for v in model.variables}
        for variable, initial_value in made:
            if id(variable) not in kept:
                variable.assign(initial_value() if callable(initial_value) else initial_value)
    return model


@contextlib.contextmanager
def zeros_for_initializers(made: Optional[List[tuple]] = None):
    """Variables created inside start as zeros of their shape and dtype: their initializer
    (the callable a Keras layer hands ``tf.Variable``: tf_keras' ``initializer(shape)``,
    Keras 3's ``lambda: initializer(variable.shape)``) is not called, so none of its
    temporary copies is made. Names, shapes, dtypes and everything else are unchanged. An
    initial value already computed, or one whose shape or dtype cannot be told without
    calling it, is kept. ``made`` receives ``(tf.Variable, initial value)`` of each zeroed
    one."""
    tf = tensorflow()

    def creator(next_creator, **kwargs):
        initial_value = kwargs.get("initial_value")
        shape, dtype = _shape_and_dtype(initial_value, kwargs)
        if shape is None or dtype is None:
            return next_creator(**kwargs)
        kwargs["initial_value"] = tf.zeros(shape, dtype)
        variable = next_creator(**kwargs)
        if made is not None:
            made.append((variable, initial_value))
        return variable

    with tf.variable_creator_scope(creator):
        yield


def _shape_and_dtype(initial_value, kwargs) -> tuple:
    """The shape and dtype of a variable whose initial value is a callable not called yet,
    or ``(None, None)``."""
    tf = tensorflow()
    if not callable(initial_value) or kwargs.get("dtype") is None:
        return None, None
    try:
        dtype = tf.as_dtype(kwargs["dtype"])
    except TypeError:
        return None, None
    shape = kwargs.get("shape")
    if shape is None:   # Keras 3: lambda: initializer(self._shape, dtype=self._dtype)
        owners = [cell.cell_contents for cell in getattr(initial_value, "__closure__", None)
                  or () if _filled(cell)]
        shape = next((o.shape for o in owners if is_keras3_variable(o)), None)
    if shape is None:
        return None, None
    shape = tf.TensorShape(shape)
    return (shape, dtype) if shape.is_fully_defined() else (None, None)


def _filled(cell) -> bool:
    try:
        cell.cell_contents
    except ValueError:   # a closure cell not assigned yet
        return False
    return True


def assign_weights(model, weights: Dict[str, object]) -> None:
    """Give every variable of ``model`` its value from ``weights`` (``run.result()``'s
    names); a variable missing there, or a name that matches nothing, is an error. Large
    values go in by blocks of rows (`assign_rows`), so no second copy of a table is made."""
    variables = list(model.variables)
    names = variable_names(variables)
    missing = [n for n in names if n not in weights]
    extra = sorted(set(weights) - set(names))
    if missing or extra:
        raise ProgramError(
            f"the model model_fn() builds does not match the trained weights: "
            f"variables without a trained value {missing}, trained values no variable takes "
            f"{extra}. model_fn must build the same model it built for the run.")
    for name, variable in zip(names, variables):
        value = weights[name]
        if _whole_rows(variable, value):
            assign_rows(variable, 0, value)
        else:
            variable.assign(value)


def _whole_rows(variable, value) -> bool:
    """Whether ``value`` is an array of exactly the variable's shape, at least 1-d, larger
    than one block (else a plain ``assign``, with its own checks and errors, is as cheap)."""
    shape = getattr(value, "shape", None)
    return (shape is not None and len(shape) >= 1 and getattr(value, "nbytes", 0) >
            ASSIGN_BLOCK_BYTES and tuple(shape) == tuple(tf_variable(variable).shape))


def assign_rows(variable, start: int, rows, block_bytes: int = ASSIGN_BLOCK_BYTES) -> None:
    """``variable[start:start + len(rows)] = rows``, in place, at most ``block_bytes`` of rows
    at a time: TensorFlow's strided-slice assignment on the variable's handle. (Through
    ``variable[a:b].assign``, the slice it reads keeps the variable's buffer in use, so
    TensorFlow copies the whole variable before it writes; a whole ``assign`` makes two.)"""
    tf = tensorflow()
    target = tf_variable(variable)
    handle = getattr(target, "handle", None)
    count = len(rows)
    if handle is None:   # not a resource variable: the slice assignment it offers
        target[start:start + count].assign(rows)
        return
    row_bytes = max(1, int(getattr(rows, "nbytes", 0)) // max(count, 1))
    step = max(1, block_bytes // row_bytes)
    for begin in range(0, count, step):
        end = min(begin + step, count)
        tf.raw_ops.ResourceStridedSliceAssign(
            ref=handle, begin=[start + begin], end=[start + end], strides=[1],
            value=tf.convert_to_tensor(rows[begin:end], dtype=target.dtype))


def checkpoint_values(reader) -> Iterable[Tuple[str, str, int, str]]:
    """``(kind, variable key, index, key)`` of each model value a run's checkpoint holds
    (``reader``: its ``tf.train.load_checkpoint``): kind ``local`` (a replicated variable,
    index its place among them) or ``server`` (a server table's partition, index its
    partition number), and the checkpoint's own key. Variable keys are
    `checkpoint.variable_key` names. TensorFlow writes a "." in an object's name as "..".
    """
    pattern = re.compile(r"^(local|server)/(.+)/\.ATTRIBUTES/VARIABLE_VALUE$")
    for key in reader.get_variable_to_shape_map():
        match = pattern.match(key)
        if not match:
            continue
        name = match.group(2).replace("..", ".")
        kind = match.group(1)
        stem, _, index = name.rpartition(".part" if kind == "server" else ".")
        yield kind, stem, int(index), key


def load_from_checkpoint(program: Program, directory: str):
    """The model of ``program`` with the weights of the newest checkpoint in ``directory``
    (as a run with ``Config(checkpoint_dir=directory)`` wrote it, in any mode)."""
    tf = tensorflow()
    prefix = tf.train.latest_checkpoint(directory) if os.path.isdir(directory) else None
    if not prefix:
        raise ConfigError(f"no checkpoint in {directory!r}: give the checkpoint_dir of a run "
                          f"that saved at least once (Config(checkpoint_dir=...)).")
    reader = tf.train.load_checkpoint(prefix)
    model = build_model(program)
    variables = list(model.variables)
    keys = [variable_key(n) for n in variable_names(variables)]
    local, server = {}, {}
    for kind, stem, index, key in checkpoint_values(reader):
        (local if kind == "local" else server).setdefault(stem, {})[index] = key
    replicated = 0   # the trainer numbers the variables it does not keep on servers
    for variable, key in zip(variables, keys):
        if key in server:
            start = 0
            for part in sorted(server[key]):   # one partition in memory at a time
                rows = reader.get_tensor(server[key][part])
                if start + len(rows) > int(variable.shape[0]):
                    _check_rows(key, start + len(rows), variable)
                assign_rows(variable, start, rows)
                start += len(rows)
                del rows
            _check_rows(key, start, variable)
            continue
        entry = local.get(key, {}).get(replicated)
        replicated += 1
        if entry is None:
            raise ProgramError(f"the checkpoint {prefix} holds no value for {key!r}: "
                               f"model_fn must build the model the run trained.")
        value = reader.get_tensor(entry)
        if _whole_rows(variable, value):
            assign_rows(variable, 0, value)
        else:
            variable.assign(value)
        del value
    return model


def _check_rows(key: str, rows: int, variable) -> None:
    if rows != int(variable.shape[0]):
        raise ProgramError(f"the checkpoint's partitions of {key!r} hold {rows} rows, the "
                           f"model's table {int(variable.shape[0])}: model_fn must build the "
                           f"model the run trained.")


def check_save_target(path: str, format: str) -> None:
    """Refuse a format or a file name that ``save_model`` could not write, before any work."""
    if format not in SAVE_FORMATS:
        raise ConfigError(f"format={format!r} names no save format: use one of {SAVE_FORMATS}")
    if format == "keras" and not str(path).endswith(".keras"):
        raise ConfigError(f"a Keras file's name ends in .keras: got {path!r} (or give "
                          f"format='tf' for a SavedModel folder)")


def save_model(model, path: str, format: str = "keras") -> str:
    """Write ``model`` where plain Keras (``format="keras"``: a ``.keras`` file) or
    TensorFlow (``format="tf"``: a SavedModel folder; a Keras 3 model's is called through
    ``serve``) loads it without parallax_nb."""
    check_save_target(path, format)
    if format == "keras":
        model.save(path)
    elif flavour(model) == KERAS3:   # Keras 3's own SavedModel writer (its ``serve`` call)
        model.export(path, format="tf_saved_model", verbose=False)
    else:
        tensorflow().saved_model.save(model, path)
    return str(path)

"""The trained model out of a run: the user's own Keras model, on one device, with the run's
weights, so ``evaluate``, ``predict`` and ``save`` work as they do after ``model.fit``.

The model is built by ``model_fn`` with the names a rank gives its variables
(`tf_env.fresh_keras_names`), so the weights a run reports by name go back one to one; a
model whose variables appear only at its first call is called once on a batch of shard 0.
From a checkpoint, a server table is filled one partition at a time (rows ``start:end``
assigned in place), so the client holds the table and one partition, never two copies.
"""
from __future__ import annotations

import os
import re
from typing import Dict, Iterable, Tuple

from ..errors import ConfigError, ProgramError
from ..keras3 import KERAS3, flavour, variable_names
from ..program import Program
from ..tf_env import fresh_keras_names, tensorflow
from .checkpoint import variable_key

SAVE_FORMATS = ("keras", "tf")


def build_model(program: Program):
    """``model_fn()`` built, named as on a rank (its variables exist, their values are not
    the run's yet)."""
    from ..analysis.trace import compute_loss
    from .data import endless_batches

    with fresh_keras_names():
        model = program.model()
    if not model.variables:
        compute_loss(program, model, next(endless_batches(program, 0, 1, None)))
    return model


def assign_weights(model, weights: Dict[str, object]) -> None:
    """Give every variable of ``model`` its value from ``weights`` (``run.result()``'s
    names); a variable missing there, or a name that matches nothing, is an error."""
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
        variable.assign(weights[name])


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
                variable[start:start + len(rows)].assign(rows)
                start += len(rows)
            _check_rows(key, start, variable)
            continue
        entry = local.get(key, {}).get(replicated)
        replicated += 1
        if entry is None:
            raise ProgramError(f"the checkpoint {prefix} holds no value for {key!r}: "
                               f"model_fn must build the model the run trained.")
        variable.assign(reader.get_tensor(entry))
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

"""The training-program contract: the user's single-device code as four plain functions.

They are defined in notebooks and shipped to other processes, so they must survive
cloudpickle; `Program.check_picklable` says which one does not, and why.
"""
from __future__ import annotations

import dataclasses
import inspect
from typing import Any, Callable, Iterable, Optional

import cloudpickle

from .errors import ProgramError

FUNCTIONS = ("model_fn", "loss_fn", "dataset_fn", "optimizer_fn")


@dataclasses.dataclass(frozen=True)
class Program:
    """A single-device training program.

    model_fn()                    -> a tf_keras Model or a tf.Module
    loss_fn(model, batch)         -> scalar loss tensor
    dataset_fn(shard, num_shards) -> iterable of batches; may take ``batch_size=`` as well
    optimizer_fn()                -> a tf.keras optimizer (SGD, Adagrad, Adam, ...)
    """

    model_fn: Callable[[], Any]
    loss_fn: Callable[[Any, Any], Any]
    dataset_fn: Callable[..., Iterable]
    optimizer_fn: Callable[[], Any]
    name: str = "program"

    def __post_init__(self):
        for field in FUNCTIONS:
            if not callable(getattr(self, field)):
                raise ProgramError(
                    f"{field} must be a function, got {type(getattr(self, field)).__name__}")

    def check_picklable(self) -> bytes:
        """Pickle the program with cloudpickle, naming the function that cannot be shipped."""
        for field in FUNCTIONS:
            try:
                cloudpickle.dumps(getattr(self, field))
            except Exception as exc:  # cloudpickle raises many types (TypeError, PicklingError, ...)
                raise ProgramError(
                    f"{field} cannot be pickled, so it cannot be shipped to the ranks: "
                    f"{type(exc).__name__}: {exc}. Define it so that it creates what it needs "
                    f"(locks, files, sessions, models) inside the function instead of capturing "
                    f"them from the notebook.") from exc
        return cloudpickle.dumps(self)

    def dataset(self, shard: int, num_shards: int, batch_size: Optional[int] = None) -> Iterable:
        """Call ``dataset_fn`` for one shard, passing ``batch_size`` when it accepts one."""
        takes_batch_size = _accepts(self.dataset_fn, "batch_size")
        if batch_size is not None and not takes_batch_size:
            raise ProgramError(
                f"Config.batch_size={batch_size} was given but dataset_fn(shard, num_shards) "
                f"takes no batch_size argument: add `batch_size` to its parameters, or drop "
                f"batch_size from the Config and let the dataset batch itself.")
        try:
            if takes_batch_size and batch_size is not None:
                return self.dataset_fn(shard, num_shards, batch_size=batch_size)
            return self.dataset_fn(shard, num_shards)
        except Exception as exc:
            raise ProgramError(f"dataset_fn({shard}, {num_shards}) raised "
                               f"{type(exc).__name__}: {exc}") from exc

    def model(self):
        """Call ``model_fn``, turning its failure into an error that names it."""
        try:
            return self.model_fn()
        except Exception as exc:
            raise ProgramError(f"model_fn() raised {type(exc).__name__}: {exc}") from exc

    def optimizer(self):
        try:
            return self.optimizer_fn()
        except Exception as exc:
            raise ProgramError(f"optimizer_fn() raised {type(exc).__name__}: {exc}") from exc


def _accepts(fn, parameter: str) -> bool:
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return parameter in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def load_program(reference: str) -> Program:
    """Import ``module:attribute`` (a Program, or a function returning one) for the CLI."""
    import importlib

    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ProgramError(f"{reference!r} is not of the form module:attribute "
                           f"(e.g. parallax_nb.examples.language_model:program)")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ProgramError(f"cannot import {module_name!r}: {exc}") from exc
    try:
        obj = getattr(module, attribute)
    except AttributeError:
        raise ProgramError(f"module {module_name!r} has no attribute {attribute!r}") from None
    if not isinstance(obj, Program) and callable(obj):
        obj = obj()
    if not isinstance(obj, Program):
        raise ProgramError(f"{reference} is a {type(obj).__name__}, not a parallax_nb.Program")
    return obj

"""The training-program contract: the user's single-device code as four plain functions.

They are defined in notebooks and shipped to other processes, so they must survive
cloudpickle; `Program.check_picklable` says which one does not, and why. Code the user keeps
in modules of their own (files beside the script or notebook, packages under the working
directory) travels with the program: the ranks run elsewhere, where those files are not.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import inspect
import json
import os
import sys
import sysconfig
from typing import Any, Callable, Iterable, List, Optional

import cloudpickle

from .errors import ProgramError

FUNCTIONS = ("model_fn", "loss_fn", "dataset_fn", "optimizer_fn")
OPTIONAL_FUNCTIONS = ("validation_fn", "metrics_fn")


@dataclasses.dataclass(frozen=True)
class Program:
    """A single-device training program.

    model_fn()                    -> a tf_keras Model or a tf.Module
    loss_fn(model, batch)         -> scalar loss tensor
    dataset_fn(shard, num_shards) -> iterable of batches; may take ``batch_size=`` as well
    optimizer_fn()                -> a tf.keras optimizer (SGD, Adagrad, Adam, ...)

    Optional, for validation (`Config.validate_every_steps`, ``epochs``):

    validation_fn(shard, num_shards) -> this shard's validation batches, one pass (may take
        ``batch_size=`` too); shards may differ in length. The validation loss is
        ``loss_fn`` on them, averaged over the examples of every shard.
    metrics_fn()                  -> Keras metrics (objects, names such as "accuracy", or
        metric functions), as ``compile(metrics=...)`` takes them, or a dict with the keys
        ``metrics`` and ``weighted_metrics`` (the latter take the batches' sample weights).
        They are updated with ``(y, model(x, training=False))`` of ``(x, y)`` or
        ``(x, y, sample_weight)`` validation batches.
    """

    model_fn: Callable[[], Any]
    loss_fn: Callable[[Any, Any], Any]
    dataset_fn: Callable[..., Iterable]
    optimizer_fn: Callable[[], Any]
    name: str = "program"
    validation_fn: Optional[Callable[..., Iterable]] = None
    metrics_fn: Optional[Callable[[], Any]] = None

    def __post_init__(self):
        for field in FUNCTIONS:
            if not callable(getattr(self, field)):
                raise ProgramError(
                    f"{field} must be a function, got {type(getattr(self, field)).__name__}")
        for field in OPTIONAL_FUNCTIONS:
            if getattr(self, field) is not None and not callable(getattr(self, field)):
                raise ProgramError(f"{field} must be a function or None, got "
                                   f"{type(getattr(self, field)).__name__}")

    @classmethod
    def from_keras(cls, model_fn: Callable[[], Any], dataset_fn: Callable[..., Iterable],
                   validation_fn: Optional[Callable[..., Iterable]] = None,
                   name: str = "program") -> "Program":
        """A program whose ``model_fn()`` returns a compiled Keras model (tf_keras or
        Keras 3): the loss, the optimizer and the metrics come from ``compile``
        (`keras_program`), and ``dataset_fn`` (and ``validation_fn``) yield ``(x, y)`` or
        ``(x, y, sample_weight)`` batches. Its compiled metrics are also reported while it
        trains, per rank and logging window."""
        from .keras_program import keras_program_parts

        loss_fn, optimizer_fn, metrics_fn = keras_program_parts(model_fn)
        return cls(model_fn, loss_fn, dataset_fn, optimizer_fn, name=name,
                   validation_fn=validation_fn, metrics_fn=metrics_fn)

    def check_picklable(self) -> bytes:
        """Pickle the program with cloudpickle, naming the function that cannot be shipped.

        Functions and classes from the user's own modules (`user_modules`) are pickled by
        value, like a notebook's; installed packages stay references.
        """
        with _by_value(user_modules()):
            for field in FUNCTIONS + OPTIONAL_FUNCTIONS:
                try:
                    cloudpickle.dumps(getattr(self, field))
                except Exception as exc:  # cloudpickle raises many types (TypeError, ...)
                    raise ProgramError(
                        f"{field} cannot be pickled, so it cannot be shipped to the ranks: "
                        f"{type(exc).__name__}: {exc}. Define it so that it creates what it "
                        f"needs (locks, files, sessions, models) inside the function instead "
                        f"of capturing them from the notebook.") from exc
            return cloudpickle.dumps(self)

    def dataset(self, shard: int, num_shards: int, batch_size: Optional[int] = None) -> Iterable:
        """Call ``dataset_fn`` for one shard, passing ``batch_size`` when it accepts one."""
        return _call_data_fn("dataset_fn", self.dataset_fn, shard, num_shards, batch_size)

    def validation(self, shard: int, num_shards: int,
                   batch_size: Optional[int] = None) -> Iterable:
        """Call ``validation_fn`` for one shard (like `dataset`)."""
        if self.validation_fn is None:
            raise ProgramError("this program has no validation_fn: give one to px.Program(...,"
                               " validation_fn=...) or Program.from_keras(...)")
        return _call_data_fn("validation_fn", self.validation_fn, shard, num_shards,
                             batch_size)

    def metrics(self):
        """Call ``metrics_fn`` (no metrics: an empty list)."""
        if self.metrics_fn is None:
            return []
        try:
            return self.metrics_fn()
        except Exception as exc:
            raise ProgramError(f"metrics_fn() raised {type(exc).__name__}: {exc}") from exc

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


def user_modules() -> List[str]:
    """Top-level modules imported here that a worker cannot be assumed to have: neither the
    standard library nor an installed distribution (site-packages, an editable install).

    These are the user's files beside the script or notebook, and packages under the working
    directory: ``from mymodel import model_fn`` works here because the script's folder is
    on ``sys.path``, and nowhere else. A module counts as installed by where its file is
    (under the interpreter's folders or site-packages); only an editable install's modules
    live elsewhere, and they are known by name. (`importlib.metadata.packages_distributions`
    would say the same by reading every installed file's name: 2 s of a first ``px.train``.)
    """
    editable_names, editable_paths = _editable_installs()
    roots = _installed_roots() + editable_paths
    found = []
    for name, module in list(sys.modules.items()):
        path = getattr(module, "__file__", None)
        if "." in name or name in ("__main__", "__mp_main__") or not path or \
                name in editable_names or name in sys.stdlib_module_names:
            continue
        if not os.path.realpath(path).startswith(roots):
            found.append(name)
    return sorted(found)


@functools.lru_cache(maxsize=1)
def _installed_roots() -> tuple:
    """The interpreter's folders and its site-packages (the user's too). Not every folder
    that holds a distribution's metadata: a project built in place keeps its
    ``*.egg-info`` beside the user's own files."""
    import site

    paths = sysconfig.get_paths()
    roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, paths["stdlib"], paths["purelib"],
             paths["platlib"], site.getusersitepackages(), *site.getsitepackages()}
    return tuple(os.path.realpath(r) + os.sep for r in roots if r)


@functools.lru_cache(maxsize=1)
def _editable_installs() -> tuple:
    """Top-level names (``top_level.txt``) and source folders (their ``.pth`` lines) of the
    distributions installed in editable mode (``pip install -e``), whose files stay where the
    project is."""
    from importlib.metadata import distributions

    names, paths = set(), set()
    for dist in distributions():
        try:
            editable = json.loads(dist.read_text("direct_url.json") or "{}").get(
                "dir_info", {}).get("editable", False)
        except ValueError:
            continue
        if not editable:
            continue
        names.update((dist.read_text("top_level.txt") or "").split())
        for file in dist.files or ():
            if file.suffix == ".pth":
                paths.update(line.strip() for line in file.read_text().splitlines()
                             if line.strip() and not line.startswith(("#", "import ")))
    return frozenset(names), tuple(os.path.realpath(p) + os.sep for p in paths)


@contextlib.contextmanager
def _by_value(modules):
    """cloudpickle pickles ``modules`` (and their submodules) by value inside."""
    registered = [name for name in modules
                  if name not in cloudpickle.list_registry_pickle_by_value()]
    try:
        for name in registered:
            cloudpickle.register_pickle_by_value(sys.modules[name])
        yield
    finally:
        for name in registered:
            cloudpickle.unregister_pickle_by_value(sys.modules[name])


def _call_data_fn(field: str, fn, shard: int, num_shards: int, batch_size: Optional[int]):
    """``fn(shard, num_shards)``, with ``batch_size=`` when given (and refused by name where
    ``fn`` takes none)."""
    takes_batch_size = _accepts(fn, "batch_size")
    if batch_size is not None and not takes_batch_size:
        raise ProgramError(
            f"Config.batch_size={batch_size} was given but {field}(shard, num_shards) "
            f"takes no batch_size argument: add `batch_size` to its parameters, or drop "
            f"batch_size from the Config and let the dataset batch itself.")
    try:
        if takes_batch_size and batch_size is not None:
            return fn(shard, num_shards, batch_size=batch_size)
        return fn(shard, num_shards)
    except Exception as exc:
        raise ProgramError(f"{field}({shard}, {num_shards}) raised "
                           f"{type(exc).__name__}: {exc}") from exc


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

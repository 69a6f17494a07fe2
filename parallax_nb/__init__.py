"""parallax_nb: sparsity-aware data-parallel training (Parallax) on Dask, from notebooks.

Data flows one way: Program -> analysis -> plan (searches, memory) -> launch on Dask -> runtime
(ranks, parameter servers) -> events -> notebook views. This module is the public API.
"""
from . import tf_env  # noqa: F401  (must run before TensorFlow is imported)
from .analysis import AnalysisReport, analyze
from .analysis.timing import Link
from .cluster import ParallaxCluster, Selection, connect
from .cluster.check import CheckResult, ClusterNotReady, check
from .config import Config
from .errors import (ConfigError, NonFiniteError, ParallaxError, ProgramError, RankError,
                     RunStopped)
from .launch import Run
from .program import Program
from .reference import reference
from .training import train
from .version import package_version

__version__ = package_version()

__all__ = ["Program", "Config", "analyze", "AnalysisReport", "connect", "ParallaxCluster",
           "Selection", "check", "CheckResult", "ClusterNotReady", "train", "Run",
           "ParallaxError", "ProgramError", "ConfigError", "RankError", "RunStopped",
           "NonFiniteError", "reference", "load_model", "Link"]


def load_ipython_extension(ipython):
    """``%load_ext parallax_nb``: register the ``%parallax`` magics."""
    from .notebook import load_ipython_extension as load

    load(ipython)


def load_model(program: Program, checkpoint_dir: str):
    """The Keras model of ``program`` with the weights of the newest checkpoint a run wrote
    to ``checkpoint_dir`` (any mode; server tables assembled one partition at a time), so a
    closed notebook keeps its model: ``px.load_model(program, "ckpts/").predict(x)``."""
    from .runtime.export import load_from_checkpoint

    return load_from_checkpoint(program, checkpoint_dir)

"""Tuning before training: the automatic partition search of large sparse variables, and
the choice of mode under ``mode="auto"`` (`mode_search`).

`partition_search` holds the search and the curve fit as pure functions of a
``measure(P)`` callable; `trials` measures P with short runs on the cluster; `plot` draws
the result for the run report.
"""
from .partition_search import (PartitionSearch, Sample, SearchFailed, TrialFailed, cost_model,
                               search_partitions)
from .mode_search import ModeChoice, choose_mode
from .trials import search_mode_on_cluster, search_on_cluster, searched_variables

__all__ = ["PartitionSearch", "Sample", "SearchFailed", "TrialFailed", "cost_model",
           "search_partitions", "search_on_cluster", "searched_variables", "ModeChoice",
           "choose_mode", "search_mode_on_cluster"]

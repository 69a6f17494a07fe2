"""Tuning before training: the automatic partition search of large sparse variables.

`partition_search` holds the search and the curve fit as pure functions of a
``measure(P)`` callable; `trials` measures P with short runs on the cluster; `plot` draws
the result for the run report.
"""
from .partition_search import (PartitionSearch, Sample, SearchFailed, TrialFailed, cost_model,
                               search_partitions)
from .trials import search_on_cluster, searched_variables

__all__ = ["PartitionSearch", "Sample", "SearchFailed", "TrialFailed", "cost_model",
           "search_partitions", "search_on_cluster", "searched_variables"]

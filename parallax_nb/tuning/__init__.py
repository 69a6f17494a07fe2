"""The searches before training, as pure functions of a ``measure`` callable: the automatic
partition search of large sparse variables (`partition_search`, with its curve fit) and the
choice of mode under ``mode="auto"`` (`mode_search`); `plot` draws a search for the run
report. Nothing here launches: `plan.trials` measures with short runs on the cluster.
"""
from .partition_search import (PartitionSearch, Sample, SearchFailed, TrialFailed, cost_model,
                               search_partitions, trial_bound)
from .mode_search import ModeChoice, choose_mode

__all__ = ["PartitionSearch", "Sample", "SearchFailed", "TrialFailed", "cost_model",
           "search_partitions", "trial_bound", "ModeChoice", "choose_mode"]

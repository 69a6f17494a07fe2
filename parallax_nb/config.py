"""Run options: how a program is made data parallel.

One `Config` travels from the notebook to every rank, so it holds plain values only.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Union

from .errors import ConfigError

MODES = ("HYBRID", "PS", "AR")

Partitions = Union[None, int, Dict[str, int]]


@dataclasses.dataclass(frozen=True)
class Config:
    """Knobs of a Parallax run.

    mode: HYBRID (sparse variables on parameter servers, dense ones through Horovod
        AllReduce; the paper's default), PS (every variable on the servers) or AR (every
        variable through Horovod; sparse gradients are allgathered, as plain Horovod does).
    steps: training steps per rank.
    batch_size: examples per rank and step, handed to ``dataset_fn`` when it takes a
        ``batch_size`` argument (otherwise the dataset decides).
    partitions: partitions per sparse variable: an int for all of them, a dict
        ``{variable name: int}``, or None for one partition per parameter server.
    servers: parameter-server tasks; None means one per selected host.
    average_sparse: average sparse gradients over ranks instead of summing them
        (the paper sums by default; dense gradients are always averaged).
    local_aggregation: combine the sparse gradients of all ranks on one host before they
        go to the servers, so each host sends one gradient per step.
    """

    mode: str = "HYBRID"
    steps: int = 100
    batch_size: Optional[int] = None
    partitions: Partitions = None
    servers: Optional[int] = None
    average_sparse: bool = False
    local_aggregation: bool = True
    checkpoint_dir: Optional[str] = None
    checkpoint_every_steps: Optional[int] = None
    checkpoint_every_seconds: Optional[float] = None
    log_every: int = 1
    start_timeout: float = 120.0

    def __post_init__(self):
        mode = str(self.mode).upper()
        if mode not in MODES:
            raise ConfigError(f"mode={self.mode!r} is not one of {', '.join(MODES)}")
        object.__setattr__(self, "mode", mode)
        _positive_int("steps", self.steps)
        _positive_int("log_every", self.log_every)
        if self.batch_size is not None:
            _positive_int("batch_size", self.batch_size)
        if self.servers is not None:
            _positive_int("servers", self.servers)
        if self.checkpoint_every_steps is not None:
            _positive_int("checkpoint_every_steps", self.checkpoint_every_steps)
        _check_partitions(self.partitions)

    def replace(self, **changes) -> "Config":
        """A copy with some options changed (validated like a new one)."""
        return dataclasses.replace(self, **changes)

    def partitions_for(self, variable_name: str, servers: int, rows: int) -> int:
        """Partition count of one sparse variable: configured, else one per server.

        Never more partitions than rows (an empty partition cannot hold a shard).
        """
        wanted = self.partitions
        if isinstance(wanted, dict):
            wanted = _lookup_by_name(wanted, variable_name)
        if wanted is None:
            wanted = servers
        return max(1, min(int(wanted), rows))


def _lookup_by_name(per_variable: Dict[str, int], name: str) -> Optional[int]:
    """Match ``embedding/embeddings:0`` by its full name or without the ``:0`` suffix."""
    for key in (name, name.split(":")[0]):
        if key in per_variable:
            return per_variable[key]
    return None


def _positive_int(name, value):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _check_partitions(partitions):
    if partitions is None:
        return
    if isinstance(partitions, dict):
        for name, count in partitions.items():
            _positive_int(f"partitions[{name!r}]", count)
        return
    if isinstance(partitions, str):
        raise ConfigError(f"partitions={partitions!r}: use an int, a dict per variable, or None")
    _positive_int("partitions", partitions)

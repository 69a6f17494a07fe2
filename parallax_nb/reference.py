"""What a data-parallel run must train to: the same program on one device.

A run of N ranks with ``Config(batch_size=b)`` in any mode trains like one device with batch
N*b over the same examples, provided ``dataset_fn`` shards by striding (shard r of N holds
examples r, r+N, r+2N, ...: then the ranks' k-th batches together are the k-th batch of N*b
of the unsharded data). Under ``average_sparse=False`` the sparse gradients are the sum over
ranks, N times the one-device gradient: the reference scales them by N. Every mode is tested
equal to this (relative error < 1e-5), so a user can check a port the same way.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

from .config import Config
from .program import Program


def reference(program: Program, config: Optional[Config] = None, ranks: int = 1
              ) -> Tuple[Dict[str, object], List[float]]:
    """Train ``program`` on one device as a run of ``ranks`` ranks with ``config`` would:
    ``config.steps`` steps of batch ``ranks * config.batch_size`` (with ``epochs``: the
    steps `px.train` counts for ``ranks`` shards, each epoch a new pass). Returns (weights by
    variable name, loss per step), the weights named as ``run.result()`` names them."""
    from .launch.checks import steps_for_epochs
    from .runtime.single import train_single_device

    config = steps_for_epochs(program, config or Config(), ranks)
    batch_size = ranks * config.batch_size if config.batch_size else None
    return train_single_device(program, steps=config.steps, batch_size=batch_size,
                               sparse_scale=1.0 if config.average_sparse else float(ranks),
                               per_epoch=config.steps_per_epoch)

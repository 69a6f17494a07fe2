"""A finished plan: what `launch` starts (its own module, so that the trials, which launch
plans of their own, need not import the planning above them)."""
from __future__ import annotations

import dataclasses
from typing import Optional, Tuple


@dataclasses.dataclass(frozen=True)
class Plan:
    """What `launch` starts: the devices, the final config (no "auto" left) and the
    analysis planned for them, with how the searches decided, as notes for the run."""
    selection: object
    config: object
    report: object
    mode_choice: Optional[object] = None        # tuning.ModeChoice under mode="auto"
    partition_search: Optional[object] = None   # tuning.PartitionSearch
    notes: Tuple[str, ...] = ()

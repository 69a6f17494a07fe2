"""The tables a run keeps (`Run.metrics`, `Run.validation`): their columns, and how a
validation row reads."""
from __future__ import annotations

from typing import Dict

import pandas as pd

from ..runtime.profile import PHASES

METRIC_COLUMNS = ["rank", "host", "step", "loss", "examples", "step_time", "examples_per_sec",
                  "ps_sent", "ps_recv", "hvd_sent", "hvd_recv", "local_bytes", "peak_rss",
                  "time"] + \
    [f"t_{phase}" for phase in PHASES] + ["step_started_at", "servers_touched",
                                          "server_messages", "collectives",
                                          "updates_announced"] + \
    ["attempt"]   # t_*, step_started_at, ...: sampled steps; attempt: 0, 1 after a restart
# after METRIC_COLUMNS: the compiled metrics of a compile-style program (per rank and window)
VALIDATION_FACTS = ["val_examples", "val_rows_gathered", "val_table_reads", "val_seconds",
                    "best", "stopped", "attempt"]


def validation_values(row) -> Dict[str, float]:
    """The validation values of a row (``val_loss``, ``val_<metric>``), facts left out."""
    return {k: float(v) for k, v in dict(row).items()
            if k.startswith("val_") and k not in VALIDATION_FACTS
            and isinstance(v, (int, float)) and not isinstance(v, bool)}


def validation_line(row) -> str:
    """``validation at step 600 (epoch 2): val_loss 0.4121, val_auc 0.8312``."""
    row = dict(row)
    epoch = row.get("epoch")
    epoch = f" (epoch {int(epoch)})" if epoch is not None and pd.notna(epoch) else ""
    values = ", ".join(f"{k} {v:.4f}" for k, v in validation_values(row).items())
    return f"validation at step {int(row['step'])}{epoch}: {values}"

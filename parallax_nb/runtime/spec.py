"""Everything a rank process needs to know, written to a file by its supervisor."""
from __future__ import annotations

import dataclasses
from typing import Dict, Optional, Tuple

from ..config import Config


CHIEF_SERVER = 0   # the parameter-server task that lives in rank 0's process (launch.servers)


@dataclasses.dataclass(frozen=True)
class RankSpec:
    run_id: str
    rank: int
    size: int
    local_rank: int
    local_size: int
    host: str
    program: bytes                   # cloudpickled parallax_nb.Program
    config: Config
    mode: str                        # the effective mode (after HYBRID fallbacks)
    environment: Dict[str, str]      # Horovod's variables and CUDA_VISIBLE_DEVICES
    topic: str                       # Dask event topic of the run
    stop_event: str                  # name of the Dask Event that stops the run
    hosts: int = 1                            # hosts of the run
    host_ranks: Tuple[Tuple[int, ...], ...] = ()   # the ranks of each host, host by host
    servers: Tuple[str, ...] = ()             # parameter-server addresses (task order)
    appliers: Tuple[int, ...] = ()            # per server: the rank applying its updates
    server_task: Optional[int] = None         # the server this rank hosts in its process
    placements: Tuple = ()                    # analysis VariablePlacement per variable
    result_file: Optional[str] = None         # where rank 0 leaves the trained weights


@dataclasses.dataclass(frozen=True)
class ServerSpec:
    run_id: str
    task: int
    host: str
    addresses: Tuple[str, ...]               # every server of the run, "ip:port", task order
    topic: str
    stop_event: str
    config: Config = Config()

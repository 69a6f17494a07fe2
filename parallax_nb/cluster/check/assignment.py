"""The launch's own rank assignment for a selection, and each worker's row about it (which
rank gets which device, and what ``CUDA_VISIBLE_DEVICES`` it will see)."""
from __future__ import annotations

from typing import List

from ..devices import Device
from ..selection import resolve
from .result import FAIL, OK, SKIP, CheckRow

def rank_assignment(devices: List[Device], select, hosts, probes):
    """The launch's rank assignment for the selection, with each rank's CUDA_VISIBLE_DEVICES;
    and cluster-wide rows for what keeps it from being made."""
    from ..selection import SelectionError

    try:
        selection = resolve(devices, select)
    except SelectionError as exc:
        return [], [CheckRow("*", "*", "ranks", FAIL, f"no selection: {exc}",
                             "select devices the cluster has (cluster.inventory() lists them)")]
    try:
        from ..ranks import assign_ranks

        slots = assign_ranks(selection)
    except ImportError as exc:
        return [], [CheckRow("*", "*", "ranks", FAIL, f"cannot assign ranks on the client: {exc}",
                             "install Horovod in the client's environment (its runner assigns "
                             "the ranks and runs the rendezvous)")]
    ranks = []
    for slot in slots:
        environment = slot.horovod_environment("", 0)
        ranks.append({"rank": slot.rank, "host": slot.host, "worker": slot.device.worker,
                      "kind": slot.device.kind, "device": slot.device.id,
                      "name": slot.device.name, "local_rank": slot.local_rank,
                      "cuda_visible_devices": environment["CUDA_VISIBLE_DEVICES"]})
    return ranks, []


def rank_row(address, ranks, probe) -> tuple:
    mine = [r for r in ranks if r["worker"] == address]
    if not ranks:
        return SKIP, "no rank assignment (see the cluster row)", ""
    if not mine:
        return SKIP, "no rank here (not selected, or its GPUs belong to another worker)", ""
    if mine[0]["kind"] == "CPU":
        if any(r["cuda_visible_devices"] != "" for r in mine):
            return FAIL, "a CPU rank would see GPUs", "report this: CPU ranks get an empty list"
        return OK, (f"rank(s) {', '.join(str(r['rank']) for r in mine)}: CPU slot(s), "
                    f"CUDA_VISIBLE_DEVICES=''"), ""
    uuids = {g["uuid"]: g for g in (probe or {}).get("gpus", [])}
    same_host = [r for r in ranks if r["host"] == mine[0]["host"]]
    parts, problems = [], []
    for r in mine:
        cvd = r["cuda_visible_devices"]
        parts.append(f"rank {r['rank']}: CUDA_VISIBLE_DEVICES={cvd} ({r['name']})")
        if cvd != r["device"]:
            problems.append(f"rank {r['rank']} would see {cvd!r}, not its GPU {r['device']}")
        if cvd not in uuids:
            problems.append(f"rank {r['rank']}'s GPU {cvd} is not one NVML lists here")
        if sum(o["cuda_visible_devices"] == cvd for o in same_host) != 1:
            problems.append(f"GPU {cvd} goes to several ranks of host {r['host']}")
    if problems:
        return FAIL, "; ".join(parts + problems), ("report this with the table: each selected "
                                                  "GPU must get exactly one rank")
    return OK, "; ".join(parts), ""

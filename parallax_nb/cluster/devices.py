"""What a Dask worker can train on: its GPUs (through NVML) or, without GPUs, CPU slots.

`probe_worker` runs inside each Dask worker (``client.run``); `devices_from_probes` turns the
answers into one `Device` per trainable slot on the client. Kept free of Dask objects so the
GPU rules can be tested with recorded probes on a machine without GPUs.
"""
from __future__ import annotations

import dataclasses
import os
import socket
from typing import Dict, List, Optional, Sequence

HOST_ENV = "PARALLAX_HOST"  # a worker's host label, overriding its hostname


@dataclasses.dataclass(frozen=True)
class Device:
    """One place a rank can run: a GPU or a CPU slot of one Dask worker."""

    host: str                 # host label: machines are grouped by it (Horovod's hostname)
    worker: str               # Dask worker address
    kind: str                 # "GPU" or "CPU"
    index: int                # position among this worker's devices of that kind
    id: str                   # GPU UUID (what CUDA_VISIBLE_DEVICES gets), or "cpu<N>"
    name: str = ""
    memory_total: Optional[int] = None
    memory_used: Optional[int] = None
    utilization: Optional[float] = None
    worker_name: str = ""     # the Dask worker's name ("0", "1", ... on a LocalCluster)
    number: Optional[int] = None  # a GPU's NVML index on its machine

    @property
    def key(self) -> str:
        """Unique across the cluster."""
        return f"{self.worker}/{self.id}"

    @property
    def label(self) -> str:
        """What a person reads in the panel: unique on its host, and says which it is."""
        if self.kind == "GPU":
            return f"GPU {self.number} ({self.name})" if self.number is not None else self.id
        return f"worker {self.worker_name or self.worker} slot {self.index}"


def probe_worker(dask_worker=None) -> dict:
    """Facts about the worker this runs in (called through ``client.run``)."""
    import psutil

    return {
        "hostname": socket.gethostname(),
        "label": os.environ.get(HOST_ENV),
        "address": dask_worker.address if dask_worker is not None else None,
        "name": str(dask_worker.name) if dask_worker is not None else "",
        "nthreads": dask_worker.state.nthreads if dask_worker is not None else os.cpu_count(),
        "memory_limit": getattr(getattr(dask_worker, "memory_manager", None), "memory_limit",
                                None) or psutil.virtual_memory().total,
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "gpus": nvml_gpus(),
        "pid": os.getpid(),
    }


def nvml_gpus() -> List[dict]:
    """Every GPU NVML sees on this machine (all of them, before CUDA_VISIBLE_DEVICES)."""
    try:
        import pynvml
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError:
        return []  # no driver: a CPU machine
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            memory = pynvml.nvmlDeviceGetMemoryInfo(handle)
            try:
                utilization = float(pynvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            except pynvml.NVMLError:
                utilization = None
            gpus.append({"index": i, "uuid": _text(pynvml.nvmlDeviceGetUUID(handle)),
                         "name": _text(pynvml.nvmlDeviceGetName(handle)),
                         "memory_total": int(memory.total), "memory_used": int(memory.used),
                         "utilization": utilization})
        return gpus
    finally:
        pynvml.nvmlShutdown()


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def visible_gpus(gpus: Sequence[dict], cuda_visible_devices: Optional[str]) -> List[dict]:
    """The GPUs a process may use, in CUDA's order, honouring CUDA_VISIBLE_DEVICES.

    Entries are indices or UUIDs (or unique UUID prefixes); CUDA stops at the first entry
    that matches nothing, and so does this.
    """
    if cuda_visible_devices is None:
        return list(gpus)
    visible = []
    for entry in (e.strip() for e in cuda_visible_devices.split(",")):
        if not entry:
            break
        match = None
        if entry.isdigit():
            match = next((g for g in gpus if g["index"] == int(entry)), None)
        else:
            uuid = entry if entry.startswith("GPU-") else f"GPU-{entry}"
            candidates = [g for g in gpus if g["uuid"].startswith(uuid)]
            match = candidates[0] if len(candidates) == 1 else None
        if match is None:
            break
        visible.append(match)
    return visible


def devices_from_probes(probes: Dict[str, dict], host_labels: Dict[str, str] | None = None
                        ) -> List[Device]:
    """One Device per GPU, or per CPU slot on workers without GPUs.

    A GPU seen by several workers of one host (dask-cuda gives every worker all GPUs, its
    own first) belongs to the worker that lists it earliest; so each GPU is used once.
    Host label: ``host_labels[address]``, else the worker's PARALLAX_HOST, else its hostname.
    """
    host_labels = host_labels or {}
    hosts = {addr: host_labels.get(addr) or p.get("label") or p["hostname"]
             for addr, p in probes.items()}
    owner: Dict[tuple, tuple] = {}  # (host, uuid) -> (position, address)
    visible_by_worker = {}
    for addr in sorted(probes):
        visible = visible_gpus(probes[addr]["gpus"], probes[addr]["cuda_visible_devices"])
        visible_by_worker[addr] = visible
        for position, gpu in enumerate(visible):
            key = (hosts[addr], gpu["uuid"])
            owner[key] = min(owner.get(key, (position, addr)), (position, addr))
    devices: List[Device] = []
    for addr in sorted(probes, key=lambda a: (hosts[a], a)):
        mine = [g for g in visible_by_worker[addr] if owner[(hosts[addr], g["uuid"])][1] == addr]
        if mine:
            devices += [Device(hosts[addr], addr, "GPU", i, g["uuid"], g["name"],
                               g["memory_total"], g["memory_used"], g["utilization"],
                               probes[addr].get("name", ""), g["index"])
                        for i, g in enumerate(mine)]
        elif not visible_by_worker[addr]:
            probe = probes[addr]
            slots = max(1, int(probe["nthreads"]))
            per_slot = int(probe["memory_limit"]) // slots if probe["memory_limit"] else None
            devices += [Device(hosts[addr], addr, "CPU", i, f"cpu{i}", "CPU slot", per_slot,
                               worker_name=probe.get("name", ""))
                        for i in range(slots)]
    return devices

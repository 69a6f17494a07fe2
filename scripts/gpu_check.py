"""The SDK's GPU path on real NVIDIA GPUs, on a machine without TensorFlow.

    python scripts/gpu_check.py --out gpu_check.md     # on a machine with NVIDIA GPUs
    python scripts/gpu_check.py --cpu --out cpu.md     # the same steps on CPU slots (no GPU)

Steps: a `dask_cuda.LocalCUDACluster` on every GPU of the machine (one worker each),
`px.connect(that)`, `px.check`, the cluster panel's view model (`ClusterView`) with its
default selection, `select`, and the launch's rank assignment (`assign_ranks`, each rank's
`horovod_environment`). Then, for every rank, its Dask worker starts a process with the
worker's environment plus that rank's (as the supervisor starts a rank), and that process
reports which GPU it sees: the CUDA driver (which honours CUDA_VISIBLE_DEVICES; NVML does
not) gives the UUID of its device 0 and the number it sees, PyTorch cross-checks where it is
installed, NVML names the device. Asserted: each selected GPU gets exactly one rank, and that
rank's process sees exactly that GPU. Done for every GPU, and again for the last GPU alone
(a rank 0 whose GPU is not the machine's first).

What it needs there: parallax_nb, dask, distributed, dask-cuda and their pure-Python
dependencies (scripts/build_device_wheels.sh builds them), Horovod's pure-Python runner (for
the rank assignment; the same script copies it), NVML (nvidia-ml-py). Not TensorFlow: the
check's TensorFlow, Keras and Horovod rows are expected to fail there, and are reported.
Prints a report and writes it as markdown to --out. Exit code 0: every assertion held;
1: one failed; 2: this machine cannot run it (no GPU, a missing package).
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import time

# Rows of px.check that must pass on a GPU machine without TensorFlow.
NEEDED_ROWS = ("python", "parallax_nb", "gpus", "ranks", "address", "interface", "tcp")
EXPECTED_WITHOUT_TF = ("tensorflow", "keras", "horovod", "horovod tensorflow ops",
                       "horovod gloo")

# Runs in each rank's process: what the CUDA driver, PyTorch and NVML say it sees.
READER = r'''
import ctypes, json, os
out = {"cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"), "uuids": []}
try:
    cuda = ctypes.CDLL("libcuda.so.1")
except OSError as exc:
    out["driver_error"] = f"no CUDA driver: {exc}"
else:
    rc = cuda.cuInit(0)
    if rc != 0:
        out["driver_error"] = f"cuInit returned {rc}"
    else:
        count = ctypes.c_int()
        cuda.cuDeviceGetCount(ctypes.byref(count))
        get_uuid = getattr(cuda, "cuDeviceGetUuid_v2", None) or cuda.cuDeviceGetUuid
        for i in range(count.value):
            device = ctypes.c_int()
            cuda.cuDeviceGet(ctypes.byref(device), i)
            raw = (ctypes.c_ubyte * 16)()
            get_uuid(ctypes.byref(raw), device)
            h = bytes(raw).hex()
            out["uuids"].append(f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
try:
    import torch
    out["torch_count"] = torch.cuda.device_count()
    if out["torch_count"]:
        props = torch.cuda.get_device_properties(0)
        uuid = str(props.uuid)
        out["torch_uuid"] = uuid if uuid.startswith("GPU-") else f"GPU-{uuid}"
        out["torch_name"] = props.name
except Exception as exc:
    out["torch_error"] = f"{type(exc).__name__}: {exc}"
try:
    import pynvml
    pynvml.nvmlInit()
    out["nvml"] = []
    for uuid in out["uuids"]:
        handle = pynvml.nvmlDeviceGetHandleByUUID(uuid.encode())
        name = pynvml.nvmlDeviceGetName(handle)
        out["nvml"].append({"index": pynvml.nvmlDeviceGetIndex(handle),
                            "name": name.decode() if isinstance(name, bytes) else name})
    pynvml.nvmlShutdown()
except Exception as exc:
    out["nvml_error"] = f"{type(exc).__name__}: {exc}"
print("PARALLAX-READER " + json.dumps(out))
'''


def read_visible_device(environment: dict) -> dict:
    """Runs on a Dask worker: a process with the worker's environment and the rank's (as
    `launch.supervisor` starts a rank) reports the GPU it sees."""
    done = subprocess.run([sys.executable, "-c", READER], env=dict(os.environ, **environment),
                          capture_output=True, text=True, timeout=300)
    for line in done.stdout.splitlines():
        if line.startswith("PARALLAX-READER "):
            return json.loads(line[len("PARALLAX-READER "):])
    return {"error": f"exit {done.returncode}: {done.stderr.strip()[-500:]}"}


def nvml_inventory():
    """The machine's GPUs through NVML, or (None, why not)."""
    try:
        import pynvml
    except ImportError:
        return None, "nvidia-ml-py (pynvml) is not installed"
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # noqa: BLE001
        return None, f"NVML does not start ({exc}): no NVIDIA driver"
    try:
        gpus = []
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            name, uuid = pynvml.nvmlDeviceGetName(handle), pynvml.nvmlDeviceGetUUID(handle)
            gpus.append({"index": i, "name": name.decode() if isinstance(name, bytes) else name,
                         "uuid": uuid.decode() if isinstance(uuid, bytes) else uuid,
                         "memory": pynvml.nvmlDeviceGetMemoryInfo(handle).total})
        driver = pynvml.nvmlSystemGetDriverVersion()
        return {"gpus": gpus, "driver": driver.decode() if isinstance(driver, bytes)
                else driver}, None
    finally:
        pynvml.nvmlShutdown()


def versions() -> dict:
    from importlib import metadata

    found = {}
    for name in ("parallax_nb", "dask", "distributed", "dask-cuda", "nvidia-ml-py", "torch",
                 "tensorflow", "horovod"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = None
    import horovod

    found["horovod (importable)"] = getattr(horovod, "__version__", "?")
    return found


class Report:
    def __init__(self):
        self.sections = []
        self.failures = []

    def add(self, title, text, code=True):
        self.sections.append((title, text, code))
        print(f"\n== {title}\n{text}", flush=True)

    def expect(self, condition, what):
        mark = "ok  " if condition else "FAIL"
        if not condition:
            self.failures.append(what)
        return f"{mark} {what}"

    def markdown(self, header):
        parts = [header]
        for title, text, code in self.sections:
            parts.append(f"### {title}\n\n" + (f"```\n{text}\n```" if code else text))
        verdict = ("**All assertions held.**" if not self.failures else
                   "**Failed:**\n\n" + "\n".join(f"- {f}" for f in self.failures))
        return "\n\n".join(parts + [verdict]) + "\n"


def rank_case(report, cluster, selection, title, kind):
    """Assign ranks to ``selection`` and have each rank's process say what it sees."""
    from parallax_nb.cluster.ranks import assign_ranks

    slots = assign_ranks(selection)
    futures = []
    for slot in slots:
        environment = slot.horovod_environment("127.0.0.1", 0)
        futures.append(cluster.client.submit(
            read_visible_device, environment, workers=[slot.device.worker],
            allow_other_workers=False, pure=False, key=f"gpu-check-reader-{title}-{slot.rank}"))
    seen = cluster.client.gather(futures)
    lines = [f"{'rank':>4}  {'worker':<26} {'CUDA_VISIBLE_DEVICES':<42} sees"]
    checks = []
    selected = [d.id for d in selection]
    per_gpu = {uuid: [s.rank for s in slots if s.horovod_environment("", 0)[
        "CUDA_VISIBLE_DEVICES"] == uuid] for uuid in selected}
    for slot, what in zip(slots, seen):
        cvd = slot.horovod_environment("", 0)["CUDA_VISIBLE_DEVICES"]
        names = ", ".join(f"NVML {n['index']} {n['name']}" for n in what.get("nvml", []))
        sees = f"{len(what.get('uuids', []))} device(s) {what.get('uuids')}"
        if names:
            sees += f" ({names})"
        if "torch_count" in what:
            sees += f"; torch: {what['torch_count']} {what.get('torch_uuid', '')}"
        for problem in ("error", "driver_error", "torch_error"):
            if problem in what:
                sees += f"; {what[problem]}"
        lines.append(f"{slot.rank:>4}  {slot.device.worker:<26} {cvd!r:<42} {sees}")
        if kind == "GPU":
            checks.append(report.expect(cvd == slot.device.id,
                                        f"rank {slot.rank}: CUDA_VISIBLE_DEVICES names its GPU"))
            checks.append(report.expect(what.get("uuids") == [slot.device.id],
                                        f"rank {slot.rank}: its process sees exactly "
                                        f"{slot.device.id} (CUDA driver)"))
            if "torch_count" in what:
                checks.append(report.expect(
                    what["torch_count"] == 1 and what.get("torch_uuid") == slot.device.id,
                    f"rank {slot.rank}: PyTorch sees the same one GPU"))
        else:
            checks.append(report.expect(cvd == "" and not what.get("uuids"),
                                        f"rank {slot.rank}: a CPU rank sees no GPU"))
    if kind == "GPU":
        for uuid, ranks in per_gpu.items():
            checks.append(report.expect(len(ranks) == 1,
                                        f"GPU {uuid} gets exactly one rank (ranks {ranks})"))
    report.add(f"Ranks: {title}", "\n".join(lines + [""] + checks))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="where to write the markdown report")
    parser.add_argument("--cpu", action="store_true",
                        help="run the same steps on a LocalCluster's CPU slots (no GPU needed)")
    parser.add_argument("--timeout", type=float, default=120.0,
                        help="seconds to wait for the workers")
    args = parser.parse_args(argv)

    started = datetime.datetime.now(datetime.timezone.utc)
    machine = None
    if not args.cpu:
        machine, why = nvml_inventory()
        if machine is None or not machine["gpus"]:
            print(f"no NVIDIA GPU found through NVML ({why or 'NVML lists none'}): this "
                  f"script checks the GPU path on a machine with NVIDIA GPUs; --cpu runs its "
                  f"steps on CPU slots instead", file=sys.stderr)
            return 2
    try:
        import parallax_nb as px
        from parallax_nb.cluster.ranks import assign_ranks  # noqa: F401 (needs horovod.runner)
        import horovod  # noqa: F401
        if not args.cpu:
            from dask_cuda import LocalCUDACluster
    except ImportError as exc:
        print(f"missing a package this script needs: {exc} (on the GPU machine install "
              f"device_wheels/: scripts/build_device_wheels.sh; docs/gpus.md)", file=sys.stderr)
        return 2
    if "tensorflow" in sys.modules:
        print("note: TensorFlow was imported by `import parallax_nb`", file=sys.stderr)

    report = Report()
    found = versions()
    report.add("Machine", "\n".join(
        [f"date (UTC): {started:%Y-%m-%d %H:%M}", f"host: {socket.gethostname()}",
         f"Python {platform.python_version()} ({sys.executable})"]
        + ([f"NVIDIA driver {machine['driver']}"] +
           [f"GPU {g['index']}: {g['name']}, {g['uuid']}, {g['memory'] / 2**30:.0f} GiB"
            for g in machine["gpus"]] if machine else ["no GPU: --cpu run on CPU slots"])
        + [f"{name}: {version or 'not installed'}" for name, version in found.items()]
        + [f"tensorflow imported by `import parallax_nb`: {'tensorflow' in sys.modules}"]))

    t0 = time.monotonic()
    if args.cpu:
        cluster = px.connect(local=2)
        local = None
    else:
        local = LocalCUDACluster(dashboard_address=None)
        cluster = px.connect(local)
    try:
        workers = len(machine["gpus"]) if machine else 2
        cluster.client.wait_for_workers(workers, timeout=args.timeout)
        kind = "CPU" if args.cpu else "GPU"
        report.add("Cluster", f"{type(local).__name__ if local else 'LocalCluster'} with "
                   f"{workers} worker(s) in {time.monotonic() - t0:.1f} s\n\n"
                   + cluster.inventory().to_string(index=False))

        result = px.check(cluster)
        rows = []
        for worker in result.workers:
            for name in NEEDED_ROWS:
                row = result.row(worker, name)
                rows.append(report.expect(row.status == "ok",
                                          f"check row '{name}' of {worker}: {row.status}"))
        without_tf = sorted({f"{r.check}: {r.status}" for r in result.rows
                             if r.check in EXPECTED_WITHOUT_TF})
        report.add("px.check", f"{result}\n\nRows that must pass here:\n" + "\n".join(rows)
                   + "\n\nTensorFlow and Horovod rows (they fail where there is no TensorFlow): "
                   + ", ".join(without_tf))

        view_module = cluster_view_module()
        view = view_module.ClusterView(cluster.devices(refresh=True), cluster.dashboard_link)
        selection = view.selection
        gpus = [d for d in view.devices if d.kind == kind]
        checks = [report.expect(len(selection) == len(gpus) and all(
            d.kind == kind for d in selection), f"the panel ticks all {len(gpus)} {kind} "
                                                f"device(s) by default"),
                  report.expect(selection.keys == cluster.select(kind=kind).keys,
                                "the panel's selection is cluster.select(kind=...)'s")]
        if machine:
            checks.append(report.expect(sorted(d.id for d in gpus) ==
                                        sorted(g["uuid"] for g in machine["gpus"]),
                                        "every NVML GPU is one device, on one worker"))
        report.add("Cluster panel (view model)", view.text() + "\n\n" + "\n".join(checks))

        rank_case(report, cluster, selection, f"every {kind} device", kind)
        if len(gpus) >= 2:
            last = gpus[-1]
            for host in view.by_host():
                view.set_host(host, False)
            view.set_selected(last.key, True)
            rank_case(report, cluster, view.selection, f"the last device alone ({last.id})",
                      kind)
    finally:
        cluster.close()
        if local is not None:
            local.close()

    if machine:
        what = (", ".join(sorted({g["name"] for g in machine["gpus"]}))
                + f" x{len(machine['gpus'])}")
    else:
        what = "CPU slots only"
    header = (f"## GPU check, {started:%Y-%m-%d}\n\n`python scripts/gpu_check.py"
              f"{' --cpu' if args.cpu else ''}` on {socket.gethostname()}, {what}.")
    with open(args.out, "w") as f:
        f.write(report.markdown(header))
    verdict = ("all assertions held" if not report.failures
               else "FAILED: " + "; ".join(report.failures))
    print(f"\n{verdict}; report written to {args.out}")
    return 0 if not report.failures else 1


def cluster_view_module():
    """The cluster panel's view model. ``parallax_nb.notebook`` imports IPython (its
    magics) when the package loads; where IPython is missing, load the views alone."""
    try:
        from parallax_nb.notebook.views import cluster_view
        return cluster_view
    except ImportError as exc:
        import types

        import parallax_nb

        print(f"note: parallax_nb.notebook does not import ({exc}); loading its views "
              f"without the package's __init__", file=sys.stderr)
        package = types.ModuleType("parallax_nb.notebook")
        package.__path__ = [os.path.join(os.path.dirname(parallax_nb.__file__), "notebook")]
        sys.modules["parallax_nb.notebook"] = package
        from parallax_nb.notebook.views import cluster_view
        return cluster_view


if __name__ == "__main__":
    sys.exit(main())

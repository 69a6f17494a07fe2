"""Is this Dask cluster ready for a run? ``px.check(cluster)``: one row per worker and need.

For every worker: the Python, TensorFlow, Keras, Horovod (its TensorFlow ops, Gloo) and
parallax_nb a rank process would get there, against the client's; the GPUs NVML sees and the
``CUDA_VISIBLE_DEVICES`` each rank would get (the launch's own rank assignment,
`cluster.ranks.assign_ranks`); what the hostname resolves to (Horovod's Gloo binds
there), the interface Horovod would be told to use, and whether workers on the other
machines can open a TCP connection to a port on it. Each failed row says how to fix it.

The environment is read by a separate Python process per worker (`envprobe.py`, started with
the worker's interpreter and environment, like a rank), so the worker itself imports nothing
heavy and a worker without TensorFlow or parallax_nb still answers. ``quick=True`` (what
`px.train` runs before every launch, cached per cluster and set of workers) reads versions
from the installed files; the full check also imports TensorFlow and Horovod there.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import textwrap
import time
import weakref
from typing import Dict, List, Optional, Sequence

import cloudpickle

from ..connect import ClusterError
from ..devices import Device, devices_from_probes, probe_worker, visible_gpus
from ..scheduler_view import scheduler_workers
from ..selection import Selector, resolve
from . import envprobe, remote

cloudpickle.register_pickle_by_value(remote)   # runs on workers that lack parallax_nb

CHECKS = ("python", "tensorflow", "keras", "horovod", "horovod tensorflow ops",
          "horovod gloo", "parallax_nb", "gpus", "ranks", "address", "interface", "tcp")
COLUMNS = ("host", "worker", "check", "status", "value", "fix")
OK, WARN, FAIL, SKIP = "ok", "warn", "FAIL", "skip"

TENSORFLOW_PIN = "2.18.1"     # what the SDK's private TensorFlow hooks are pinned to (tf_env)
HOROVOD_BUILD = ("HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 "
                 "HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 pip install "
                 "--no-build-isolation --no-cache-dir --force-reinstall horovod=={version} "
                 "(after TensorFlow, with cmake<4 on PATH; scripts/setup_env.sh does this)")
QUICK_TIMEOUT = 30.0
FULL_TIMEOUT = 180.0
TCP_TIMEOUT = 3.0


class ClusterNotReady(ClusterError):
    """The cluster fails the check `px.train` runs before launching; ``.result`` holds it."""

    def __init__(self, result: "CheckResult"):
        super().__init__(result)
        self.result = result

    def __str__(self):
        return (f"this cluster cannot run the job; {len(self.result.failures)} check(s) "
                f"failed (nothing was started):\n{self.result}")


@dataclasses.dataclass(frozen=True)
class CheckRow:
    host: str
    worker: str               # a worker address, or "*" for the cluster as a whole
    check: str
    status: str               # ok | warn | FAIL | skip
    value: str
    fix: str = ""


@dataclasses.dataclass(frozen=True)
class CheckResult:
    """What `check` found: ``ok``, ``rows`` (``to_frame()``), ``failures``, and ``ranks``
    (the rank assignment with each rank's ``CUDA_VISIBLE_DEVICES``)."""

    scheduler: str
    rows: tuple
    ranks: tuple
    client: dict
    quick: bool
    seconds: float
    machines: int

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def failures(self) -> List[CheckRow]:
        return [r for r in self.rows if r.status == FAIL]

    @property
    def workers(self) -> List[str]:
        return list(dict.fromkeys(r.worker for r in self.rows if r.worker != "*"))

    @property
    def hosts(self) -> List[str]:
        return list(dict.fromkeys(r.host for r in self.rows if r.worker != "*"))

    def row(self, worker: str, check: str) -> CheckRow:
        return next(r for r in self.rows if r.worker == worker and r.check == check)

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame([dataclasses.asdict(r) for r in self.rows], columns=list(COLUMNS))

    def headline(self) -> str:
        verdict = "OK" if self.ok else f"{len(self.failures)} problem(s)"
        return (f"Parallax check of {self.scheduler}: {len(self.workers)} worker(s) on "
                f"{len(self.hosts)} host(s), {self.machines} machine(s); "
                f"{'quick' if self.quick else 'full'}, {self.seconds:.1f} s: {verdict}")

    def client_line(self) -> str:
        return "client: " + ", ".join(f"{name} {self.client.get(key) or 'missing'}" for name, key in
                                      (("Python", "python"), ("TensorFlow", "tensorflow"),
                                       ("Horovod", "horovod"), ("parallax_nb", "parallax_nb")))

    def __str__(self) -> str:
        lines = [self.headline(), self.client_line()]
        group = None
        for row in self.rows:
            if (row.host, row.worker) != group:
                group = (row.host, row.worker)
                lines.append("cluster" if row.worker == "*" else
                             f"worker {row.worker} (host {row.host})")
            lines.append(f"  {row.status:<5} {row.check:<23} {row.value}")
            if row.fix:
                lines += textwrap.wrap(f"fix: {row.fix}", 100, initial_indent=" " * 8,
                                       subsequent_indent=" " * 13)
        return "\n".join(lines)

    __repr__ = __str__

    def _repr_html_(self) -> str:
        from ...render import _environment

        return _environment().from_string(HTML).render(result=self, columns=COLUMNS,
                                                       rows=self.rows, FAIL=FAIL, WARN=WARN)


HTML = """\
<div class="parallax-check">
  <strong>{{ result.headline() }}</strong><br>
  <small>{{ result.client_line() }}</small>
  <table style="border-collapse: collapse">
    <thead><tr>
      {% for column in columns %}<th style="text-align: left; padding: 2px 8px">{{ column }}</th>{% endfor %}
    </tr></thead>
    <tbody>
    {% for row in rows %}
      <tr{% if row.status == FAIL %} style="background: #f8d7da"{% elif row.status == WARN %} style="background: #fff3cd"{% endif %}>
        {% for column in columns %}<td style="padding: 2px 8px{% if column == 'status' %}; font-weight: bold{% endif %}">{{ row[column] }}</td>{% endfor %}
      </tr>
    {% endfor %}
    </tbody>
  </table>
</div>"""


# -- running it -----------------------------------------------------------------------------------
def check(cluster, select: Selector = None, *, quick: bool = False,
          workers: Optional[Sequence[str]] = None, timeout: Optional[float] = None
          ) -> CheckResult:
    """Check that every worker (or ``workers``) of ``cluster`` can run ranks of a job.

    cluster: a ParallaxCluster, or anything `px.connect` accepts (connected for the check only).
    select: the devices the ranks would use (as `px.train`'s ``select``; default all), for
        the rank assignment rows.
    quick: read versions from the installed files only (what `px.train` runs); the full
        check also imports TensorFlow and Horovod in a process per worker (seconds).
    timeout: seconds a worker's probe may take (default 30 quick, 180 full).
    """
    from ..connect import ParallaxCluster, connect

    if not isinstance(cluster, ParallaxCluster):
        cluster = connect(cluster)
        try:
            return check(cluster, select, quick=quick, workers=workers, timeout=timeout)
        finally:
            cluster.close()
    started = time.monotonic()
    client = cluster.client
    known = sorted(scheduler_workers(client))
    addresses = sorted(workers) if workers is not None else known
    timeout = timeout or (QUICK_TIMEOUT if quick else FULL_TIMEOUT)
    mine = envprobe.facts(False)
    client_facts = {"python": mine["python"],
                    **{name: (mine["packages"][name] or {}).get("version")
                       for name in ("tensorflow", "horovod", "parallax_nb")},
                    "parallax_nb_digest": (mine["packages"]["parallax_nb"] or {}).get("digest"),
                    "legacy_keras_env": mine["legacy_keras_env"],
                    "machine": mine["network"]["machine"],
                    "packages": mine["packages"]}
    rows: List[CheckRow] = []
    if not addresses:
        rows.append(CheckRow("*", "*", "workers", FAIL, "no workers",
                             "start or scale the cluster's workers (cluster.scale(n)), then check "
                             "again"))
        return CheckResult(cluster.scheduler_address, tuple(rows), (), client_facts, quick,
                           time.monotonic() - started, 0)
    envs = _run(client, remote.environment, addresses, envprobe_source(),
                "quick" if quick else "full", timeout)
    facts = _run(client, worker_facts, addresses)
    probes = {a: f for a, f in facts.items() if isinstance(f, dict)}
    hosts = {a: _host_of(cluster, a, probes.get(a), envs.get(a)) for a in addresses}
    machine_of = {a: e["network"]["machine"] for a, e in envs.items() if "network" in e}
    machines = len(set(machine_of.values())) or 1
    devices = devices_from_probes(probes, cluster.host_labels)
    ranks, rank_rows = _ranks(devices, select, hosts, probes)
    tcp = _tcp(client, addresses, envs, probes, machine_of, machines, hosts)
    for a in addresses:
        rows += _worker_rows(a, hosts[a], envs.get(a), facts.get(a), client_facts, machines,
                             ranks, tcp.get(a))
    rows += rank_rows
    return CheckResult(cluster.scheduler_address, tuple(rows), tuple(ranks), client_facts, quick,
                       round(time.monotonic() - started, 2), machines)


_READY: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def require_ready(cluster, selection, timeout: float = QUICK_TIMEOUT) -> None:
    """What `px.train` runs before it starts anything: the quick check of the selected
    workers; raises `ClusterNotReady` (with the table) when a row fails. A passing result is
    remembered per cluster and set of workers, host labels and devices."""
    key = (cluster.scheduler_address, tuple(selection.keys),
           tuple((d.worker, d.host) for d in selection))
    passed = _READY.setdefault(cluster, set())
    if key in passed:
        return
    result = check(cluster, selection, quick=True, workers=selection.workers, timeout=timeout)
    if not result.ok:
        raise ClusterNotReady(result)
    passed.add(key)


def envprobe_source() -> str:
    with open(envprobe.__file__, encoding="utf-8") as f:
        return f.read()


def worker_facts(dask_worker=None) -> dict:
    """What the launch will use of this worker (runs inside it; needs parallax_nb there):
    its devices' probe, its address and the interface Horovod will be told to use."""
    import socket
    from urllib.parse import urlparse

    import psutil

    from ..ranks import interface_of

    facts = probe_worker(dask_worker)
    ip = urlparse(dask_worker.address).hostname if dask_worker is not None else "127.0.0.1"
    facts["ip"] = ip
    facts["interface"] = interface_of(ip)      # what the supervisor sets HOROVOD_GLOO_IFACE to
    facts["interface_addresses"] = sorted(
        a.address for addrs in psutil.net_if_addrs().values() for a in addrs
        if a.family == socket.AF_INET)
    return facts


def _run(client, function, addresses, *args):
    try:
        return client.run(function, *args, workers=list(addresses), on_error="return",
                          wait=True)
    except Exception as exc:  # noqa: BLE001  (a worker gone meanwhile: say so per worker)
        return {a: exc for a in addresses}


def _host_of(cluster, address, probe, env) -> str:
    # the launch's rule (devices_from_probes): a host label, else PARALLAX_HOST, else hostname
    if cluster.host_labels.get(address):
        return cluster.host_labels[address]
    if probe:
        return probe.get("label") or probe["hostname"]
    if isinstance(env, dict) and "network" in env:
        return env["network"]["hostname"]
    return "?"


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return address == "localhost"


# -- the rank assignment --------------------------------------------------------------------------
def _ranks(devices: List[Device], select, hosts, probes):
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


def _rank_row(address, ranks, probe) -> tuple:
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


# -- the network ----------------------------------------------------------------------------------
def _tcp(client, addresses, envs, probes, machine_of, machines, hosts) -> Dict[str, dict]:
    """Each worker listens on its Dask address (and on its hostname's, where Gloo binds);
    one worker of every other machine connects (one other worker when there is one machine).
    ``{listener: {"checked": [...], "errors": [...]}}``."""
    from urllib.parse import urlparse

    able = [a for a in addresses if a in machine_of]
    if not able:
        return {}
    plan, connectors = {}, {}
    for a in able:
        others = [o for o in able if machine_of[o] != machine_of[a]]
        if machines > 1:
            first = {}
            for o in others:
                first.setdefault(machine_of[o], o)
            connectors[a] = sorted(first.values())
        else:
            peers = [o for o in able if o != a]
            connectors[a] = [peers[(able.index(a)) % len(peers)]] if peers else [a]
        targets = {urlparse(a).hostname: "Dask address"}
        for ip in envs[a]["network"]["hostname_addresses"]:
            if machines == 1 or not _loopback(ip):
                targets.setdefault(ip, "hostname address")
        plan[a] = {ip: len(connectors[a]) for ip in targets}
        connectors[a] = [(c, targets) for c in connectors[a]]
    ports = _run(client, remote.listen, able, plan, TCP_TIMEOUT + 10)
    wanted: Dict[str, list] = {}
    result = {a: {"checked": [], "errors": []} for a in able}
    for a in able:
        opened = ports.get(a)
        if not isinstance(opened, dict):
            result[a]["errors"].append(f"could not open a listening socket: {opened}")
            continue
        for ip, port in opened.items():
            if not isinstance(port, int):
                result[a]["errors"].append(port)
                continue
            for connector, targets in connectors[a]:
                wanted.setdefault(connector, []).append((ip, port))
                result[a]["checked"].append((connector, ip, port, targets[ip]))
    reached = _run(client, remote.connect, sorted(wanted), wanted, TCP_TIMEOUT)
    for a in able:
        for connector, ip, port, label in result[a]["checked"]:
            outcome = reached.get(connector)
            error = (outcome.get(f"{ip}:{port}") if isinstance(outcome, dict)
                     else f"the connecting worker failed: {outcome}")
            if error:
                result[a]["errors"].append(f"{connector} (host {hosts[connector]}) could not "
                                           f"connect to {ip}:{port} ({label}): {error}")
    return result


# -- the rows of one worker -----------------------------------------------------------------------
def _worker_rows(address, host, env, probe, client, machines, ranks, tcp) -> List[CheckRow]:
    def row(check, status, value, fix=""):
        return CheckRow(host, address, check, status, value, fix)

    if not isinstance(env, dict) or "error" in env:
        reason = env.get("error") if isinstance(env, dict) else f"{type(env).__name__}: {env}"
        rows = [row("python", FAIL, f"the environment probe failed: {reason}",
                    "see the worker's log; the worker must be able to start its own Python "
                    "(sys.executable) like a rank")]
        return rows + [row(c, SKIP, "not probed") for c in CHECKS[1:]]
    probe = probe if isinstance(probe, dict) else None
    return [row(check, *_ROWS[check](env, probe, client, machines, ranks, tcp, address))
            for check in CHECKS]


def _python(env, probe, client, *_):
    mine, theirs = client["python"], env["python"]
    value = f"{theirs} ({env['executable']})"
    if mine.split(".")[:2] != theirs.split(".")[:2]:
        return FAIL, value + f", client {mine}", (
            f"run the workers with Python {'.'.join(mine.split('.')[:2])} like the client: the "
            f"program's functions travel pickled, and pickled code does not cross Python "
            f"versions")
    return OK, value, ""


def _tensorflow(env, probe, client, *_):
    package = env["packages"]["tensorflow"]
    want = client["tensorflow"] or TENSORFLOW_PIN
    install = (f"install TensorFlow {want} in the workers' environment (pip install "
               f"tensorflow-cpu=={want}, or tensorflow[and-cuda]=={want} on GPU hosts)")
    if not package:
        return FAIL, "not installed", install
    imported = env.get("imported") or {}
    if "tensorflow_error" in imported:
        return FAIL, f"{package['version']} does not import: {imported['tensorflow_error']}", \
            install
    version = imported.get("tensorflow") or package["version"] or "?"
    if client["tensorflow"] and version != client["tensorflow"]:
        return FAIL, f"{version}, client {client['tensorflow']}", (
            f"use one TensorFlow version on the client and the workers ({install}): the "
            f"analysis runs on the client, and the SDK's TensorFlow hooks are pinned to "
            f"{TENSORFLOW_PIN}")
    return OK, version, ""


def _keras(env, probe, client, *_):
    """tf.keras must be the same Keras on the workers as on the client (where the program
    was analysed): tf_keras unless TF_USE_LEGACY_KERAS says otherwise (`tf_env`)."""
    flavour, setting = _keras_flavour(env.get("legacy_keras_env"))
    wanted, client_setting = _keras_flavour(client.get("legacy_keras_env"))
    mismatch_fix = (f"give the workers the client's setting ({client_setting}): the program "
                    f"was analysed with tf.keras = {wanted}, and its variables, names and "
                    f"updates differ between the two Keras")
    tf_keras, keras3 = env["packages"]["tf_keras"], env["packages"]["keras"]
    tf_version = (env["packages"]["tensorflow"] or {}).get("version") or TENSORFLOW_PIN
    install = (f"pip install tf_keras=={'.'.join(tf_version.split('.')[:2])}.* in the "
               f"workers' environment (tf.keras is tf_keras under TF_USE_LEGACY_KERAS=1)")
    imported = (env.get("imported") or {}).get("keras")
    if imported and "error" in imported:
        return FAIL, f"tf.keras fails: {imported['error']} ({setting})", \
            install if flavour == TF_KERAS and not tf_keras else mismatch_fix
    if imported:
        flavour = TF_KERAS if imported["flavour"] == "tf_keras" else KERAS3
        value = f"tf.keras is {flavour} {imported['version']} ({setting})"
    else:
        package = tf_keras if flavour == TF_KERAS else keras3
        value = f"tf.keras would be {flavour} {(package or {}).get('version', '(missing)')} " \
                f"({setting})"
        if package is None:
            return FAIL, value, install if flavour == TF_KERAS else "pip install keras>=3"
    if flavour != wanted:
        return FAIL, value + f"; client: {wanted}", mismatch_fix
    mine = (client["packages"].get("keras") or {}).get("version")
    theirs = (keras3 or {}).get("version")
    if mine and mine != theirs:
        return WARN, value + f"; Keras 3 {theirs or 'missing'}, client {mine}", (
            f"pip install keras=={mine} on the workers if your programs use Keras 3 "
            f"(import keras)")
    return OK, value, ""


TF_KERAS, KERAS3 = "tf_keras", "Keras 3"


def _keras_flavour(variable):
    if variable is None:
        return TF_KERAS, "TF_USE_LEGACY_KERAS unset: the SDK sets 1"
    legacy = variable in envprobe.LEGACY_KERAS_VALUES
    return (TF_KERAS if legacy else KERAS3), f"TF_USE_LEGACY_KERAS={variable}"


def _horovod(env, probe, client, *_):
    package = env["packages"]["horovod"]
    want = client["horovod"] or "0.28.1"
    if not package:
        return FAIL, "not installed", HOROVOD_BUILD.format(version=want)
    if client["horovod"] and package["version"] != client["horovod"]:
        return FAIL, f"{package['version']} ({package['location']}), client {client['horovod']}", (
            f"install Horovod {client['horovod']} on the workers (or the client): the client "
            f"runs Horovod's rendezvous and the ranks must speak its protocol; "
            + HOROVOD_BUILD.format(version=want))
    return OK, f"{package['version']} ({package['location']})", ""


def _horovod_ops(env, probe, client, *_):
    package = env["packages"]["horovod"]
    if not package:
        return SKIP, "no Horovod", ""
    rebuild = HOROVOD_BUILD.format(version=client["horovod"] or package["version"])
    tf = env["packages"]["tensorflow"]
    if not tf:
        return SKIP, "no TensorFlow for Horovod's ops (see the tensorflow row)", ""
    imported = (env.get("imported") or {}).get("horovod")
    if imported is not None:
        if imported.get("tensorflow_ops"):
            return OK, "horovod.tensorflow imports", ""
        return FAIL, f"import horovod.tensorflow fails: {imported.get('error')}", \
            f"rebuild Horovod against the installed TensorFlow: {rebuild}"
    if not package.get("tf_ops_library"):
        return FAIL, "built without TensorFlow ops (no horovod/tensorflow/mpi_lib library)", \
            f"rebuild Horovod with its TensorFlow ops: {rebuild}"
    built = package.get("built_against", {}).get("tensorflow")
    if built and built.split(".")[:2] != (tf["version"] or "").split(".")[:2]:
        return FAIL, f"built against TensorFlow {built}, {tf['version']} installed", \
            f"rebuild Horovod against the installed TensorFlow: {rebuild}"
    return OK, f"{package['tf_ops_library']} (built against TensorFlow {built or '?'})", ""


def _horovod_gloo(env, probe, client, *_):
    imported = (env.get("imported") or {}).get("horovod")
    if not env["packages"]["horovod"]:
        return SKIP, "no Horovod", ""
    if imported is None:
        if env.get("full"):
            return SKIP, "not imported", ""
        return SKIP, "checked by the full px.check (it imports Horovod)", ""
    if not imported.get("tensorflow_ops"):
        return SKIP, "horovod.tensorflow does not import", ""
    extras = f"MPI {'yes' if imported['mpi'] else 'no'}, NCCL {imported['nccl'] or 'no'}"
    if not imported.get("gloo"):
        return FAIL, f"built without Gloo ({extras})", (
            "rebuild Horovod with Gloo (the SDK's ranks use Horovod's Gloo controller): "
            + HOROVOD_BUILD.format(version=client["horovod"] or "0.28.1"))
    return OK, f"built with Gloo ({extras})", ""


def _parallax(env, probe, client, *_):
    package = env["packages"]["parallax_nb"]
    where = client["packages"]["parallax_nb"] or {}
    install = (f"install the client's parallax_nb ({client['parallax_nb']}, from "
               f"{where.get('location')}) in the workers' environment, e.g. pip install the "
               f"same wheel or checkout")
    if not package:
        return FAIL, "not importable", install
    value = f"{package['version']} ({package['location']})"
    if package["version"] != client["parallax_nb"]:
        return FAIL, f"{value}, client {client['parallax_nb']}", install
    same_files = (package["location"] == where.get("location")
                  and env["network"]["machine"] == client["machine"])   # digests may race edits
    if not same_files and package.get("digest") and client["parallax_nb_digest"] and \
            package["digest"] != client["parallax_nb_digest"]:
        return FAIL, (f"{value}: other code than the client's (source digest "
                      f"{package['digest']}, client {client['parallax_nb_digest']})"), install
    return OK, value, ""


def _gpus(env, probe, client, *_):
    if probe is None:
        return SKIP, "not probed (parallax_nb does not import in the worker)", ""
    gpus, cvd = probe["gpus"], probe["cuda_visible_devices"]
    if env.get("nvidia_driver") and not env["packages"]["pynvml"]:
        return FAIL, "an NVIDIA driver is loaded but NVML's Python binding is missing", \
            "pip install nvidia-ml-py in the workers' environment (GPUs are found through NVML)"
    if not gpus:
        return OK, f"none (CPU slots: {max(1, int(probe['nthreads']))})", ""
    visible = visible_gpus(gpus, cvd)
    names = ", ".join(sorted({g["name"] for g in gpus}))
    setting = "" if cvd is None else f", CUDA_VISIBLE_DEVICES={cvd}"
    value = f"{len(gpus)} GPU(s) ({names}), {len(visible)} visible to this worker{setting}"
    if cvd and cvd.strip() and not visible:
        return WARN, value, (f"CUDA_VISIBLE_DEVICES={cvd} names none of this machine's GPUs "
                             f"(NVML indices 0-{len(gpus) - 1} or their UUIDs): the worker "
                             f"offers CPU slots instead")
    return OK, value, ""


def _ranks_row(env, probe, client, machines, ranks, tcp, address):
    return _rank_row(address, ranks, probe)


def _address(env, probe, client, machines, *_):
    net = env["network"]
    hostname, resolved = net["hostname"], net["hostname_addresses"]
    ip = probe["ip"] if probe else None
    value = f"{hostname} -> {', '.join(resolved) or '?'}" + (f"; Dask address {ip}" if ip else "")
    where = f"{resolved[0]} {hostname}" if resolved else f"<address> {hostname}"
    real = next((a for a in (probe or {}).get("interface_addresses", []) if not _loopback(a)),
                None)
    if net["resolve_error"]:
        return FAIL, f"{hostname} does not resolve ({net['resolve_error']})", (
            f"make the hostname resolve to this machine's address (e.g. "
            f"'{real or '<address>'} {hostname}' in /etc/hosts): Horovod's Gloo binds to it")
    local = set((probe or {}).get("interface_addresses", []))
    if machines == 1:
        if local and not any(a in local or _loopback(a) for a in resolved):
            return WARN, value + " (not an address of this machine)", (
                f"map {hostname} to one of this machine's addresses ({', '.join(sorted(local))})"
                f" in /etc/hosts or DNS: Horovod's Gloo binds to the address the hostname "
                f"resolves to")
        return OK, value + " (one machine: loopback is enough)", ""
    if all(_loopback(a) for a in resolved):
        return FAIL, value, (
            f"map {hostname} to this machine's network address (e.g. '{real or '<address>'} "
            f"{hostname}' in /etc/hosts, not {where}) or fix DNS: Horovod's Gloo binds to the "
            f"address the hostname resolves to (its contexts ignore HOROVOD_GLOO_IFACE), which "
            f"ranks on the other machines cannot reach on loopback")
    if ip and _loopback(ip):
        return FAIL, value, ("start this worker on an address the other machines reach (dask "
                             "worker --host <address> or --interface <nic>): ranks and servers "
                             "listen on the worker's address")
    if probe and not set(resolved) & set(probe["interface_addresses"]):
        return FAIL, value + " (not an address of this machine)", (
            f"map {hostname} to one of this machine's addresses "
            f"({', '.join(probe['interface_addresses'])}) in /etc/hosts or DNS")
    return OK, value, ""


def _interface(env, probe, client, machines, *_):
    if probe is None:
        return SKIP, "not probed (parallax_nb does not import in the worker)", ""
    ip, interface = probe["ip"], probe["interface"]
    value = f"HOROVOD_GLOO_IFACE={interface} (the interface of {ip})"
    if ip not in probe["interface_addresses"] and not _loopback(ip):
        status = FAIL if machines > 1 else WARN
        return status, f"HOROVOD_GLOO_IFACE={interface}: {ip} is no address of an interface here", (
            "start the worker with an IP address of one of its interfaces (dask worker --host "
            "<ip>): the SDK picks Horovod's interface from the worker's address")
    if machines > 1 and interface == "lo":
        return FAIL, value, ("start this worker on a network interface the other machines "
                             "reach (dask worker --host <address> or --interface <nic>)")
    return OK, value, ""


def _tcp_row(env, probe, client, machines, ranks, tcp, address):
    if not tcp:
        return SKIP, "not tested (the worker's probe failed)", ""
    if tcp["errors"]:
        return FAIL, "; ".join(tcp["errors"]), (
            "open TCP between the machines for every port (firewall, security group): Gloo, "
            "the rendezvous and the parameter servers listen on ports the system picks")
    sources = sorted({c for c, *_ in tcp["checked"]})
    targets = sorted({f"{ip}:{port}" for _, ip, port, _ in tcp["checked"]})
    scope = "other machine(s)" if machines > 1 else "this machine"
    return OK, f"{', '.join(targets)} reached from {len(sources)} worker(s) on {scope}", ""


_ROWS = {"python": _python, "tensorflow": _tensorflow, "keras": _keras, "horovod": _horovod,
         "horovod tensorflow ops": _horovod_ops, "horovod gloo": _horovod_gloo,
         "parallax_nb": _parallax, "gpus": _gpus, "ranks": _ranks_row, "address": _address,
         "interface": _interface, "tcp": _tcp_row}

__all__ = ["check", "CheckResult", "CheckRow", "ClusterNotReady", "require_ready", "CHECKS"]

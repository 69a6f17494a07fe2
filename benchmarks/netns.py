"""Several "machines" on this one: network namespaces joined by a bridge, links shaped by tc.

Each simulated host is a network namespace with its own address on a private /24, joined to a
Linux bridge in the root namespace by a veth pair. Both ends of every pair get a token bucket
(``tc qdisc ... tbf``): the namespace's end shapes what the host sends, the bridge's end what
it receives, like a full-duplex link to a switch. The Dask scheduler and the client stay in
the root namespace, on the bridge's address; each host runs its ``dask worker`` inside its
namespace (``ip netns exec``) under a ``PARALLAX_HOST`` label, so the SDK sees separate
machines: one parameter server per host, Horovod's Gloo on the host's veth, ranks of one host
talking over that namespace's loopback.

Each namespace also gets its own ``/etc/hosts`` (``ip netns exec`` mounts
``/etc/netns/<name>/hosts`` over it) in which this machine's hostname names the host's
address, as on a real machine. Horovod 0.28.1 needs that: the Gloo contexts of its process
sets (the global one included) ignore ``HOROVOD_GLOO_IFACE`` and bind to the address the
hostname resolves to, here 127.0.0.1, which the other namespaces cannot reach.

Nothing leaves the machine: the subnet has no route out and nothing forwards it. Everything is
torn down on close, after a failure too; names carry this process's id, so what a killed run
left behind is recognised, and removed, by the next one. This kernel has no ``netem`` (checked
with ``tc``), so links get a bandwidth but no added latency.
"""
from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

import psutil

from parallax_nb.launch.processes import terminate  # SIGTERM the group, then SIGKILL

PREFIX = "pxb"                       # every name this module creates starts with it
NAME = re.compile(rf"^{PREFIX}(\d+)")  # ... followed by the creating process's id
COMMAND_TIMEOUT = 20.0
NETNS_ETC = "/etc/netns"             # per-namespace files `ip netns exec` mounts over /etc


class SimulationUnavailable(RuntimeError):
    """This machine cannot host the simulation (not root, no ``ip``/``tc``, no netns)."""


def unavailable_reason() -> Optional[str]:
    """Why the simulation cannot run here, or None when it can."""
    if os.geteuid() != 0:
        return "network namespaces need root (run the benchmark as root, or with --parts local)"
    missing = [tool for tool in ("ip", "tc") if shutil.which(tool) is None]
    if missing:
        return f"missing {' and '.join(missing)} (install iproute2)"
    return None


@dataclasses.dataclass
class Host:
    """One simulated machine."""

    label: str                 # the SDK's host label, also the namespace's name
    address: str               # its address on the bridge's subnet
    outer: str                 # its veth end on the bridge (root namespace)
    inner: str                 # its veth end inside the namespace
    worker: Optional[subprocess.Popen] = None


class SimulatedHosts:
    """``hosts`` namespaces with one Dask worker each (``slots_per_host`` CPU slots), their
    links shaped to ``bandwidth`` (a tc rate such as "1gbit"; None: unshaped); use as a
    context manager.

    ``cluster`` is the ParallaxCluster connected to their scheduler; ``counters()`` reads each
    host's link counters (bytes sent and received).
    """

    def __init__(self, hosts: int = 2, slots_per_host: int = 1,
                 bandwidth: Optional[str] = None, start_timeout: float = 90.0,
                 memory_limit: Optional[int] = None):
        if hosts < 1 or slots_per_host < 1:
            raise ValueError(f"hosts and slots_per_host must be >= 1, got {hosts} and "
                             f"{slots_per_host}")
        self.slots_per_host = slots_per_host
        self.bandwidth = bandwidth
        self.start_timeout = start_timeout
        self.memory_limit = memory_limit   # bytes per host's Dask worker (None: Dask's default)
        self.tag = f"{PREFIX}{os.getpid()}"
        self.bridge = f"{self.tag}br"
        self.hosts: List[Host] = []
        self._count = hosts
        self._scheduler: Optional[subprocess.Popen] = None
        self._logs = tempfile.mkdtemp(prefix=f"{self.tag}-")
        self.cluster = None

    # -- lifetime -------------------------------------------------------------------------------
    def __enter__(self) -> "SimulatedHosts":
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc):
        self.close()

    def start(self) -> None:
        reason = unavailable_reason()
        if reason:
            raise SimulationUnavailable(reason)
        remove_leftovers()
        gateway, *addresses = [str(a) for a in free_subnet().hosts()][:self._count + 1]
        _ip("link", "add", self.bridge, "type", "bridge")
        _ip("addr", "add", f"{gateway}/24", "dev", self.bridge)
        _ip("link", "set", self.bridge, "up")
        for i, address in enumerate(addresses):
            host = Host(f"{self.tag}-h{i}", address, f"{self.tag}v{i}", f"{self.tag}n{i}")
            self.hosts.append(host)
            _ip("netns", "add", host.label)
            _write_hosts_file(host)
            _ip("link", "add", host.outer, "type", "veth", "peer", "name", host.inner)
            _ip("link", "set", host.inner, "netns", host.label)
            _ip("link", "set", host.outer, "master", self.bridge)
            _ip("link", "set", host.outer, "up")
            _ip("-n", host.label, "addr", "add", f"{address}/24", "dev", host.inner)
            _ip("-n", host.label, "link", "set", host.inner, "up")
            _ip("-n", host.label, "link", "set", "lo", "up")
        if self.bandwidth:
            self.shape(self.bandwidth)
        self._start_dask(gateway)

    def _start_dask(self, gateway: str) -> None:
        import parallax_nb as px

        scheduler_file = os.path.join(self._logs, "scheduler.json")
        self._scheduler = _spawn([sys.executable, "-m", "distributed.cli.dask_scheduler",
                                  "--host", gateway, "--port", "0", "--no-dashboard",
                                  "--scheduler-file", scheduler_file],
                                 os.path.join(self._logs, "scheduler.log"))
        address = _wait_for_file(scheduler_file, self.start_timeout, self._scheduler)["address"]
        for host in self.hosts:
            host.worker = _spawn(
                ["ip", "netns", "exec", host.label, "env", f"PARALLAX_HOST={host.label}",
                 sys.executable, "-m", "distributed.cli.dask_worker", address,
                 "--host", host.address, "--nthreads", str(self.slots_per_host),
                 "--no-nanny", "--no-dashboard", "--name", host.label,
                 "--death-timeout", "30", "--local-directory", self._logs,
                 *(["--memory-limit", str(self.memory_limit)] if self.memory_limit else [])],
                os.path.join(self._logs, f"{host.label}.log"))
        self.cluster = px.connect(address, timeout=self.start_timeout)
        try:
            self.cluster.client.wait_for_workers(len(self.hosts), timeout=self.start_timeout)
        except TimeoutError:
            from parallax_nb.launch.supervisor import tail

            logs = "\n".join(f"{name}: {tail(os.path.join(self._logs, name))}"
                             for name in sorted(os.listdir(self._logs)) if name.endswith(".log"))
            raise SimulationUnavailable(f"the Dask workers in the namespaces did not join "
                                        f"within {self.start_timeout:g} s (the logs are "
                                        f"removed with the simulation; their ends):\n"
                                        f"{logs}") from None

    def close(self) -> None:
        """Stop every process of the simulation, then remove its links and namespaces."""
        steps = [self._close_client, self._stop_workers, self._kill_namespace_processes,
                 self._stop_scheduler, self._remove_network]
        for step in steps:
            try:
                step()
            except Exception as exc:  # keep tearing down; say what could not be undone
                print(f"netns teardown: {step.__name__}: {exc}", file=sys.stderr)
        shutil.rmtree(self._logs, ignore_errors=True)

    def _close_client(self):
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    def _stop_workers(self):
        for host in self.hosts:
            if host.worker is not None:
                terminate(host.worker)

    def _kill_namespace_processes(self):
        """Whatever still lives in a namespace (a rank the worker started) is ours."""
        for host in self.hosts:
            kill_processes_in(host.label)

    def _stop_scheduler(self):
        if self._scheduler is not None:
            terminate(self._scheduler)

    def _remove_network(self):
        for host in self.hosts:
            _ip("netns", "del", host.label, check=False)   # takes the veth pair with it
            _remove_hosts_file(host.label)
        _ip("link", "del", self.bridge, check=False)
        self.hosts = []

    # -- the links --------------------------------------------------------------------------------
    def shape(self, bandwidth: Optional[str]) -> None:
        """Limit every host's link to ``bandwidth`` in each direction (tc tbf); None lifts
        the limit (veth then runs as fast as the CPU copies)."""
        for host in self.hosts:
            for namespace, device in ((None, host.outer), (host.label, host.inner)):
                tc = ["tc", *(["-n", namespace] if namespace else []), "qdisc"]
                if bandwidth is None:
                    _run(tc + ["del", "dev", device, "root"], check=False)
                else:
                    _run(tc + ["replace", "dev", device, "root", "tbf", "rate", bandwidth,
                               "burst", str(_burst_bytes(bandwidth)), "latency", "50ms"])
        self.bandwidth = bandwidth

    def counters(self) -> Dict[str, Tuple[int, int]]:
        """``{host label: (bytes sent, bytes received)}`` of each host's link, read from the
        namespace's own interface table (``/proc/<pid>/net/dev`` of its Dask worker)."""
        return {host.label: link_counters(host.worker.pid, host.inner) for host in self.hosts}


def link_counters(pid: int, device: str) -> Tuple[int, int]:
    """(tx bytes, rx bytes) of ``device`` in the network namespace of process ``pid``."""
    with open(f"/proc/{pid}/net/dev") as f:
        for line in f:
            name, _, fields = line.partition(":")
            if name.strip() == device:
                values = fields.split()
                return int(values[8]), int(values[0])
    raise KeyError(f"no interface {device} in the namespace of process {pid}")


def free_subnet() -> ipaddress.IPv4Network:
    """A 10.213.x.0/24 no interface of this machine uses yet."""
    used = []
    for link in json.loads(_ip("-j", "-4", "addr", "show") or "[]"):
        for info in link.get("addr_info", []):
            used.append(ipaddress.ip_network(f"{info['local']}/{info['prefixlen']}",
                                             strict=False))
    start = os.getpid() % 200
    for k in range(250):
        candidate = ipaddress.ip_network(f"10.213.{(start + k) % 250}.0/24")
        if not any(candidate.overlaps(u) for u in used):
            return candidate
    raise SimulationUnavailable("no free 10.213.x.0/24 subnet for the simulated hosts")


def remove_leftovers() -> None:
    """Namespaces and links of earlier runs whose process is gone."""
    def orphaned(name):
        match = NAME.match(name)
        return bool(match) and not psutil.pid_exists(int(match.group(1)))

    for entry in json.loads(_ip("-j", "netns", "list") or "[]"):
        if orphaned(entry["name"]):
            kill_processes_in(entry["name"])
            _ip("netns", "del", entry["name"], check=False)
    for name in os.listdir(NETNS_ETC) if os.path.isdir(NETNS_ETC) else []:
        if orphaned(name):
            _remove_hosts_file(name)
    for link in json.loads(_ip("-j", "link", "show") or "[]"):
        if orphaned(link["ifname"]):
            _ip("link", "del", link["ifname"], check=False)


def _write_hosts_file(host: Host) -> None:
    os.makedirs(os.path.join(NETNS_ETC, host.label), exist_ok=True)
    with open(os.path.join(NETNS_ETC, host.label, "hosts"), "w") as f:
        f.write(f"127.0.0.1 localhost\n{host.address} {socket.gethostname()}\n")


def _remove_hosts_file(namespace: str) -> None:
    shutil.rmtree(os.path.join(NETNS_ETC, namespace), ignore_errors=True)
    try:
        os.rmdir(NETNS_ETC)   # only when no other namespace has files there
    except OSError:
        pass


def kill_processes_in(namespace: str) -> None:
    pids = (_ip("netns", "pids", namespace, check=False) or "").split()
    for pid in pids:
        try:
            os.kill(int(pid), signal.SIGKILL)
        except ProcessLookupError:
            pass


def rate_bits(bandwidth: str) -> float:
    """Bits per second of a tc rate such as "100mbit" or "1gbit"."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([kmg]?)bit", bandwidth.lower())
    if not match:
        raise ValueError(f"bandwidth {bandwidth!r}: use a tc rate such as '100mbit' or '1gbit'")
    return float(match.group(1)) * {"": 1, "k": 1e3, "m": 1e6, "g": 1e9}[match.group(2)]


def _burst_bytes(bandwidth: str) -> int:
    """Bucket size: 1 ms at the link's rate (so a step cannot burst past the rate), at least
    64 KB (a GSO packet)."""
    return max(int(rate_bits(bandwidth) / 8 / 1000), 65536)


def _ip(*args, check: bool = True) -> str:
    return _run(["ip", *args], check=check)


def _run(command, check: bool = True) -> str:
    done = subprocess.run(command, capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
    if check and done.returncode != 0:
        raise SimulationUnavailable(f"{' '.join(command)} failed: {done.stderr.strip()}")
    return done.stdout


def _spawn(command, log_path: str) -> subprocess.Popen:
    with open(log_path, "wb") as log:
        return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _wait_for_file(path: str, timeout: float, process: subprocess.Popen) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if process.poll() is not None:
            raise SimulationUnavailable(f"the Dask scheduler exited with code "
                                        f"{process.returncode}")
        try:
            with open(path) as f:
                return json.load(f)
        except (OSError, ValueError):
            time.sleep(0.1)
    raise SimulationUnavailable(f"the Dask scheduler did not start within {timeout:g} s")

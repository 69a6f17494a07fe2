"""The rows of one worker: each need a rank has there (Python, TensorFlow, Keras, Horovod,
parallax_nb, GPUs, ranks, address, interface, TCP), against the client's, with a fix where it
fails."""
from __future__ import annotations

from typing import List

from ..devices import visible_gpus
from . import envprobe
from .assignment import rank_row
from .network import is_loopback
from .result import CHECKS, FAIL, OK, SKIP, WARN, CheckRow

TENSORFLOW_PIN = "2.18.1"     # what the SDK's private TensorFlow hooks are pinned to (tf_env)
HOROVOD_BUILD = ("HOROVOD_WITH_TENSORFLOW=1 HOROVOD_WITH_GLOO=1 HOROVOD_WITHOUT_MPI=1 "
                 "HOROVOD_WITHOUT_PYTORCH=1 HOROVOD_WITHOUT_MXNET=1 pip install "
                 "--no-build-isolation --no-cache-dir --force-reinstall horovod=={version} "
                 "(after TensorFlow, with cmake<4 on PATH; scripts/setup_env.sh does this)")
TF_KERAS, KERAS3 = "tf_keras", "Keras 3"


def worker_rows(address, host, env, probe, client, machines, ranks, tcp) -> List[CheckRow]:
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
    return rank_row(address, ranks, probe)


def _address(env, probe, client, machines, *_):
    net = env["network"]
    hostname, resolved = net["hostname"], net["hostname_addresses"]
    ip = probe["ip"] if probe else None
    value = f"{hostname} -> {', '.join(resolved) or '?'}" + (f"; Dask address {ip}" if ip else "")
    where = f"{resolved[0]} {hostname}" if resolved else f"<address> {hostname}"
    real = next((a for a in (probe or {}).get("interface_addresses", []) if not is_loopback(a)),
                None)
    if net["resolve_error"]:
        return FAIL, f"{hostname} does not resolve ({net['resolve_error']})", (
            f"make the hostname resolve to this machine's address (e.g. "
            f"'{real or '<address>'} {hostname}' in /etc/hosts): Horovod's Gloo binds to it")
    local = set((probe or {}).get("interface_addresses", []))
    if machines == 1:
        if local and not any(a in local or is_loopback(a) for a in resolved):
            return WARN, value + " (not an address of this machine)", (
                f"map {hostname} to one of this machine's addresses ({', '.join(sorted(local))})"
                f" in /etc/hosts or DNS: Horovod's Gloo binds to the address the hostname "
                f"resolves to")
        return OK, value + " (one machine: loopback is enough)", ""
    if all(is_loopback(a) for a in resolved):
        return FAIL, value, (
            f"map {hostname} to this machine's network address (e.g. '{real or '<address>'} "
            f"{hostname}' in /etc/hosts, not {where}) or fix DNS: Horovod's Gloo binds to the "
            f"address the hostname resolves to (its contexts ignore HOROVOD_GLOO_IFACE), which "
            f"ranks on the other machines cannot reach on loopback")
    if ip and is_loopback(ip):
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
    if ip not in probe["interface_addresses"] and not is_loopback(ip):
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

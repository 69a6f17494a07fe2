"""What a rank process would find in this Python environment, as JSON (standard library only).

Run as ``python envprobe.py quick|full``: the check runs this file's source with the Dask
worker's own interpreter and environment (``sys.executable -c SOURCE``) in a temporary
directory, as a rank process is started, so nothing heavy is imported into the worker and a
worker that lacks TensorFlow, Horovod or even parallax_nb still answers. ``quick`` reads
versions from the installed files without importing TensorFlow (well under a second);
``full`` also imports TensorFlow and ``horovod.tensorflow`` (seconds), which is the only way
to see what Keras ``tf.keras`` is and whether Horovod was built with Gloo.

The client imports this module to read its own facts the same way.
"""
import hashlib
import importlib.util
import json
import os
import platform
import re
import socket
import sys

# distribution names (normalised) that provide each importable package
DISTRIBUTIONS = {
    "tensorflow": ("tensorflow", "tensorflow_cpu", "tensorflow_gpu", "tensorflow_intel",
                   "tensorflow_macos", "tf_nightly", "tf_nightly_cpu"),
    "tf_keras": ("tf_keras",),
    "keras": ("keras",),
    "horovod": ("horovod",),
    "parallax_nb": ("parallax_nb",),
    "pynvml": ("nvidia_ml_py", "pynvml"),
    "distributed": ("distributed",),
}
LEGACY_KERAS_VALUES = ("1", "true", "True")   # what TensorFlow accepts for TF_USE_LEGACY_KERAS
DIGEST_SKIP = ("kernels",)   # packaged beside the code in a wheel, outside it in a checkout


def _normalise(name):
    return re.sub(r"[-_.]+", "_", name).lower()


def locate(name):
    """The directory (package) or file (module) ``import name`` would load, or None.

    For a top-level name ``find_spec`` imports nothing."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        return list(spec.submodule_search_locations)[0]
    return spec.origin


def installed_version(name, location):
    """The version of the distribution installed beside ``location`` (its dist-info), else
    the ``__version__`` its ``__init__.py`` assigns, else None."""
    parent = os.path.dirname(os.path.abspath(location))
    wanted = DISTRIBUTIONS.get(name, (name,))
    try:
        entries = os.listdir(parent)
    except OSError:
        entries = []
    for entry in sorted(entries):
        match = re.match(r"^(.+?)-([^-]+?)(-py[\d.]+)?\.(dist-info|egg-info)$", entry)
        if match and _normalise(match.group(1)) in wanted:
            return match.group(2)
    return assigned_version(location)


def assigned_version(location):
    """The ``__version__`` literal of the package's ``__init__.py``, else (a source tree such
    as parallax_nb's, whose version is read from its metadata) the ``version="..."`` of the
    setup.py beside the package, else None."""
    init = os.path.join(location, "__init__.py") if os.path.isdir(location) else location
    setup = os.path.join(os.path.dirname(os.path.abspath(location)), "setup.py")
    for path, pattern in ((init, r"^__version__\s*=\s*['\"]([^'\"]+)['\"]"),
                          (setup, r"^\s*version\s*=\s*['\"]([^'\"]+)['\"]")):
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                match = re.search(pattern, f.read(), re.M)
        except OSError:
            continue
        if match:
            return match.group(1)
    return None


def source_digest(directory):
    """sha256 over the package's .py files (relative path and content), short."""
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(directory):
        dirs[:] = sorted(d for d in dirs if d != "__pycache__"
                         and not (root == directory and d in DIGEST_SKIP))
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(root, name)
                digest.update(os.path.relpath(path, directory).encode())
                with open(path, "rb") as f:
                    digest.update(f.read())
    return digest.hexdigest()[:12]


def package(name):
    location = locate(name)
    if location is None:
        return None
    return {"location": location, "version": installed_version(name, location)}


def horovod_build(location):
    """What Horovod's files say about its build: the TensorFlow ops library, the TensorFlow
    it was built against (``metadata.json``)."""
    if not os.path.isdir(location):
        return {"tf_ops_library": None, "built_against": {}}
    ops = os.path.join(location, "tensorflow")
    library = None
    if os.path.isdir(ops):
        library = next((n for n in sorted(os.listdir(ops))
                        if n.startswith("mpi_lib") and n.endswith((".so", ".pyd", ".dylib"))),
                       None)
    try:
        with open(os.path.join(location, "metadata.json")) as f:
            built_against = {k: v for k, v in json.load(f).items() if k != "dummy"}
    except (OSError, ValueError):
        built_against = {}
    return {"tf_ops_library": library, "built_against": built_against}


def network():
    """The hostname, what it resolves to here, and which machine this is: a kernel (boot id)
    and a network namespace, the two things that decide whether loopback reaches a peer."""
    hostname = socket.gethostname()
    try:
        resolved = sorted({info[4][0] for info in socket.getaddrinfo(
            hostname, None, socket.AF_INET, socket.SOCK_STREAM)})
        error = None
    except OSError as exc:
        resolved, error = [], f"{type(exc).__name__}: {exc}"
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            boot = f.read().strip()
    except OSError:
        boot = hostname
    try:
        namespace = str(os.stat("/proc/self/ns/net").st_ino)
    except OSError:
        namespace = ""
    return {"hostname": hostname, "hostname_addresses": resolved, "resolve_error": error,
            "machine": f"{boot}/{namespace}"}


def nvidia_driver():
    """Whether an NVIDIA driver is loaded (so NVML should answer)."""
    return os.path.exists("/proc/driver/nvidia/version")


def _error(exc):
    text = f"{type(exc).__name__}: {exc}".strip().splitlines()
    return (text[-1] if text else type(exc).__name__)[:300]


def imported(facts):
    """Import TensorFlow and Horovod's TensorFlow ops as a rank does (``parallax_nb.tf_env``
    sets TF_USE_LEGACY_KERAS=1 unless the environment says otherwise)."""
    os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    result = {}
    try:
        import tensorflow as tf

        result["tensorflow"] = tf.__version__
        try:
            keras = tf.keras
            flavour = keras.__name__.split(".")[0]
            if flavour == "tf_keras":
                import tf_keras

                result["keras"] = {"flavour": "tf_keras", "version": tf_keras.__version__}
            else:
                import keras as keras3

                result["keras"] = {"flavour": "keras", "version": keras3.__version__}
        except Exception as exc:  # noqa: BLE001  (reported, not raised)
            result["keras"] = {"error": _error(exc)}
    except Exception as exc:  # noqa: BLE001
        result["tensorflow_error"] = _error(exc)
    if facts["packages"].get("horovod"):
        try:
            import horovod.tensorflow as hvd

            result["horovod"] = {"tensorflow_ops": True, "gloo": bool(hvd.gloo_built()),
                                 "mpi": bool(hvd.mpi_built()), "nccl": int(hvd.nccl_built())}
        except Exception as exc:  # noqa: BLE001
            result["horovod"] = {"tensorflow_ops": False, "error": _error(exc)}
    return result


def facts(full=False):
    packages = {name: package(name) for name in DISTRIBUTIONS}
    result = {
        "python": platform.python_version(),
        "executable": sys.executable,
        "packages": packages,
        "legacy_keras_env": os.environ.get("TF_USE_LEGACY_KERAS"),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "nvidia_driver": nvidia_driver(),
        "network": network(),
        "full": bool(full),
    }
    if packages["horovod"]:
        packages["horovod"].update(horovod_build(packages["horovod"]["location"]))
    if packages["parallax_nb"] and os.path.isdir(packages["parallax_nb"]["location"]):
        packages["parallax_nb"]["digest"] = source_digest(packages["parallax_nb"]["location"])
    if full:
        result["imported"] = imported(result)
    return result


if __name__ == "__main__":
    print("PARALLAX-ENV " + json.dumps(facts(len(sys.argv) > 1 and sys.argv[1] == "full")))

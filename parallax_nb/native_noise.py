"""TensorFlow's native start-up noise, kept out of terminals, notebooks and error messages.

TensorFlow 2.18's wheel carries CUDA support. Importing it prints "Unable to register
cuFFT/cuDNN/cuBLAS factory" errors and an absl preamble on every machine (a duplicate
registration inside TensorFlow, harmless), and on a machine without an NVIDIA driver its
first device query prints "failed call to cuInit". All of it is written by C++ straight to
file descriptor 2, where ``TF_CPP_MIN_LOG_LEVEL`` does not reach (absl logs before it is
configured).

So after ``import parallax_nb`` (`quiet_tensorflow_import`), the first ``import tensorflow``
of the process, made by anyone, runs, and where there is no driver lists its devices, with
fd 2 sent to a file; then the lines that are not this noise are written to the real fd 2,
which is restored. Everything printed later, real errors included, passes untouched. `is_noise`
and `lines_that_matter` serve the rank and server logs that error messages quote.
"""
from __future__ import annotations

import contextlib
import importlib.abc
import importlib.machinery
import os
import re
import sys
import tempfile

NO_DRIVER = not os.path.exists("/proc/driver/nvidia/version")   # a machine without GPUs

_NOISE = [r"Unable to register cu(FFT|DNN|BLAS) factory",
          r"All log messages before absl::InitializeLog\(\) is called",
          r"Could not find cuda drivers on your machine"]
if NO_DRIVER:   # with a driver, a failing cuInit is a real error
    _NOISE.append(r"failed call to cuInit")
NOISE = re.compile("|".join(_NOISE))

# Lines a failed process's log holds that say nothing about the failure.
_WARNINGS = re.compile(r"^(WARNING|W\d{4} |I\d{4} |\d{4}-\d\d-\d\d [\d:.]+: [IW] )|AutoGraph|"
                       r"^(Please report this to the TensorFlow team|Cause: |"
                       r"To silence this warning)")


def is_noise(line: str) -> bool:
    return bool(NOISE.search(line))


def lines_that_matter(text: str, keep: int = 40) -> str:
    """The last ``keep`` lines of a log that are neither start-up noise nor warnings."""
    lines = [line for line in text.splitlines()
             if line.strip() and not is_noise(line) and not _WARNINGS.search(line)]
    return "\n".join(lines[-keep:])


def quiet_tensorflow_import() -> None:
    """Make this process's first ``import tensorflow``, whoever makes it, go through the
    filter (called by ``import parallax_nb``; nothing to do once TensorFlow is imported)."""
    if "tensorflow" not in sys.modules and \
            not any(isinstance(f, _QuietFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietFinder())


class _QuietFinder(importlib.abc.MetaPathFinder):
    """Finds ``tensorflow`` where the path finder does, its loader wrapped in the filter.
    (Asked without importing, e.g. by ``importlib.util.find_spec``, it stays in place.)"""

    def find_spec(self, name, path=None, target=None):
        if name != "tensorflow":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self._loader = loader

    def __getattr__(self, name):          # resources, is_package, ...: the real loader's
        return getattr(self._loader, name)

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _QuietFinder)]
        with _noise_filtered():
            self._loader.exec_module(module)
            if NO_DRIVER:   # the cuInit attempt: there is nothing to choose among, so now
                module.config.list_physical_devices()


@contextlib.contextmanager
def _noise_filtered():
    """fd 2 goes to a file inside; afterwards what is not noise is written to the real fd 2."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines(True)
                    if not is_noise(line)]
            if kept:
                os.write(2, "".join(kept).encode())

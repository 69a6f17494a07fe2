"""Install the parallax_nb kernel spec so that it starts the installing environment's Python.

The spec names ``python``, which Jupyter would look up on the PATH of whatever process starts
the kernel; under JupyterHub that is seldom the environment holding the SDK, TensorFlow and
Horovod. Like ``ipykernel install``, the installer writes the absolute interpreter path of the
Python running it into the spec's argv, then lets jupyter_client's KernelSpecManager put the
spec where Jupyter looks for kernels (and replace an older copy).
"""
from __future__ import annotations

import importlib.util
import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Optional

from ..errors import ParallaxError

SPEC_NAME = "parallax_nb"
SPEC_DIR = Path(__file__).with_name(SPEC_NAME)


class KernelInstallError(ParallaxError):
    """The kernel spec could not be installed where it was asked to go."""


def install(*, user: bool = False, sys_prefix: bool = False, prefix: Optional[str] = None,
            name: str = SPEC_NAME, display_name: Optional[str] = None) -> str:
    """Install the spec and return the directory it was written to.

    Where: ``user`` for the current user's Jupyter data dir, ``sys_prefix`` for this
    environment (``sys.prefix/share/jupyter/kernels``), ``prefix`` for any prefix; none of them
    for the system-wide kernel directory (what a JupyterHub administrator usually wants).
    name: the kernel name notebooks and ``--nbval-kernel-name`` refer to; display_name: what
    the launcher shows (several environments can each install a spec under their own names).
    """
    if sum([user, sys_prefix, prefix is not None]) > 1:
        raise KernelInstallError("choose one place to install the kernel spec: --user, "
                                 "--sys-prefix or --prefix PREFIX (none of them: system-wide)")
    if importlib.util.find_spec("ipykernel") is None:
        raise KernelInstallError(f"ipykernel is not installed in {sys.prefix}, so the kernel "
                                 f"could not start: {sys.executable} -m pip install ipykernel")
    from jupyter_client.kernelspec import KernelSpecManager  # installed with ipykernel

    if sys_prefix:
        prefix = sys.prefix
    with tempfile.TemporaryDirectory(prefix="parallax-kernel-") as staging:
        spec_dir = Path(staging) / SPEC_NAME
        shutil.copytree(SPEC_DIR, spec_dir)
        _point_at_this_python(spec_dir / "kernel.json", display_name)
        try:
            return KernelSpecManager().install_kernel_spec(str(spec_dir), name, user=user,
                                                          prefix=prefix)
        except ValueError as exc:  # jupyter_client's own message says what a name may hold
            raise KernelInstallError(f"cannot install the kernel spec as {name!r}: {exc}"
                                     ) from None
        except OSError as exc:  # e.g. system-wide without the rights to write there
            raise KernelInstallError(
                f"cannot write the kernel spec to {exc.filename}: {exc.strerror}. Install "
                f"system-wide as an administrator, or choose --user (for yourself), "
                f"--sys-prefix (this environment) or --prefix PREFIX (a writable "
                f"directory)") from None


def kernel_dir_is_searched(destination: str) -> bool:
    """Whether Jupyter, as configured for this process, looks in the spec's new location."""
    from jupyter_client.kernelspec import KernelSpecManager

    return str(Path(destination).parent) in KernelSpecManager().kernel_dirs


def _point_at_this_python(kernel_json: Path, display_name: Optional[str]) -> None:
    spec = json.loads(kernel_json.read_text(encoding="utf-8"))
    spec["argv"][0] = sys.executable
    if display_name:
        spec["display_name"] = display_name
    kernel_json.write_text(json.dumps(spec, indent=2) + "\n", encoding="utf-8")

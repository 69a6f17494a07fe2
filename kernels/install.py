"""Install the parallax_nb kernel spec so that it starts the installing environment's Python.

The spec names ``python``, which Jupyter would look up on the PATH of whatever process starts
the kernel; under JupyterHub that is seldom the environment holding the SDK, TensorFlow and
Horovod. So the installer is ``ipykernel install`` (``ipykernel.kernelspec.install``: the
absolute interpreter path of the Python running it in argv, jupyter_client's KernelSpecManager
putting the spec where Jupyter looks and replacing an older copy) with this package's display
name and environment from ``parallax_nb/kernel.json``, and errors that say what to do.
"""
from __future__ import annotations

import json
import sys
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
    from ipykernel.kernelspec import install as install_ipykernel

    spec = json.loads((SPEC_DIR / "kernel.json").read_text(encoding="utf-8"))
    try:
        return install_ipykernel(user=user, prefix=sys.prefix if sys_prefix else prefix,
                                 kernel_name=name,
                                 display_name=display_name or spec["display_name"],
                                 env=dict(spec["env"]))
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

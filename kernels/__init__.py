"""Jupyter kernel spec for notebooks that use parallax_nb, and its installer.

This folder is the package ``parallax_nb.kernels`` (setup.py maps it), so the spec in
``parallax_nb/kernel.json`` is both what an administrator reads here and what ships in the
wheel. Install it with ``python -m parallax_nb.kernels install [--user | --sys-prefix |
--prefix P] [--name N]``.
"""
from .install import KernelInstallError, install

__all__ = ["install", "KernelInstallError"]

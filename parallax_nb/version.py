"""The package's version, from one place: setup.py's ``version``, as the installed
distribution's metadata carries it (an editable install included)."""
from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

UNKNOWN = "0+unknown"   # the source tree on sys.path without being installed


def package_version() -> str:
    try:
        return version("parallax_nb")
    except PackageNotFoundError:
        return UNKNOWN

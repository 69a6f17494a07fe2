"""``python -m parallax_nb.kernels install [--user | --sys-prefix | --prefix P] [--name N]``."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .install import SPEC_NAME, KernelInstallError, install, kernel_dir_is_searched


def parser() -> argparse.ArgumentParser:
    cli = argparse.ArgumentParser(
        prog="python -m parallax_nb.kernels",
        description="Install the parallax_nb Jupyter kernel spec. The kernel runs the Python "
                    "that runs this command, with TF_USE_LEGACY_KERAS=1.")
    commands = cli.add_subparsers(dest="command", required=True)
    command = commands.add_parser("install", help="install the kernel spec")
    where = command.add_mutually_exclusive_group()
    where.add_argument("--user", action="store_true",
                       help="for the current user (default: system-wide)")
    where.add_argument("--sys-prefix", action="store_true",
                       help="into this environment (sys.prefix/share/jupyter/kernels)")
    where.add_argument("--prefix", metavar="PREFIX",
                       help="into PREFIX/share/jupyter/kernels")
    command.add_argument("--name", default=SPEC_NAME,
                         help=f"kernel name notebooks refer to (default: {SPEC_NAME})")
    command.add_argument("--display-name", help="name shown in the launcher")
    return cli


def main(argv=None) -> int:
    args = parser().parse_args(argv)
    try:
        destination = install(user=args.user, sys_prefix=args.sys_prefix, prefix=args.prefix,
                              name=args.name, display_name=args.display_name)
    except KernelInstallError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"Installed kernel spec {Path(destination).name!r} in {destination} "
          f"(runs {sys.executable})")
    if not kernel_dir_is_searched(destination):
        print(f"note: Jupyter does not look in {Path(destination).parent} yet; add "
              f"{Path(destination).parents[1]} to JUPYTER_PATH", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())

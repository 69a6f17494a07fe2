"""Command line: the same jobs as the notebook, outside Jupyter.

    python -m parallax_nb analyze parallax_nb.examples.language_model:program --steps 5
"""
from __future__ import annotations

import argparse
import sys

from .config import Config
from .errors import ParallaxError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m parallax_nb", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)

    analyze = commands.add_parser("analyze", help="sparse-variable analysis of a program")
    analyze.add_argument("program", help="module:attribute naming a parallax_nb.Program")
    analyze.add_argument("--steps", type=int, default=5)
    analyze.add_argument("--mode", default="HYBRID", choices=["HYBRID", "PS", "AR"])
    analyze.add_argument("--batch-size", type=int, default=None)
    analyze.add_argument("--partitions", type=int, default=None)
    analyze.add_argument("--servers", type=int, default=None)
    analyze.add_argument("--machines", type=int, default=1)
    analyze.add_argument("--workers-per-machine", type=int, default=1)
    return parser


def run_analyze(args) -> int:
    from .analysis import analyze
    from .program import load_program

    config = Config(mode=args.mode, batch_size=args.batch_size, partitions=args.partitions,
                    servers=args.servers)
    report = analyze(load_program(args.program), steps=args.steps, config=config,
                     machines=args.machines, workers_per_machine=args.workers_per_machine)
    print(report)
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"analyze": run_analyze}[args.command](args)
    except ParallaxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Command line: the same jobs as the notebook, outside Jupyter.

    python -m parallax_nb analyze parallax_nb.examples.language_model:program --steps 5
    python -m parallax_nb train parallax_nb.examples.language_model:program --mode AR --steps 50
    python -m parallax_nb check --scheduler tcp://scheduler:8786   (exit code 1: a row failed)
    python -m parallax_nb --version
"""
from __future__ import annotations

import argparse
import sys
import time

from .cli_options import add_training_arguments, training_options
from .config import AUTO_MODE, MODES, Config
from .errors import ParallaxError
from .version import package_version


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m parallax_nb", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version",
                        version=f"parallax_nb {package_version()}")
    commands = parser.add_subparsers(dest="command", required=True)

    analyze = commands.add_parser("analyze", help="sparse-variable analysis of a program")
    train = commands.add_parser("train", help="train a program on a Dask cluster")
    for sub in (analyze, train):
        sub.add_argument("program", help="module:attribute naming a parallax_nb.Program")
        sub.add_argument("--mode", default="HYBRID", type=str.upper,
                         choices=MODES + (AUTO_MODE,))
        sub.add_argument("--batch-size", type=int, default=None)
        sub.add_argument("--partitions", default="auto",
                         help="an int, or auto (default: search those of large sparse tables)")
        sub.add_argument("--servers", type=int, default=None)
    analyze.add_argument("--steps", type=int, default=5)
    analyze.add_argument("--machines", type=int, default=1)
    analyze.add_argument("--workers-per-machine", type=int, default=1)

    add_training_arguments(train)
    where = train.add_mutually_exclusive_group()
    where.add_argument("--scheduler", help="address of an existing Dask scheduler")
    where.add_argument("--local", type=int, default=2,
                       help="workers of the embedded LocalCluster (default 2)")
    train.add_argument("--slots-per-worker", type=int, default=1)
    train.add_argument("--ranks", type=int, default=None, help="ranks (default: every device)")
    train.add_argument("--timeout", type=float, default=None, help="give up after N seconds")

    check = commands.add_parser(
        "check", help="is the cluster ready for a run? one row per worker and need",
        description="For every Dask worker: Python, TensorFlow, Keras, Horovod (TensorFlow "
                    "ops, Gloo), parallax_nb against this client's; GPUs and each rank's "
                    "CUDA_VISIBLE_DEVICES; hostname address, Horovod's interface, TCP between "
                    "machines. Exits 1 when a row fails (each says how to fix it).")
    where = check.add_mutually_exclusive_group()
    where.add_argument("--scheduler", help="address of an existing Dask scheduler")
    where.add_argument("--local", type=int, default=2,
                       help="workers of an embedded LocalCluster (default 2)")
    check.add_argument("--slots-per-worker", type=int, default=1)
    check.add_argument("--quick", action="store_true",
                       help="versions from the installed files only (what train checks); "
                            "the full check also imports TensorFlow and Horovod on each worker")
    check.add_argument("--timeout", type=float, default=None,
                       help="seconds a worker's probe may take")
    return parser


def _config(args, **extra) -> Config:
    partitions = int(args.partitions) if args.partitions.isdigit() else args.partitions
    return Config(mode=args.mode, batch_size=args.batch_size, partitions=partitions,
                  servers=args.servers, **extra)


def run_analyze(args) -> int:
    from .analysis import analyze
    from .program import load_program

    report = analyze(load_program(args.program), steps=args.steps, config=_config(args),
                     machines=args.machines, workers_per_machine=args.workers_per_machine)
    print(report)
    return 0


def run_train(args) -> int:
    from tqdm import tqdm

    from .cluster import connect
    from .launch.columns import validation_line
    from .training import train
    from .program import load_program

    program = load_program(args.program)
    config = _config(args, **training_options(args))
    if args.scheduler:
        cluster = connect(args.scheduler)
    else:
        cluster = connect(local=args.local, slots_per_worker=args.slots_per_worker)
    try:
        run = train(program, cluster=cluster, select=args.ranks, config=config)
        try:
            while run.analysis is None and not run.done:   # planning: trials print (stderr)
                time.sleep(0.2)
        except KeyboardInterrupt:
            run.stop()
            raise
        if run.analysis is not None:
            print(run.analysis)
        with tqdm(total=run.config.steps, desc=f"{run.mode} x{len(run.slots)}", unit="step",
                  file=sys.stderr) as bar:
            run.on_metrics(_follow(bar, config, len(run.slots), args.profile))
            run.on_validation(lambda row: bar.write(validation_line(row), file=sys.stderr))
            try:
                run.wait(args.timeout)
            except TimeoutError:
                run.stop()
                raise
            finally:
                print(run.report())
        return 0
    finally:
        cluster.close()


PHASES_EVERY_SECONDS = 5.0   # --profile: each rank's newest step phases, this often


def _follow(bar, config, ranks: int, profile: bool):
    """The step records' callback: the progress bar, and with ``--profile`` where each
    rank's step goes (`notebook.views.phases_view`), printed every few seconds."""
    from .notebook.views.phases_view import PhaseBars

    phases, printed = PhaseBars(list(range(ranks))), [time.monotonic()]

    def on_records(records) -> None:
        bar.update(config.log_every * sum(r["rank"] == 0 and r["step"] % config.log_every == 0
                                          for r in records))
        phases.add(records)
        if profile and phases.changed and \
                time.monotonic() - printed[0] >= PHASES_EVERY_SECONDS:
            printed[0] = time.monotonic()
            for line in phases.text():
                bar.write(line, file=sys.stderr)
    return on_records


def run_check(args) -> int:
    from .cluster import connect
    from .cluster.check import check

    if args.scheduler:
        cluster = connect(args.scheduler)
    else:
        cluster = connect(local=args.local, slots_per_worker=args.slots_per_worker)
    try:
        result = check(cluster, quick=args.quick, timeout=args.timeout)
        print(result)
        return 0 if result.ok else 1
    finally:
        cluster.close()


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return {"analyze": run_analyze, "train": run_train,
                "check": run_check}[args.command](args)
    except (ParallaxError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

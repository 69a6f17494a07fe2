"""The training-workflow options the ``%%parallax train`` magic and ``python -m parallax_nb
train`` share: how long (steps or epochs), validation, early stopping, the best checkpoint.
One place, so the notebook and the terminal take the same flags to the same `Config`."""
from __future__ import annotations

import argparse


def add_training_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--steps", type=int, default=None,
                        help="training steps per rank (default 100 unless --epochs)")
    parser.add_argument("--epochs", type=int, default=None,
                        help="passes over the data instead of --steps (steps per epoch: the "
                             "smallest shard's batches)")
    parser.add_argument("--validate-every", type=int, default=None, metavar="N",
                        help="validate every N steps (the program needs a validation_fn; "
                             "default with --epochs: every epoch; always at the end)")
    parser.add_argument("--early-stopping", metavar="MONITOR",
                        help="stop when this validation value stops improving, e.g. val_auc")
    parser.add_argument("--patience", type=int, default=0, metavar="N",
                        help="validations without improvement before --early-stopping stops")
    parser.add_argument("--min-delta", type=float, default=0.0, metavar="D",
                        help="the least change that counts as an improvement")
    parser.add_argument("--keep-best", metavar="MONITOR",
                        help="keep the best validation's checkpoint (needs --checkpoint-dir)")
    parser.add_argument("--checkpoint-dir", metavar="DIR", help="save (and resume from) here")
    parser.add_argument("--checkpoint-every", type=int, metavar="N", help="save every N steps")
    parser.add_argument("--tensorboard-dir", metavar="DIR",
                        help="rank 0 writes TensorBoard scalars here")
    parser.add_argument("--profile", action="store_true",
                        help="every step's phases (default: one step in every 50)")


def training_options(args) -> dict:
    """The `Config` keywords of the flags above."""
    stopping = None
    if args.early_stopping:
        stopping = {"monitor": args.early_stopping, "patience": args.patience,
                    "min_delta": args.min_delta}
    return dict(steps=args.steps, epochs=args.epochs,
                validate_every_steps=args.validate_every, early_stopping=stopping,
                keep_best=args.keep_best, checkpoint_dir=args.checkpoint_dir,
                checkpoint_every_steps=args.checkpoint_every,
                tensorboard_dir=args.tensorboard_dir, profile=args.profile)

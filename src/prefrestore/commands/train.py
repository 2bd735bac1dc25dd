"""`prefrestore train CONFIG [key=value ...]`: one supervised stage (0-3 or joint), resumable.

Multi-GPU / multi-node: ``accelerate launch --config_file configs/accelerate/ddp.yaml -m prefrestore train ...``.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config", metavar="CONFIG", help="YAML with the deltas from the defaults (configs/train/*.yaml)"
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted overrides, e.g. optim.lr=3e-4 data.batch_size=8 max_steps=100",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")


def run(args: argparse.Namespace) -> int:
    import sys

    from ..config import config_yaml, load_user_config
    from ..training.sft import SFTConfig, train_sft

    cfg = load_user_config(SFTConfig, args.config, args.overrides)
    if args.print_config:
        sys.stdout.write(config_yaml(cfg))
        return 0
    train_sft(cfg)
    return 0

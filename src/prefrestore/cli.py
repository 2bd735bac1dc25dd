"""`prefrestore` command line: a thin dispatcher.

Each subcommand lives in ``prefrestore.commands.<name>`` with ``add_arguments(parser)`` and ``run(args) -> int``.
A :class:`~prefrestore.errors.UserError` is printed as one line (no traceback) and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from . import __version__
from .errors import UserError

# name -> (module, one-line help). Explicit, no registry (STYLE.md P4).
COMMANDS = {
    "restore": ("prefrestore.commands.restore", "restore faces in photos or aligned face crops"),
    "convert": ("prefrestore.commands.convert", "convert official Pref-Restore / BLIP3o / TA-Tok / SANA checkpoints"),
    "train": ("prefrestore.commands.train", "supervised training (stages 0-3, joint)"),
    "rl": ("prefrestore.commands.rl", "preference RL (DiffusionNFT on LoRA)"),
    "eval": ("prefrestore.commands.eval", "evaluate a restorer on face-restoration benchmarks"),
    "make-testset": ("prefrestore.commands.testset", "build a frozen synthetic LQ/GT test set from HQ faces"),
    "serve": ("prefrestore.commands.serve", "web page and HTTP API for restoring photos"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prefrestore", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"prefrestore {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging and full tracebacks")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as err:
            if err.name != module:
                raise
            continue  # subcommand not built yet
        p = sub.add_parser(name, help=help_, description=help_)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except UserError as err:
        if args.verbose:
            raise
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

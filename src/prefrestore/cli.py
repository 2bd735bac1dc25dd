"""`prefrestore` command line: a thin dispatcher.

Each subcommand lives in ``prefrestore.commands.<name>`` with ``add_arguments(parser)`` and ``run(args) -> int``.
A :class:`~prefrestore.errors.UserError` is printed as one line (no traceback) and exits with status 2; Ctrl-C
and unexpected errors are one line too (``--debug`` shows the traceback).
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
    "convert-realesrgan": ("prefrestore.commands.realesrgan", "RealESRGAN_x4plus weights for --bg-upsampler realesrgan"),
    "weights": ("prefrestore.commands.weights", "fetch and convert the metric / loss networks (LPIPS, FID, ...)"),
    "serve": ("prefrestore.commands.serve", "web page and HTTP API for restoring photos"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="prefrestore", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"prefrestore {__version__}")
    parser.add_argument("-v", "--verbose", "--debug", action="store_true",
                        help="debug logging and full tracebacks (--debug may also follow the subcommand)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_) in COMMANDS.items():
        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=help_, description=help_)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand -> exit status. Nothing escapes as a traceback unless --debug is given: a UserError is
    its line (status 2), Ctrl-C is one line (130), any other error is one line naming its type (status 3)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or "-v" in argv[:1] or "--verbose" in argv[:1]
    if "--debug" in argv:
        argv = [a for a in argv if a != "--debug"]
        argv.insert(0, "--debug")
    _terminate_as_interrupt()
    try:
        return _main(argv)
    except KeyboardInterrupt:
        if debug:
            raise
        print("interrupted; finished outputs are kept and complete, rerun the same command to continue",
              file=sys.stderr)
        return 130
    except UserError as err:
        if debug:
            raise
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except MemoryError:
        if debug:
            raise
        print("error: out of memory; use smaller inputs or options, or close other programs (--debug for the "
              "traceback)", file=sys.stderr)
        return 3
    except Exception as err:  # a bug or an environment failure: one line, the traceback with --debug
        if debug:
            raise
        print(f"error: unexpected {type(err).__name__}: {_one_line(err)} (rerun with --debug for the traceback)",
              file=sys.stderr)
        return 3


def _terminate_as_interrupt() -> None:
    """SIGTERM (a service manager, `timeout`, `kill`) ends the run like Ctrl-C: temporary files removed, one line."""
    import signal
    import threading

    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
        return

    def handler(signum, frame):
        raise KeyboardInterrupt

    try:
        if signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None):
            signal.signal(signal.SIGTERM, handler)
    except (ValueError, OSError):
        pass


def _one_line(err: BaseException) -> str:
    from .io_safety import shown

    lines = str(err).strip().splitlines()
    return shown(lines[0][:500]) if lines else type(err).__name__


def _main(argv: list[str]) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

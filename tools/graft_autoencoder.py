"""Put one model folder's autoencoder into another: the restoration-trained DC-AE of stage 3a into the stage-2 model.

    .venv/bin/python tools/graft_autoencoder.py --model runs/small/small-stage2/final_ema \
        --autoencoder runs/small/small-stage3a/final_ema -o runs/small/grafted

Both must have the same architecture (config minus weights); the result keeps ``--model``'s config (its latent
scaling too: the grafted encoder was trained to produce the same latents) and every weight but ``vae.*``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefrestore.checkpoints import from_pretrained, save_pretrained


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--autoencoder", required=True, type=Path)
    ap.add_argument("-o", "--out", required=True, type=Path)
    args = ap.parse_args()
    model, donor = from_pretrained(args.model), from_pretrained(args.autoencoder)
    if model.config.autoencoder != donor.config.autoencoder:
        raise SystemExit(f"{args.autoencoder}: its autoencoder config differs from {args.model}'s")
    model.vae.load_state_dict(donor.vae.state_dict(), strict=True)
    save_pretrained(model, args.out)
    print(f"{args.model} + vae of {args.autoencoder} -> {args.out}")


if __name__ == "__main__":
    main()

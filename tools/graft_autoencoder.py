"""Put one model folder's autoencoder (and LQ skip) into another, or give a model an LQ skip.

    .venv/bin/python tools/graft_autoencoder.py --model runs/small/small-stage2/final_ema \
        --autoencoder runs/small/small-stage3a/final -o runs/small/grafted
    .venv/bin/python tools/graft_autoencoder.py --model runs/small/small-stage0/final --lq-skip-levels 2 -o OUT

With ``--autoencoder``, both must have the same autoencoder config (a donor's LQ skip is added to a model
without one); the result keeps ``--model``'s config and every weight but ``vae.*`` / ``lq_skip.*`` (the grafted
encoder was trained to produce the same latents).
``--lq-skip-levels N`` adds a freshly initialised LQ skip (models/lq_skip.py) to a model without one: its output
convolutions are zero, so the model's outputs do not change until stage 3 trains it.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from prefrestore.checkpoints import from_pretrained, save_pretrained
from prefrestore.models.restorer import PrefRestoreModel


def with_lq_skip(model: PrefRestoreModel, levels: int, seed: int) -> PrefRestoreModel:
    """The same model (every weight kept) with a new, zero-output LQ skip of ``levels`` levels."""
    cfg = dataclasses.replace(model.config, autoencoder=dataclasses.replace(model.config.autoencoder,
                                                                            lq_skip_levels=levels))
    torch.manual_seed(seed)
    new = PrefRestoreModel(cfg, model.integrator.text_tokenizer)
    missing, unexpected = new.load_state_dict(model.state_dict(), strict=False)
    if unexpected or not all(k.startswith("lq_skip.") for k in missing):
        raise SystemExit(f"unexpected state-dict mismatch adding the LQ skip: {missing[:3]} {unexpected[:3]}")
    return new.eval()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", required=True, type=Path)
    ap.add_argument("--autoencoder", type=Path)
    ap.add_argument("--lq-skip-levels", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--out", required=True, type=Path)
    args = ap.parse_args()
    model = from_pretrained(args.model)
    donor = from_pretrained(args.autoencoder) if args.autoencoder else None
    levels = args.lq_skip_levels or (donor.config.autoencoder.lq_skip_levels if donor is not None else 0)
    if levels and model.lq_skip is None:
        model = with_lq_skip(model, levels, args.seed)
    elif args.lq_skip_levels:
        raise SystemExit(f"{args.model}: already has an LQ skip")
    if donor is not None:
        if model.config.autoencoder != donor.config.autoencoder:
            raise SystemExit(f"{args.autoencoder}: its autoencoder config differs from {args.model}'s")
        model.vae.load_state_dict(donor.vae.state_dict(), strict=True)
        if donor.lq_skip is not None:
            model.lq_skip.load_state_dict(donor.lq_skip.state_dict(), strict=True)
    save_pretrained(model, args.out)
    print(f"{args.model} -> {args.out}")


if __name__ == "__main__":
    main()

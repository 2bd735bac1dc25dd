"""Put one model folder's autoencoder (and LQ skip) into another, or give a model an LQ skip.

    .venv/bin/python tools/graft_autoencoder.py --model runs/small/small-stage2/final_ema \
        --autoencoder runs/small/small-stage3a/final -o runs/small/grafted
    .venv/bin/python tools/graft_autoencoder.py --model runs/small/small-stage0/final --lq-skip-levels 2 -o OUT
    .venv/bin/python tools/graft_autoencoder.py --model runs/small/small-stage3d/final --lq-skip-blocks 2 -o OUT

With ``--autoencoder``, both must have the same autoencoder config (a donor's LQ skip is added to a model
without one); the result keeps ``--model``'s config and every weight but ``vae.*`` / ``lq_skip.*`` (the grafted
encoder was trained to produce the same latents); a donor's LQ skip, fusion blocks included, is added to a model
that lacks it.
``--lq-skip-levels N`` adds a freshly initialised LQ skip (models/lq_skip.py) to a model without one, and
``--lq-skip-blocks N`` N fusion blocks per level to a model's skip: both end in zero convolutions, so the model's
outputs do not change until stage 3 trains them.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import torch

from prefrestore.checkpoints import from_pretrained, save_pretrained
from prefrestore.models.restorer import PrefRestoreModel


def with_lq_skip(model: PrefRestoreModel, levels: int, seed: int, blocks: int = 0) -> PrefRestoreModel:
    """The same model (every weight kept) with an LQ skip of ``levels`` levels and ``blocks`` fusion blocks per level;
    whatever of it the model lacked is new and adds exactly zero."""
    cfg = dataclasses.replace(
        model.config,
        autoencoder=dataclasses.replace(model.config.autoencoder, lq_skip_levels=levels, lq_skip_blocks=blocks),
    )
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
    ap.add_argument("--lq-skip-blocks", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("-o", "--out", required=True, type=Path)
    args = ap.parse_args()
    model = from_pretrained(args.model)
    donor = from_pretrained(args.autoencoder) if args.autoencoder else None
    have = model.config.autoencoder
    if args.lq_skip_levels and have.lq_skip_levels:
        raise SystemExit(f"{args.model}: already has an LQ skip")
    if args.lq_skip_blocks and have.lq_skip_blocks:
        raise SystemExit(f"{args.model}: its LQ skip already has fusion blocks")
    want = donor.config.autoencoder if donor is not None else have
    levels = args.lq_skip_levels or want.lq_skip_levels or have.lq_skip_levels
    blocks = args.lq_skip_blocks or want.lq_skip_blocks
    if blocks and not levels:
        raise SystemExit(f"{args.model}: fusion blocks need an LQ skip (--lq-skip-levels)")
    if have.lq_skip_levels and have.lq_skip_levels != levels:
        raise SystemExit(f"{args.model}: its LQ skip has {have.lq_skip_levels} levels, the donor's {levels}")
    if (levels, blocks) != (have.lq_skip_levels, have.lq_skip_blocks):
        model = with_lq_skip(model, levels, args.seed, blocks)
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

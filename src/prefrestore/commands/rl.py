"""`prefrestore rl CONFIG [key=value ...]`: preference RL (DiffusionNFT on the SANA LoRA), resumable.

    prefrestore rl configs/rl/tiny.yaml model=runs/sft-tiny/final epochs=20
    prefrestore rl --merge runs/rl/checkpoints/epoch-000030/lora --model runs/sft-tiny/final -o runs/rl-merged

Multi-GPU / multi-node: ``accelerate launch --config_file configs/accelerate/ddp.yaml -m prefrestore rl ...``.
``--merge`` writes a plain model folder (LoRA folded into SANA's weights) that ``--model`` accepts everywhere.
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "config",
        metavar="CONFIG",
        nargs="?",
        help="YAML with the deltas from the defaults (configs/rl/tiny.yaml, configs/rl/paper.yaml)",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="dotted overrides, e.g. model=runs/sft/final epochs=10 rollout.group_size=8",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config and exit")
    parser.add_argument(
        "--merge",
        metavar="LORA_DIR",
        help="instead of training: fold this RL LoRA (a checkpoint's lora/) into --model, write -o",
    )
    parser.add_argument("--model", help="with --merge: the SFT model folder the LoRA was trained on")
    parser.add_argument("-o", "--out", help="with --merge: output model folder")


def run(args: argparse.Namespace) -> int:
    import sys

    from ..errors import UserError

    if args.merge:
        if not (args.model and args.out) or args.config:
            raise UserError("--merge LORA_DIR needs --model MODEL and -o OUT (and no CONFIG)")
        from ..checkpoints import load_model, save_pretrained
        from ..lora import load_lora

        model = load_model(args.model)
        load_lora(model, args.merge, merge=True)
        save_pretrained(model, args.out)
        sys.stdout.write(f"wrote {args.out}\n")
        return 0
    if not args.config:
        raise UserError("missing CONFIG (e.g. configs/rl/tiny.yaml); or use --merge LORA_DIR --model M -o OUT")

    from ..config import config_yaml, load_user_config
    from ..training.nft import NFTConfig, train_nft

    cfg = load_user_config(NFTConfig, args.config, args.overrides)
    if args.print_config:
        sys.stdout.write(config_yaml(cfg))
        return 0
    train_nft(cfg)
    return 0

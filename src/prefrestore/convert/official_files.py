"""Reading official files: ``ta_tok.pth`` (weights_only), safetensors weights (single or sharded), JSON configs, and
the text tokenizer files copied verbatim."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import torch

from ..checkpoints import load_torch_file
from ..errors import CheckpointError

# ---------------------------------------------------------------------------------------------------------------
# Reading files (no pickle beyond torch's weights_only unpickler)


def read_ta_tok(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """``ta_tok.pth`` -> (args as plain dicts, state dict)."""
    obj = load_torch_file(path, allow_easydict=True)
    model = obj.get("model") if isinstance(obj, dict) else None
    if not isinstance(model, dict) or not isinstance(model.get("sd"), dict):
        raise CheckpointError(
            f"{path}: not a TA-Tok checkpoint (expected {{'model': {{'args': ..., 'sd': ...}}}}, got {_describe(obj)})"
        )
    sd = model["sd"]
    bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: model.sd holds non-tensors: {', '.join(map(str, bad[:8]))}")
    return _plain(model.get("args") or {}), dict(sd)


def _plain(x):
    if isinstance(x, dict):
        return {k: _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    return x


def _describe(obj) -> str:
    if isinstance(obj, dict):
        return "keys " + ", ".join(map(str, list(obj)[:5]))
    return type(obj).__name__


def read_weights(folder: str | os.PathLike, stem: str) -> tuple[dict[str, torch.Tensor], list[Path]]:
    """All tensors of an HF/diffusers weight set in ``folder``: ``{stem}.safetensors``, its sharded form
    (``{stem}.safetensors.index.json`` + shards), a single ``{stem}.<variant>.safetensors``, or ``.bin``
    (weights_only). ``stem``: ``model`` (transformers) or ``diffusion_pytorch_model`` (diffusers)."""
    d = Path(folder)
    files = weight_files(d, stem)
    if files is None:
        raise CheckpointError(f"{d}: no weights ({stem}.safetensors, or {stem}.safetensors.index.json + shards)")
    state: dict[str, torch.Tensor] = {}
    for f in files:
        if not f.is_file():
            raise CheckpointError(f"{f}: shard listed in the index is missing; download it")
        state.update(_read_one(f))
    return state, files


def weight_files(d: Path, stem: str) -> list[Path] | None:
    """The files of the weight set, or None if there is none (missing shards are returned, to be reported)."""
    for index in (
        d / f"{stem}.safetensors.index.json",
        d / f"pytorch_{stem}.bin.index.json" if stem == "model" else d / f"{stem}.bin.index.json",
    ):
        if index.is_file():
            try:
                names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
            except (OSError, json.JSONDecodeError, KeyError, AttributeError) as err:
                raise CheckpointError(f"{index}: unreadable index ({err}); re-download it") from None
            return [d / n for n in names]
    for name in (f"{stem}.safetensors", f"pytorch_{stem}.bin" if stem == "model" else f"{stem}.bin"):
        if (d / name).is_file():
            return [d / name]
    variants = sorted(d.glob(f"{stem}.*.safetensors"))
    if len(variants) == 1:
        return variants
    if len(variants) > 1:
        raise CheckpointError(f"{d}: several weight variants ({', '.join(v.name for v in variants)}); keep one")
    return None


def _read_one(f: Path) -> dict[str, torch.Tensor]:
    if f.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(f)
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{f}: corrupt safetensors file ({err}); re-download it") from None
    state = load_torch_file(f)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{f}: not a flat dict of tensors ({_describe(state)})")
    return state


def read_json(path: Path) -> dict:
    try:
        raw = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: missing") from None
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{path}: unreadable JSON ({err}); re-download it") from None
    if not isinstance(raw, dict):
        raise CheckpointError(f"{path}: expected a JSON object")
    return raw


# Text tokenizer files of an HF checkpoint, copied verbatim into our tokenizer/ folder.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
    "chat_template.json",
)


def tokenizer_files(d: Path) -> list[Path]:
    files = [d / n for n in TOKENIZER_FILES if (d / n).is_file()]
    names = {f.name for f in files}
    if "tokenizer_config.json" not in names or not (
        {"tokenizer.json"} <= names or {"vocab.json", "merges.txt"} <= names
    ):
        raise CheckpointError(
            f"{d}: text tokenizer files missing (need tokenizer_config.json and tokenizer.json, "
            "or vocab.json + merges.txt); copy them from the official checkpoint"
        )
    return files


def _copy_files(files: list[Path], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copyfile(f, dest / f.name)

"""Model directories: ``config.json`` + safetensors weights (+ ``tokenizer/``), written and read without pickle.

Layout of a prefrestore model directory::

    config.json                       {"format_version": "1", "prefrestore_version": ..., "model": PrefRestoreConfig}
    model.safetensors                 or model-0000k-of-0000n.safetensors + model.safetensors.index.json
    tokenizer/                        the text tokenizer (tokenizer.json, ...)
    README.md                         optional model card

Tied/shared tensors (the LM's tied embedding, the connectors' shared RMSNorm) are stored once and re-tied on load.
Loading is strict: missing, unexpected and mis-shaped tensors are listed by name in a CheckpointError.
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import torch

from . import __version__
from .errors import CheckpointError
from .models.restorer import PrefRestoreConfig, PrefRestoreModel

log = logging.getLogger(__name__)

FORMAT_VERSION = "1"
CONFIG_NAME = "config.json"


def save_pretrained(
    model: PrefRestoreModel,
    directory: str | os.PathLike,
    *,
    max_shard_size: str = "5GB",
    dtype: torch.dtype | None = None,
) -> Path:
    """Write ``model`` to ``directory`` (created; existing weight files there are replaced)."""
    from huggingface_hub import save_torch_state_dict

    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    for old in list(d.glob("model*.safetensors")) + list(d.glob("model.safetensors.index.json")):
        old.unlink()
    # cast each unique tensor once, so shared tensors (tied embedding, shared norm) stay shared and are stored once
    cast: dict[int, torch.Tensor] = {}
    state = {}
    for k, v in model.state_dict(keep_vars=True).items():
        if id(v) not in cast:
            cast[id(v)] = (v.to(dtype) if dtype is not None and v.is_floating_point() else v).detach().contiguous()
        state[k] = cast[id(v)]
    meta = {"format_version": FORMAT_VERSION, "prefrestore_version": __version__}
    save_torch_state_dict(
        state, d, max_shard_size=max_shard_size, metadata=dict(meta), filename_pattern="model{suffix}.safetensors"
    )
    config = {**meta, "model": model.config.to_dict()}
    tmp = d / (CONFIG_NAME + ".tmp")
    tmp.write_text(json.dumps(config, indent=2))
    tmp.replace(d / CONFIG_NAME)
    if model.integrator.text_tokenizer is not None:
        model.integrator.text_tokenizer.save_pretrained(str(d / "tokenizer"))
    return d


def read_config(directory: str | os.PathLike) -> PrefRestoreConfig:
    p = Path(directory) / CONFIG_NAME
    if not p.is_file():
        raise CheckpointError(
            f"{p}: missing; a prefrestore model folder needs config.json + model*.safetensors "
            "(convert official checkpoints with `prefrestore convert`)"
        )
    try:
        if p.stat().st_size > 1 << 20:
            raise ValueError(f"{p.stat().st_size} bytes; a model config is a few KB")
        raw = json.loads(p.read_text())
        if not isinstance(raw, dict) or not isinstance(raw.get("model"), dict):
            raise ValueError('expected {"format_version": ..., "model": {...}}')
        if str(raw.get("format_version", FORMAT_VERSION)) != FORMAT_VERSION:
            raise ValueError(f"format_version {raw.get('format_version')!r}, this version reads {FORMAT_VERSION!r}")
        missing = [
            k
            for k in ("name", "resolution", "tokenizer", "integrator", "transformer", "autoencoder")
            if k not in raw["model"]
        ]
        if missing:  # a config must describe its model; defaults would silently build another (e.g. the paper's)
            raise ValueError(f"model section lacks {', '.join(missing)}")
        return PrefRestoreConfig.from_dict(raw["model"])
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError, ValueError, OverflowError) as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{p}: not a valid prefrestore config ({first}); re-save or re-convert the model"
        ) from None


def weight_files(directory: str | os.PathLike) -> list[Path]:
    """The safetensors files of a model folder (single file, or the shards its index lists), all checked to exist."""
    d = Path(directory)
    index = d / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
            if not isinstance(weight_map, dict) or not all(isinstance(v, str) for v in weight_map.values()):
                raise TypeError("weight_map is not a {tensor: file} object")
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as err:
            raise CheckpointError(
                f"{index}: not a valid safetensors index ({type(err).__name__}: "
                f"{str(err)[:200]}); re-download or re-convert"
            ) from None
        files = sorted(set(weight_map.values()))
        bad = [f for f in files if Path(f).name != f]
        if bad:
            raise CheckpointError(f"{index}: shard names must be plain file names, got {bad[:3]}; re-convert")
    elif (d / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        raise CheckpointError(f"{d}: no model.safetensors (or index) found; the folder is incomplete")
    for f in files:
        if not (d / f).is_file():
            raise CheckpointError(f"{d / f}: shard listed in the index is missing; re-download or re-convert")
    return [d / f for f in files]


def weight_shapes(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Every tensor's shape from the safetensors headers alone (nothing loaded), as meta tensors."""
    from safetensors import SafetensorError, safe_open

    shapes: dict[str, torch.Tensor] = {}
    for f in weight_files(directory):
        try:
            with safe_open(str(f), framework="pt") as h:
                for k in h.keys():
                    shapes[k] = torch.empty(h.get_slice(k).get_shape(), device="meta")
        except (SafetensorError, OSError, RuntimeError, ValueError) as err:
            raise CheckpointError(
                f"{f}: corrupt safetensors file ({str(err)[:200]}); re-download or re-convert"
            ) from None
    return shapes


def load_state_dict(directory: str | os.PathLike) -> dict[str, torch.Tensor]:
    """All tensors of a model folder (single file or index + shards), via safetensors only."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for f in weight_files(directory):
        try:
            state.update(load_file(f))
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{f}: corrupt safetensors file ({err}); re-download or re-convert") from None
    return state


def check_state_dict(model: torch.nn.Module, state: dict[str, torch.Tensor], *, where: str) -> None:
    """Raise CheckpointError naming every missing, unexpected or mis-shaped tensor (aliases of shared tensors may
    be absent)."""
    expected = model.state_dict()
    aliases = shared_aliases(model)
    missing = [k for k in expected if k not in state and not any(a in state for a in aliases.get(k, ()))]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} != {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or shapes:
        parts = []
        for label, items in (("missing", missing), ("unexpected", unexpected), ("wrong shape", shapes)):
            if items:
                more = f" (+{len(items) - 8} more)" if len(items) > 8 else ""
                parts.append(f"{len(items)} {label}: {', '.join(items[:8])}{more}")
        raise CheckpointError(
            f"{where}: weights do not match the config ({'; '.join(parts)}); "
            "the checkpoint is corrupt or belongs to another model"
        )


def shared_aliases(model: torch.nn.Module) -> dict[str, tuple[str, ...]]:
    """state_dict key -> other keys that hold the same tensor (shared parameters)."""
    by_ptr: dict[int, list[str]] = {}
    for k, v in model.state_dict(keep_vars=True).items():
        by_ptr.setdefault(id(v), []).append(k)
    return {k: tuple(o for o in ks if o != k) for ks in by_ptr.values() if len(ks) > 1 for k in ks}


def load_into(model: torch.nn.Module, state: dict[str, torch.Tensor], *, where: str) -> None:
    check_state_dict(model, state, where=where)
    aliases = shared_aliases(model)
    full = dict(state)
    for k, others in aliases.items():
        if k not in full:
            full[k] = next(state[o] for o in others if o in state)
    model.load_state_dict(full, strict=True)


def from_pretrained(
    directory: str | os.PathLike, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> PrefRestoreModel:
    """Build the model from ``config.json`` and load its weights strictly. Returns it in eval mode."""
    from .models.text_tokenizer import load_text_tokenizer

    d = Path(directory)
    config = read_config(d)
    tok_dir = d / "tokenizer"
    if not tok_dir.is_dir():
        raise CheckpointError(f"{tok_dir}: missing text tokenizer folder; re-save or re-convert the model")
    try:
        tokenizer = load_text_tokenizer(tok_dir)
    except (OSError, ValueError, TypeError, KeyError, RuntimeError, ImportError, AttributeError) as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise CheckpointError(
            f"{tok_dir}: cannot load the text tokenizer ({type(err).__name__}: {first}); "
            "re-save or re-convert the model"
        ) from None
    # Build on the meta device first (no memory) and compare with the files' headers, so a config that does not
    # match its weights (an incomplete config, an absurd vocabulary size) is refused before anything is allocated.
    try:
        with torch.device("meta"):
            skeleton = PrefRestoreModel(config, tokenizer)
    except (ValueError, TypeError, RuntimeError, OverflowError) as err:
        raise CheckpointError(
            f"{d / CONFIG_NAME}: the config does not describe a buildable model "
            f"({type(err).__name__}: {str(err).splitlines()[0][:200]}); re-convert it"
        ) from None
    check_state_dict(skeleton, weight_shapes(d), where=str(d))
    del skeleton
    model = PrefRestoreModel(config, tokenizer)
    load_into(model, load_state_dict(d), where=str(d))
    if dtype is not None:
        model.to(dtype)
    return model.to(device).eval()


def average_pretrained(directories: list[str | os.PathLike], weights: list[float] | None = None) -> PrefRestoreModel:
    """The average of the weights of model folders of one architecture: uniform (checkpoints of one run: weight
    averaging, the post-hoc cousin of an EMA), or with ``weights`` (normalised to sum 1; e.g. interpolating a
    fine-tuned model with its starting point, WiSE-FT). Floating tensors are averaged in float32 and cast back;
    other tensors must be equal. Returns the first folder's model (its config and tokenizer) holding the average,
    in eval mode."""
    if not directories:
        raise ValueError("average_pretrained needs at least one model folder")
    if weights is None:
        weights = [1.0] * len(directories)
    if len(weights) != len(directories) or min(weights) < 0 or sum(weights) <= 0:
        raise ValueError(f"weights {weights}: one non-negative weight per folder, not all zero")
    w = [x / sum(weights) for x in weights]
    model = from_pretrained(directories[0])
    first = {k: v.float() if v.is_floating_point() else v for k, v in load_state_dict(directories[0]).items()}
    sums = {k: v * w[0] if v.is_floating_point() else v.clone() for k, v in first.items()}
    for d, wd in zip(directories[1:], w[1:], strict=True):
        state = load_state_dict(d)
        if set(state) != set(first):
            raise CheckpointError(f"{d}: its tensors differ from those of {directories[0]}; not one architecture")
        for k, v in state.items():
            if v.shape != first[k].shape:
                raise CheckpointError(f"{d}: {k} has shape {tuple(v.shape)}, {directories[0]} {tuple(first[k].shape)}")
            if v.is_floating_point():
                sums[k] += v.float() * wd
            elif not torch.equal(v, first[k]):
                raise CheckpointError(f"{d}: non-float tensor {k} differs from {directories[0]}'s; cannot average")
    dtypes = {k: v.dtype for k, v in model.state_dict().items()}
    avg = {k: v.to(dtypes.get(k, v.dtype)) if v.is_floating_point() else v for k, v in sums.items()}
    load_into(model, avg, where=f"the average of {len(directories)} model folders")
    return model.eval()


# ---------------------------------------------------------------------------------------------------------------
# Building a model from a reference (what the trainers, convert and benchmarks use; api.py wraps the same idea)


def random_model(preset: str, *, seed: int = 0) -> PrefRestoreModel:
    """A model of a named preset with seeded random weights (tests, smoke runs, SFT's preset init), in eval mode."""
    from .models.presets import get_preset
    from .models.text_tokenizer import build_char_tokenizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return PrefRestoreModel(get_preset(preset), build_char_tokenizer()).eval()


def load_model(
    ref: str = "default", *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None
) -> PrefRestoreModel:
    """A preset name (random weights, with a warning), ``default``, a model folder or a HF repo id -> model (eval)."""
    from .hub import resolve
    from .models.presets import PRESETS

    if ref in PRESETS:
        log.warning("model %r: RANDOM weights (untrained preset) - output is noise-like, not a restoration", ref)
        model = random_model(ref)
        return model.to(device=device, dtype=dtype).eval() if dtype else model.to(device).eval()
    return from_pretrained(resolve(ref), device=device, dtype=dtype)


# ---------------------------------------------------------------------------------------------------------------
# Torch files (no pickle beyond torch's weights_only unpickler)


class _EasyDictStandIn:
    """Stand-in for ``easydict.EasyDict`` inside the weights_only unpickler: rebuilds it as a plain mapping.

    The unpickler only fills dict/OrderedDict items and only builds allow-listed types, so ``__new__`` returns an
    OrderedDict (the EasyDict attribute copies land in its ``__dict__`` and are ignored); nothing else is allowed.
    """

    def __new__(cls, *args):
        from collections import OrderedDict

        return OrderedDict()


def load_torch_file(path: str | os.PathLike, *, allow_easydict: bool = False):
    """``torch.load(path, weights_only=True)`` (memory-mapped); refusals and corruption -> one-line CheckpointError."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: file not found")
    safe = [(_EasyDictStandIn, "easydict.EasyDict")] if allow_easydict else []
    try:
        with torch.serialization.safe_globals(safe):
            try:
                return torch.load(p, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as err:
                if "mmap" not in str(err):
                    raise
                return torch.load(p, map_location="cpu", weights_only=True)  # legacy (non-zip) files cannot mmap
    except Exception as err:  # torch raises UnpicklingError/RuntimeError/EOFError/...: all mean "refused or corrupt"
        text = " ".join(str(err).split())
        m = re.search(r"Unsupported global: GLOBAL (\S+)|unrecognized function (\S+)|got <class '([^']+)'>", text)
        if m:
            name = next(g for g in m.groups() if g)
            raise CheckpointError(
                f"{p}: refused: the pickle needs {name}, which torch.load(weights_only=True) does "
                "not allow and prefrestore never unpickles; only tensors, plain containers "
                "and easydict.EasyDict are accepted"
            ) from None
        raise CheckpointError(f"{p}: not a readable torch file ({text[:200]}); re-download it") from None

"""LoRA adapters on the SANA transformer: the official DiffusionNFT format, merged or through peft.

The official RL trainer (docs/layouts.md §6) wraps only the SANA transformer with
``peft.get_peft_model(LoraConfig(r=32, lora_alpha=64, init_lora_weights="gaussian", target_modules=LORA_TARGETS))``
plus a second adapter ``"old"`` (its sampling policy), and saves with ``PeftModel.save_pretrained``::

    lora/adapter_model.safetensors   base_model.model.transformer_blocks.N.attn{1,2}.{to_q,to_k,to_v,to_out.0}.lora_{A,B}.weight
    lora/adapter_config.json         peft_type LORA, r, lora_alpha, target_modules, ...
    lora/old/...                     the same for the "old" adapter

``A`` is (r, in_features) and ``B`` (out_features, r); the merged weight is ``W + scale * B @ A`` with
``scale = lora_alpha / r`` (``lora_alpha / sqrt(r)`` with rsLoRA). Our transformer is the same diffusers
``SanaTransformer2DModel`` (``model.transformer``), so module names are identical.

API:
* :func:`lora_config`, :func:`add_lora` - a fresh adapter for training (RL), injected in place via diffusers' peft
  integration (``transformer.set_adapter`` / ``disable_adapters`` work as usual);
* :func:`read_lora` - read and validate an adapter folder (no peft needed);
* :func:`load_lora` - put an adapter on a model, ``merge=True`` (plain weights, no peft layers) or ``merge=False``
  (peft layers, switchable);
* :func:`merge_lora` - fold an injected peft adapter into the base weights and remove the LoRA layers;
* :func:`save_lora` - write an adapter in the official folder layout;
* :func:`attach_training_adapters`, :func:`use_adapter`, :func:`save_training_adapters` - the RL pair of adapters
  on one peft model: "default" (trained), "old" (samples the rollouts); adapters off is the frozen reference.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Iterable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError

# The official DiffusionNFT targets (train_nft_prefRestore*.py), on every SANA block.
LORA_TARGETS: tuple[str, ...] = (
    "attn1.to_q",
    "attn1.to_k",
    "attn1.to_v",
    "attn1.to_out.0",
    "attn2.to_q",
    "attn2.to_k",
    "attn2.to_v",
    "attn2.to_out.0",
)
ADAPTER_WEIGHTS = "adapter_model.safetensors"
ADAPTER_CONFIG = "adapter_config.json"
PEFT_PREFIX = "base_model.model."  # what PeftModel.save_pretrained puts in front of the wrapped model's names
_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])\.weight$")


def lora_config(r: int = 32, alpha: float = 64, targets: Sequence[str] = LORA_TARGETS, *, init="gaussian"):
    """The official adapter config (r 32, alpha 64, gaussian init, attn1/attn2 q/k/v/out) as a peft LoraConfig."""
    from peft import LoraConfig

    return LoraConfig(
        r=r, lora_alpha=alpha, init_lora_weights=init, target_modules=list(targets), lora_dropout=0.0, bias="none"
    )


def add_lora(transformer: nn.Module, config=None, *, adapter_name: str = "default") -> None:
    """Inject a (new) LoRA adapter into ``transformer`` in place and make it active. config: a peft LoraConfig."""
    transformer.add_adapter(config if config is not None else lora_config(), adapter_name=adapter_name)
    transformer.set_adapter(adapter_name)


# ---------------------------------------------------------------------------------------------------------------
# Reading and checking an adapter folder


@dataclass(frozen=True)
class LoraAdapter:
    """A validated adapter. ``weights[module] = (A (r, in), B (out, r))``; module names as in the transformer."""

    path: Path
    config: dict
    weights: dict[str, tuple[torch.Tensor, torch.Tensor]]

    @property
    def r(self) -> int:
        return int(self.config["r"])

    @property
    def scale(self) -> float:
        alpha = float(self.config.get("lora_alpha", self.r))
        return alpha / math.sqrt(self.r) if self.config.get("use_rslora") else alpha / self.r

    @property
    def targets(self) -> list[str] | str:
        return self.config.get("target_modules") or []


def adapter_dir(path: str | os.PathLike) -> Path:
    """An adapter folder: ``path`` itself, or ``path/lora`` (an official ``checkpoint-N`` folder)."""
    p = Path(path)
    for d in (p, p / "lora"):
        if (d / ADAPTER_CONFIG).is_file():
            return d
    raise CheckpointError(
        f"{p}: no {ADAPTER_CONFIG} here or in {p / 'lora'}; an official DiffusionNFT LoRA folder "
        f"holds {ADAPTER_WEIGHTS} + {ADAPTER_CONFIG} (written by PeftModel.save_pretrained)"
    )


def read_lora(path: str | os.PathLike) -> LoraAdapter:
    """Read ``adapter_config.json`` + ``adapter_model.safetensors`` (or ``adapter_model.bin``, weights_only)."""
    d = adapter_dir(path)
    try:
        config = json.loads((d / ADAPTER_CONFIG).read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise CheckpointError(f"{d / ADAPTER_CONFIG}: unreadable ({err}); re-download the adapter") from None
    problems = _unsupported(config)
    if problems:
        raise CheckpointError(
            f"{d / ADAPTER_CONFIG}: unsupported adapter ({'; '.join(problems)}); only plain LoRA "
            "on Linear layers is supported (the DiffusionNFT format)"
        )
    state = _read_adapter_state(d)
    pairs: dict[str, dict[str, torch.Tensor]] = {}
    unknown = []
    for k, v in state.items():
        name = k[len(PEFT_PREFIX) :] if k.startswith(PEFT_PREFIX) else k
        m = _KEY.match(name)
        if m is None:
            unknown.append(k)
            continue
        module = re.sub(r"\.default$", "", m["module"])  # some writers keep the adapter name
        pairs.setdefault(module, {})[m["ab"]] = v
    half = [f"{m} (no lora_{'B' if 'A' in ab else 'A'})" for m, ab in pairs.items() if len(ab) != 2]
    if unknown or half:
        raise CheckpointError(
            f"{d / ADAPTER_WEIGHTS}: {_listing(('unknown keys', unknown), ('incomplete', half))}; "
            "expected only base_model.model.<module>.lora_{A,B}.weight"
        )
    r = int(config["r"])
    bad = [
        f"{m}.lora_A {tuple(ab['A'].shape)} / lora_B {tuple(ab['B'].shape)}"
        for m, ab in pairs.items()
        if ab["A"].ndim != 2 or ab["B"].ndim != 2 or ab["A"].shape[0] != r or ab["B"].shape[1] != r
    ]
    if bad:
        raise CheckpointError(
            f"{d / ADAPTER_WEIGHTS}: {_listing((f'not rank {r}', bad))}; the weights do not match {ADAPTER_CONFIG}"
        )
    return LoraAdapter(d, config, {m: (ab["A"], ab["B"]) for m, ab in sorted(pairs.items())})


def _unsupported(config: dict) -> list[str]:
    out = []
    if config.get("peft_type") != "LORA":
        out.append(f"peft_type={config.get('peft_type')!r}")
    if not isinstance(config.get("r"), int) or config["r"] <= 0:
        out.append(f"r={config.get('r')!r}")
    for field in ("use_dora", "fan_in_fan_out", "lora_bias"):
        if config.get(field):
            out.append(f"{field}=true")
    if config.get("bias", "none") != "none":
        out.append(f"bias={config['bias']!r}")
    for field in ("rank_pattern", "alpha_pattern", "modules_to_save", "layer_replication", "target_parameters"):
        if config.get(field):
            out.append(f"{field} set")
    return out


def _read_adapter_state(d: Path) -> dict[str, torch.Tensor]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    f = d / ADAPTER_WEIGHTS
    if f.is_file():
        try:
            return load_file(f)
        except (SafetensorError, OSError) as err:
            raise CheckpointError(f"{f}: corrupt safetensors file ({err}); re-download the adapter") from None
    b = d / "adapter_model.bin"
    if b.is_file():
        from .checkpoints import load_torch_file

        state = load_torch_file(b)  # weights_only=True; refusals become a CheckpointError
        if isinstance(state, dict) and all(isinstance(v, torch.Tensor) for v in state.values()):
            return state
        raise CheckpointError(f"{b}: not a flat dict of tensors")
    raise CheckpointError(f"{d}: no {ADAPTER_WEIGHTS} (or adapter_model.bin) next to {ADAPTER_CONFIG}")


def check_lora(adapter: LoraAdapter, weights: dict[str, torch.Tensor], *, where: str) -> None:
    """Raise CheckpointError naming every adapter module that is not a Linear of ``weights`` (the transformer's state
    dict, names without prefix), every mis-shaped pair, and every target module of the config that has no weights."""
    unknown, shapes = [], []
    for m, (A, B) in adapter.weights.items():
        W = weights.get(f"{m}.weight")
        if W is None or W.ndim != 2:
            unknown.append(m)
        elif A.shape[1] != W.shape[1] or B.shape[0] != W.shape[0]:
            shapes.append(f"{m}: B @ A is {(B.shape[0], A.shape[1])}, weight is {tuple(W.shape)}")
    expected = [m for m in _linear_names(weights) if _is_target(m, adapter.targets)]
    missing = [m for m in expected if m not in adapter.weights]
    if unknown or shapes or missing:
        raise CheckpointError(
            f"{where}: adapter {adapter.path} does not fit this transformer "
            f"({_listing(('unknown modules', unknown), ('wrong shape', shapes), ('targets without weights', missing))})"
        )


def _linear_names(weights: dict[str, torch.Tensor]) -> list[str]:
    return [k[: -len(".weight")] for k, v in weights.items() if k.endswith(".weight") and v.ndim == 2]


def _is_target(name: str, targets: Iterable[str] | str) -> bool:
    """peft's rule: a regex string must match the full name; a list entry matches the name or a '.'-suffix of it."""
    if isinstance(targets, str):
        return re.fullmatch(targets, name) is not None
    return any(name == t or name.endswith("." + t) for t in targets)


# ---------------------------------------------------------------------------------------------------------------
# Merging and loading


def merged_weight(W: torch.Tensor, A: torch.Tensor, B: torch.Tensor, scale: float) -> torch.Tensor:
    """W + scale * B @ A, computed in float32 and returned in W's dtype. W: (out, in), A: (r, in), B: (out, r)."""
    return (W.float() + scale * (B.float() @ A.float())).to(W.dtype)


def merge_into_state(
    state: dict[str, torch.Tensor],
    adapter: LoraAdapter,
    *,
    prefix: str = "",
    where: str = "model",
    dtype: torch.dtype | None = None,
) -> dict[str, torch.Tensor]:
    """A copy of ``state`` with the adapter merged into ``{prefix}{module}.weight`` (in ``dtype``, default the
    weight's own); checked with :func:`check_lora` first."""
    sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    check_lora(adapter, sub, where=where)
    out = dict(state)
    for m, (A, B) in adapter.weights.items():
        W = sub[f"{m}.weight"]
        out[f"{prefix}{m}.weight"] = merged_weight(W.to(dtype or W.dtype), A, B, adapter.scale)
    return out


def load_lora(model: nn.Module, path: str | os.PathLike, *, merge: bool, adapter_name: str = "default") -> LoraAdapter:
    """Put the adapter at ``path`` on ``model.transformer`` (or on ``model`` if it is the transformer itself).

    merge=True: ``W += scale * B @ A`` on each target Linear; the model stays a plain model (saveable as usual).
    merge=False: peft LoRA layers are injected under ``adapter_name`` and made active; outputs equal the merged
    model's up to float rounding, and ``transformer.disable_adapters()`` gives back the base model.
    """
    from peft import LoraConfig, set_peft_model_state_dict

    transformer = getattr(model, "transformer", model)
    adapter = read_lora(path)
    base = {k: v for k, v in transformer.state_dict().items() if ".lora_" not in k}
    base = {k.replace(".base_layer.", "."): v for k, v in base.items()}  # already-injected layers keep their names
    check_lora(adapter, base, where=type(transformer).__name__)
    if merge:
        if getattr(transformer, "_hf_peft_config_loaded", False):
            raise ValueError(
                "merge=True on a transformer that already has peft LoRA layers: merge those first "
                "(prefrestore.lora.merge_lora) or load this adapter with merge=False"
            )
        with torch.no_grad():
            for m, (A, B) in adapter.weights.items():
                W = transformer.get_submodule(m).weight
                W.copy_(merged_weight(W, A.to(W.device), B.to(W.device), adapter.scale))
        return adapter
    known = set(LoraConfig.__dataclass_fields__)
    config = LoraConfig(**{k: v for k, v in adapter.config.items() if k in known and k not in ("peft_version",)})
    config.inference_mode = False
    transformer.add_adapter(config, adapter_name=adapter_name)
    state = {f"{m}.lora_{ab}.weight": t for m, (A, B) in adapter.weights.items() for ab, t in (("A", A), ("B", B))}
    result = set_peft_model_state_dict(transformer, state, adapter_name=adapter_name)
    missing = [k for k in result.missing_keys if ".lora_" in k and f".{adapter_name}." in k]
    if missing or result.unexpected_keys:
        raise CheckpointError(
            f"{adapter.path}: peft did not place every tensor "
            f"({_listing(('missing', missing), ('unexpected', list(result.unexpected_keys)))})"
        )
    transformer.set_adapter(adapter_name)
    return adapter


def merge_lora(transformer: nn.Module, *, adapter_name: str = "default") -> int:
    """Fold the injected peft adapter ``adapter_name`` into the base weights (``W + scale * B @ A``) and replace
    every LoRA layer by its base Linear. Returns the number of merged layers. Other adapters must be deleted first."""
    from peft.tuners.lora import LoraLayer

    layers = [(n, m) for n, m in transformer.named_modules() if isinstance(m, LoraLayer)]
    if not layers:
        raise ValueError("merge_lora: the transformer has no LoRA layers")
    others = sorted({a for _, m in layers for a in m.lora_A} - {adapter_name})
    if others:
        raise ValueError(
            f"merge_lora: adapters {others} are also present; delete them first "
            f"(transformer.delete_adapters({others!r})) so that only {adapter_name!r} is merged"
        )
    n = 0
    with torch.no_grad():
        for name, layer in layers:
            base = layer.get_base_layer()
            if adapter_name in layer.lora_A:
                A, B = layer.lora_A[adapter_name].weight, layer.lora_B[adapter_name].weight
                base.weight.copy_(merged_weight(base.weight, A, B, float(layer.scaling[adapter_name])))
                n += 1
            parent, _, child = name.rpartition(".")
            setattr(transformer.get_submodule(parent) if parent else transformer, child, base)
    for attr in ("peft_config",):
        if hasattr(transformer, attr):
            delattr(transformer, attr)
    if hasattr(transformer, "_hf_peft_config_loaded"):
        transformer._hf_peft_config_loaded = False
    return n


def save_lora(
    transformer: nn.Module,
    directory: str | os.PathLike,
    *,
    adapter_name: str = "default",
    weights: dict[str, torch.Tensor] | None = None,
    dtype: torch.dtype | None = None,
) -> Path:
    """Write the adapter ``adapter_name`` in the official layout (``base_model.model.`` keys).

    ``transformer``: a diffusers transformer with injected adapters, or a ``peft.PeftModel`` wrapping one.
    ``weights``: values to write instead of the live ones (e.g. an EMA), keyed like ``named_parameters`` of
    ``transformer`` (``....lora_A.<adapter_name>.weight``); ``dtype``: the stored dtype (default: as trained).
    """
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    config = transformer.peft_config[adapter_name]
    state = get_peft_model_state_dict(transformer, adapter_name=adapter_name)
    if weights is not None:
        by_key = {k.replace(f".{adapter_name}.", "."): v for k, v in weights.items()}
        state = {k: by_key[k] for k in state}
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    out = {}
    for k, v in state.items():
        v = v.detach().to(dtype) if dtype is not None else v.detach()
        out[k if k.startswith(PEFT_PREFIX) else PEFT_PREFIX + k] = v.contiguous().cpu()
    save_file(out, d / ADAPTER_WEIGHTS, metadata={"format": "pt"})
    raw = config.to_dict()
    raw["target_modules"] = (
        sorted(raw["target_modules"]) if isinstance(raw["target_modules"], (set, list)) else raw["target_modules"]
    )
    raw = {k: (sorted(v) if isinstance(v, set) else v) for k, v in raw.items()}
    raw["inference_mode"] = True
    (d / ADAPTER_CONFIG).write_text(json.dumps(raw, indent=2, default=str))
    return d


# ---------------------------------------------------------------------------------------------------------------
# The RL pair of adapters (DiffusionNFT): "default" is trained, "old" samples, adapters off is the reference


@dataclass
class TrainingAdapters:
    peft: Any  # peft.PeftModel wrapping model.transformer (also set as model.transformer)
    trained: dict[str, nn.Parameter]  # the "default" adapter's tensors, by peft parameter name
    old: dict[str, nn.Parameter]  # the "old" adapter's tensors, same order


def attach_training_adapters(
    model: nn.Module,
    *,
    rank: int = 32,
    alpha: float = 64,
    targets: Sequence[str] = LORA_TARGETS,
    init_from: str | None = None,
) -> TrainingAdapters:
    """Freeze ``model``, wrap ``model.transformer`` in peft with adapters "default" and "old" (same config, the
    official one: :func:`lora_config`); "old" starts as a copy of "default" (Gaussian A, zero B, or the adapter
    folder ``init_from``)."""
    from peft import get_peft_model, set_peft_model_state_dict

    model.requires_grad_(False)
    config = lora_config(rank, alpha, targets)
    peft = get_peft_model(model.transformer, config)
    peft.add_adapter("old", config)
    if init_from:
        sd = _read_adapter_state(adapter_dir(init_from))
        for name in ("default", "old"):
            result = set_peft_model_state_dict(peft, sd, adapter_name=name)
            if getattr(result, "unexpected_keys", None):
                raise CheckpointError(f"{init_from}: unexpected LoRA keys {result.unexpected_keys[:4]}")
    peft.set_adapter("default")
    model.transformer = peft
    params = dict(peft.named_parameters())
    trained = {k: p for k, p in params.items() if ".default." in k}
    old = {k.replace(".default.", ".old."): params[k.replace(".default.", ".old.")] for k in trained}
    with torch.no_grad():
        for o, t in zip(old.values(), trained.values(), strict=True):
            o.copy_(t)
    return TrainingAdapters(peft, trained, old)


@contextmanager
def use_adapter(adapters: TrainingAdapters, name: str):
    """Activate adapter ``name`` inside the block, "default" after it (peft's set_adapter also toggles
    requires_grad, which is why the loop always switches back before the trained forward)."""
    adapters.peft.set_adapter(name)
    try:
        yield
    finally:
        adapters.peft.set_adapter("default")


def save_training_adapters(
    adapters: TrainingAdapters, directory: str | os.PathLike, trained_state: dict[str, torch.Tensor] | None = None
) -> Path:
    """ "default" (``trained_state``, e.g. the EMA, when given) in ``directory`` and "old" in ``directory/old``,
    each in the official layout (:func:`save_lora`, float32)."""
    d = Path(directory)
    save_lora(adapters.peft, d, adapter_name="default", weights=trained_state, dtype=torch.float32)
    save_lora(adapters.peft, d / "old", adapter_name="old", dtype=torch.float32)
    return d


# ---------------------------------------------------------------------------------------------------------------
# Messages


def _listing(*groups: tuple[str, list[str]], limit: int = 8) -> str:
    parts = []
    for label, items in groups:
        if items:
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            parts.append(f"{len(items)} {label}: {', '.join(items[:limit])}{more}")
    return "; ".join(parts)

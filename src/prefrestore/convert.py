"""Official checkpoints -> prefrestore model folders, pickle-free, with every key accounted for.

Sources (LAYOUTS.md §1-§6):
* **Stage-A checkpoint** (``kind="stage-a"``; e.g. zjyao-PKU/Pref-Restore-PhaseA-Fidelity): an HF ``save_pretrained``
  folder of ``blip3oQwenForCausalLM(VAE)``: ``config.json`` (model_type ``blip3o_qwen`` + the BLIP3o fields), weights
  (``model.safetensors`` or ``model-0000k-of-0000n.safetensors`` + ``model.safetensors.index.json``) and the Qwen
  tokenizer files. The weights hold the LM, the TA-Tok copy (``model.vision_tower.vision_tower.*``), SANA
  (``model.sana.*``), DC-AE (``model.sana_vae.*``) and both connectors.
* **BLIP3o-NEXT assembly** (``kind="blip3o"``): BLIP3o/BLIP3o-NEXT-SFT-3B (same format, no ``vae_connector``) +
  ``ta_tok.pth`` + the SANA1.5_1.6B_1024px_diffusers folder. This is what Stage A starts from: the missing
  ``vae_connector`` Linears are initialised like HF does for missing keys (normal(0, initializer_range), bias 0);
  its RMSNorm is the one shared with ``diffusion_connector``.
* **TA-Tok** ``ta_tok.pth``: ``{"model": {"args": EasyDict, "sd": state_dict}}``, read with
  ``torch.load(weights_only=True)``; the only non-tensor class allowed is ``easydict.EasyDict``, rebuilt as a plain
  dict. Anything else in the pickle is refused.
* **SANA folder**: diffusers ``transformer/`` and ``vae/`` (config.json + safetensors).

Precedence follows the official loader (weights built from side files, then overwritten by every checkpoint key):
a component present in the checkpoint comes from the checkpoint; side files supply what it lacks. When both carry
TA-Tok they must agree (strict). Key map (official -> ours)::

    model.embed_tokens / model.layers / model.norm      -> integrator.lm.model.*
    lm_head.weight                                       -> integrator.lm.lm_head.weight (dropped duplicate when tied)
    model.vision_tower.vision_tower.{encoder,encode_task_layer,bottleneck}.*  (= ta_tok.pth sd keys)
                                                         -> tokenizer.*
    model.sana.*  (= SANA transformer/)                  -> transformer.*
    model.sana_vae.*  (= SANA vae/)                      -> vae.*
    model.diffusion_connector.{0,2,3}.*                  -> diffusion_connector.*
    model.vae_connector.{0,2}.*                          -> vae_connector.*   (.3 = duplicate of the shared norm)

Dropped on purpose (each listed in the report with its reason): see ``TATOK_RULES`` / ``BLIP3O_RULES``.
Strict by default: unknown, missing and mis-shaped tensors and disagreeing duplicates raise one CheckpointError
naming them. ``strict=False`` turns unknown keys and disagreeing duplicates into warnings; missing or mis-shaped
tensors are always errors (the output must be complete).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from .errors import CheckpointError, UserError
from .models.integrator import IntegratorConfig
from .models.restorer import AutoencoderConfig, PrefRestoreConfig, PrefRestoreModel, TransformerConfig
from .models.tokenizer import TokenizerConfig

log = logging.getLogger(__name__)

Kind = Literal["stage-a", "blip3o"]
KINDS: tuple[str, ...] = ("stage-a", "blip3o")

# ---------------------------------------------------------------------------------------------------------------
# Key maps: (official prefix, our prefix) or (official prefix, None, reason). First match wins.

_REC = "TA-Tok feature decoder (input_type='rec'); Pref-Restore uses only the token ids (LAYOUTS §2.2)"
TATOK_RULES: tuple[tuple, ...] = (
    ("encoder.", "tokenizer.encoder."),
    ("encode_task_layer.", "tokenizer.encode_task_layer."),
    ("bottleneck.", "tokenizer.bottleneck."),
    ("decoder.", None, _REC),
    ("decode_task_layer.", None, _REC),
    ("scale_layer.", None, "input ScalingLayer buffers; prefrestore feeds [-1, 1] images, which is what the official "
                           "identity ScalingLayer after the SigLIP processor does"),
    ("teacher.", None, "SigLIP2 distillation teacher; the official loader drops it too (load_teacher=False)"),
)
_VT = "model.vision_tower.vision_tower."
BLIP3O_RULES: tuple[tuple, ...] = (
    *((_VT + p, *rest) for p, *rest in TATOK_RULES),
    ("model.sana_vae.", "vae."),
    ("model.sana.", "transformer."),
    ("model.diffusion_connector.", "diffusion_connector."),
    ("model.vae_connector.", "vae_connector."),
    ("model.embed_tokens.", "integrator.lm.model.embed_tokens."),
    ("model.layers.", "integrator.lm.model.layers."),
    ("model.norm.", "integrator.lm.model.norm."),
    ("lm_head.", "integrator.lm.lm_head."),
    ("fixed_vae.", None, "frozen stock DC-AE of the step-2 VAE-alignment loss (training only)"),
    ("model.fixed_vae.", None, "frozen stock DC-AE of the step-2 VAE-alignment loss (training only)"),
)
# Non-persistent buffers that old transformers versions wrote; recomputed at build time.
_BUFFERS = re.compile(r"(^|\.)(position_ids|rotary_emb\.inv_freq)$")
_PREFERRED = ("integrator.lm.model.embed_tokens.weight", "diffusion_connector.3.weight")  # kept among duplicates

COMPONENTS = {"tokenizer": "tokenizer.", "integrator": "integrator.", "transformer": "transformer.", "vae": "vae.",
              "diffusion_connector": "diffusion_connector.", "vae_connector": "vae_connector."}


@dataclass
class Report:
    """Where every tensor came from and what was left out, written to ``conversion.json`` next to the model."""

    kind: str
    sources: dict[str, str] = field(default_factory=dict)  # component -> file or folder
    mapped: int = 0
    dropped: dict[str, list[str]] = field(default_factory=dict)  # reason -> official keys
    initialised: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    groups: dict[str, dict[str, int]] = field(default_factory=dict)  # reason -> {official prefix: count}

    def drop(self, reason: str, key: str, prefix: str | None = None) -> None:
        self.dropped.setdefault(reason, []).append(key)
        g = self.groups.setdefault(reason, {})
        g[prefix or key] = g.get(prefix or key, 0) + 1

    def warn(self, msg: str) -> None:
        log.warning("%s", msg)
        self.warnings.append(msg)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["dropped"] = {r: {"count": len(ks), "prefixes": self.groups.get(r, {})} for r, ks in self.dropped.items()}
        del d["groups"]
        return d


@dataclass
class Conversion:
    """A converted model, not yet written: its config, tensors under our names (one key per shared tensor), the
    official text tokenizer files and the report."""

    config: PrefRestoreConfig
    state: dict[str, torch.Tensor]
    tokenizer_files: list[Path]
    report: Report
    adapter: Path | None = None  # an unmerged LoRA adapter folder that goes with the model (lora/)

    def to_model(self, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> PrefRestoreModel:
        """Build and load the model (eval mode) with the official text tokenizer: direct loading, no folder."""
        from .checkpoints import load_into
        from .models.text_tokenizer import load_text_tokenizer

        with tempfile.TemporaryDirectory() as tmp:
            _copy_files(self.tokenizer_files, Path(tmp))
            tok = load_text_tokenizer(tmp)
        model = PrefRestoreModel(self.config, tok)
        load_into(model, self.state, where=f"converted {self.report.kind} checkpoint")
        if self.adapter is not None:
            from .lora import load_lora

            load_lora(model, self.adapter, merge=False)
        if dtype is not None:
            model.to(dtype)
        return model.to(device).eval()


# ---------------------------------------------------------------------------------------------------------------
# Reading files (no pickle beyond torch's weights_only unpickler)


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
            raise CheckpointError(f"{p}: refused: the pickle needs {name}, which torch.load(weights_only=True) does "
                                  "not allow and prefrestore never unpickles; only tensors, plain containers "
                                  "and easydict.EasyDict are accepted") from None
        raise CheckpointError(f"{p}: not a readable torch file ({text[:200]}); re-download it") from None


def read_ta_tok(path: str | os.PathLike) -> tuple[dict, dict[str, torch.Tensor]]:
    """``ta_tok.pth`` -> (args as plain dicts, state dict)."""
    obj = load_torch_file(path, allow_easydict=True)
    model = obj.get("model") if isinstance(obj, dict) else None
    if not isinstance(model, dict) or not isinstance(model.get("sd"), dict):
        raise CheckpointError(f"{path}: not a TA-Tok checkpoint (expected {{'model': {{'args': ..., 'sd': ...}}}}, "
                              f"got {_describe(obj)})")
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
    for index in (d / f"{stem}.safetensors.index.json", d / f"pytorch_{stem}.bin.index.json" if stem == "model"
                  else d / f"{stem}.bin.index.json"):
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
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.json", "merges.txt", "chat_template.jinja", "chat_template.json")


def tokenizer_files(d: Path) -> list[Path]:
    files = [d / n for n in TOKENIZER_FILES if (d / n).is_file()]
    names = {f.name for f in files}
    if "tokenizer_config.json" not in names or not ({"tokenizer.json"} <= names or {"vocab.json", "merges.txt"} <= names):
        raise CheckpointError(f"{d}: text tokenizer files missing (need tokenizer_config.json and tokenizer.json, "
                              "or vocab.json + merges.txt); copy them from the official checkpoint")
    return files


def _copy_files(files: list[Path], dest: Path) -> None:
    dest.mkdir(parents=True, exist_ok=True)
    for f in files:
        shutil.copyfile(f, dest / f.name)


# ---------------------------------------------------------------------------------------------------------------
# Configs: what the official files record, the base preset for what they do not


def integrator_config(cfg: dict, tokenizer, *, where: str) -> IntegratorConfig:
    """HF ``config.json`` (Qwen3 fields + BLIP3o token ids) and the official tokenizer -> IntegratorConfig."""
    if cfg.get("model_type") not in ("blip3o_qwen", "blip3o_qwen_inference"):
        hint = " (already a prefrestore folder?)" if "format_version" in cfg else ""
        raise CheckpointError(f"{where}: model_type={cfg.get('model_type')!r}, expected 'blip3o_qwen' (a BLIP3o-NEXT "
                              f"/ Pref-Restore checkpoint){hint}")
    need = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "num_key_value_heads")
    absent = [k for k in need if not isinstance(cfg.get(k), int)]
    if absent:
        raise CheckpointError(f"{where}: config.json lacks {', '.join(absent)}")
    fixed = {"hidden_act": "silu", "attention_bias": False, "rope_scaling": None, "use_sliding_window": False}
    odd = [f"{k}={cfg[k]!r}" for k, v in fixed.items() if k in cfg and cfg[k] != v]
    if odd:
        raise CheckpointError(f"{where}: unsupported LM settings {', '.join(odd)} (prefrestore builds Qwen3 with "
                              f"{fixed})")
    rope = cfg.get("rope_theta", (cfg.get("rope_parameters") or {}).get("rope_theta", 1_000_000.0))
    vocab = tokenizer.get_vocab()

    def tok(name: str) -> int:
        if name not in vocab:
            raise CheckpointError(f"{where}: the tokenizer has no {name} token; it is not a BLIP3o-NEXT tokenizer")
        return int(vocab[name])

    ids = dict(pad_token_id=tok("<|endoftext|>"), chat_start_id=tok("<|im_start|>"), chat_end_id=tok("<|im_end|>"),
               image_start_tag_id=tok("<im_start>"), image_end_tag_id=tok("<im_end>"),
               scale_start_token_id=tok("<S0>"), image_start_token_id=tok("<I0>"))
    clash = [f"{k}: config {cfg[k]} != tokenizer {v}" for k, v in ids.items() if k in cfg and cfg[k] != v]
    num_image = cfg.get("num_image_tokens") or sum(1 for t in vocab if re.fullmatch(r"<I\d+>", t))
    last = f"<I{num_image - 1}>"
    if last not in vocab or vocab[last] != ids["image_start_token_id"] + num_image - 1:
        clash.append(f"{last} is not image_start_token_id + {num_image - 1}")
    if "image_end_token_id" in cfg and cfg["image_end_token_id"] != ids["image_start_token_id"] + num_image - 1:
        clash.append(f"image_end_token_id {cfg['image_end_token_id']} != image_start_token_id + num_image_tokens - 1")
    if clash:
        raise CheckpointError(f"{where}: config.json and the tokenizer disagree ({'; '.join(clash)})")
    try:
        return IntegratorConfig(
            vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"], intermediate_size=cfg["intermediate_size"],
            num_layers=cfg["num_hidden_layers"], num_heads=cfg["num_attention_heads"],
            num_kv_heads=cfg["num_key_value_heads"],
            head_dim=cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"],
            rope_theta=float(rope), rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            max_position_embeddings=int(cfg.get("max_position_embeddings", 40960)),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", True)), num_image_tokens=int(num_image), **ids)
    except ValueError as err:
        raise CheckpointError(f"{where}: {err}") from None


def tokenizer_config(args: dict | None, sd: dict[str, torch.Tensor], base: TokenizerConfig, *,
                     where: str) -> TokenizerConfig:
    """TA-Tok dims from tensor shapes (+ ``args.input_size``); heads and eps (not recorded) from ``base``."""
    try:
        pe = sd["encoder.embeddings.patch_embedding.weight"]  # (H, 3, p, p)
        pos = sd["encoder.embeddings.position_embedding.weight"]  # (T, H)
        fc1 = sd["encoder.encoder.layers.0.mlp.fc1.weight"]  # (I, H)
        emb = sd["bottleneck.regularizer.embedding.weight"]  # (K, E)
    except KeyError as err:
        raise CheckpointError(f"{where}: TA-Tok tensor {err.args[0]} missing") from None
    layers = {int(m[1]) for k in sd if (m := re.match(r"encoder\.encoder\.layers\.(\d+)\.", k))}
    args = args or {}
    size = int(args.get("input_size", base.image_size))
    cfg = TokenizerConfig(image_size=size, patch_size=pe.shape[-1], hidden_size=pe.shape[0],
                          intermediate_size=fc1.shape[0], num_layers=len(layers), num_heads=base.num_heads,
                          layer_norm_eps=base.layer_norm_eps, feature_layer=int(args.get("select_layer_id", -2)),
                          codebook_size=emb.shape[0], codebook_dim=emb.shape[1])
    problems = []
    if cfg.num_tokens != pos.shape[0]:
        problems.append(f"{pos.shape[0]} position embeddings but input_size {size} / patch {cfg.patch_size} gives "
                        f"{cfg.num_tokens} tokens")
    if cfg.hidden_size % cfg.num_heads:
        problems.append(f"width {cfg.hidden_size} is not divisible by the base preset's {cfg.num_heads} heads")
    tokens = args.get("bottleneck_token_num")
    if tokens is not None and tokens != cfg.num_tokens:
        problems.append(f"args.bottleneck_token_num={tokens} != {cfg.num_tokens}")
    reg = ((args.get("bottleneck") or {}).get("args") or {}).get("regularizer") or {}
    size_arg = (reg.get("args") or {}).get("codebook_size")
    if size_arg is not None and size_arg != cfg.codebook_size:
        problems.append(f"args codebook_size={size_arg} != embedding rows {cfg.codebook_size}")
    if args.get("pool_scale", 1) != 1:
        problems.append(f"pool_scale={args['pool_scale']} (Pref-Restore uses 1)")
    if problems:
        raise CheckpointError(f"{where}: TA-Tok layout not understood ({'; '.join(problems)})")
    return cfg


def _diffusers_fields(cls, cfg: dict, ours: dict, *, where: str) -> None:
    """Every field of a diffusers config must equal what prefrestore builds (missing fields: the class default)."""
    import inspect

    params = inspect.signature(cls.__init__).parameters
    odd = []
    for k, v in cfg.items():
        if k.startswith("_"):
            continue
        if k not in params:
            odd.append(f"{k} (unknown to diffusers {cls.__name__})")
            continue
        want = ours.get(k, params[k].default)
        if _norm(v) != _norm(want) and not (k == "out_channels" and v is None):
            odd.append(f"{k}={v!r} (prefrestore builds {want!r})")
    if odd:
        raise CheckpointError(f"{where}: unsupported settings: {'; '.join(odd)}")


def _norm(v):
    if isinstance(v, (list, tuple)):
        return tuple(_norm(x) for x in v)
    if isinstance(v, float) and v.is_integer():
        return int(v)
    return v


def transformer_config(cfg: dict, *, where: str) -> TransformerConfig:
    """diffusers ``transformer/config.json`` -> TransformerConfig (missing fields take the diffusers defaults)."""
    import inspect

    from diffusers import SanaTransformer2DModel

    defaults = {k: p.default for k, p in inspect.signature(SanaTransformer2DModel.__init__).parameters.items()}
    names = [f.name for f in dataclasses.fields(TransformerConfig)]
    out = TransformerConfig(**{k: cfg.get(k, defaults[k]) for k in names})
    _diffusers_fields(SanaTransformer2DModel, cfg, out.kwargs(), where=where)
    return out


def autoencoder_config(cfg: dict, *, where: str) -> AutoencoderConfig:
    """diffusers ``vae/config.json`` (AutoencoderDC) -> AutoencoderConfig."""
    import inspect

    from diffusers import AutoencoderDC

    d = {k: p.default for k, p in inspect.signature(AutoencoderDC.__init__).parameters.items()}
    d.update({k: v for k, v in cfg.items() if not k.startswith("_")})
    n = len(d["encoder_block_out_channels"])
    per = {k: tuple([d[k]] * n if isinstance(d[k], str) else d[k]) for k in ("encoder_block_types",
                                                                            "decoder_block_types")}
    pairs = [("encoder_block_types", "decoder_block_types"), ("encoder_block_out_channels",
             "decoder_block_out_channels"), ("encoder_qkv_multiscales", "decoder_qkv_multiscales")]
    diff = [f"{a} != {b}" for a, b in pairs if _norm(per.get(a, d[a])) != _norm(per.get(b, d[b]))]
    if diff:
        raise CheckpointError(f"{where}: unsupported asymmetric autoencoder ({', '.join(diff)})")
    out = AutoencoderConfig(
        latent_channels=d["latent_channels"], attention_head_dim=d["attention_head_dim"],
        block_types=per["encoder_block_types"], block_out_channels=tuple(d["encoder_block_out_channels"]),
        encoder_layers_per_block=tuple(d["encoder_layers_per_block"]),
        decoder_layers_per_block=tuple(d["decoder_layers_per_block"]),
        qkv_multiscales=tuple(tuple(m) for m in d["encoder_qkv_multiscales"]), scaling_factor=d["scaling_factor"])
    ours = out.kwargs()
    cfg = {**cfg, **{k: list(v) for k, v in per.items() if k in cfg}}
    _diffusers_fields(AutoencoderDC, cfg, ours, where=where)
    return out


# ---------------------------------------------------------------------------------------------------------------
# Mapping keys


@dataclass
class _Mapped:
    state: dict[str, torch.Tensor]
    origin: dict[str, str]  # our key -> official key
    unknown: list[str]


def map_keys(sd: dict[str, torch.Tensor], rules: tuple[tuple, ...], report: Report, *, prefix: str = "") -> _Mapped:
    """Apply ``rules`` to every key of ``sd`` (``prefix`` is prepended to official names for matching)."""
    out = _Mapped({}, {}, [])
    for key, v in sd.items():
        name = prefix + key
        for rule in rules:
            if name.startswith(rule[0]):
                if rule[1] is None:
                    report.drop(rule[2], name, rule[0] + "*")
                elif _BUFFERS.search(name):
                    report.drop("non-persistent buffer in current transformers (recomputed)", name)
                else:
                    ours = rule[1] + name[len(rule[0]):]
                    out.state[ours], out.origin[ours] = v, name
                break
        else:
            out.unknown.append(name)
    return out


def _official_name(ours: str, rules: tuple[tuple, ...]) -> str:
    for rule in rules:
        if rule[1] is not None and ours.startswith(rule[1]):
            return rule[0] + ours[len(rule[1]):]
    return "?"


def _expected_name(ours: str, report: Report, where_ckpt: str) -> str:
    """The official key that should have supplied ``ours``, in the file that supplies its component."""
    source = _source_of(ours, report)
    if source == where_ckpt:
        return _official_name(ours, BLIP3O_RULES)
    if ours.startswith("tokenizer."):
        return _official_name(ours, TATOK_RULES)
    return ours.split(".", 1)[1]  # SANA folder: diffusers names


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    return a.shape == b.shape and torch.equal(a, b.to(a.dtype))


# ---------------------------------------------------------------------------------------------------------------
# Assembly


def convert_official(
    kind: Kind,
    checkpoint: str | os.PathLike,
    *,
    ta_tok: str | os.PathLike | None = None,
    sana: str | os.PathLike | None = None,
    base: PrefRestoreConfig | None = None,
    strict: bool = True,
    seed: int = 0,
) -> Conversion:
    """Read an official Stage-A (``kind="stage-a"``) or BLIP3o-NEXT (``kind="blip3o"``) checkpoint folder plus the
    optional side files and return the checked Conversion. ``base`` (default: the paper preset) supplies what the
    official files do not record: SigLIP heads/eps, face resolution, sampling defaults, and the SANA/DC-AE configs
    when no SANA folder is given (the checkpoint's tensor shapes are then checked against them)."""
    from .models.presets import paper
    from .models.text_tokenizer import load_text_tokenizer

    if kind not in KINDS:
        raise ValueError(f"unknown kind={kind!r}; expected one of {KINDS}")
    base = base or paper()
    ckpt = Path(checkpoint)
    if not ckpt.is_dir():
        raise CheckpointError(f"{ckpt}: not a folder; expected an HF checkpoint folder (config.json + safetensors)")
    report = Report(kind)
    problems = _Problems()

    # -- checkpoint: config, tokenizer, weights
    hf_cfg = read_json(ckpt / "config.json")
    tok_files = tokenizer_files(ckpt)
    with tempfile.TemporaryDirectory() as tmp:
        _copy_files(tok_files, Path(tmp))
        try:
            text_tok = load_text_tokenizer(tmp)
        except (OSError, ValueError, KeyError) as err:
            raise CheckpointError(f"{ckpt}: the tokenizer files do not load ({err})") from None
    integrator = integrator_config(hf_cfg, text_tok, where=str(ckpt / "config.json"))
    raw, files = read_weights(ckpt, "model")
    where_ckpt = str(ckpt) if len(files) > 1 else str(files[0])
    m = map_keys(raw, BLIP3O_RULES, report)
    problems.extend(where_ckpt, "unknown keys", m.unknown)
    state, origin = m.state, {k: (v, where_ckpt) for k, v in m.origin.items()}
    for comp in ("integrator", "diffusion_connector"):
        report.sources[comp] = where_ckpt

    def has(comp: str) -> bool:
        return any(k.startswith(COMPONENTS[comp]) for k in state)

    # -- TA-Tok: the checkpoint's copy wins (what the official from_pretrained loads); ta_tok.pth fills in or is checked
    _check_scale_layer(raw, strict=strict, problems=problems, report=report, where=where_ckpt)
    del raw
    in_ckpt = has("tokenizer")
    args = None
    if ta_tok is not None:
        args, sd = read_ta_tok(ta_tok)
        side_report = Report(kind)
        side = map_keys(sd, TATOK_RULES, side_report)
        problems.extend(str(ta_tok), "unknown keys", side.unknown)
        if in_ckpt:
            differ = [k for k, v in side.state.items() if k not in state or not _same(state[k], v)]
            if differ:
                msg = (f"{ta_tok} and the TA-Tok copy in {where_ckpt} differ in {len(differ)} tensors "
                       f"({', '.join(differ[:4])}); the checkpoint's copy is what the official model uses, "
                       "drop --ta-tok to use it")
                if strict:
                    problems.append(msg)
                else:
                    report.warn(msg + " (using the checkpoint's copy)")
            report.notes.append(f"TA-Tok weights from the checkpoint; {ta_tok} was compared against them")
        else:
            state.update(side.state)
            origin.update({k: (v, str(ta_tok)) for k, v in side.origin.items()})
            for reason, keys in side_report.dropped.items():
                report.dropped.setdefault(reason, []).extend(keys)
                report.groups.setdefault(reason, {}).update(side_report.groups.get(reason, {}))
    if not has("tokenizer"):
        raise CheckpointError(f"{where_ckpt}: no TA-Tok weights ({_VT}*); pass --ta-tok ta_tok.pth (csuhan/TA-Tok)")
    report.sources["tokenizer"] = where_ckpt if in_ckpt else str(ta_tok)
    if args is None:
        report.notes.append(f"TA-Tok input size from the {base.name!r} preset ({base.tokenizer.image_size}); "
                            "ta_tok.pth records it (args.input_size)")
    tatok_sd = {k[len("tokenizer."):]: v for k, v in state.items() if k.startswith("tokenizer.")}
    tok_cfg = tokenizer_config(args, tatok_sd, base.tokenizer, where=report.sources["tokenizer"])

    # -- SANA transformer and DC-AE
    tr_cfg, ae_cfg = base.transformer, base.autoencoder
    sana_dir = Path(sana) if sana is not None else _local_sana(hf_cfg.get("diffusion_name_or_path"))
    if sana_dir is not None:
        tr_cfg = transformer_config(read_json(sana_dir / "transformer" / "config.json"),
                                    where=str(sana_dir / "transformer" / "config.json"))
        ae_cfg = autoencoder_config(read_json(sana_dir / "vae" / "config.json"),
                                    where=str(sana_dir / "vae" / "config.json"))
    else:
        report.notes.append(f"no SANA folder: transformer/autoencoder configs from the {base.name!r} preset, "
                            "checked against the checkpoint's tensor shapes")
    for comp, sub in (("transformer", "transformer"), ("vae", "vae")):
        if has(comp):
            report.sources[comp] = where_ckpt
            if sana_dir is not None:
                report.notes.append(f"{comp}: weights from the checkpoint (fine-tuned); {sana_dir / sub} used for "
                                    "its config only")
        elif sana_dir is None:
            raise CheckpointError(f"{where_ckpt}: no {'model.sana' if comp == 'transformer' else 'model.sana_vae'}.* "
                                  "weights; pass --sana SANA1.5_1.6B_1024px_diffusers")
        else:
            sd, sfiles = read_weights(sana_dir / sub, "diffusion_pytorch_model")
            where = str(sfiles[0]) if len(sfiles) == 1 else str(sana_dir / sub)
            for k, v in sd.items():
                state[COMPONENTS[comp] + k], origin[COMPONENTS[comp] + k] = v, (k, where)
            report.sources[comp] = where

    # -- config and the expected tensors
    try:
        config = dataclasses.replace(base, name=f"official-{kind}", tokenizer=tok_cfg, integrator=integrator,
                                     transformer=tr_cfg, autoencoder=ae_cfg)
    except ValueError as err:
        raise CheckpointError(f"{ckpt}: the parts do not fit together ({err})") from None
    with torch.device("meta"):
        meta = PrefRestoreModel(config)
    expected = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    from .checkpoints import shared_aliases

    aliases = shared_aliases(meta)

    # -- duplicates of shared tensors: one Parameter in the model, two keys in the official files
    for key in _PREFERRED:
        group = [key, *aliases.get(key, ())]
        present = [k for k in group if k in state]
        for k in present[1:]:
            if not _same(state[present[0]], state[k]):
                msg = (f"{origin[k][1]}: {origin[k][0]} differs from {origin[present[0]][0]}, but they are one "
                       "Parameter in the official model (tied embedding / shared RMSNorm)")
                if strict:
                    problems.append(msg)
                else:
                    report.warn(msg + f"; using {origin[present[0]][0]}")
            report.drop(f"duplicate of a shared tensor (stored once; {present[0]} in our model)", origin[k][0])
            del state[k]
    if kind == "blip3o" and not has("vae_connector"):
        _init_vae_connector(state, expected, integrator_std=float(hf_cfg.get("initializer_range", 0.02)),
                            seed=seed, report=report)
        report.sources["vae_connector"] = "initialised (absent from BLIP3o-NEXT)"
    else:
        report.sources["vae_connector"] = where_ckpt

    # -- every key accounted for
    have = set(state)
    missing = [k for k in expected if k not in have and not any(a in have for a in aliases.get(k, ()))]
    shapes = [k for k, v in state.items() if k in expected and tuple(v.shape) != expected[k]]
    for k in missing:
        problems.add(_source_of(k, report), "missing", f"{_expected_name(k, report, where_ckpt)} (-> {k})")
    for k in shapes:
        problems.add(origin[k][1], "wrong shape", f"{origin[k][0]} {tuple(state[k].shape)} != {expected[k]}")
    extra = [k for k in state if k not in expected]
    problems.extend_by(extra, lambda k: (origin[k][1], "unknown keys", origin[k][0]))
    fatal = bool(missing or shapes)
    if problems and (strict or fatal):
        raise CheckpointError(problems.summary())
    for p in problems.lines():
        report.warn(f"ignored (non-strict): {p}")
    for k in extra:
        del state[k]
    report.mapped = len(state)
    return Conversion(config, state, tok_files, report)


def _local_sana(ref) -> Path | None:
    """``diffusion_name_or_path`` from the official config, if it is a local folder or an already-cached hub repo."""
    if not isinstance(ref, str) or not ref:
        return None
    p = Path(ref)
    if (p / "transformer" / "config.json").is_file():
        return p
    if ref.count("/") == 1 and not ref.startswith(("/", ".")):
        try:
            d = resolve_official(ref, "sana")
        except UserError:
            return None
        return d
    return None


def _check_scale_layer(raw: dict[str, torch.Tensor], *, strict: bool, problems: _Problems, report: Report,
                       where: str) -> None:
    """The checkpoint's TA-Tok ScalingLayer must be the identity (BLIP3o's override of TA-Tok's 0.5/0.5, applied
    after the SigLIP processor's [-1, 1] output): prefrestore feeds [-1, 1] images straight to the tower."""
    shift, scale = raw.get(_VT + "scale_layer.shift"), raw.get(_VT + "scale_layer.scale")
    if shift is None and scale is None:
        return
    if shift is None or scale is None or shift.float().abs().max() != 0 or (scale.float() - 1).abs().max() != 0:
        msg = (f"{where}: {_VT}scale_layer is not the identity (shift 0, scale 1); the official model would "
               "normalise TA-Tok inputs differently from prefrestore")
        if strict:
            problems.append(msg)
        else:
            report.warn(msg)


def _init_vae_connector(state, expected, *, integrator_std: float, seed: int, report: Report) -> None:
    """HF's init for keys missing from a checkpoint: Linear weight ~ N(0, initializer_range), bias 0."""
    g = torch.Generator().manual_seed(seed)
    for k in ("vae_connector.0.weight", "vae_connector.0.bias", "vae_connector.2.weight", "vae_connector.2.bias"):
        t = torch.zeros(expected[k])
        if k.endswith("weight"):
            t.normal_(0.0, integrator_std, generator=g)
        state[k] = t
        report.initialised.append(k)


def _source_of(key: str, report: Report) -> str:
    for comp, prefix in COMPONENTS.items():
        if key.startswith(prefix):
            return report.sources.get(comp, "?")
    return "?"


class _Problems:
    """Problems grouped by (file, kind), so that one line can name them all: ``file: 3 missing: a, b, c``."""

    def __init__(self):
        self.groups: dict[tuple[str, str], list[str]] = {}

    def add(self, where: str, label: str, item: str) -> None:
        self.groups.setdefault((where, label), []).append(item)

    def append(self, msg: str) -> None:  # a free-standing message (already names its file)
        self.add("", "", msg)

    def extend(self, where: str, label: str, items: list[str]) -> None:
        for item in items:
            self.add(where, label, item)

    def extend_by(self, keys: list[str], fn: Callable[[str], tuple[str, str, str]]) -> None:
        for k in keys:
            self.add(*fn(k))

    def __bool__(self) -> bool:
        return bool(self.groups)

    def lines(self, limit: int = 6) -> list[str]:
        out = []
        for (where, label), items in self.groups.items():
            if not label:
                out.extend(items)
                continue
            more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
            out.append(f"{where}: {len(items)} {label}: {', '.join(items[:limit])}{more}")
        return out

    def summary(self) -> str:
        return "; ".join(self.lines()) + "; the files do not match each other or the official layout"



# ---------------------------------------------------------------------------------------------------------------
# LoRA, output folder, and the entry points


def apply_lora(conv: Conversion, path: str | os.PathLike, *, merge: bool):
    """Check the DiffusionNFT adapter at ``path`` against the converted transformer; merge it into the weights
    (``W + scale * B @ A``) or keep it as a separate peft adapter (written to ``lora/``)."""
    from .lora import check_lora, merge_into_state, read_lora

    adapter = read_lora(path)
    where = f"{conv.report.kind} transformer"
    if merge:
        # float32, so that merging loses nothing; write_model(dtype=...) rounds afterwards if asked to
        conv.state = merge_into_state(conv.state, adapter, prefix="transformer.", where=where, dtype=torch.float32)
        conv.config = dataclasses.replace(conv.config, name=conv.config.name + "+lora")
        conv.report.sources["lora"] = f"{adapter.path} (merged, scale {adapter.scale:g})"
    else:
        sub = {k[len("transformer."):]: v for k, v in conv.state.items() if k.startswith("transformer.")}
        check_lora(adapter, sub, where=where)
        conv.adapter = adapter.path
        conv.report.sources["lora"] = f"{adapter.path} (unmerged, copied to lora/)"
    if (adapter.path / "old" / "adapter_config.json").is_file():
        conv.report.notes.append(f"{adapter.path / 'old'}: the DiffusionNFT sampling ('old') adapter, not used; "
                                 "pass that folder as --lora to convert it instead")
    return adapter


def write_model(conv: Conversion, out: str | os.PathLike, *, dtype: torch.dtype | None = None,
                max_shard_size: str = "5GB") -> Path:
    """Write ``conv`` as a prefrestore model folder (checkpoints.save_pretrained layout) + ``tokenizer/`` (the
    official files, verbatim) + ``conversion.json`` (+ ``lora/`` for an unmerged adapter). ``out`` must be new/empty;
    the folder is built under a temporary name and renamed into place, so a killed conversion leaves no half model."""
    from .io_safety import atomic_write_text, staged_folder

    with staged_folder(out) as tmp:
        _write_model(conv, tmp, dtype=dtype, max_shard_size=max_shard_size, write_text=atomic_write_text)
    return Path(out)


def _write_model(conv: Conversion, out: Path, *, dtype, max_shard_size: str, write_text) -> None:
    from .checkpoints import save_pretrained, shared_aliases
    from .lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS

    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v) for k, v in conv.state.items()}
    with torch.device("meta"):
        model = PrefRestoreModel(conv.config)
    aliases = shared_aliases(model)
    full = dict(state)
    for k, others in aliases.items():
        if k not in full:
            full[k] = next(state[o] for o in others if o in state)
    model.load_state_dict(full, strict=True, assign=True)  # real tensors into the meta skeleton; no copies
    if conv.config.integrator.tie_word_embeddings:
        model.integrator.lm.lm_head.weight = model.integrator.lm.model.embed_tokens.weight
    save_pretrained(model, out, max_shard_size=max_shard_size)
    _copy_files(conv.tokenizer_files, out / "tokenizer")
    if conv.adapter is not None:
        _copy_files([conv.adapter / ADAPTER_WEIGHTS, conv.adapter / ADAPTER_CONFIG], out / "lora")
    report = {**conv.report.to_dict(), "dtype": str(dtype or "as in the sources").replace("torch.", "")}
    write_text(out / "conversion.json", json.dumps(report, indent=2))


def load_official(
    kind: Kind,
    checkpoint: str | os.PathLike,
    *,
    ta_tok: str | os.PathLike | None = None,
    sana: str | os.PathLike | None = None,
    lora: str | os.PathLike | None = None,
    merge_lora: bool = True,
    base: PrefRestoreConfig | None = None,
    strict: bool = True,
    device: str | torch.device = "cpu",
    dtype: torch.dtype | None = None,
    allow_download: bool = False,
) -> PrefRestoreModel:
    """Direct loading: official files (paths or hub ids) -> PrefRestoreModel in eval mode, nothing written."""
    conv = convert_official(kind, resolve_official(str(checkpoint), kind, allow_download=allow_download),
                            ta_tok=_opt(ta_tok, "ta-tok", allow_download), sana=_opt(sana, "sana", allow_download),
                            base=base, strict=strict)
    if lora is not None:
        apply_lora(conv, lora, merge=merge_lora)
    return conv.to_model(device=device, dtype=dtype)


def from_prefrestore(directory: str | os.PathLike) -> Conversion:
    """An existing prefrestore model folder as a Conversion (to add a LoRA adapter to it)."""
    from .checkpoints import load_state_dict, read_config

    d = Path(directory)
    files = [f for f in sorted((d / "tokenizer").glob("*")) if f.is_file()]
    if not files:
        raise CheckpointError(f"{d / 'tokenizer'}: missing text tokenizer folder")
    return Conversion(read_config(d), load_state_dict(d), files, Report("prefrestore", sources={"model": str(d)}))


def _opt(ref, what: str, allow_download: bool) -> Path | None:
    return None if ref is None else resolve_official(str(ref), what, allow_download=allow_download)


# ---------------------------------------------------------------------------------------------------------------
# Hub ids, offline-first

_HUB_PATTERNS = {
    "stage-a": ["*.json", "*.safetensors", "*.txt", "*.jinja"],
    "blip3o": ["*.json", "*.safetensors", "*.txt", "*.jinja"],
    "sana": ["model_index.json", "transformer/*", "vae/*", "scheduler/*"],
}
_WHAT = {"stage-a": "Stage-A checkpoint", "blip3o": "BLIP3o-NEXT checkpoint", "sana": "SANA diffusers folder",
         "ta-tok": "TA-Tok file"}


def missing_files(d: Path, what: str) -> list[str]:
    """Files an official folder of kind ``what`` lacks (empty when complete)."""
    out: list[str] = []

    def weights(sub: Path, stem: str, label: str) -> None:
        try:
            files = weight_files(sub, stem)
        except CheckpointError:
            files = None
        if files is None:
            out.append(f"{label}{stem}.safetensors (or {stem}.safetensors.index.json + its shards)")
        else:
            out.extend(label + f.name for f in files if not f.is_file())

    if what in ("stage-a", "blip3o"):
        if not (d / "config.json").is_file():
            out.append("config.json")
        weights(d, "model", "")
        if not (d / "tokenizer_config.json").is_file():
            out.append("tokenizer_config.json")
        if not (d / "tokenizer.json").is_file() and not ((d / "vocab.json").is_file() and (d / "merges.txt").is_file()):
            out.append("tokenizer.json")
    elif what == "sana":
        for sub in ("transformer", "vae"):
            if not (d / sub / "config.json").is_file():
                out.append(f"{sub}/config.json")
            weights(d / sub, "diffusion_pytorch_model", f"{sub}/")
    else:
        raise ValueError(f"unknown what={what!r}")
    return out


def resolve_official(ref: str, what: str, *, allow_download: bool = False, cache_dir: str | None = None) -> Path:
    """A local path or a Hugging Face repo id (looked up in the local HF cache; downloaded only with
    ``allow_download``) -> local folder (file for ``ta-tok``). Incomplete -> one line naming the missing files."""
    p = Path(ref).expanduser()
    if p.exists():
        if what == "ta-tok":
            f = p / "ta_tok.pth" if p.is_dir() else p
            if not f.is_file():
                raise CheckpointError(f"{p}: no ta_tok.pth here")
            return f
        missing = missing_files(p, what)
        if missing:
            raise CheckpointError(f"{p}: incomplete {_WHAT[what]}, missing {', '.join(missing)}")
        return p
    if ref.count("/") != 1 or ref.startswith((".", "/", "~")):
        raise UserError(f"{ref}: no such file or folder, and not a Hugging Face repo id (ORG/NAME)")
    from huggingface_hub import constants, hf_hub_download, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    cache = cache_dir or constants.HF_HUB_CACHE
    if what == "ta-tok":
        try:
            return Path(hf_hub_download(ref, "ta_tok.pth", cache_dir=cache_dir, local_files_only=not allow_download))
        except (LocalEntryNotFoundError, OSError, ValueError):
            raise UserError(f"{ref}: ta_tok.pth is not in the local Hugging Face cache ({cache}) and downloads are "
                            f"off; on a machine with network run `hf download {ref} ta_tok.pth --local-dir DIR`, "
                            "copy DIR here and pass --ta-tok DIR/ta_tok.pth (or add --download)") from None
    d, missing = None, ["everything"]
    try:
        d = Path(snapshot_download(ref, cache_dir=cache_dir, local_files_only=True))
        missing = missing_files(d, what)
    except (LocalEntryNotFoundError, OSError, ValueError):
        pass
    if missing and allow_download:
        d = Path(snapshot_download(ref, cache_dir=cache_dir, allow_patterns=_HUB_PATTERNS[what]))
        missing = missing_files(d, what)
    if missing:
        if missing == ["everything"]:
            missing = missing_files(Path(tempfile.gettempdir()) / "prefrestore-nonexistent", what)
        include = " ".join(f"'{p}'" for p in _HUB_PATTERNS[what])
        raise UserError(f"{ref}: not complete in the local Hugging Face cache ({cache}), downloads are off; missing "
                        f"{', '.join(missing)}. On a machine with network run `hf download {ref} --include {include} "
                        f"--local-dir DIR`, copy DIR here and pass DIR instead of {ref} (or add --download)")
    assert d is not None
    return d


def convert(
    out: str | os.PathLike,
    *,
    stage_a: str | None = None,
    blip3o: str | None = None,
    model: str | None = None,
    ta_tok: str | None = None,
    sana: str | None = None,
    lora: str | None = None,
    merge: bool = False,
    dtype: torch.dtype | None = None,
    strict: bool = True,
    base: PrefRestoreConfig | None = None,
    allow_download: bool = False,
    seed: int = 0,
) -> Report:
    """The ``prefrestore convert`` pipeline: exactly one of stage_a / blip3o / model (an existing prefrestore folder,
    to add ``lora`` to), optional side files and LoRA -> model folder ``out``. Returns the report."""
    from .io_safety import check_new_folder

    check_new_folder(out)  # before minutes of loading, not after
    chosen = [n for n, v in (("stage_a", stage_a), ("blip3o", blip3o), ("model", model)) if v is not None]
    if len(chosen) != 1:
        raise UserError("give exactly one source: --stage-a DIR, --blip3o DIR or --model DIR (got "
                        f"{', '.join(chosen) or 'none'})")
    if model is not None:
        if lora is None:
            raise UserError("--model only makes sense with --lora (it is already a prefrestore model)")
        conv = from_prefrestore(model)
    else:
        kind: Kind = "stage-a" if stage_a is not None else "blip3o"
        ckpt = resolve_official(stage_a or blip3o, kind, allow_download=allow_download)
        if kind == "blip3o" and sana is None:
            log.info("no --sana: SANA/DC-AE weights must then be inside the BLIP3o checkpoint")
        conv = convert_official(kind, ckpt, ta_tok=_opt(ta_tok, "ta-tok", allow_download),
                                sana=_opt(sana, "sana", allow_download), base=base, strict=strict, seed=seed)
    if lora is not None:
        apply_lora(conv, lora, merge=merge)
    elif merge:
        raise UserError("--merge needs --lora DIR")
    write_model(conv, out, dtype=dtype)
    return conv.report

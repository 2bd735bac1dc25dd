"""Config inference: what the official files record (HF / diffusers config.json, TA-Tok args, tensor shapes) ->
our IntegratorConfig / TokenizerConfig / TransformerConfig / AutoencoderConfig; the base preset for the rest."""

from __future__ import annotations

import dataclasses
import re

import torch

from ..errors import CheckpointError
from ..models.integrator import IntegratorConfig
from ..models.restorer import AutoencoderConfig, TransformerConfig
from ..models.tatok import TokenizerConfig

# ---------------------------------------------------------------------------------------------------------------
# Configs: what the official files record, the base preset for what they do not


def integrator_config(cfg: dict, tokenizer, *, where: str) -> IntegratorConfig:
    """HF ``config.json`` (Qwen3 fields + BLIP3o token ids) and the official tokenizer -> IntegratorConfig."""
    if cfg.get("model_type") not in ("blip3o_qwen", "blip3o_qwen_inference"):
        hint = " (already a prefrestore folder?)" if "format_version" in cfg else ""
        raise CheckpointError(
            f"{where}: model_type={cfg.get('model_type')!r}, expected 'blip3o_qwen' (a BLIP3o-NEXT "
            f"/ Pref-Restore checkpoint){hint}"
        )
    need = (
        "vocab_size",
        "hidden_size",
        "intermediate_size",
        "num_hidden_layers",
        "num_attention_heads",
        "num_key_value_heads",
    )
    absent = [k for k in need if not isinstance(cfg.get(k), int)]
    if absent:
        raise CheckpointError(f"{where}: config.json lacks {', '.join(absent)}")
    fixed = {"hidden_act": "silu", "attention_bias": False, "rope_scaling": None, "use_sliding_window": False}
    odd = [f"{k}={cfg[k]!r}" for k, v in fixed.items() if k in cfg and cfg[k] != v]
    if odd:
        raise CheckpointError(
            f"{where}: unsupported LM settings {', '.join(odd)} (prefrestore builds Qwen3 with {fixed})"
        )
    rope = cfg.get("rope_theta", (cfg.get("rope_parameters") or {}).get("rope_theta", 1_000_000.0))
    vocab = tokenizer.get_vocab()

    def tok(name: str) -> int:
        if name not in vocab:
            raise CheckpointError(f"{where}: the tokenizer has no {name} token; it is not a BLIP3o-NEXT tokenizer")
        return int(vocab[name])

    ids = dict(
        pad_token_id=tok("<|endoftext|>"),
        chat_start_id=tok("<|im_start|>"),
        chat_end_id=tok("<|im_end|>"),
        image_start_tag_id=tok("<im_start>"),
        image_end_tag_id=tok("<im_end>"),
        scale_start_token_id=tok("<S0>"),
        image_start_token_id=tok("<I0>"),
    )
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
            vocab_size=cfg["vocab_size"],
            hidden_size=cfg["hidden_size"],
            intermediate_size=cfg["intermediate_size"],
            num_layers=cfg["num_hidden_layers"],
            num_heads=cfg["num_attention_heads"],
            num_kv_heads=cfg["num_key_value_heads"],
            head_dim=cfg.get("head_dim") or cfg["hidden_size"] // cfg["num_attention_heads"],
            rope_theta=float(rope),
            rms_norm_eps=float(cfg.get("rms_norm_eps", 1e-6)),
            max_position_embeddings=int(cfg.get("max_position_embeddings", 40960)),
            tie_word_embeddings=bool(cfg.get("tie_word_embeddings", True)),
            num_image_tokens=int(num_image),
            **ids,
        )
    except ValueError as err:
        raise CheckpointError(f"{where}: {err}") from None


def tokenizer_config(
    args: dict | None, sd: dict[str, torch.Tensor], base: TokenizerConfig, *, where: str
) -> TokenizerConfig:
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
    cfg = TokenizerConfig(
        image_size=size,
        patch_size=pe.shape[-1],
        hidden_size=pe.shape[0],
        intermediate_size=fc1.shape[0],
        num_layers=len(layers),
        num_heads=base.num_heads,
        layer_norm_eps=base.layer_norm_eps,
        feature_layer=int(args.get("select_layer_id", -2)),
        codebook_size=emb.shape[0],
        codebook_dim=emb.shape[1],
    )
    problems = []
    if cfg.num_tokens != pos.shape[0]:
        problems.append(
            f"{pos.shape[0]} position embeddings but input_size {size} / patch {cfg.patch_size} gives "
            f"{cfg.num_tokens} tokens"
        )
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
    per = {
        k: tuple([d[k]] * n if isinstance(d[k], str) else d[k]) for k in ("encoder_block_types", "decoder_block_types")
    }
    pairs = [
        ("encoder_block_types", "decoder_block_types"),
        ("encoder_block_out_channels", "decoder_block_out_channels"),
        ("encoder_qkv_multiscales", "decoder_qkv_multiscales"),
    ]
    diff = [f"{a} != {b}" for a, b in pairs if _norm(per.get(a, d[a])) != _norm(per.get(b, d[b]))]
    if diff:
        raise CheckpointError(f"{where}: unsupported asymmetric autoencoder ({', '.join(diff)})")
    out = AutoencoderConfig(
        latent_channels=d["latent_channels"],
        attention_head_dim=d["attention_head_dim"],
        block_types=per["encoder_block_types"],
        block_out_channels=tuple(d["encoder_block_out_channels"]),
        encoder_layers_per_block=tuple(d["encoder_layers_per_block"]),
        decoder_layers_per_block=tuple(d["decoder_layers_per_block"]),
        qkv_multiscales=tuple(tuple(m) for m in d["encoder_qkv_multiscales"]),
        scaling_factor=d["scaling_factor"],
    )
    ours = out.kwargs()
    cfg = {**cfg, **{k: list(v) for k, v in per.items() if k in cfg}}
    _diffusers_fields(AutoencoderDC, cfg, ours, where=where)
    return out

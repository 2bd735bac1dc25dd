"""Named model configurations: "paper" (the official dimensions), "tiny" (CPU tests) and "small" (the bundled model).

The paper preset follows docs/layouts.md §7 exactly: Qwen3-1.7B-shaped LM (vocab 217210, tied embeddings), TA-Tok on a
SigLIP so400m/14 tower at 384 px (729 tokens, 65536 codes), SANA 1.5 1.6B, DC-AE f32c32 at 512 px (16 x 16 latent),
connectors to 2304. The tiny preset keeps every structural choice (same classes, same prompt, 16 x 16 latent grid)
at a few million parameters: 128 px faces, an f8 autoencoder, 64 image tokens.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from .integrator import IntegratorConfig
from .restorer import AutoencoderConfig, PrefRestoreConfig, SamplingDefaults, TransformerConfig
from .tatok import TokenizerConfig
from .text_tokenizer import CHAR_VOCAB


def paper() -> PrefRestoreConfig:
    return PrefRestoreConfig(name="paper")


def tiny() -> PrefRestoreConfig:
    n_text = len(CHAR_VOCAB)  # the char tokenizer's ids come first, then the special and image tokens
    codebook = 1024
    integrator = IntegratorConfig(
        vocab_size=n_text + 8 + codebook,
        hidden_size=128,
        intermediate_size=384,
        num_layers=3,
        num_heads=4,
        num_kv_heads=2,
        head_dim=32,
        max_position_embeddings=1024,
        pad_token_id=n_text,
        chat_start_id=n_text + 1,
        chat_end_id=n_text + 2,
        image_start_tag_id=n_text + 3,
        image_end_tag_id=n_text + 4,
        scale_start_token_id=n_text + 5,  # <S0> (<S1>, <S2> follow, unused)
        image_start_token_id=n_text + 8,
        num_image_tokens=codebook,
    )
    return PrefRestoreConfig(
        name="tiny",
        resolution=128,
        tokenizer=TokenizerConfig(
            image_size=112,
            patch_size=14,
            hidden_size=96,
            intermediate_size=192,
            num_layers=3,
            num_heads=4,
            codebook_size=codebook,
            codebook_dim=32,
        ),
        integrator=integrator,
        transformer=TransformerConfig(
            in_channels=16,
            num_attention_heads=4,
            attention_head_dim=32,
            num_layers=4,
            num_cross_attention_heads=4,
            cross_attention_head_dim=32,
            cross_attention_dim=128,
            caption_channels=192,
            sample_size=16,
        ),
        autoencoder=AutoencoderConfig(
            latent_channels=16,
            attention_head_dim=16,
            block_types=("ResBlock", "ResBlock", "EfficientViTBlock", "EfficientViTBlock"),
            block_out_channels=(32, 64, 128, 128),
            encoder_layers_per_block=(1, 1, 1, 1),
            decoder_layers_per_block=(1, 1, 1, 1),
            qkv_multiscales=((), (), (5,), (5,)),
            scaling_factor=1.0,
        ),
        sampling=SamplingDefaults(steps=10, guidance_scale=2.0),  # 0.72 s per face at batch 1 on 2 idle cores
    )


def small() -> PrefRestoreConfig:
    """The bundled model's architecture: tiny's tokenizer and integrator, a less compressive f4 autoencoder (128 px
    -> 16 x 32 x 32, a third of the pixels' values, so it can reconstruct faces far above bicubic) and a SANA with
    patch size 2 (the 32 x 32 latent as 256 tokens, the same sequence length as tiny's)."""
    t = tiny()
    return dataclasses.replace(
        t,
        name="small",
        transformer=dataclasses.replace(t.transformer, sample_size=32, patch_size=2),
        autoencoder=AutoencoderConfig(
            latent_channels=16,
            attention_head_dim=16,
            block_types=("ResBlock", "ResBlock", "EfficientViTBlock"),
            block_out_channels=(32, 64, 128),
            encoder_layers_per_block=(1, 1, 2),
            decoder_layers_per_block=(1, 1, 2),
            qkv_multiscales=((), (), (5,)),
            scaling_factor=1.0,
        ),
        sampling=SamplingDefaults(steps=4, guidance_scale=1.0, solver="dpm++2m", start_sigma=0.1),
    )


PRESETS: dict[str, Callable[[], PrefRestoreConfig]] = {"paper": paper, "tiny": tiny, "small": small}


def get_preset(name: str) -> PrefRestoreConfig:
    if name not in PRESETS:
        from ..errors import UserError

        raise UserError(f"unknown preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]()

"""PrefRestoreModel: LQ face -> TA-Tok ids -> integrator queries -> conditioning -> SANA velocity -> DC-AE decode.

Legend: B batch, S face resolution (512 paper), T image tokens, Q = T + 1 queries, D LM width, N = h*w/p^2 LQ latent
tokens (256 paper; p the transformer's patch size, 1 paper), C conditioning width (2304 paper), c latent channels
(32 paper), h, w latent grid (16 x 16).

Conditioning (docs/method.md §1.1 steps 5-8): cat([diffusion_connector(queries) (B, Q, C),
vae_connector(sana.patch_embed(scaled DC-AE latent of the LQ)) (B, N, C)], dim=1) -> (B, Q + N, C), passed to SANA as
``encoder_hidden_states`` (cross-attention only; the LQ latent is not concatenated channel-wise). The CFG null
condition is all zeros of the same shape.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch
from diffusers import AutoencoderDC, SanaTransformer2DModel
from torch import nn

from ..flow.paths import start_latent
from ..flow.schedules import sampling_sigmas
from ..flow.solvers import SOLVERS, Solver, guided, sample
from .connectors import make_connector, make_shared_norm
from .integrator import RESTORE_INSTRUCTION, DecodeOptions, Integrator, IntegratorConfig
from .lq_skip import LQSkip
from .tatok import TATokTokenizer, TokenizerConfig


@dataclass(frozen=True)
class TransformerConfig:
    """diffusers SanaTransformer2DModel arguments (defaults: SANA 1.5 1.6B, docs/layouts.md §4.1)."""

    in_channels: int = 32
    num_attention_heads: int = 70
    attention_head_dim: int = 32
    num_layers: int = 20
    num_cross_attention_heads: int = 20
    cross_attention_head_dim: int = 112
    cross_attention_dim: int = 2240
    caption_channels: int = 2304
    mlp_ratio: float = 2.5
    sample_size: int = 32
    qk_norm: str | None = "rms_norm_across_heads"
    patch_size: int = 1
    """Latent pixels per token side (SANA: 1). 2 turns a 32 x 32 latent into 256 tokens (the "small" preset)."""

    @property
    def inner_dim(self) -> int:
        return self.num_attention_heads * self.attention_head_dim

    def kwargs(self) -> dict:
        d = dataclasses.asdict(self)
        return {
            **d,
            "out_channels": self.in_channels,
            "attention_bias": False,
            "norm_elementwise_affine": False,
            "norm_eps": 1e-6,
            "interpolation_scale": None,
        }


@dataclass(frozen=True)
class AutoencoderConfig:
    """diffusers AutoencoderDC arguments (defaults: DC-AE f32c32 of SANA, docs/layouts.md §4.2)."""

    latent_channels: int = 32
    attention_head_dim: int = 32
    block_types: tuple[str, ...] = ("ResBlock",) * 3 + ("EfficientViTBlock",) * 3
    block_out_channels: tuple[int, ...] = (128, 256, 512, 512, 1024, 1024)
    encoder_layers_per_block: tuple[int, ...] = (2, 2, 2, 3, 3, 3)
    decoder_layers_per_block: tuple[int, ...] = (3, 3, 3, 3, 3, 3)
    qkv_multiscales: tuple[tuple[int, ...], ...] = ((), (), (), (5,), (5,), (5,))
    scaling_factor: float = 0.41407
    shift_factor: float = 0.0  # the SANA DC-AE has none; kept so other autoencoders fit
    lq_skip_levels: int = 0
    """> 0: the decoder's finest ``lq_skip_levels`` levels also get features of the LQ face (models/lq_skip.py,
    ours: for small autoencoders whose latents lose detail); 0 = the plain DC-AE (the paper)."""
    lq_skip_blocks: int = 0
    """Residual fusion blocks per skip level, after the LQ features are added (models/lq_skip.py); needs a skip."""

    def __post_init__(self):
        if self.lq_skip_blocks and not self.lq_skip_levels:
            raise ValueError(f"lq_skip_blocks={self.lq_skip_blocks} needs an LQ skip (lq_skip_levels > 0)")

    @property
    def downsample(self) -> int:
        return 2 ** (len(self.block_out_channels) - 1)

    def kwargs(self) -> dict:
        return dict(
            in_channels=3,
            latent_channels=self.latent_channels,
            attention_head_dim=self.attention_head_dim,
            encoder_block_types=list(self.block_types),
            decoder_block_types=list(self.block_types),
            encoder_block_out_channels=list(self.block_out_channels),
            decoder_block_out_channels=list(self.block_out_channels),
            encoder_layers_per_block=list(self.encoder_layers_per_block),
            decoder_layers_per_block=list(self.decoder_layers_per_block),
            encoder_qkv_multiscales=[list(m) for m in self.qkv_multiscales],
            decoder_qkv_multiscales=[list(m) for m in self.qkv_multiscales],
            upsample_block_type="interpolate",
            downsample_block_type="Conv",
            decoder_norm_types="rms_norm",
            decoder_act_fns="silu",
            scaling_factor=self.scaling_factor,
        )


Numerics = Literal["default", "official"]
NUMERICS = ("default", "official")


@dataclass(frozen=True)
class LoopNumerics:
    """How the sampling loop rounds and batches; the ODE, the solver and the grid's spacing are the same in all.

    Presets: :data:`LOOPS` ``default`` (ours), ``official`` (the official inference loop: diffusers'
    FlowMatchEulerDiscreteScheduler as the official restorer drives it, docs/layouts.md §4.3) and :data:`OFFICIAL_ROLLOUT`
    (DiffusionNFT's RL sampler as Pref-Restore runs it).
    """

    final_zero: bool = True
    """The grid linspace(s, s/K, K) ends with 0 (K steps to the clean latent); False: no 0, K - 1 steps ending at
    sigma = s/K (the official RL rollout, whose "clean" latent is that sigma = 1/30 one)."""
    integer_timesteps: bool = False
    """SANA's timestep is trunc(sigma * 1000) as an integer (DiffusionNFT's ``dtype=torch.long``: 966, 933, ...);
    False: sigma * 1000 in float32 (the official inference scheduler's 966.67, 933.33, ...), whatever the model dtype."""
    state_dtype: str | None = None
    """None: a float32 state, steps with float64 step sizes (ours). ``model``: re-round the state to the model's dtype
    after every step (``scheduler.step`` casts to the velocity's dtype; bf16 in the official release); a dtype name
    (``bfloat16``): to that dtype (DiffusionNFT casts to its noise's dtype, bf16)."""
    bf16_noise: bool = False
    """Round the initial noise to bf16 (the official code draws it with ``dtype=torch.bfloat16``)."""
    uncond_first: bool = False
    """CFG as the official code: always one batch [null, cond] (at guidance 1 too), combined in the model's dtype;
    False: [cond, null] only when guidance != 1, combined in float32."""

    def resolve_state_dtype(self, model_dtype: torch.dtype) -> torch.dtype | None:
        if self.state_dtype is None:
            return None
        if self.state_dtype == "model":
            return model_dtype
        dt = getattr(torch, self.state_dtype, None)
        if not isinstance(dt, torch.dtype) or not dt.is_floating_point:
            raise ValueError(f"state_dtype={self.state_dtype!r}: expected None, 'model' or a float dtype name")
        return dt


LOOPS = {
    "default": LoopNumerics(),
    "official": LoopNumerics(state_dtype="model", bf16_noise=True, uncond_first=True),
}
OFFICIAL_ROLLOUT = LoopNumerics(
    final_zero=False, integer_timesteps=True, state_dtype="bfloat16", bf16_noise=True, uncond_first=True
)


@dataclass(frozen=True)
class SamplingDefaults:
    steps: int = 30
    guidance_scale: float = 2.0
    solver: str = "euler"
    top_k: int = 1200
    top_p: float = 0.95
    start_sigma: float = 1.0
    """1.0: integrate from pure noise (the paper). Below 1: start from the LQ's own latent noised to this level,
    x = (1 - s) * latent(LQ) + s * noise, and integrate s -> 0 (SDEdit). Stage 3 trains the encoder to map LQ faces
    to HQ latents, so a small model that has seen few faces can start there instead of from noise."""
    numerics: Numerics = "default"
    """``official``: the official inference loop's arithmetic (bf16 noise, the state re-rounded to the model's dtype
    after every step, the [null, cond] CFG batch at every guidance; :data:`LOOPS`), to check outputs against the
    paper's release; ``default``: ours (float32 state). Both give SANA float32 timesteps."""
    flip_ensemble: bool = False
    """Restore each face and its mirror image in one batch and average the two (the mirror flipped back): the
    self-ensemble of super-resolution (EDSR+), which a face restorer may use because faces are near-symmetric and
    training flips them. The mirror row starts from the mirrored noise, so for a given start noise the result is
    mirror-equivariant. Costs one batch row per face (~1.7x the time per face for the bundled model on 2 CPU threads);
    averages away detail the two passes disagree on."""

    def __post_init__(self):
        if not 0.0 < self.start_sigma <= 1.0:
            raise ValueError(f"start_sigma={self.start_sigma} must be in (0, 1]")
        if self.numerics not in NUMERICS:
            raise ValueError(f"numerics={self.numerics!r}: expected one of {NUMERICS}")


@dataclass(frozen=True)
class PrefRestoreConfig:
    name: str = "paper"
    resolution: int = 512  # aligned face size in and out
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    integrator: IntegratorConfig = field(default_factory=IntegratorConfig)
    transformer: TransformerConfig = field(default_factory=TransformerConfig)
    autoencoder: AutoencoderConfig = field(default_factory=AutoencoderConfig)
    sampling: SamplingDefaults = field(default_factory=SamplingDefaults)
    connector_norm_eps: float = 1e-5

    def __post_init__(self):
        if self.resolution % self.autoencoder.downsample:
            raise ValueError(
                f"resolution {self.resolution} must be a multiple of the autoencoder's "
                f"downsampling factor {self.autoencoder.downsample}"
            )
        if self.transformer.in_channels != self.autoencoder.latent_channels:
            raise ValueError("transformer.in_channels must equal autoencoder.latent_channels")
        if self.integrator.num_image_tokens != self.tokenizer.codebook_size:
            raise ValueError("integrator.num_image_tokens must equal tokenizer.codebook_size")

    @property
    def latent_size(self) -> int:
        return self.resolution // self.autoencoder.downsample

    @property
    def num_queries(self) -> int:
        return self.tokenizer.num_tokens + 1

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PrefRestoreConfig:
        return _from_dict(cls, d)


def _from_dict(cls, d):
    if not isinstance(d, dict):
        raise ValueError(f"{cls.__name__}: expected a JSON object, got {type(d).__name__}")
    """Rebuild a (nested) frozen dataclass from a JSON dict; unknown keys are an error; lists become tuples."""
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = set(d) - set(names)
    if unknown:
        raise ValueError(f"unknown {cls.__name__} fields {sorted(unknown)}; the config is from a newer version?")
    kwargs = {}
    for k, v in d.items():
        sub = _SECTIONS.get(k) if cls is PrefRestoreConfig else None
        if sub is not None:
            v = _from_dict(sub, v)
        elif isinstance(v, list):
            v = tuple(tuple(x) if isinstance(x, list) else x for x in v)
        kwargs[k] = v
    return cls(**kwargs)


_SECTIONS = {
    "tokenizer": TokenizerConfig,
    "integrator": IntegratorConfig,
    "transformer": TransformerConfig,
    "autoencoder": AutoencoderConfig,
    "sampling": SamplingDefaults,
}


@dataclass
class Conditioning:
    """What the LQ contributes to sampling. cond: (B, Q + N, C); codes: (B, T) generated image tokens;
    lq_latent: (B, c, h, w) scaled latent of the LQ (the start of sampling when start_sigma < 1)."""

    cond: torch.Tensor
    codes: torch.Tensor | None = None
    lq_latent: torch.Tensor | None = None


class PrefRestoreModel(nn.Module):
    def __init__(self, config: PrefRestoreConfig, text_tokenizer=None):
        super().__init__()
        self.config = config
        self.tokenizer = TATokTokenizer(config.tokenizer)
        self.integrator = Integrator(config.integrator, text_tokenizer)
        C = config.transformer.caption_channels
        norm = make_shared_norm(C, config.connector_norm_eps)  # one object shared by both connectors (official)
        self.diffusion_connector = make_connector(config.integrator.hidden_size, C, norm)
        self.vae_connector = make_connector(config.transformer.inner_dim, C, norm)
        self.transformer = SanaTransformer2DModel(**config.transformer.kwargs())
        self.vae = AutoencoderDC(**config.autoencoder.kwargs())
        a = config.autoencoder
        self.lq_skip = LQSkip(a.block_out_channels, a.lq_skip_levels, a.lq_skip_blocks) if a.lq_skip_levels else None

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return self.transformer.proj_out.weight.dtype

    # ---------------------------------------------------------------------------------------------------------
    # Autoencoder

    def encode_latent(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) in [-1, 1] -> scaled latent (B, c, h, w) = (z - shift) * scaling."""
        a = self.config.autoencoder
        z = self.vae.encode(images.to(self.vae.dtype)).latent
        return (z - a.shift_factor) * a.scaling_factor

    def decode_latent(
        self, latent: torch.Tensor, lq: torch.Tensor | None = None, *, skip_scale: float = 1.0
    ) -> torch.Tensor:
        """Scaled latent (B, c, h, w) -> (B, 3, S, S), roughly in [-1, 1] (not clamped). With an LQ skip
        (``autoencoder.lq_skip_levels``) and ``lq`` (B, 3, S, S) in [-1, 1], the decoder's finest levels add
        ``skip_scale`` x the LQ's features after their up-blocks; without ``lq`` it is the plain decoder."""
        a = self.config.autoencoder
        z = latent.to(self.vae.dtype) / a.scaling_factor + a.shift_factor
        if self.lq_skip is None or lq is None or skip_scale == 0:
            return self.vae.decode(z).sample
        feats = self.lq_skip(lq.to(self.vae.dtype))  # level l: (B, c_l, S / 2^l, S / 2^l)
        dec = self.vae.decoder  # diffusers' Decoder.forward, with the skip added per level
        h = dec.conv_in(z)
        if dec.in_shortcut:
            h = h + z.repeat_interleave(dec.in_shortcut_repeats, dim=1)
        for i in reversed(range(len(dec.up_blocks))):
            h = dec.up_blocks[i](h)  # (B, c_i, S / 2^i, S / 2^i)
            if i < len(feats):
                h = self.lq_skip.fuse(i, h + skip_scale * feats[i])
        h = dec.norm_out(h.movedim(1, -1)).movedim(-1, 1)
        return dec.conv_out(dec.conv_act(h))

    # ---------------------------------------------------------------------------------------------------------
    # Conditioning

    def lq_tokens(self, lq_latent: torch.Tensor) -> torch.Tensor:
        """Scaled LQ latent (B, c, h, w) -> (B, N, C) via SANA's patch embedding and the VAE connector."""
        return self.vae_connector(self.transformer.patch_embed(lq_latent.to(self.dtype)))  # (B, N, D_dit) -> (B, N, C)

    def query_tokens(self, queries: torch.Tensor) -> torch.Tensor:
        """LM hidden states (B, Q, D) -> (B, Q, C)."""
        return self.diffusion_connector(queries.to(self.diffusion_connector[0].weight.dtype))

    def condition(self, queries: torch.Tensor, lq_latent: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.query_tokens(queries), self.lq_tokens(lq_latent)], dim=1)  # (B, Q + N, C)

    @torch.no_grad()
    def prepare(
        self,
        lq: torch.Tensor,
        *,
        instructions: Sequence[str] | None = None,
        decode: DecodeOptions = DecodeOptions(),
        generators: list[torch.Generator] | None = None,
        num_tokens: int | None = None,
    ) -> Conditioning:
        """lq: (B, 3, S, S) RGB in [-1, 1] -> Conditioning (tokenise, decode image tokens, connect, encode LQ)."""
        B = lq.shape[0]
        instructions = list(instructions) if instructions is not None else [RESTORE_INSTRUCTION] * B
        ids = self.tokenizer(lq)  # (B, T)
        codes, queries = self.integrator.generate(
            ids, instructions, options=decode, generators=generators, num_tokens=num_tokens
        )
        lq_latent = self.encode_latent(lq)
        return Conditioning(self.condition(queries, lq_latent), codes, lq_latent)

    # ---------------------------------------------------------------------------------------------------------
    # Velocity and sampling

    def velocity(
        self,
        x_t: torch.Tensor,
        sigma: torch.Tensor,
        cond: torch.Tensor,
        *,
        transformer: nn.Module | None = None,
        integer_timesteps: bool = False,
        keep_dtype: bool = False,
    ) -> torch.Tensor:
        """x_t: (B, c, h, w), sigma: (B,) in [0, 1], cond: (B, Q + N, C) -> v (B, c, h, w) = d x / d sigma, in
        x_t's dtype (``keep_dtype``: the model's, as the official loops use it). ``transformer``: run this wrapper of
        ``self.transformer`` instead (a DDP-wrapped peft model in RL training, so gradients synchronise); the same
        weights, the same result.

        SANA's timestep is sigma * 1000 in float32 whatever the model's dtype, as the official scheduler passes it
        (in bf16 966.67 would become 968); ``integer_timesteps``: truncated to int64 (DiffusionNFT's rollouts).
        """
        net = self.transformer if transformer is None else transformer
        t = sigma.float() * 1000  # (B,) float32
        if integer_timesteps:
            t = t.long()
        out = net(x_t.to(self.dtype), encoder_hidden_states=cond.to(self.dtype), timestep=t, return_dict=False)[0]
        return out if keep_dtype else out.to(x_t.dtype)

    def initial_noise(self, batch: int, generators: list[torch.Generator], *, device=None) -> torch.Tensor:
        """(B, c, h, w) float32 N(0, I), row b drawn from generators[b] (so batches equal their rows)."""
        a, s = self.config.autoencoder, self.config.latent_size
        rows = [torch.randn(1, a.latent_channels, s, s, generator=g, device=g.device) for g in generators]
        assert len(rows) == batch
        return torch.cat(rows).to(device or self.device)

    @torch.no_grad()
    def sample(
        self,
        cond: torch.Tensor,
        noise: torch.Tensor,
        lq_latent: torch.Tensor | None,
        *,
        steps: int,
        guidance_scale: float,
        solver: Solver = "euler",
        start_sigma: float = 1.0,
        numerics: Numerics | LoopNumerics = "default",
        progress=None,
    ) -> torch.Tensor:
        """The one sampling path (inference, RL rollouts, SFT validation, benchmarks): integrate the flow ODE from
        ``flow.paths.start_latent(noise, lq_latent, start_sigma)`` at sigma = start_sigma (1: pure noise) to 0 under
        ``cond`` on the ``flow.schedules.sampling_sigmas`` grid, with CFG (null condition: zeros).

        cond: (B, Q + N, C); noise: (B, c, h, w) float32 (:meth:`initial_noise`); lq_latent: the scaled LQ latent
        (B, c, h, w), needed when start_sigma < 1 -> clean scaled latent (B, c, h, w) float32 (decode_latent it).
        numerics: a :data:`LOOPS` name or a :class:`LoopNumerics` (:data:`OFFICIAL_ROLLOUT` stops at
        sigma = start_sigma / steps instead of 0).
        """
        if solver not in SOLVERS:
            raise ValueError(f"unknown solver={solver!r}; expected one of {SOLVERS}")
        n = LOOPS[numerics] if isinstance(numerics, str) and numerics in LOOPS else numerics
        if not isinstance(n, LoopNumerics):
            raise ValueError(f"numerics={numerics!r}: expected one of {NUMERICS} or a LoopNumerics")
        if not n.final_zero and steps < 2:
            raise ValueError(f"steps={steps}: a grid without the final 0 needs >= 2 sigmas (steps - 1 solver steps)")
        if n.bf16_noise:
            noise = noise.to(torch.bfloat16).float()
        x_start = start_latent(noise, lq_latent, start_sigma).float()

        def velocity(x, s, c):
            return self.velocity(x, s, c, integer_timesteps=n.integer_timesteps, keep_dtype=n.uncond_first)

        fn = guided(velocity, cond, torch.zeros_like(cond), guidance_scale, uncond_first=n.uncond_first)
        sigmas = sampling_sigmas(steps, start_sigma, final_zero=n.final_zero).to(x_start.device)
        return sample(
            fn,
            x_start,
            sigmas,
            solver=solver,
            state_dtype=n.resolve_state_dtype(self.dtype),
            final_first_order=not n.final_zero,
            progress=progress,
        )

    @torch.no_grad()
    def restore(
        self,
        lq: torch.Tensor,
        *,
        generators: list[torch.Generator],
        steps: int | None = None,
        guidance_scale: float | None = None,
        solver: Solver | None = None,
        deterministic: bool = True,
        instructions: Sequence[str] | None = None,
        start_sigma: float | None = None,
        numerics: Numerics | None = None,
        flip_ensemble: bool | None = None,
    ) -> torch.Tensor:
        """lq: (B, 3, S, S) float RGB in [-1, 1] -> restored (B, 3, S, S) in [-1, 1].

        ``generators[b]`` drives row b: first its initial noise, then (deterministic=False) its token sampling.
        ``start_sigma`` (default: the config's) < 1 starts from the noised LQ latent (SamplingDefaults);
        ``numerics`` (default: the config's) ``official`` computes the loop as the official code (SamplingDefaults).
        ``flip_ensemble`` (default: the config's): average with the restored mirror image (SamplingDefaults).
        """
        d = self.config.sampling
        S = self.config.resolution
        if lq.ndim != 4 or lq.shape[1:] != (3, S, S):
            raise ValueError(f"expected lq of shape (B, 3, {S}, {S}), got {tuple(lq.shape)}")
        B = lq.shape[0]
        noise = self.initial_noise(B, generators, device=lq.device)
        decode = DecodeOptions(do_sample=not deterministic, top_k=d.top_k, top_p=d.top_p)
        s = d.start_sigma if start_sigma is None else start_sigma
        flip = d.flip_ensemble if flip_ensemble is None else flip_ensemble
        if flip:  # rows B..2B-1: the mirror images, with the mirrored noise and a copy of each row's generator
            lq = torch.cat([lq, lq.flip(-1)])
            noise = torch.cat([noise, noise.flip(-1)])
            generators = list(generators) + [_copy_generator(g) for g in generators]
            instructions = None if instructions is None else list(instructions) * 2
        c = self.prepare(lq, instructions=instructions, decode=decode, generators=generators)
        latent = self.sample(
            c.cond,
            noise,
            c.lq_latent,
            steps=steps or d.steps,
            guidance_scale=d.guidance_scale if guidance_scale is None else guidance_scale,
            solver=solver or d.solver,
            start_sigma=s,
            numerics=numerics or d.numerics,
        )
        out = self.decode_latent(latent, lq).float()
        if flip:
            out = (out[:B] + out[B:].flip(-1)) / 2
        return out.clamp(-1, 1)


def _copy_generator(g: torch.Generator) -> torch.Generator:
    """A new generator in ``g``'s current state (the mirror row draws what its face's row draws; ``g`` advances
    once, as without the ensemble)."""
    copy = torch.Generator(device=g.device)
    copy.set_state(g.get_state())
    return copy

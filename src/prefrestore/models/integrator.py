"""The autoregressive integrator: a Qwen3 causal LM whose vocabulary includes the TA-Tok image tokens.

Legend: B batch, T image tokens (729 paper), Q = T + 1 latent queries (<S0> + T), L prompt length, D LM width
(2048 paper), V vocabulary (217210 paper).

Prompt (docs/method.md §1.1, docs/layouts.md §1.2), templated turn by turn with Qwen's chat markers:
    <|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n
    <|im_start|>user\\n<image>\\n{instruction}<|im_end|>\\n
    <|im_start|>assistant\\n<im_start><S0>
``<image>`` is replaced by the T embeddings of the LQ image's token ids (``embed(code + image_start_token_id)``).
The LM then decodes T image tokens (greedy in deterministic mode, top-k/top-p otherwise) with a KV cache, and the
**dense latent queries** are the last-layer (post final norm) hidden states at the <S0> + generated positions:
(B, Q, D). Collecting them during cached decoding equals the official second full pass, without the extra pass.

Training (teacher forcing) appends ``<S0> + HQ ids + <im_end><|im_end|>\\n`` after the assistant prefix
``<|im_start|>assistant\\n<im_start>``; CE labels cover every position except the LQ image and padding (the official
trainer does not mask the text), and the queries are taken at the <S0> + HQ-token positions of each sample.
Deviation, on purpose: the official trainer takes the last 730 positions of the right-padded batch (a bug, LAYOUTS §5);
we take the right ones.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from transformers import Qwen3Config, Qwen3ForCausalLM, Qwen3Model

from .text_tokenizer import encode_text

SYSTEM_PROMPT = "You are a helpful assistant."
RESTORE_INSTRUCTION = "Please reconstruct the given image."
CAPTION_INSTRUCTION = "Please reconstruct the given image based on the image content: {caption}"
SIDE_MISSION_INSTRUCTION = (
    "This is a side mission. Please complete the auxiliary reconstruction task by duplicating the given "
    "high-definition image."
)
IGNORE_INDEX = -100

# transformers >= 5 renamed the KV-cache argument; support both (the official env pins 4.51).
_CACHE_KW = "cache" if "cache" in inspect.signature(Qwen3Model.forward).parameters else "past_key_values"


@dataclass(frozen=True)
class IntegratorConfig:
    vocab_size: int = 217210
    hidden_size: int = 2048
    intermediate_size: int = 6144
    num_layers: int = 28
    num_heads: int = 16
    num_kv_heads: int = 8
    head_dim: int = 128
    rope_theta: float = 1_000_000.0
    rms_norm_eps: float = 1e-6
    max_position_embeddings: int = 40960
    tie_word_embeddings: bool = True
    # token ids (docs/layouts.md §1.1)
    pad_token_id: int = 151643  # <|endoftext|>
    chat_start_id: int = 151644  # <|im_start|>
    chat_end_id: int = 151645  # <|im_end|>
    image_start_tag_id: int = 151669  # <im_start>
    image_end_tag_id: int = 151670  # <im_end>
    scale_start_token_id: int = 151671  # <S0>
    image_start_token_id: int = 151674  # <I0>
    num_image_tokens: int = 65536

    def __post_init__(self):
        if self.image_start_token_id + self.num_image_tokens > self.vocab_size:
            raise ValueError(
                f"image tokens [{self.image_start_token_id}, {self.image_start_token_id + self.num_image_tokens}) "
                f"do not fit in vocab_size={self.vocab_size}; raise vocab_size"
            )

    def qwen_config(self) -> Qwen3Config:
        return Qwen3Config(
            vocab_size=self.vocab_size,
            hidden_size=self.hidden_size,
            intermediate_size=self.intermediate_size,
            num_hidden_layers=self.num_layers,
            num_attention_heads=self.num_heads,
            num_key_value_heads=self.num_kv_heads,
            head_dim=self.head_dim,
            rope_theta=self.rope_theta,
            rms_norm_eps=self.rms_norm_eps,
            max_position_embeddings=self.max_position_embeddings,
            tie_word_embeddings=self.tie_word_embeddings,
            pad_token_id=self.pad_token_id,
            bos_token_id=self.pad_token_id,
            eos_token_id=self.chat_end_id,
        )


@dataclass(frozen=True)
class DecodeOptions:
    """How image tokens are decoded. ``do_sample=False`` is greedy, i.e. deterministic (the RL model's mode)."""

    do_sample: bool = False
    top_k: int = 1200
    top_p: float = 0.95
    temperature: float = 1.0
    # Restrict decoding to image-token ids. The official code does not; a trained model emits image tokens anyway,
    # and this guarantees valid codes for untrained or fine-tuned models.
    image_tokens_only: bool = True


def filter_logits(logits: torch.Tensor, top_k: int, top_p: float) -> torch.Tensor:
    """(N, V) logits -> (N, V) with everything outside the top-k and the top-p nucleus set to -inf."""
    if 0 < top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) > top_p  # keep the smallest prefix whose mass reaches top_p
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


class Integrator(nn.Module):
    def __init__(self, config: IntegratorConfig, text_tokenizer=None):
        super().__init__()
        self.config = config
        self.lm = Qwen3ForCausalLM(config.qwen_config())
        self.text_tokenizer = text_tokenizer

    # ---------------------------------------------------------------------------------------------------------
    # Prompts

    def _text(self, text: str) -> list[int]:
        if self.text_tokenizer is None:
            raise RuntimeError("this integrator has no text tokenizer; load the model with from_pretrained")
        return encode_text(self.text_tokenizer, text)

    def prompt_ids(self, instruction: str) -> tuple[list[int], list[int]]:
        """Ids before and after the ``<image>`` slot of the inference prompt (ending in ``<im_start><S0>``)."""
        c = self.config
        pre = [c.chat_start_id, *self._text(f"system\n{SYSTEM_PROMPT}"), c.chat_end_id, *self._text("\n")]
        pre += [c.chat_start_id, *self._text("user\n")]
        post = [*self._text(f"\n{instruction}"), c.chat_end_id, *self._text("\n")]
        post += [c.chat_start_id, *self._text("assistant\n"), c.image_start_tag_id]
        return pre, post

    def embed(self, ids: torch.Tensor) -> torch.Tensor:
        return self.lm.get_input_embeddings()(ids)

    def _lm(self, embeds, mask, positions, cache=None):
        out = self.lm.model(
            inputs_embeds=embeds, attention_mask=mask, position_ids=positions, use_cache=True, **{_CACHE_KW: cache}
        )
        return out.last_hidden_state, getattr(out, "cache", None) or getattr(out, "past_key_values", None)

    def _prompt_batch(self, lq_ids: torch.Tensor, instructions: list[str], tail: list[int]):
        """Left-padded prompt embeddings (B, L, D), mask (B, L) and position ids (B, L) ending in ``tail`` ids."""
        B, T = lq_ids.shape
        device = lq_ids.device
        rows = []
        for instruction in instructions:
            pre, post = self.prompt_ids(instruction)
            rows.append((pre, post + tail))
        L = max(len(pre) + T + len(post) for pre, post in rows)
        ids = torch.full((B, L), self.config.pad_token_id, dtype=torch.long, device=device)
        mask = torch.zeros(B, L, dtype=torch.long, device=device)
        is_image = torch.zeros(B, L, dtype=torch.bool, device=device)
        for b, (pre, post) in enumerate(rows):
            n = len(pre) + T + len(post)
            s = L - n
            ids[b, s : s + len(pre)] = torch.tensor(pre, device=device)
            ids[b, s + len(pre) : s + len(pre) + T] = lq_ids[b] + self.config.image_start_token_id
            ids[b, L - len(post) :] = torch.tensor(post, device=device)
            mask[b, s:] = 1
            is_image[b, s + len(pre) : s + len(pre) + T] = True
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        return ids, mask, positions, is_image

    # ---------------------------------------------------------------------------------------------------------
    # Inference

    @torch.no_grad()
    def generate(
        self,
        lq_ids: torch.Tensor,
        instructions: list[str],
        *,
        options: DecodeOptions = DecodeOptions(),
        generators: list[torch.Generator] | None = None,
        num_tokens: int | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """lq_ids: (B, T) int64 TA-Tok codes -> (generated codes (B, T'), queries (B, T'+1, D)); T' = num_tokens or T.

        Sampling draws each row from its own generator (``generators[b]``), so a batch equals its rows one by one.
        """
        c = self.config
        B = lq_ids.shape[0]
        T = num_tokens if num_tokens is not None else lq_ids.shape[1]
        if len(instructions) != B:
            raise ValueError(f"got {len(instructions)} instructions for a batch of {B}")
        if options.do_sample and (generators is None or len(generators) != B):
            raise ValueError("sampling needs one torch.Generator per row (generators=[...])")
        ids, mask, positions, _ = self._prompt_batch(lq_ids, instructions, [c.scale_start_token_id])
        h, cache = self._lm(self.embed(ids), mask, positions)  # (B, L, D)
        h = h[:, -1]  # (B, D) at <S0>
        queries, codes = [h], []
        lo, hi = (
            (c.image_start_token_id, c.image_start_token_id + c.num_image_tokens)
            if options.image_tokens_only
            else (0, c.vocab_size)
        )
        for _ in range(T):
            logits = self.lm.lm_head(h).float()[:, lo:hi]  # (B, V')
            if options.do_sample:
                logits = filter_logits(logits / options.temperature, options.top_k, options.top_p)
                probs = logits.softmax(-1)
                nxt = torch.cat([torch.multinomial(probs[b : b + 1], 1, generator=generators[b]) for b in range(B)])
            else:
                nxt = logits.argmax(-1, keepdim=True)  # (B, 1)
            nxt = nxt + lo  # vocabulary ids
            codes.append(nxt[:, 0] - c.image_start_token_id)
            mask = torch.cat([mask, mask.new_ones(B, 1)], dim=1)
            positions = positions[:, -1:] + 1
            h, cache = self._lm(self.embed(nxt), mask, positions, cache)
            h = h[:, -1]
            queries.append(h)
        return torch.stack(codes, 1), torch.stack(queries, 1)  # (B, T), (B, T+1, D)

    # ---------------------------------------------------------------------------------------------------------
    # Training

    def teacher_forced(
        self, lq_ids: torch.Tensor, hq_ids: torch.Tensor, instructions: list[str]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced pass. lq_ids, hq_ids: (B, T) codes -> (queries (B, T+1, D), CE loss scalar).

        Sequences are right-padded; the answer is ``<S0> HQ... <im_end> <|im_end|> \\n``.
        """
        c = self.config
        B, T = hq_ids.shape
        device = hq_ids.device
        answer_tail = [c.image_end_tag_id, c.chat_end_id, *self._text("\n")]
        rows = []
        for b, instruction in enumerate(instructions):
            pre, post = self.prompt_ids(instruction)
            lq = (lq_ids[b] + c.image_start_token_id).tolist()
            hq = (hq_ids[b] + c.image_start_token_id).tolist()
            seq = pre + lq + post + [c.scale_start_token_id] + hq + answer_tail
            image_span = (len(pre), len(pre) + len(lq))
            query_start = len(pre) + len(lq) + len(post)
            rows.append((seq, image_span, query_start))
        L = max(len(r[0]) for r in rows)
        ids = torch.full((B, L), c.pad_token_id, dtype=torch.long, device=device)
        mask = torch.zeros(B, L, dtype=torch.long, device=device)
        labels = torch.full((B, L), IGNORE_INDEX, dtype=torch.long, device=device)
        qidx = torch.zeros(B, T + 1, dtype=torch.long, device=device)
        for b, (seq, (i0, i1), q0) in enumerate(rows):
            ids[b, : len(seq)] = torch.tensor(seq, device=device)
            mask[b, : len(seq)] = 1
            labels[b, : len(seq)] = ids[b, : len(seq)]
            labels[b, i0:i1] = IGNORE_INDEX  # the LQ image is input only
            qidx[b] = torch.arange(q0, q0 + T + 1, device=device)
        positions = (mask.cumsum(1) - 1).clamp(min=0)
        out = self.lm.model(
            inputs_embeds=self.embed(ids), attention_mask=mask, position_ids=positions, use_cache=False
        )
        h = out.last_hidden_state  # (B, L, D)
        logits = self.lm.lm_head(h[:, :-1]).float()  # (B, L-1, V): position i predicts token i+1
        ce = F.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1), ignore_index=IGNORE_INDEX
        )
        queries = h.gather(1, qidx[..., None].expand(-1, -1, h.shape[-1]))  # (B, T+1, D)
        return queries, ce

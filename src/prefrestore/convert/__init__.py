"""Official checkpoints -> prefrestore model folders, pickle-free, with every key accounted for.

Sources (docs/layouts.md §1-§6):
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

The package, by concept: ``keys`` (the key rules and mapping), ``files`` (readers), ``configs`` (config inference),
``assemble`` (a complete Conversion, LoRA, the output folder), ``hub`` (official files by path or repo id, through
:mod:`prefrestore.hub`), ``report`` (Conversion and Report); this module is the ``prefrestore convert`` entry.
Strict by default: unknown, missing and mis-shaped tensors and disagreeing duplicates raise one CheckpointError
naming them. ``strict=False`` turns unknown keys and disagreeing duplicates into warnings; missing or mis-shaped
tensors are always errors (the output must be complete).
"""

from __future__ import annotations

import logging
import os

import torch

from ..errors import UserError
from ..models.restorer import PrefRestoreConfig
from .assemble import _opt, apply_lora, convert_official, from_prefrestore, load_official, write_model
from .conversion import KINDS, Conversion, Kind, Report
from .hub import missing_files, resolve_official
from .keys import BLIP3O_RULES, TATOK_RULES, map_keys
from .official_files import read_ta_tok, read_weights

__all__ = [
    "BLIP3O_RULES",
    "KINDS",
    "TATOK_RULES",
    "Conversion",
    "Report",
    "apply_lora",
    "convert",
    "convert_official",
    "from_prefrestore",
    "load_official",
    "map_keys",
    "missing_files",
    "read_ta_tok",
    "read_weights",
    "resolve_official",
    "write_model",
]

log = logging.getLogger("prefrestore.convert")


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
    from ..io.io_safety import check_new_folder

    check_new_folder(out)  # before minutes of loading, not after
    chosen = [n for n, v in (("stage_a", stage_a), ("blip3o", blip3o), ("model", model)) if v is not None]
    if len(chosen) != 1:
        raise UserError(
            f"give exactly one source: --stage-a DIR, --blip3o DIR or --model DIR (got {', '.join(chosen) or 'none'})"
        )
    if model is not None:
        if lora is None:
            raise UserError("--model only makes sense with --lora (it is already a prefrestore model)")
        conv = from_prefrestore(model)
    else:
        kind: Kind = "stage-a" if stage_a is not None else "blip3o"
        ckpt = resolve_official(stage_a or blip3o, kind, allow_download=allow_download)
        if kind == "blip3o" and sana is None:
            log.info("no --sana: SANA/DC-AE weights must then be inside the BLIP3o checkpoint")
        conv = convert_official(
            kind,
            ckpt,
            ta_tok=_opt(ta_tok, "ta-tok", allow_download),
            sana=_opt(sana, "sana", allow_download),
            base=base,
            strict=strict,
            seed=seed,
        )
    if lora is not None:
        apply_lora(conv, lora, merge=merge)
    elif merge:
        raise UserError("--merge needs --lora DIR")
    write_model(conv, out, dtype=dtype)
    return conv.report

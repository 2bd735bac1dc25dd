"""Assembly: official checkpoint + side files -> a complete :class:`~prefrestore.convert.conversion.Conversion`; LoRA;
writing the model folder; loading a prefrestore folder back as a Conversion."""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import CheckpointError, UserError
from ..models.restorer import AutoencoderConfig, PrefRestoreConfig, PrefRestoreModel, TransformerConfig
from ..models.tatok import TokenizerConfig
from .configs import autoencoder_config, integrator_config, tokenizer_config, transformer_config
from .conversion import COMPONENTS, KINDS, Conversion, Kind, Report
from .hub import resolve_official
from .keys import _PREFERRED, _VT, BLIP3O_RULES, TATOK_RULES, _expected_name, _same, _source_of, map_keys
from .official_files import _copy_files, read_json, read_ta_tok, read_weights, tokenizer_files

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
    from ..models.presets import paper

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
    integrator = integrator_config(hf_cfg, _load_tokenizer(ckpt, tok_files), where=str(ckpt / "config.json"))
    raw, files = read_weights(ckpt, "model")
    where_ckpt = str(ckpt) if len(files) > 1 else str(files[0])
    m = map_keys(raw, BLIP3O_RULES, report)
    problems.extend(where_ckpt, "unknown keys", m.unknown)
    state, origin = m.state, {k: (v, where_ckpt) for k, v in m.origin.items()}
    for comp in ("integrator", "diffusion_connector"):
        report.sources[comp] = where_ckpt

    # -- TA-Tok: the checkpoint's copy wins (what the official from_pretrained loads); ta_tok.pth fills in or is checked
    _check_scale_layer(raw, strict=strict, problems=problems, report=report, where=where_ckpt)
    del raw
    tok_cfg = _tokenizer_part(
        state,
        origin,
        ta_tok,
        kind=kind,
        base=base,
        strict=strict,
        problems=problems,
        report=report,
        where_ckpt=where_ckpt,
    )

    # -- SANA transformer and DC-AE
    sana_dir = Path(sana) if sana is not None else _local_sana(hf_cfg.get("diffusion_name_or_path"))
    tr_cfg, ae_cfg = _sana_part(state, origin, sana_dir, base=base, report=report, where_ckpt=where_ckpt)

    # -- config and the expected tensors
    try:
        config = dataclasses.replace(
            base,
            name=f"official-{kind}",
            tokenizer=tok_cfg,
            integrator=integrator,
            transformer=tr_cfg,
            autoencoder=ae_cfg,
        )
    except ValueError as err:
        raise CheckpointError(f"{ckpt}: the parts do not fit together ({err})") from None
    with torch.device("meta"):
        meta = PrefRestoreModel(config)
    expected = {k: tuple(v.shape) for k, v in meta.state_dict().items()}
    from ..checkpoints import shared_aliases

    aliases = shared_aliases(meta)

    # -- duplicates of shared tensors: one Parameter in the model, two keys in the official files
    _dedupe_shared(state, origin, aliases, strict=strict, problems=problems, report=report)
    if kind == "blip3o" and not _has(state, "vae_connector"):
        _init_vae_connector(
            state, expected, integrator_std=float(hf_cfg.get("initializer_range", 0.02)), seed=seed, report=report
        )
        report.sources["vae_connector"] = "initialised (absent from BLIP3o-NEXT)"
    else:
        report.sources["vae_connector"] = where_ckpt

    # -- every key accounted for
    _account_for_every_key(
        state, origin, expected, aliases, strict=strict, problems=problems, report=report, where_ckpt=where_ckpt
    )
    report.mapped = len(state)
    return Conversion(config, state, tok_files, report)


def _load_tokenizer(ckpt: Path, tok_files: list[Path]):
    """The checkpoint's text tokenizer, loaded from a copy of its files (``tok_files``) in a temporary folder."""
    from ..models.text_tokenizer import load_text_tokenizer

    with tempfile.TemporaryDirectory() as tmp:
        _copy_files(tok_files, Path(tmp))
        try:
            return load_text_tokenizer(tmp)
        except (OSError, ValueError, KeyError) as err:
            raise CheckpointError(f"{ckpt}: the tokenizer files do not load ({err})") from None


def _has(state: dict[str, torch.Tensor], comp: str) -> bool:
    return any(k.startswith(COMPONENTS[comp]) for k in state)


def _tokenizer_part(
    state: dict,
    origin: dict,
    ta_tok,
    *,
    kind: str,
    base: PrefRestoreConfig,
    strict: bool,
    problems: _Problems,
    report: Report,
    where_ckpt: str,
) -> TokenizerConfig:
    """TA-Tok: the checkpoint's copy wins (what the official from_pretrained loads); ta_tok.pth fills in or is
    checked against it. Adds the tensors to ``state``/``origin``; returns the tokenizer config."""
    in_ckpt = _has(state, "tokenizer")
    args = None
    if ta_tok is not None:
        args, sd = read_ta_tok(ta_tok)
        side_report = Report(kind)
        side = map_keys(sd, TATOK_RULES, side_report)
        problems.extend(str(ta_tok), "unknown keys", side.unknown)
        if in_ckpt:
            differ = [k for k, v in side.state.items() if k not in state or not _same(state[k], v)]
            if differ:
                msg = (
                    f"{ta_tok} and the TA-Tok copy in {where_ckpt} differ in {len(differ)} tensors "
                    f"({', '.join(differ[:4])}); the checkpoint's copy is what the official model uses, "
                    "drop --ta-tok to use it"
                )
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
    if not _has(state, "tokenizer"):
        raise CheckpointError(f"{where_ckpt}: no TA-Tok weights ({_VT}*); pass --ta-tok ta_tok.pth (csuhan/TA-Tok)")
    report.sources["tokenizer"] = where_ckpt if in_ckpt else str(ta_tok)
    if args is None:
        report.notes.append(
            f"TA-Tok input size from the {base.name!r} preset ({base.tokenizer.image_size}); "
            "ta_tok.pth records it (args.input_size)"
        )
    tatok_sd = {k[len("tokenizer.") :]: v for k, v in state.items() if k.startswith("tokenizer.")}
    tok_cfg = tokenizer_config(args, tatok_sd, base.tokenizer, where=report.sources["tokenizer"])

    return tok_cfg


def _sana_part(
    state: dict, origin: dict, sana_dir: Path | None, *, base: PrefRestoreConfig, report: Report, where_ckpt: str
) -> tuple[TransformerConfig, AutoencoderConfig]:
    """SANA transformer and DC-AE: configs from the SANA folder (else the base preset), weights from the checkpoint
    when it has them (fine-tuned), else from the folder."""
    tr_cfg, ae_cfg = base.transformer, base.autoencoder
    if sana_dir is not None:
        tr_cfg = transformer_config(
            read_json(sana_dir / "transformer" / "config.json"), where=str(sana_dir / "transformer" / "config.json")
        )
        ae_cfg = autoencoder_config(
            read_json(sana_dir / "vae" / "config.json"), where=str(sana_dir / "vae" / "config.json")
        )
    else:
        report.notes.append(
            f"no SANA folder: transformer/autoencoder configs from the {base.name!r} preset, "
            "checked against the checkpoint's tensor shapes"
        )
    for comp, sub in (("transformer", "transformer"), ("vae", "vae")):
        if _has(state, comp):
            report.sources[comp] = where_ckpt
            if sana_dir is not None:
                report.notes.append(
                    f"{comp}: weights from the checkpoint (fine-tuned); {sana_dir / sub} used for its config only"
                )
        elif sana_dir is None:
            raise CheckpointError(
                f"{where_ckpt}: no {'model.sana' if comp == 'transformer' else 'model.sana_vae'}.* "
                "weights; pass --sana SANA1.5_1.6B_1024px_diffusers"
            )
        else:
            sd, sfiles = read_weights(sana_dir / sub, "diffusion_pytorch_model")
            where = str(sfiles[0]) if len(sfiles) == 1 else str(sana_dir / sub)
            for k, v in sd.items():
                state[COMPONENTS[comp] + k], origin[COMPONENTS[comp] + k] = v, (k, where)
            report.sources[comp] = where

    return tr_cfg, ae_cfg


def _dedupe_shared(
    state: dict, origin: dict, aliases: dict, *, strict: bool, problems: _Problems, report: Report
) -> None:
    """Duplicates of shared tensors: one Parameter in the model, two keys in the official files; keep one."""
    for key in _PREFERRED:
        group = [key, *aliases.get(key, ())]
        present = [k for k in group if k in state]
        for k in present[1:]:
            if not _same(state[present[0]], state[k]):
                msg = (
                    f"{origin[k][1]}: {origin[k][0]} differs from {origin[present[0]][0]}, but they are one "
                    "Parameter in the official model (tied embedding / shared RMSNorm)"
                )
                if strict:
                    problems.append(msg)
                else:
                    report.warn(msg + f"; using {origin[present[0]][0]}")
            report.drop(f"duplicate of a shared tensor (stored once; {present[0]} in our model)", origin[k][0])
            del state[k]


def _account_for_every_key(
    state: dict,
    origin: dict,
    expected: dict,
    aliases: dict,
    *,
    strict: bool,
    problems: _Problems,
    report: Report,
    where_ckpt: str,
) -> None:
    """Every key accounted for: missing or mis-shaped tensors raise; unknown ones raise when strict (else warn)
    and are dropped from ``state``."""
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


def _check_scale_layer(
    raw: dict[str, torch.Tensor], *, strict: bool, problems: _Problems, report: Report, where: str
) -> None:
    """The checkpoint's TA-Tok ScalingLayer must be the identity (BLIP3o's override of TA-Tok's 0.5/0.5, applied
    after the SigLIP processor's [-1, 1] output): prefrestore feeds [-1, 1] images straight to the tower."""
    shift, scale = raw.get(_VT + "scale_layer.shift"), raw.get(_VT + "scale_layer.scale")
    if shift is None and scale is None:
        return
    if shift is None or scale is None or shift.float().abs().max() != 0 or (scale.float() - 1).abs().max() != 0:
        msg = (
            f"{where}: {_VT}scale_layer is not the identity (shift 0, scale 1); the official model would "
            "normalise TA-Tok inputs differently from prefrestore"
        )
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
    from ..lora import check_lora, merge_into_state, read_lora

    adapter = read_lora(path)
    where = f"{conv.report.kind} transformer"
    if merge:
        # float32, so that merging loses nothing; write_model(dtype=...) rounds afterwards if asked to
        conv.state = merge_into_state(conv.state, adapter, prefix="transformer.", where=where, dtype=torch.float32)
        conv.config = dataclasses.replace(conv.config, name=conv.config.name + "+lora")
        conv.report.sources["lora"] = f"{adapter.path} (merged, scale {adapter.scale:g})"
    else:
        sub = {k[len("transformer.") :]: v for k, v in conv.state.items() if k.startswith("transformer.")}
        check_lora(adapter, sub, where=where)
        conv.adapter = adapter.path
        conv.report.sources["lora"] = f"{adapter.path} (unmerged, copied to lora/)"
    if (adapter.path / "old" / "adapter_config.json").is_file():
        conv.report.notes.append(
            f"{adapter.path / 'old'}: the DiffusionNFT sampling ('old') adapter, not used; "
            "pass that folder as --lora to convert it instead"
        )
    return adapter


def write_model(
    conv: Conversion, out: str | os.PathLike, *, dtype: torch.dtype | None = None, max_shard_size: str = "5GB"
) -> Path:
    """Write ``conv`` as a prefrestore model folder (checkpoints.save_pretrained layout) + ``tokenizer/`` (the
    official files, verbatim) + ``conversion.json`` (+ ``lora/`` for an unmerged adapter). ``out`` must be new/empty;
    the folder is built under a temporary name and renamed into place, so a killed conversion leaves no half model."""
    from ..io.io_safety import atomic_write_text, staged_folder

    with staged_folder(out) as tmp:
        _write_model(conv, tmp, dtype=dtype, max_shard_size=max_shard_size, write_text=atomic_write_text)
    return Path(out)


def _write_model(conv: Conversion, out: Path, *, dtype, max_shard_size: str, write_text) -> None:
    from ..checkpoints import save_pretrained, shared_aliases
    from ..licenses import RL_NOTE, model_card, statements
    from ..lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS

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
    report.update(licenses=statements(conv.report.kind, conv.report.sources), training_stage=RL_NOTE)
    write_text(out / "conversion.json", json.dumps(report, indent=2))
    write_text(out / "MODEL_CARD.md", model_card(conv.report.kind, conv.report.sources))


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
    conv = convert_official(
        kind,
        resolve_official(str(checkpoint), kind, allow_download=allow_download),
        ta_tok=_opt(ta_tok, "ta-tok", allow_download),
        sana=_opt(sana, "sana", allow_download),
        base=base,
        strict=strict,
    )
    if lora is not None:
        apply_lora(conv, lora, merge=merge_lora)
    return conv.to_model(device=device, dtype=dtype)


def from_prefrestore(directory: str | os.PathLike) -> Conversion:
    """An existing prefrestore model folder as a Conversion (to add a LoRA adapter to it)."""
    from ..checkpoints import load_state_dict, read_config

    d = Path(directory)
    files = [f for f in sorted((d / "tokenizer").glob("*")) if f.is_file()]
    if not files:
        raise CheckpointError(f"{d / 'tokenizer'}: missing text tokenizer folder")
    return Conversion(read_config(d), load_state_dict(d), files, Report("prefrestore", sources={"model": str(d)}))


def _opt(ref, what: str, allow_download: bool) -> Path | None:
    return None if ref is None else resolve_official(str(ref), what, allow_download=allow_download)

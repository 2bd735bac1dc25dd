"""Official checkpoints by local path or Hugging Face repo id, offline-first, with the files each kind needs."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ..errors import CheckpointError, UserError
from ..hub import cached_snapshot, download_snapshot, hub_cache_dir, hub_file, is_repo_id
from .official_files import weight_files

# ---------------------------------------------------------------------------------------------------------------
# Hub ids, offline-first

_HUB_PATTERNS = {
    "stage-a": ["*.json", "*.safetensors", "*.txt", "*.jinja"],
    "blip3o": ["*.json", "*.safetensors", "*.txt", "*.jinja"],
    "sana": ["model_index.json", "transformer/*", "vae/*", "scheduler/*"],
}
_WHAT = {
    "stage-a": "Stage-A checkpoint",
    "blip3o": "BLIP3o-NEXT checkpoint",
    "sana": "SANA diffusers folder",
    "ta-tok": "TA-Tok file",
}


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
        if not (d / "tokenizer.json").is_file() and not (
            (d / "vocab.json").is_file() and (d / "merges.txt").is_file()
        ):
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
    if not is_repo_id(ref):
        raise UserError(f"{ref}: no such file or folder, and not a Hugging Face repo id (ORG/NAME)")
    cache = hub_cache_dir(cache_dir)
    if what == "ta-tok":
        f = hub_file(ref, "ta_tok.pth", cache_dir=cache_dir, allow_download=allow_download)
        if f is None:
            raise UserError(
                f"{ref}: ta_tok.pth is not in the local Hugging Face cache ({cache}) and downloads are "
                f"off; on a machine with network run `hf download {ref} ta_tok.pth --local-dir DIR`, "
                "copy DIR here and pass --ta-tok DIR/ta_tok.pth (or add --download)"
            )
        return f
    d = cached_snapshot(ref, cache_dir=cache_dir)
    missing = ["everything"] if d is None else missing_files(d, what)
    if missing and allow_download:
        d = download_snapshot(ref, cache_dir=cache_dir, allow_patterns=_HUB_PATTERNS[what])
        missing = missing_files(d, what)
    if missing:
        if missing == ["everything"]:
            missing = missing_files(Path(tempfile.gettempdir()) / "prefrestore-nonexistent", what)
        include = " ".join(f"'{p}'" for p in _HUB_PATTERNS[what])
        raise UserError(
            f"{ref}: not complete in the local Hugging Face cache ({cache}), downloads are off; missing "
            f"{', '.join(missing)}. On a machine with network run `hf download {ref} --include {include} "
            f"--local-dir DIR`, copy DIR here and pass DIR instead of {ref} (or add --download)"
        )
    assert d is not None
    return d

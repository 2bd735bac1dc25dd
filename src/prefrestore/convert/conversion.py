"""The result of a conversion: the converted tensors and config (:class:`Conversion`) and where every tensor came
from (:class:`Report`, written as ``conversion.json``)."""

from __future__ import annotations

import dataclasses
import logging
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch

from ..models.restorer import PrefRestoreConfig, PrefRestoreModel
from .official_files import _copy_files

log = logging.getLogger("prefrestore.convert")


Kind = Literal["stage-a", "blip3o"]
KINDS: tuple[str, ...] = ("stage-a", "blip3o")


COMPONENTS = {
    "tokenizer": "tokenizer.",
    "integrator": "integrator.",
    "transformer": "transformer.",
    "vae": "vae.",
    "diffusion_connector": "diffusion_connector.",
    "vae_connector": "vae_connector.",
}


@dataclass
class Report:
    """Where every tensor came from and what was left out, written to ``conversion.json`` next to the model."""

    kind: str
    sources: dict[str, str] = field(default_factory=dict)  # component -> file or folder
    mapped: int = 0
    dropped: dict[str, list[str]] = field(default_factory=dict)  # reason -> official keys
    initialised: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    groups: dict[str, dict[str, int]] = field(default_factory=dict)  # reason -> {official prefix: count}

    def drop(self, reason: str, key: str, prefix: str | None = None) -> None:
        self.dropped.setdefault(reason, []).append(key)
        g = self.groups.setdefault(reason, {})
        g[prefix or key] = g.get(prefix or key, 0) + 1

    def warn(self, msg: str) -> None:
        log.warning("%s", msg)
        self.warnings.append(msg)

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["dropped"] = {r: {"count": len(ks), "prefixes": self.groups.get(r, {})} for r, ks in self.dropped.items()}
        del d["groups"]
        return d


@dataclass
class Conversion:
    """A converted model, not yet written: its config, tensors under our names (one key per shared tensor), the
    official text tokenizer files and the report."""

    config: PrefRestoreConfig
    state: dict[str, torch.Tensor]
    tokenizer_files: list[Path]
    report: Report
    adapter: Path | None = None  # an unmerged LoRA adapter folder that goes with the model (lora/)

    def to_model(self, *, device: str | torch.device = "cpu", dtype: torch.dtype | None = None) -> PrefRestoreModel:
        """Build and load the model (eval mode) with the official text tokenizer: direct loading, no folder."""
        from ..checkpoints import load_into
        from ..models.text_tokenizer import load_text_tokenizer

        with tempfile.TemporaryDirectory() as tmp:
            _copy_files(self.tokenizer_files, Path(tmp))
            tok = load_text_tokenizer(tmp)
        model = PrefRestoreModel(self.config, tok)
        load_into(model, self.state, where=f"converted {self.report.kind} checkpoint")
        if self.adapter is not None:
            from ..lora import load_lora

            load_lora(model, self.adapter, merge=False)
        if dtype is not None:
            model.to(dtype)
        return model.to(device).eval()

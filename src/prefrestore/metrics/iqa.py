"""Learned no-reference IQA (MUSIQ, CLIP-IQA, MANIQA) through the optional ``pyiqa`` package.

prefrestore does not re-implement these networks. They run when ``pyiqa`` is installed (``pip install pyiqa``;
note its non-commercial licence) *and* their weight files are already in pyiqa's cache folder
(``$TORCH_HOME/hub/pyiqa``, default ``~/.cache/torch/hub/pyiqa``; CLIP's ``RN50.pt`` in ``.../hub/clip``), so
nothing is downloaded. Otherwise constructing one raises MetricUnavailable naming the package and files.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import torch

from .weights import MetricUnavailable

# metric -> (pyiqa metric name, [(sub-folder of the torch hub dir, file)], higher is better)
PYIQA_METRICS: dict[str, tuple[str, list[tuple[str, str]], bool]] = {
    "musiq": ("musiq", [("pyiqa", "musiq_koniq_ckpt-e95806b9.pth")], True),
    "clipiqa": ("clipiqa", [("clip", "RN50.pt")], True),
    "maniqa": ("maniqa", [("pyiqa", "ckpt_koniq10k.pt")], True),
}


def _hub_dir() -> Path:
    home = os.environ.get("TORCH_HOME")
    return Path(home).expanduser() / "hub" if home else Path("~/.cache/torch/hub").expanduser()


class PyiqaMetric:
    """(B, 3, H, W) RGB in [0, 1] -> (B,) scores from a pyiqa no-reference metric."""

    def __init__(self, name: str, *, device: str | torch.device = "cpu") -> None:
        if name not in PYIQA_METRICS:
            raise ValueError(f"unknown pyiqa metric {name!r}; expected one of {sorted(PYIQA_METRICS)}")
        pyiqa_name, files, _ = PYIQA_METRICS[name]
        label = {"musiq": "MUSIQ", "clipiqa": "CLIP-IQA", "maniqa": "MANIQA"}[name]
        missing = [_hub_dir() / sub / f for sub, f in files if not (_hub_dir() / sub / f).is_file()]
        if importlib.util.find_spec("pyiqa") is None:
            need = ", ".join(str(_hub_dir() / sub / f) for sub, f in files)
            raise MetricUnavailable(label, f"needs the pyiqa package (pip install pyiqa) and its weights at {need}")
        if missing:
            raise MetricUnavailable(label, f"provide {', '.join(p.name for p in missing)} at {missing[0].parent}")
        import pyiqa

        self.metric = pyiqa.create_metric(pyiqa_name, device=torch.device(device), as_loss=False)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return self.metric(images.float().clamp(0, 1)).flatten().double().cpu()

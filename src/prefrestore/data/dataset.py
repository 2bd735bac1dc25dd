"""Training samples: an HQ face, its on-the-fly LQ twin and an instruction, all drawn from one seed per item.

Item ``index`` of epoch ``e`` uses ``torch.Generator(derive_seed(seed, e, index))`` and nothing else, in this
fixed order: horizontal flip, task, caption gate, degradation parameters. So an item is the same in any worker,
batch or run, and its degradation is recorded (``params``) and replayable with ``degradations.apply``.

Task mix (docs/method.md §2.4, templates in models/integrator.py): with p=``recon_prob`` (0.2) the side-mission
reconstruction (the input is the HQ image itself); otherwise restoration with the caption (p=``caption_prob``,
0.9 of the rest: 72% overall) or without it (8%). A restoration sample whose record has no caption uses the
no-caption template (only with ``missing_caption="no_text"``; the default skips such items, see below).

Bad data never stops a run: an item that cannot be used returns a :class:`Skip` with a reason - ``corrupt``
(undecodable/truncated), ``grayscale``, ``too_small`` (short side < ``min_size``), ``no_caption``, ``no_face``
(alignment on and no face found) - and the stream counts and logs it.

Shapes: ``hq``/``lq`` float32 (3, S, S) RGB in [-1, 1], S = resolution (``crop`` when set). With ``alt_prob`` > 0
the alternative recipe's parameters and one gate are drawn after the degradation's; with ``crop`` the window's
offsets after those: configs without them draw exactly what they always did.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch
from PIL import Image

from ..degradations import DegradationConfig, apply, sample_params
from ..io.image import from_unit, uint8_to_unit
from ..models.integrator import CAPTION_INSTRUCTION, RESTORE_INSTRUCTION, SIDE_MISSION_INSTRUCTION
from ..seeding import derive_seed
from .sources import Record, read_bytes

Task = Literal["recon", "caption", "plain"]


@dataclass(frozen=True)
class DataConfig:
    folders: list[str] = field(default_factory=list)
    """Image folders (each may hold a captions.jsonl)."""
    manifests: list[str] = field(default_factory=list)
    """Text files listing shard directories (parquet / webdataset tar), one a line."""
    batch_size: int = 4
    """Per-device micro-batch."""
    num_workers: int = 0
    resolution: int = 0
    """Side of the HQ/LQ crops; 0 = the model's resolution."""
    min_size: int = 64
    """Images whose short side is below this are skipped as ``too_small``."""
    allow_grayscale: bool = False
    missing_caption: Literal["skip", "no_text"] = "skip"
    """Records without a caption: skip them, or use them with the no-caption instruction."""
    align: bool = False
    """Detect and align the largest face with prefrestore.faces (for unaligned HQ photos)."""
    hflip: float = 0.5
    recon_prob: float = 0.2
    caption_prob: float = 0.9
    max_caption_chars: int = 512
    degradation: DegradationConfig = field(default_factory=DegradationConfig)
    alt_prob: float = 0.0
    """Probability that an item is degraded with ``alt_degradation`` instead (a mix of mild and severe)."""
    alt_degradation: DegradationConfig = field(default_factory=DegradationConfig)
    crop: int = 0
    """> 0: a random ``crop`` x ``crop`` window of the HQ/LQ pair (after degrading the whole image), for the
    fully convolutional autoencoder stages; 0 = the whole image."""

    def __post_init__(self):
        for name in ("hflip", "recon_prob", "caption_prob", "alt_prob"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"data.{name}={getattr(self, name)} must be a probability in [0, 1]")
        if self.batch_size < 1:
            raise ValueError(f"data.batch_size={self.batch_size} must be >= 1")
        if self.crop < 0 or self.crop % 8:
            raise ValueError(f"data.crop={self.crop} must be 0 (whole image) or a positive multiple of 8")


@dataclass(frozen=True)
class Skip:
    reason: str
    key: str
    detail: str = ""


def instruction_for(task: Task, caption: str | None) -> str:
    if task == "recon":
        return SIDE_MISSION_INSTRUCTION
    if task == "caption" and caption:
        return CAPTION_INSTRUCTION.format(caption=caption)
    return RESTORE_INSTRUCTION


def draw_choices(g: torch.Generator, cfg: DataConfig) -> tuple[bool, Task]:
    """(horizontal flip?, task) for one item; three uniform draws from ``g`` in a fixed order."""
    flip = torch.rand((), generator=g).item() < cfg.hflip
    u_task, u_cap = torch.rand((), generator=g).item(), torch.rand((), generator=g).item()
    task: Task = "recon" if u_task < cfg.recon_prob else ("caption" if u_cap < cfg.caption_prob else "plain")
    return flip, task


def _is_grayscale(img: Image.Image) -> bool:
    if img.mode in ("1", "L", "LA", "I", "I;16", "F"):
        return True
    a = np.asarray(img.convert("RGB"), dtype=np.int16)
    return bool(np.abs(a[..., 0] - a[..., 1]).max() <= 2 and np.abs(a[..., 1] - a[..., 2]).max() <= 2)


def center_square(img: np.ndarray, size: int) -> np.ndarray:
    """uint8 (H, W, 3) -> (size, size, 3): shorter side to ``size`` (bicubic, antialiased), centre crop."""
    h, w = img.shape[:2]
    s = size / min(h, w)
    nh, nw = max(size, round(h * s)), max(size, round(w * s))
    im = Image.fromarray(img).resize((nw, nh), Image.BICUBIC) if (nh, nw) != (h, w) else Image.fromarray(img)
    top, left = (nh - size) // 2, (nw - size) // 2
    return np.asarray(im.crop((left, top, left + size, top + size)))


class FaceDataset:
    """Map-style: ``item(index, epoch) -> dict | Skip``. Records come from data/sources.py."""

    def __init__(self, records: list[Record], cfg: DataConfig, resolution: int, *, seed: int = 0):
        self.records = records
        self.cfg = cfg
        self.resolution = cfg.resolution or resolution
        self.seed = seed
        self._detector = None

    def __len__(self) -> int:
        return len(self.records)

    def _align(self, img: np.ndarray) -> np.ndarray | None:
        from ..faces.align import align
        from ..faces.detect import build_detector

        if self._detector is None:
            self._detector = build_detector("mtcnn", device="cpu")
        dets = self._detector.detect(img)
        if not dets:
            return None
        best = max(dets, key=lambda d: d.size)
        return align(img, best, size=self.resolution).crop

    def load_hq(self, r: Record) -> np.ndarray | Skip:
        """Decode and check one record -> uint8 (S, S, 3) RGB, or a Skip."""
        try:
            with Image.open(io.BytesIO(read_bytes(r))) as im:
                im.load()  # force a full decode: truncated files fail here
                if min(im.size) < self.cfg.min_size:
                    return Skip("too_small", r.key, f"{im.size[0]}x{im.size[1]} < {self.cfg.min_size}")
                if not self.cfg.allow_grayscale and _is_grayscale(im):
                    return Skip("grayscale", r.key)
                arr = np.asarray(im.convert("RGB"))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            return Skip("corrupt", r.key, str(err)[:120])
        if self.cfg.align:
            face = self._align(arr)
            return face if face is not None else Skip("no_face", r.key)
        return center_square(arr, self.resolution)

    def item(self, index: int, epoch: int) -> dict | Skip:
        r = self.records[index]
        caption = r.caption[: self.cfg.max_caption_chars] if r.caption else None
        if caption is None and self.cfg.missing_caption == "skip":
            return Skip("no_caption", r.key)
        hq8 = self.load_hq(r)
        if isinstance(hq8, Skip):
            return hq8
        seed = derive_seed(self.seed, epoch, index)
        g = torch.Generator().manual_seed(seed)
        hq = uint8_to_unit(hq8)  # (3, S, S) in [0, 1]
        flip, task = draw_choices(g, self.cfg)
        if flip:
            hq = hq.flip(-1)
        params = sample_params(self.cfg.degradation, g)  # drawn for every task, so later draws never shift
        if self.cfg.alt_prob > 0:  # drawn only when a mix is configured, so single-recipe items stay as they were
            alt = sample_params(self.cfg.alt_degradation, g)
            params = alt if torch.rand((), generator=g).item() < self.cfg.alt_prob else params
        lq = hq if task == "recon" else apply(hq, params)
        if self.cfg.crop:
            c, S = self.cfg.crop, hq.shape[-1]
            if c > S:
                return Skip("too_small", r.key, f"crop {c} > image {S}")
            y, x = (int(v) for v in torch.randint(0, S - c + 1, (2,), generator=g))
            hq, lq = hq[:, y : y + c, x : x + c], lq[:, y : y + c, x : x + c]  # (3, c, c) each
        return {
            "hq": from_unit(hq),
            "lq": from_unit(lq),
            "instruction": instruction_for(task, caption),
            "task": task,
            "params": None if task == "recon" else params.to_dict(),
            "seed": derive_seed(self.seed, epoch, index, 1),  # the training step's per-sample noise seed
            "key": r.key,
            "index": index,
        }


def collate(items: list[dict]) -> dict:
    """list of item dicts -> batch: hq/lq stacked (B, 3, S, S); the rest as lists."""
    out = {k: [it[k] for it in items] for k in items[0]}
    out["hq"], out["lq"] = torch.stack(out["hq"]), torch.stack(out["lq"])
    return out

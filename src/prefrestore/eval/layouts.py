"""Benchmark layouts: which LQ, GT and restored files belong together.

* paired (CelebA-Test and any synthetic set from ``prefrestore make-testset``): a folder holding an LQ and a GT
  sub-folder (``lq/``+``gt/``, ``input/``+``gt/``, ``LQ/``+``HQ/``, or CelebA-Test's
  ``celeba_512_validation_lq/``+``celeba_512_validation/``), or explicit ``--lq DIR --gt DIR``;
* LQ-only (the real-world LFW-Test, WebPhoto-Test, CelebChild-Test, WIDER-Test): a folder of aligned LQ faces
  (or its ``lq/`` sub-folder); identity and LMD are then measured against the LQ input;
* score-only: ``--restored DIR`` written by any method, with ``--gt DIR`` and/or ``--lq DIR``.

Files are matched by stem; a restored file may also carry GFPGAN's ``_00`` face suffix (``name_00.png``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ..errors import UserError
from ..io.image import list_images

Kind = Literal["paired", "lq_only", "restored"]
PAIRED_SUBDIRS = (
    ("lq", "gt"),
    ("input", "gt"),
    ("LQ", "HQ"),
    ("lq", "hq"),
    ("celeba_512_validation_lq", "celeba_512_validation"),
)


@dataclass(frozen=True)
class Item:
    name: str
    lq: Path | None
    gt: Path | None
    restored: Path | None = None


@dataclass(frozen=True)
class Benchmark:
    name: str
    kind: Kind
    items: tuple[Item, ...]
    lq_dir: str | None
    gt_dir: str | None
    restored_dir: str | None

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "kind": self.kind,
            "count": len(self.items),
            "lq_dir": self.lq_dir,
            "gt_dir": self.gt_dir,
            "restored_dir": self.restored_dir,
        }


def _by_stem(folder: Path, *, strip_face_suffix: bool = False) -> dict[str, Path]:
    files = list_images(folder)
    if not files:
        raise UserError(f"{folder}: no images found")
    out: dict[str, Path] = {}
    for p in files:
        stem = p.stem
        if stem in out:
            raise UserError(f"{folder}: several files named {stem}.*; keep one per name")
        out[stem] = p
    if strip_face_suffix:
        for stem, p in list(out.items()):
            if stem.endswith("_00") and stem[:-3] not in out:
                out[stem[:-3]] = p
    return out


def _match(primary: dict[str, Path], other: dict[str, Path], what: str, folder: Path) -> None:
    missing = sorted(set(primary) - set(other))
    if missing:
        raise UserError(
            f"{folder}: no {what} for {len(missing)} of {len(primary)} images (e.g. {missing[:3]}); "
            "names must match by file stem"
        )


def discover(
    data: str | None = None,
    *,
    lq: str | None = None,
    gt: str | None = None,
    restored: str | None = None,
    limit: int | None = None,
) -> Benchmark:
    """Resolve the arguments of ``prefrestore eval`` into matched items (sorted by name)."""
    if data is not None:
        if lq or gt:
            raise UserError("give either a benchmark folder (--data) or --lq/--gt folders, not both")
        root = Path(data)
        if not root.is_dir():
            raise UserError(f"{root}: not a folder")
        for lq_name, gt_name in PAIRED_SUBDIRS:
            if (root / lq_name).is_dir() and (root / gt_name).is_dir():
                lq, gt = str(root / lq_name), str(root / gt_name)
                break
        else:
            lq = str(root / "lq") if (root / "lq").is_dir() else str(root)
        name = root.name
    else:
        name = Path(restored or lq or gt or "benchmark").name
    if lq is None and gt is None:
        raise UserError("nothing to evaluate: pass a benchmark folder, --lq DIR (and --gt DIR), or --restored + --gt")
    lq_map = _by_stem(Path(lq)) if lq else None
    gt_map = _by_stem(Path(gt)) if gt else None
    res_map = _by_stem(Path(restored), strip_face_suffix=True) if restored else None
    primary = lq_map if lq_map is not None else gt_map
    assert primary is not None
    names = sorted(primary)
    if lq_map is not None and gt_map is not None:
        _match(lq_map, gt_map, "GT", Path(gt))
    if res_map is not None:
        _match({n: Path() for n in names}, res_map, "restored image", Path(restored))
    if limit:
        names = names[:limit]
    items = tuple(
        Item(
            name=n,
            lq=lq_map[n] if lq_map else None,
            gt=gt_map[n] if gt_map else None,
            restored=res_map[n] if res_map else None,
        )
        for n in names
    )
    kind: Kind = "restored" if restored else ("paired" if gt_map is not None else "lq_only")
    return Benchmark(name=name, kind=kind, items=items, lq_dir=lq, gt_dir=gt, restored_dir=restored)

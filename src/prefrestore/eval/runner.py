"""``evaluate(cfg)``: restore a benchmark (or take restored files), score every image, write one run folder.

Run folder layout (everything needed to resume, compare and audit)::

    RUN/run.json          settings: benchmark, model, steps, guidance, seed, samples, metrics (checked on resume)
    RUN/restored/*.png    restorations (seed ``seed``), at the reference size
    RUN/samples/k/*.png   extra samples k = 1..K-1 (seed + k) when --samples K > 1, for solution entropy
    RUN/timings.jsonl     restore seconds per image (batch time / batch size)
    RUN/scores.jsonl      per-image metrics, appended; the last record of a name wins
    RUN/features/*.npz    cached FID features; reference_stats.npz (mu, sigma) reusable as --fid-stats
    RUN/results.{json,csv,md}, RUN/per_image.csv, RUN/plots/*.png, RUN/grid.png

Resuming: restorations already on disk are not redone; images whose cached record lacks a metric that can now
run are re-scored; FID features are reused when the file list matches.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .. import __version__
from ..errors import UserError
from ..io.image import list_images, load_rgb, resize, save_rgb, uint8_to_unit
from ..io.io_safety import InputGuard, OwnedFolder, atomic_write_text
from ..metrics import fid as fidlib
from ..metrics.entropy import mean_pairwise_distance, pixel_std
from ..metrics.pixel import match_mean_std
from ..metrics.suite import DEFAULT_METRICS, ImageScorer, LandmarkChoice
from ..metrics.weights import MetricUnavailable
from .layouts import Benchmark, Item, discover
from .restorers import RestorerSpec, build_pipeline

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EvalConfig:
    """Everything ``prefrestore eval`` needs for one run."""

    out: str
    data: str | None = None
    lq: str | None = None
    gt: str | None = None
    restored: str | None = None
    """Score this folder instead of restoring."""
    model: str | None = None
    """``bicubic`` or a prefrestore model reference; required unless ``restored`` is given."""
    name: str | None = None
    device: str = "cpu"
    steps: int | None = None
    guidance_scale: float | None = None
    deterministic: bool = True
    seed: int = 0
    samples: int = 1
    """K restorations per input (seeds seed..seed+K-1) for solution entropy; 1 = none."""
    batch_size: int = 8
    metrics: tuple[str, ...] = DEFAULT_METRICS
    fid: bool = True
    fid_ref: str | None = None
    fid_stats: str | None = None
    weights_dir: str | None = None
    landmarks: LandmarkChoice = "auto"
    crop_border: int = 0
    correct_mean_var: bool = False
    """VQFR's colour correction before PSNR/SSIM (see metrics.pixel.match_mean_std)."""
    limit: int | None = None
    grid: int = 8

    def __post_init__(self) -> None:
        if self.restored is None and self.model is None:
            raise ValueError("give --model (bicubic or a prefrestore model) to restore, or --restored DIR to score")
        if self.restored is not None and self.model is not None:
            raise ValueError("--restored scores an existing folder; do not also pass --model")
        if self.samples < 1:
            raise ValueError(f"samples={self.samples}: must be >= 1")
        if self.samples > 1 and self.restored is not None:
            raise ValueError("--samples needs a model to draw samples from; it does not apply to --restored")

    @property
    def method(self) -> str:
        if self.name:
            return self.name
        if self.model:
            return Path(self.model).name if self.model != "bicubic" else "bicubic"
        return Path(self.restored or "restored").name

    def settings(self) -> dict[str, object]:
        d = asdict(self)
        d["metrics"] = list(self.metrics)
        for k in ("out", "limit", "grid", "name", "batch_size", "device"):
            d.pop(k)
        return d


@dataclass
class RunResult:
    folder: Path
    summary: dict[str, object] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------------------------
# Helpers


def _read_jsonl(path: Path) -> dict[str, dict]:
    out: dict[str, dict] = {}
    if path.is_file():
        for line in path.read_text().splitlines():
            if line.strip():
                try:
                    rec = json.loads(line)
                    out[rec["name"]] = rec
                except (ValueError, KeyError, TypeError):  # a line torn by a kill: that image is redone
                    logger.warning("%s: ignoring a torn line (an interrupted run)", path)
    return out


def _append_jsonl(path: Path, records: list[dict]) -> None:
    with path.open("a") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
        f.flush()
        os.fsync(f.fileno())


def _square(img: np.ndarray, size: int) -> np.ndarray:
    return resize(img, (size, size), resample="bicubic")


def _output_size(item: Item) -> tuple[int, int]:
    """(h, w) that restorations are stored at: the GT's size, else the LQ's (read from the header only)."""
    from PIL import Image

    with Image.open(item.gt if item.gt is not None else item.lq) as im:  # type: ignore[arg-type]
        return im.size[1], im.size[0]


RUN_FILES = (
    "run.json",
    "timings.jsonl",
    "scores.jsonl",
    "results.json",
    "results.md",
    "results.csv",
    "per_image.csv",
    "grid.png",
    "restored/",
    "features/",
    "plots/",
)
"""What a run writes in its folder (and ``samples/`` with --samples > 1): claimed before any work, so a file of
the same name that the run did not write stops it at once instead of being replaced."""


def _input_folders(cfg: EvalConfig) -> list[str]:
    """The folders a run reads: it never writes into them."""
    return [f for f in (cfg.data, cfg.lq, cfg.gt, cfg.restored, cfg.fid_ref) if f]


def _legacy_run(folder: Path) -> bool:
    """A run folder written before ownership records: its run.json is eval's."""
    try:
        data = json.loads((folder / "run.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "prefrestore_version" in data and "settings" in data


def _check_settings(run: Path, cfg: EvalConfig, bench: Benchmark) -> None:
    settings = {"settings": cfg.settings(), "benchmark": bench.describe(), "method": cfg.method}
    path = run / "run.json"
    if path.is_file():
        old = json.loads(path.read_text())
        old_s = dict(old.get("settings", {}))
        new_s = dict(settings["settings"])  # type: ignore[arg-type]
        for volatile in ("metrics", "fid", "fid_ref", "fid_stats", "weights_dir", "landmarks"):
            old_s.pop(volatile, None)
            new_s.pop(volatile, None)
        if old_s != new_s:
            diff = sorted(k for k in set(old_s) | set(new_s) if old_s.get(k) != new_s.get(k))
            raise UserError(
                f"{run}: holds a run with other settings ({', '.join(diff)}); resume with the same "
                "arguments or pick a new -o"
            )
    settings["prefrestore_version"] = __version__
    atomic_write_text(path, json.dumps(settings, indent=2) + "\n", guard=InputGuard(_bench_files(bench)))


# ----------------------------------------------------------------------------------------------------------------
# Phases


def restore_all(cfg: EvalConfig, bench: Benchmark, run: Path) -> dict[str, float]:
    """Restore every missing image (and extra samples); returns per-image seconds (from the timing log)."""
    timings_path = run / "timings.jsonl"
    todo = []
    for k in range(cfg.samples):
        folder = run / "restored" if k == 0 else run / "samples" / str(k)
        todo += [(k, it, folder / f"{it.name}.png") for it in bench.items if not _complete(folder / f"{it.name}.png")]
    guard = InputGuard(_bench_files(bench))
    if todo:
        out_h, out_w = _output_size(bench.items[0])
        spec = RestorerSpec(
            cfg.model or "bicubic", cfg.device, cfg.steps, cfg.guidance_scale, cfg.deterministic, cfg.batch_size
        )
        pipeline = build_pipeline(spec, output_size=max(out_h, out_w))
        s = int(pipeline.resolution)
        logger.info("restoring %d images with %s at %d px on %s", len(todo), cfg.method, s, cfg.device)
        bar = tqdm(total=len(todo), desc=f"restore {cfg.method}", unit="img")
        for k in range(cfg.samples):
            batch_items = [(it, p) for kk, it, p in todo if kk == k]
            for i in range(0, len(batch_items), cfg.batch_size):
                chunk = batch_items[i : i + cfg.batch_size]
                faces = [_square(load_rgb(it.lq), s) for it, _ in chunk]  # type: ignore[arg-type]
                t0 = time.perf_counter()
                outs = pipeline.restore_crops(faces, seed=cfg.seed + k)
                dt = (time.perf_counter() - t0) / len(chunk)
                recs = []
                for (it, path), out in zip(chunk, outs, strict=True):
                    h, w = _output_size(it)
                    save_rgb(path, resize(out, (w, h), resample="bicubic"), guard=guard)
                    recs.append({"name": it.name, "sample": k, "seconds": dt, "batch": len(chunk)})
                _append_jsonl(timings_path, recs)
                bar.update(len(chunk))
        bar.close()
    return {name: rec["seconds"] for name, rec in _read_jsonl(timings_path).items()}


def score_all(cfg: EvalConfig, bench: Benchmark, run: Path, scorer: ImageScorer) -> dict[str, dict[str, float]]:
    """Per-image metrics, cached in scores.jsonl; returns name -> {metric: value}."""
    path = run / "scores.jsonl"
    cached = {n: r["metrics"] for n, r in _read_jsonl(path).items()}
    wanted = scorer.available()
    todo = [it for it in bench.items if not set(wanted) <= set(cached.get(it.name, {}))]
    if todo:
        bar = tqdm(total=len(todo), desc="score", unit="img")
        for i in range(0, len(todo), cfg.batch_size):
            chunk = todo[i : i + cfg.batch_size]
            loaded = [_scoring_inputs(cfg, run, bench, it) for it in chunk]
            rows: list[dict[str, float]] = [{} for _ in chunk]
            # images of one size are scored together (metrics stack a batch); a benchmark may mix sizes
            by_size: dict[tuple[int, ...], list[int]] = {}
            for k, (restored, _, _, _) in enumerate(loaded):
                by_size.setdefault(restored.shape, []).append(k)
            for ks in by_size.values():
                gts = [loaded[k][1] for k in ks]
                lqs = [loaded[k][2] for k in ks]
                gt_arg = gts if all(g is not None for g in gts) else None
                lq_arg = lqs if all(q is not None for q in lqs) else None
                for k, row in zip(ks, scorer.score([loaded[k][0] for k in ks], gt=gt_arg, lq=lq_arg), strict=True):
                    rows[k] = row  # type: ignore[arg-type]
            recs = []
            for it, row, (_, _, _, resized_from) in zip(chunk, rows, loaded, strict=True):
                rec: dict = {"name": it.name, "metrics": row}
                if resized_from is not None:
                    rec["resized_from"] = resized_from
                recs.append(rec)
            _append_jsonl(path, recs)
            for rec in recs:
                cached[rec["name"]] = rec["metrics"]
            bar.update(len(chunk))
        bar.close()
    return {it.name: cached[it.name] for it in bench.items}


RESIZE_METHOD = "bicubic"
"""How a restoration whose size differs from its reference (the GT, else the LQ) is brought to that size before
scoring (PIL's bicubic filter, ``image.resize``); each such image is recorded and the report says so."""


def _scoring_inputs(cfg: EvalConfig, run: Path, bench: Benchmark, it: Item):
    """(restored at the reference's size, GT or None, LQ or None, the restoration's own [w, h] when it was
    resized, else None) of one image."""
    r = load_rgb(_restored_path(run, bench, it))
    ref = load_rgb(it.gt) if it.gt is not None else load_rgb(it.lq)  # type: ignore[arg-type]
    resized_from = None
    if r.shape != ref.shape:
        resized_from = [int(r.shape[1]), int(r.shape[0])]
        r = resize(r, (ref.shape[1], ref.shape[0]), resample=RESIZE_METHOD)
    if cfg.correct_mean_var and it.gt is not None:
        x, y = uint8_to_unit(r)[None], uint8_to_unit(ref)[None]
        fixed = match_mean_std(x, y).clamp(0, 1)[0].permute(1, 2, 0).numpy()
        r = (fixed * 255).round().astype(np.uint8)
    return r, ref if it.gt is not None else None, load_rgb(it.lq) if it.lq is not None else None, resized_from


def resize_note(run: Path, bench: Benchmark) -> str | None:
    """The report's line about restorations scored after resizing (None when every size matched)."""
    records = _read_jsonl(run / "scores.jsonl")
    resized = [
        (it.name, records[it.name]["resized_from"]) for it in bench.items if "resized_from" in records.get(it.name, {})
    ]
    if not resized:
        return None
    shown = ", ".join(f"{n} ({w}x{h})" for n, (w, h) in resized[:5]) + (", ..." if len(resized) > 5 else "")
    return (
        f"{len(resized)} of {len(bench.items)} restorations differ in size from their reference; each was "
        f"resized to the reference's size ({RESIZE_METHOD}, PIL) before scoring: {shown}"
    )


def _restored_path(run: Path, bench: Benchmark, it: Item) -> Path:
    return it.restored if it.restored is not None else run / "restored" / f"{it.name}.png"


def _features(
    extractor: Callable[[torch.Tensor], torch.Tensor], paths: list[Path], cache: Path, batch: int
) -> np.ndarray:
    """(N, D) features of ``paths`` (RGB in [0, 1] batches), cached in ``cache`` keyed by the file list and the
    extractor's ``name``."""
    names = [str(p.resolve()) for p in paths]
    tag = str(getattr(extractor, "name", ""))
    if cache.is_file():
        with np.load(cache, allow_pickle=False) as d:
            cached_tag = str(d["extractor"]) if "extractor" in d else ""
            if list(d["names"]) == names and cached_tag == tag:
                return d["features"]
    feats = []
    for i in tqdm(range(0, len(paths), batch), desc=f"features {cache.stem}", unit="batch"):
        imgs = [load_rgb(p) for p in paths[i : i + batch]]
        out: list[np.ndarray | None] = [None] * len(imgs)
        by_size: dict[tuple[int, ...], list[int]] = {}
        for k, a in enumerate(imgs):
            by_size.setdefault(a.shape, []).append(k)
        for ks in by_size.values():  # one size per extractor call (the extractor resizes to its own input size)
            x = torch.stack([uint8_to_unit(imgs[k]) for k in ks])
            for k, row in zip(ks, extractor(x).double().cpu().numpy(), strict=True):
                out[k] = row
        feats.append(np.stack(out))  # type: ignore[arg-type]
    f = np.concatenate(feats)
    cache.parent.mkdir(parents=True, exist_ok=True)
    np.savez(cache, features=f, names=np.asarray(names), extractor=np.asarray(tag))
    return f


def fid_score(cfg: EvalConfig, bench: Benchmark, run: Path) -> tuple[dict[str, float], dict[str, str]]:
    """({"fid": ..., "kid": ...}, {}) or, for what cannot be computed, ({...}, {metric: reason}). KID needs the
    reference's features, so it is unavailable with precomputed ``--fid-stats``."""
    reasons = {}
    if len(bench.items) < 2:
        return {}, {"fid": "FID needs at least 2 images", "kid": "KID needs at least 2 images"}
    ref_dir = cfg.fid_ref or bench.gt_dir
    if cfg.fid_stats is None and ref_dir is None:
        why = "needs a reference: --fid-ref DIR, --fid-stats FILE.npz, or a benchmark with GT"
        return {}, {"fid": f"FID {why}", "kid": f"KID {why}"}
    try:
        net = fidlib.load_inception(device=cfg.device, override=cfg.weights_dir)
    except MetricUnavailable as err:
        return {}, {"fid": str(err), "kid": str(err)}

    def extractor(x: torch.Tensor) -> torch.Tensor:
        return net(x.to(cfg.device))

    extractor.name = getattr(net, "name", "")  # type: ignore[attr-defined]
    f = _features(
        extractor,
        [_restored_path(run, bench, it) for it in bench.items],
        run / "features" / "restored.npz",
        cfg.batch_size,
    )
    st = fidlib.gaussian_stats(f)
    out: dict[str, float] = {}
    if cfg.fid_stats:
        ref = fidlib.GaussianStats.load(cfg.fid_stats)
        reasons["kid"] = "KID needs the reference images' features, not --fid-stats; use --fid-ref DIR"
    else:
        ref_paths = list_images(ref_dir)  # type: ignore[arg-type]
        ref_f = _features(extractor, ref_paths, run / "features" / "reference.npz", cfg.batch_size)
        ref = fidlib.gaussian_stats(ref_f)
        ref.save(run / "features" / "reference_stats.npz")  # reusable as --fid-stats for later runs
        out["kid"] = fidlib.kid_from_features(f, ref_f)[0]
    out["fid"] = fidlib.frechet_distance(st.mu, st.sigma, ref.mu, ref.sigma)
    return out, reasons


def entropy_scores(cfg: EvalConfig, bench: Benchmark, run: Path) -> dict[str, dict[str, float]]:
    """Per-image solution entropy over the K samples (needs samples > 1)."""
    out = {}
    for it in tqdm(bench.items, desc="entropy", unit="img"):
        paths = [run / "restored" / f"{it.name}.png"] + [
            run / "samples" / str(k) / f"{it.name}.png" for k in range(1, cfg.samples)
        ]
        x = torch.stack([uint8_to_unit(load_rgb(p)) for p in paths])
        out[it.name] = {"entropy_std": pixel_std(x), "entropy_pair": mean_pairwise_distance(x)}
    return out


# ----------------------------------------------------------------------------------------------------------------
# Entry point


def _bench_files(bench: Benchmark) -> list[Path]:
    return [p for it in bench.items for p in (it.lq, it.gt, it.restored) if p is not None]


def _complete(path: Path) -> bool:
    """An output of an earlier run that can be trusted (written atomically, so present means complete)."""
    try:
        return path.stat().st_size > 0
    except OSError:
        return False


def check_inputs(bench: Benchmark) -> None:
    """Decode every LQ, GT and restored file once before any work. Each unreadable one is logged as one line;
    then a UserError refuses the run: scores over a silently smaller set would not be the benchmark's."""
    from ..errors import ImageError
    from ..io.io_safety import shown

    bad = 0
    for p in _bench_files(bench):
        try:
            load_rgb(p)
        except ImageError as err:
            logger.error("%s", shown(err))
            bad += 1
    if bad:
        raise UserError(f"{bad} benchmark file(s) cannot be read (each listed above); fix or remove them, then rerun")


def evaluate(cfg: EvalConfig) -> RunResult:
    """Run the whole evaluation described in the module docstring."""
    from . import report

    bench = discover(cfg.data, lq=cfg.lq, gt=cfg.gt, restored=cfg.restored, limit=cfg.limit)
    if cfg.restored is None and bench.items[0].lq is None:
        raise UserError("restoring needs LQ images: pass a benchmark with an LQ folder or --lq DIR")
    check_inputs(bench)
    run = Path(cfg.out)
    # a folder of its own: never an input folder, never a file it did not write replaced (io_safety.OwnedFolder)
    owned = OwnedFolder(run, kind="eval", inputs=_input_folders(cfg), legacy=_legacy_run)
    owned.claim(*RUN_FILES, *(["samples/"] if cfg.samples > 1 else []))
    _check_settings(run, cfg, bench)
    t0 = time.perf_counter()
    timings = restore_all(cfg, bench, run) if cfg.restored is None else {}
    scorer = ImageScorer(
        cfg.metrics,
        device=cfg.device,
        weights_dir=cfg.weights_dir,
        landmarks=cfg.landmarks,
        crop_border=cfg.crop_border,
    )
    per_image = score_all(cfg, bench, run, scorer)
    set_metrics: dict[str, float] = {}
    unavailable = dict(scorer.unavailable)
    if cfg.fid:
        values, reasons = fid_score(cfg, bench, run)
        set_metrics.update(values)
        unavailable.update(reasons)
    if cfg.samples > 1:
        ent = entropy_scores(cfg, bench, run)
        for name, row in ent.items():
            per_image[name] = {**per_image[name], **row}
    summary = report.summarise(
        method=cfg.method,
        bench=bench,
        settings=cfg.settings(),
        per_image=per_image,
        set_metrics=set_metrics,
        unavailable=unavailable,
        notes={**scorer.notes, **({"resized": note} if (note := resize_note(run, bench)) else {})},
        timings=timings,
        device=cfg.device,
        wall_seconds=time.perf_counter() - t0,
    )
    report.write_run(owned.root, summary, per_image)
    report.plot_run(owned.root, per_image, summary)
    report.grid(owned.path("grid.png"), bench, [(cfg.method, lambda it: _restored_path(run, bench, it))], cfg.grid)
    return RunResult(folder=run, summary=summary)

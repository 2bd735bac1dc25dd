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
    from .pipeline import restore_photo_files  # detect -> align -> restore (batched) -> paste back

    code = restore_photo_files(photos, OUT, restorer)
    # one overview image: each photo (left) next to its restoration (right), at the same height
    rows = []
    for p in photos:
        done = sorted((OUT / "restored_imgs").glob(p.stem + ".*"))
        if not done:
            continue
        after = load_rgb(done[0])
        before = resize(load_rgb(p), (after.shape[1], after.shape[0]))
        row = np.concatenate([before, after], axis=1)
        rows.append(resize(row, (1024, round(1024 * row.shape[0] / row.shape[1]))))
    if rows:
        save_rgb(OUT / "side_by_side.png", np.concatenate(rows, axis=0))
    print(f"restored {len(rows)}/{len(photos)} example photos into {OUT}/ (restored_imgs/, restored_faces/, cmp/, "
          f"reports/); overview: {OUT / 'side_by_side.png'} (left: input, right: restored)")
    return code


if __name__ == "__main__":
    sys.exit(main())

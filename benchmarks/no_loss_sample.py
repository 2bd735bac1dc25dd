"""The no-loss rule on sharp sample photos: face sharpness of ``-s 2`` restorations against the Lanczos upscale.

    .venv/bin/python benchmarks/no_loss_sample.py [--model default] [--scale 2] [--png docs/no-loss/grace_hopper_s2.jpg]

Inputs: matplotlib's ``grace_hopper.jpg`` (512x600, face box ~180 px) and a 512 px face crop of it (the face
aligned to the FFHQ template at 512 px, as a photo: detected again). Each goes through
``prefrestore.restore.pipeline.restore_photos`` with ``blend=0`` (the Lanczos upscale), ``keep_detail="off"`` (the
restoration pasted as it is), the band merge forced (the rule's "can only lose" gates open) and the defaults. Sharpness: the Laplacian variance of the luma inside the face box of the output.
Prints one JSON object (per input and method: sharpness, its ratio to Lanczos', and each face's no-loss plan);
``--png`` writes the face regions side by side (Lanczos | rule off | band merge | ours), one row per input.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image

from prefrestore.faces.align import align
from prefrestore.faces.detect import build_detector
from prefrestore.faces.paste import BlendConfig
from prefrestore.io.photo_io import Photo
from prefrestore.restore.options import RestoreOptions
from prefrestore.restore.pipeline import PipelineConfig, restore_photos

# method -> (restore options, paste-back settings); "band_merge" forces the band merge (its "can only lose" gates
# open) to show what the merge alone keeps
METHODS = {
    "lanczos": ({"blend": 0.0}, {}),
    "rule_off": ({"keep_detail": "off"}, {}),
    "band_merge": ({}, {"detail_loss": 0.0, "detail_change": 1e9}),
    "ours": ({}, {}),
}


def lap_var(img: np.ndarray) -> float:
    y = cv2.cvtColor(img, cv2.COLOR_RGB2YCrCb)[..., 0].astype(np.float64)
    return float(cv2.Laplacian(y, cv2.CV_64F).var())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--scale", type=float, default=2.0)
    ap.add_argument("--png", default=None)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    import matplotlib.cbook

    from prefrestore.restore import api

    restorer = api.load_restorer(args.model)
    detector = build_detector("mtcnn")
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as im:
        grace = np.asarray(im.convert("RGB"))
    crop = align(grace, detector.detect(grace)[0], 512).crop  # a 512 px face crop
    result, rows = {"model": args.model, "resolution": restorer.resolution, "scale": args.scale}, []
    for name, image in (("grace_hopper.jpg", grace), ("grace_hopper 512 px face crop", crop)):
        entry, tiles, box = {}, [], None
        for method, (kw, paste) in METHODS.items():
            cfg = PipelineConfig.from_options(RestoreOptions(**kw), upscale=args.scale, blend=BlendConfig(**paste))
            (res,) = restore_photos([(0, Photo(image))], restorer, detector, cfg)
            if not res.ok or not res.faces:
                raise SystemExit(f"{name}: {res.error or 'no face found'}")
            if box is None:  # the face box of the first face, in output pixels, the same for every method
                x0, y0, x1, y1 = (v * args.scale for v in res.faces[0].aligned.detection.box)
                h, w = res.photo.color.shape[:2]
                box = (max(0, int(x0)), max(0, int(y0)), min(w, int(x1)), min(h, int(y1)))
            region = res.photo.color[box[1] : box[3], box[0] : box[2]]
            entry[method] = {
                "sharpness": round(lap_var(region), 3),
                "detail": [f.detail.report() for f in res.faces if f.detail is not None],
            }
            tiles.append(
                cv2.resize(region, (384, round(384 * region.shape[0] / region.shape[1])), interpolation=cv2.INTER_AREA)
            )
        for method in ("rule_off", "band_merge", "ours"):
            entry[method]["vs_lanczos"] = round(entry[method]["sharpness"] / entry["lanczos"]["sharpness"], 3)
        result[name] = entry
        rows.append(np.concatenate(tiles, axis=1))
    print(json.dumps(result, indent=1))
    if args.png:
        width = max(r.shape[1] for r in rows)
        Path(args.png).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.concatenate([np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0))) for r in rows])).save(
            args.png, optimize=True, quality=92
        )  # quality: for a .jpg


if __name__ == "__main__":
    main()

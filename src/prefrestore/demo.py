"""`make demo`: restore the bundled example photos with the best model available; write an overview and a page.

The examples (``assets/examples/``, built by ``tools/make_demo_photos.py``; sources and licences in its
LICENSES.md) are small degraded "old photos" with faces of about 30-80 px, which the model cleans, and one sharp
portrait whose ~150 px face is larger than the model's crop, which the no-loss rule keeps sharp (each face's
caption on the page says what the rule did: docs/no-loss.md). Uses the bundled default model when this
install has one; otherwise the tiny preset with RANDOM weights, which proves the whole path runs but does not
restore anything (said plainly in the output).

Writes into ``demo_output/``: what the pipeline writes (``restored_imgs/``, ``cropped_faces/``, ``restored_faces/``,
``cmp/``, ``reports/``), ``side_by_side.png`` (per photo: input, upscaled, left; restored right) and ``index.html``
(the same plus each photo's faces: aligned crop | restored).
"""

from __future__ import annotations

import html
import logging
import os
import shutil
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from .hub import bundled_model_dir
from .io.image import load_rgb, resize, save_rgb

OUT = Path("demo_output")
EXAMPLES = Path(__file__).parent / "assets" / "examples"
INPUT_RESAMPLE = "bicubic"  # how the input is enlarged to the restored photo's size for the comparisons
OVERVIEW_WIDTH = 1280
LABEL_H = 26
# what this demo writes under OUT, removed first so no output of an earlier run (other photos, more faces) lingers
SUBFOLDERS = ("restored_imgs", "cropped_faces", "restored_faces", "cmp", "reports", "inputs")


def example_photos() -> list[Path]:
    """The bundled example photos (JPEG), sorted by name."""
    return sorted(EXAMPLES.glob("*.jpg"))


def _label(width: int, left: str, right: str) -> np.ndarray:
    """A white strip (LABEL_H, width, 3) with ``left`` over the left half and ``right`` over the right half."""
    strip = np.full((LABEL_H, width, 3), 255, dtype=np.uint8)
    for x, text in ((6, left), (width // 2 + 6, right)):
        cv2.putText(strip, text, (x, LABEL_H - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def _rel(path: str | os.PathLike, root: Path) -> str:
    return Path(os.path.relpath(path, root)).as_posix()


def _page(entries: list[dict], note: str, model: str, seconds: float) -> str:
    """index.html: per photo, input vs restored and the restored faces."""
    e = html.escape
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8"><title>prefrestore demo</title>',
        "<style>body{font-family:sans-serif;margin:1.5em;background:#f4f2ee} figure{display:inline-block;"
        "margin:0 1em 1em 0;vertical-align:top} img{max-width:100%;border:1px solid #bbb}"
        " figcaption{font-size:90%;color:#333} .note{background:#fff3cd;padding:.6em;border:1px solid #e0c36c}"
        "</style></head><body>",
        "<h1>prefrestore demo</h1>",
        f"<p>Model: <b>{e(model)}</b>; {len(entries)} photos restored in {seconds:.1f} s.</p>",
    ]
    if note:
        parts.append(f'<p class="note">{e(note)}</p>')
    licences = (EXAMPLES / "LICENSES.md").resolve()
    parts.append(
        f'<p>Example photos, their sources and licences: <a href="{e(licences.as_uri())}">{e(licences.name)}'
        "</a> (<code>prefrestore/assets/examples/</code>).</p>"
    )
    for d in entries:
        parts += [
            f"<h2>{e(d['name'])}</h2>",
            f'<figure><img src="{e(d["input"])}" alt="input"><figcaption>input ({e(d["input_size"])}), '
            f"{INPUT_RESAMPLE}-upscaled to the output size</figcaption></figure>",
            f'<figure><img src="{e(d["restored"])}" alt="restored"><figcaption>restored ({e(d["output_size"])})'
            "</figcaption></figure>",
            f"<h3>{len(d['faces'])} face(s): aligned crop (left) | restored (right)</h3>",
        ]
        for f in d["faces"]:
            parts.append(
                f'<figure><img src="{e(f["cmp"])}" alt="face {f["index"]}"><figcaption>face {f["index"]}: '
                f"{f['size_px']:.0f} px in the input, detector score {f['score']:.3f}; "
                f"{e(_detail_caption(f.get('detail')))}</figcaption></figure>"
            )
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _detail_caption(detail: dict | None) -> str:
    """What the no-loss rule did with a face (its report's "detail"), in words."""
    if not detail:
        return "restored"
    res = detail["model_resolution"]
    return {
        "restored": f"restored (its crop is within the model's {res} px)",
        "merged": f"restored up to the model's {res} px, the photo's own finer detail kept (no-loss rule)",
        "added_detail": "the photo kept up to its own resolution, the model's detail added above it (no-loss rule)",
        "kept_input": f"left as the photo: the {res} px model could only make it worse (no-loss rule)",
    }.get(detail["action"], detail["action"])


def main() -> int:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    from .restore.loaded import load_pipeline
    from .restore.options import RestoreSettings
    from .restore.pipeline import PipelineConfig

    photos = example_photos()
    if not photos:
        print(f"no example photos found in {EXAMPLES} (a broken install? reinstall prefrestore)", file=sys.stderr)
        return 1
    model = "default" if bundled_model_dir() else "tiny"
    note = ""
    if model == "tiny":
        note = (
            "NOTE: no trained model is bundled in this install yet; restoring with the TINY preset's RANDOM "
            "weights. The output shows that the pipeline runs end to end, not a restoration."
        )
        print(note)
    for sub in SUBFOLDERS:
        shutil.rmtree(OUT / sub, ignore_errors=True)
    t0 = time.perf_counter()
    # the model's own sampling defaults (steps, guidance, solver); the demo reports no identity similarity
    pipeline = load_pipeline(RestoreSettings.from_flat({"model": model, "identity": "off"}))
    # the demo's own run settings, as they have always been: PipelineConfig's defaults, whose face selection has
    # no minimum size beyond the detector's 20 px (the CLI's defaults select >= 20 px, the same faces here)
    pipeline = pipeline.with_config(PipelineConfig())
    from .restore.file_run import restore_photo_files  # detect -> align -> restore (batched) -> paste back -> files

    summary = restore_photo_files(photos, OUT, pipeline)
    seconds = time.perf_counter() - t0
    right = "restored" + (" (tiny, RANDOM weights)" if model == "tiny" else f" ({model} model)")
    rows, entries = [], []
    for report in summary.reports:  # the run's own results, in input order (what it wrote to reports/)
        if report["status"] not in ("restored", "no_face"):
            continue
        p = Path(report["input"])
        after = load_rgb(report["output"])
        before_small = load_rgb(p)
        before = resize(before_small, (after.shape[1], after.shape[0]), resample=INPUT_RESAMPLE)
        save_rgb(OUT / "inputs" / f"{p.stem}.png", before)
        row = np.concatenate([before, after], axis=1)
        row = resize(row, (OVERVIEW_WIDTH, round(OVERVIEW_WIDTH * row.shape[0] / row.shape[1])))
        scale = after.shape[1] / before_small.shape[1]
        rows.append(_label(OVERVIEW_WIDTH, f"{p.name}: input, {INPUT_RESAMPLE} x{scale:g}", right))
        rows.append(row)
        entries.append(
            {
                "name": p.name,
                "input": f"inputs/{p.stem}.png",
                "input_size": f"{before_small.shape[1]}x{before_small.shape[0]}",
                "restored": _rel(report["output"], OUT),
                "output_size": f"{after.shape[1]}x{after.shape[0]}",
                "faces": [
                    {
                        "index": f["index"],
                        "size_px": f["size_px"],
                        "score": f["score"],
                        "cmp": _rel(f["cmp"], OUT),
                        "detail": f.get("detail"),
                    }
                    for f in report.get("faces", [])
                ],
            }
        )
    overview, page = OUT / "side_by_side.png", OUT / "index.html"
    if rows:
        save_rgb(overview, np.concatenate(rows, axis=0))
    page.write_text(_page(entries, note, model, seconds))
    faces = sum(len(d["faces"]) for d in entries)
    print(
        f"restored {len(entries)}/{len(photos)} example photos ({faces} faces) in {seconds:.1f} s into {OUT}/ "
        "(restored_imgs/, restored_faces/, cmp/, reports/)"
    )
    print(f"overview: {overview} (left: input, right: restored)")
    print(f"page:     {page}")
    return summary.exit_code


if __name__ == "__main__":
    sys.exit(main())

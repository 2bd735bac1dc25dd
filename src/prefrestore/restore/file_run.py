"""The file run of ``prefrestore restore``: input files and folders -> a plan -> restored files and reports.

    plan = plan_files(inputs, layout)           # what to do, skip (done before) and what already failed
    summary = run_plan(plan, pipeline, layout)   # read, restore (loaded.Pipeline), write

The output layout is GFPGAN's/CodeFormer's (``cropped_faces/``, ``restored_faces/``, ``cmp/``, ``restored_imgs/``)
plus one JSON report per input (``reports/NAME.json``, written last: a report saying "restored" means every output
it lists is complete, which is what skip-existing trusts). Every file is written atomically and never onto an input
(``io_safety.py``). The restoration itself is the pipeline object's (``loaded.py``: ``pipeline.py`` for photos,
``aligned_crops.py`` for ``--aligned``): this module imports them, never the other way round. The server (``serving/``) and videos (``video/inputs.py``) use
the same layout, plan and reports.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ..errors import ImageError, UserError
from ..faces.align import affine_scale
from ..faces.detect import NOT_PICKED
from ..io.image import list_images, resize, save_rgb
from ..io.io_safety import NAME_MAX, InputGuard, atomic_write_text, real_key, shown, sweep_stale_temps
from ..io.photo_io import Photo, photo_for_format, read_photo, write_photo
from .aligned_crops import AlignedResult
from .loaded import Pipeline
from .pipeline import PhotoResult, PipelineConfig, Progress, failure, photo_memory_bytes

logger = logging.getLogger(__name__)

# ----------------------------------------------------------------------------------------------------------------
# Layout and plan

OutputExt = Literal["auto", "png", "jpg"]


@dataclass(frozen=True)
class OutputLayout:
    """Where outputs go: ``root/{cropped_faces,restored_faces,cmp,restored_imgs,reports}``.

    ext: "auto" writes JPEG for JPEG inputs and PNG otherwise (PNG keeps alpha, 16 bits, grayscale, ICC, EXIF).
    suffix: appended to the restored photo's name. overwrite: redo inputs whose restored photo exists.
    """

    root: Path
    ext: OutputExt = "auto"
    suffix: str = ""
    overwrite: bool = False
    jpeg_quality: int = 95

    def __post_init__(self) -> None:
        if self.ext not in ("auto", "png", "jpg"):
            raise ValueError(f"unknown ext={self.ext!r}; expected auto, png or jpg")
        if not 1 <= self.jpeg_quality <= 100:
            raise ValueError(f"jpeg_quality={self.jpeg_quality} must be in 1..100")

    def photo_path(self, item: FileItem, *, aligned: bool) -> Path:
        """The main output of an input: the restored photo, or for an aligned crop its restoration."""
        if aligned:
            return self.root / "restored_faces" / f"{item.name}{self.suffix}.png"
        ext = {"png": ".png", "jpg": ".jpg"}.get(self.ext)
        if ext is None:
            ext = ".jpg" if item.path.suffix.lower() in (".jpg", ".jpeg") else ".png"
        return self.root / "restored_imgs" / f"{item.name}{self.suffix}{ext}"

    def face_path(self, folder: str, item: FileItem, index: int | None) -> Path:
        return self.root / folder / (f"{item.name}.png" if index is None else f"{item.name}_{index:02d}.png")

    def report_path(self, item: FileItem) -> Path:
        return self.root / "reports" / f"{item.name}.json"

    def folders(self) -> list[Path]:
        return [self.root / f for f in ("cropped_faces", "restored_faces", "cmp", "restored_imgs", "reports")]

    def stem_budget(self) -> int:
        """Bytes an output stem may have so that every output name fits NAME_MAX: the longest of
        ``STEM{suffix}.jpeg``, ``STEM_9999.png`` and ``STEM.json``."""
        return NAME_MAX - max(len(os.fsencode(self.suffix)) + 5, 9)

    def is_done(self, item: FileItem, *, aligned: bool) -> bool:
        """True when the input's report says it finished and every output it lists exists and is not empty.

        The report is written last (and atomically), so an interrupted or failed input is never taken as done.
        """
        try:
            report = json.loads(self.report_path(item).read_text())
        except (OSError, ValueError):
            return False
        if not isinstance(report, dict) or report.get("status") not in ("restored", "no_face"):
            return False
        expected = [self.photo_path(item, aligned=aligned)]
        if aligned:
            expected.append(self.face_path("cmp", item, None))
        else:
            for face in report.get("faces", ()):
                index = face.get("file_index", face.get("index")) if isinstance(face, dict) else None
                if not isinstance(index, int):
                    return False
                expected += [self.face_path(k, item, index) for k in ("cropped_faces", "restored_faces", "cmp")]
        try:
            return all(p.stat().st_size > 0 for p in expected)
        except OSError:
            return False


@dataclass(frozen=True)
class FileItem:
    """An input file and the unique stem its outputs are named after."""

    path: Path
    name: str


@dataclass(frozen=True)
class Plan:
    """What a run will do: inputs to process, inputs skipped (outputs exist), inputs already failed (with why).

    guard: every input of the run (by real path and inode); no output is ever written onto one of them.
    """

    todo: tuple[FileItem, ...]
    skipped: tuple[FileItem, ...]
    failed: tuple[tuple[str, str], ...]
    guard: InputGuard = field(default_factory=InputGuard)


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def output_stem(stem: str, budget: int) -> str:
    """``stem`` if its UTF-8 bytes fit ``budget``, else its longest prefix that fits with ``~`` and 8 hex digits
    of its hash (so two long names that share a prefix stay apart)."""
    raw = os.fsencode(stem)
    if len(raw) <= budget:
        return stem
    import hashlib

    tag = "~" + hashlib.sha1(raw).hexdigest()[:8]
    cut = raw[: max(1, budget - len(tag))]
    return os.fsdecode(cut).encode("utf-8", "surrogateescape").decode("utf-8", "ignore") + tag


def _file_key(path: Path) -> tuple | str:
    """One key per file on disk: (device, inode) (so hard links count too), else the real path."""
    try:
        st = os.stat(path)
    except OSError:
        return real_key(path)
    return (st.st_dev, st.st_ino)


def plan_files(inputs: Sequence[str | os.PathLike], layout: OutputLayout, *, aligned: bool = False) -> Plan:
    """Resolve inputs (files, folders, glob patterns) into a plan.

    Raises UserError when the output folder is an input folder or inside one (outputs would mix with inputs).
    An input that cannot be listed (missing, unreadable folder), a special file in a folder (FIFO, device, broken
    symlink) and an input whose restored photo would replace an input become failures; the others go on. The
    same file given twice (another spelling, ``..``, a symlink) is done once. An input counts as done (skipped)
    only when :meth:`OutputLayout.is_done` says so.
    """
    root = layout.root.resolve()
    paths: list[Path] = []
    failed: list[tuple[str, str]] = []
    for raw in inputs:
        folder = Path(raw)
        try:
            is_folder = folder.is_dir()
        except OSError as err:  # a name too long for the file system, a symlink loop
            failed.append((str(raw), f"{shown(raw)}: cannot open ({err.strerror or err}); check the path"))
            continue
        if is_folder and _is_within(root, folder.resolve()):
            raise UserError(
                f"{shown(layout.root)}: the output folder is inside the input folder {shown(folder)}; "
                "choose an -o outside it"
            )
        try:
            paths += list_images(raw, on_skip=lambda q, message: failed.append((str(q), message)))
        except ImageError as err:
            failed.append((str(raw), str(err)))
        except OSError as err:
            failed.append((str(raw), f"{shown(raw)}: cannot read ({err.strerror or err}); check its permissions"))
    first: dict[tuple | str, Path] = {}
    for p in paths:
        first.setdefault(_file_key(p), p)  # one per file (any spelling, symlink or hard link), the first spelling
    unique = list(first.values())
    guard = InputGuard(unique)
    stems: dict[str, int] = {}
    for p in unique:
        stems[p.stem] = stems.get(p.stem, 0) + 1
    todo, skipped, names = [], [], set()
    budget = layout.stem_budget()
    for p in unique:
        name = p.stem if stems[p.stem] == 1 else f"{p.stem}_{p.suffix.lstrip('.').lower()}"
        name = output_stem(name, budget - 4)  # room for the "_" of a.jpg / a.JPG below
        while name in names:  # a.jpg and a.JPG in one folder
            name += "_"
        names.add(name)
        item = FileItem(p, name)
        out = layout.photo_path(item, aligned=aligned)
        if guard.is_protected(out):
            failed.append((str(p), f"{shown(p)}: the output {shown(out)} would overwrite an input; choose another -o"))
        elif not layout.overwrite and layout.is_done(item, aligned=aligned):
            skipped.append(item)
        else:
            todo.append(item)
    return Plan(tuple(todo), tuple(skipped), tuple(failed), guard)


def memory_check(config: PipelineConfig, *, aligned: bool):
    """``accept`` for :func:`~prefrestore.io.photo_io.read_photo`: refuse, from the header, a photo whose estimated
    working memory is above ``config.max_photo_bytes``, naming the largest -s that fits."""

    def accept(width: int, height: int, bytes_per_sample: int, alpha: bool) -> None:
        scale = 1.0 if aligned else config.upscale
        need = photo_memory_bytes(
            width,
            height,
            scale,
            bytes_per_sample=bytes_per_sample,
            alpha=alpha,
            max_detect_pixels=config.max_detect_pixels,
        )
        if need <= config.max_photo_bytes:
            return
        fits = [
            s
            for s in (8, 4, 3, 2, 1.5, 1, 0.5)
            if s < scale
            and photo_memory_bytes(
                width,
                height,
                s,
                bytes_per_sample=bytes_per_sample,
                alpha=alpha,
                max_detect_pixels=config.max_detect_pixels,
            )
            <= config.max_photo_bytes
        ]
        hint = f"use -s {fits[0]:g} or smaller" if fits and not aligned else "downscale it first"
        raise ImageError(
            f"{width}x{height} at -s {scale:g} needs about {need / 2**30:.1f} GiB of memory, above "
            f"the {config.max_photo_bytes / 2**30:.1f} GiB per-photo budget; {hint}"
        )

    return accept


# ----------------------------------------------------------------------------------------------------------------
# The run


@dataclass(frozen=True)
class RunSummary:
    """Outcome of a file run; ``exit_code`` is 0 when nothing failed. ``flagged``/``fallback``: the identity
    guard's verdicts over the restored faces (see ``control.FaceOutcome``).

    reports: the report of every input this process read, in input order, exactly as written to
    ``reports/NAME.json`` (``status`` "restored", "no_face" or "failed"; outputs, faces, timings): the run's
    per-input results for a caller (the demo) that should not read back the files it was just given. Not carried
    across ranks (``distributed.py`` merges the lists above only).
    """

    restored: tuple[str, ...] = ()
    no_face: tuple[str, ...] = ()
    skipped: tuple[str, ...] = ()
    failed: tuple[tuple[str, str], ...] = ()
    faces: int = 0
    reports: tuple[dict, ...] = ()
    flagged: int = 0  # faces the identity guard flagged (too far from their input) ...
    fallback: int = 0  # ... and of those, the ones replaced by a safer restoration (fidelity 1, or the input)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0


def run_plan(
    plan: Plan,
    pipeline: Pipeline,
    layout: OutputLayout,
    *,
    aligned: bool = False,
    progress: Progress | None = None,
    run_info: dict | None = None,
) -> RunSummary:
    """Restore the plan's inputs with ``pipeline`` and write every output. ``aligned``: the inputs are aligned crops
    (:meth:`~prefrestore.restore.loaded.Pipeline.restore_aligned`: the pipeline's detector, when it has one, fails
    each crop whose face is far from the alignment template, a whole photo given as a crop, instead of squashing it).

    Unreadable inputs, failed restorations and failed writes are reported (``progress("failed", 0, message)``
    as they happen, and in the summary) while the other inputs go on. ``run_info`` goes into every report.
    Every file is written all or nothing and never onto an input (``plan.guard``); temporary files left by a
    killed earlier run are removed first.
    """
    config = pipeline.config
    failed: list[tuple[str, str]] = list(plan.failed)
    reports: list[dict] = []
    read_times: dict[FileItem, float] = {}
    for folder in layout.folders():
        sweep_stale_temps(folder)

    def fail(item: FileItem | str, message: str) -> None:
        failed.append((str(item.path if isinstance(item, FileItem) else item), message))
        if progress:
            progress("failed", 0, message)

    inputs = _read_inputs(plan, layout, memory_check(config, aligned=aligned), fail, progress, read_times, reports)
    restore = pipeline.restore_aligned if aligned else pipeline.restore_photos
    results: Iterator = restore(inputs, progress=progress)
    restored, no_face, faces, flagged, fallback = [], [], 0, 0, 0
    for res in results:
        item = res.key
        res.timings["read"] = read_times.pop(item, 0.0)
        report = _write_or_fail(res, item, layout, run_info or {}, config, plan.guard, fail)
        res = None
        if progress:
            progress("image_done", 1)
        if report is None:
            continue
        reports.append(report)
        if report["status"] == "failed":
            fail(item, f"{shown(item.path)}: {report['error']}")
        elif report["status"] == "no_face":
            no_face.append(str(item.path))
        else:
            restored.append(str(item.path))
            faces += len(report.get("faces", ()))
        for guard in _guard_verdicts(report):
            flagged += bool(guard.get("flagged"))
            fallback += bool(guard.get("action"))
    return RunSummary(
        restored=tuple(restored),
        no_face=tuple(no_face),
        skipped=tuple(str(i.path) for i in plan.skipped),
        failed=tuple(failed),
        faces=faces,
        reports=tuple(reports),
        flagged=flagged,
        fallback=fallback,
    )


def _guard_verdicts(report: dict) -> list[dict]:
    """The identity guard's entry of every restored face of a report (a photo's faces, or an aligned crop)."""
    entries = [f for f in report.get("faces", ()) if isinstance(f, dict)] + [report]
    return [e["identity_guard"] for e in entries if isinstance(e.get("identity_guard"), dict)]


def _read_inputs(
    plan: Plan,
    layout: OutputLayout,
    accept,
    fail: Callable[[FileItem, str], None],
    progress: Progress | None,
    read_times: dict[FileItem, float],
    reports: list[dict],
) -> Iterator[tuple[FileItem, Photo]]:
    """The plan's inputs, read lazily (one decoded photo at a time) -> (item, photo); an input that cannot be read
    fails here, with its report written (and kept in ``reports``), and the run goes on."""
    for item in plan.todo:
        t0 = time.perf_counter()
        try:
            photo = read_photo(item.path, accept=accept)
        except Exception as err:
            message = read_failure(item.path, err)
            fail(item, message)
            report = {"input": str(item.path), "status": "failed", "error": message}
            try:
                write_report(layout, item, report, plan.guard)
                reports.append(report)
            except (OSError, UserError) as werr:
                logger.debug("report not written: %s", werr)
            if progress:
                progress("image_done", 1)
            continue
        read_times[item] = time.perf_counter() - t0
        yield item, photo


def read_failure(path: Path, err: Exception) -> str:
    """The one line of an input that could not be read (``read_photo`` failed), naming the file."""
    message = str(err) if isinstance(err, ImageError) else f"{shown(path)}: {failure('reading', err)}"
    if isinstance(err, ImageError) and not message.startswith(shown(path)):
        message = f"{shown(path)}: {message}"
    return message


def _write_or_fail(
    res: PhotoResult | AlignedResult,
    item: FileItem,
    layout: OutputLayout,
    run_info: dict,
    config: PipelineConfig,
    guard: InputGuard,
    fail: Callable[[FileItem, str], None],
) -> dict | None:
    """:func:`_write_outputs` with the per-input error boundary -> the report, or None (the failure is reported)."""
    try:
        return _write_outputs(res, item, layout, run_info, config, guard)
    except UserError as err:
        fail(item, f"{shown(item.path)}: {err}")
    except OSError as err:
        fail(item, f"{shown(item.path)}: cannot write outputs ({err.strerror or err}); check the -o folder")
    except Exception as err:
        logger.debug("writing failed", exc_info=True)
        fail(item, f"{shown(item.path)}: {failure('writing outputs', err)}")
    return None


# ----------------------------------------------------------------------------------------------------------------
# Outputs and reports


def _r(x: float, nd: int = 2) -> float:
    return round(float(x), nd)


def _write_outputs(
    res: PhotoResult | AlignedResult,
    item: FileItem,
    layout: OutputLayout,
    run_info: dict,
    config: PipelineConfig,
    guard: InputGuard,
) -> dict:
    """Write a result's images, then its JSON report (last: a report saying "restored" means every output listed
    is complete) -> the report. Every target is checked against ``guard`` before the first byte is written, so an
    input that would be overwritten fails the photo with no output at all."""
    report: dict = {"input": str(item.path), **run_info, "options": config.options.to_dict()}
    if isinstance(res, AlignedResult):
        _write_aligned(res, item, layout, guard, report)
    else:
        _write_photo(res, item, layout, guard, report, config)
    if res.error:
        report["error"] = res.error
    report.setdefault("notes", list(res.notes))
    report["timings"] = {k: _r(v, 4) for k, v in res.timings.items()}
    write_report(layout, item, report, guard)
    return report


def _write_aligned(res: AlignedResult, item: FileItem, layout: OutputLayout, guard: InputGuard, report: dict) -> None:
    """An aligned crop's restoration and its input | restored comparison; fills ``report``."""
    report["status"] = "restored" if res.ok else "failed"
    if not res.ok:
        return
    t0 = time.perf_counter()
    out, cmp = layout.photo_path(item, aligned=True), layout.face_path("cmp", item, None)
    for target in (out, cmp, layout.report_path(item)):
        guard.check(target)
    save_rgb(out, res.output_image(), guard=guard)
    save_rgb(cmp, comparison(res.crop, res.restored, res.output_image().shape[0]), guard=guard)
    res.timings["write"] = time.perf_counter() - t0
    report["output"] = str(out)
    if res.detail is not None:
        report["detail"] = res.detail.report()
    if res.control is not None:
        report.update({k: v for k, v in res.control.report().items() if k != "notes"})
    elif res.identity is not None:
        report["identity_similarity"] = _r(res.identity.similarity, 4)
        report["identity_distance"] = _r(res.identity.distance, 4)


def _write_photo(
    res: PhotoResult, item: FileItem, layout: OutputLayout, guard: InputGuard, report: dict, config: PipelineConfig
) -> None:
    """A photo's faces (cropped, restored, input | restored) and the restored photo; fills ``report``."""
    out = layout.photo_path(item, aligned=False)
    file_indices = full_run_indices(res) if res.ok else []
    face_paths = [
        {k: layout.face_path(k, item, n) for k in ("cropped_faces", "restored_faces", "cmp")} for n in file_indices
    ]
    report.update(photo_report(res, config, face_paths=face_paths))
    if not res.ok:
        return
    t0 = time.perf_counter()
    for target in [out, layout.report_path(item)] + [q for paths in face_paths for q in paths.values()]:
        guard.check(target)
    for f, paths in zip(res.faces, face_paths, strict=True):
        save_rgb(paths["cropped_faces"], f.aligned.crop, guard=guard)
        save_rgb(paths["restored_faces"], f.restored, guard=guard)
        side = f.aligned.size / affine_scale(f.aligned.affine) * config.upscale  # the face's size in the output
        save_rgb(paths["cmp"], comparison(f.aligned.crop, f.restored, side), guard=guard)
    photo, notes = photo_for_format(res.photo, out.suffix)
    write_photo(out, photo, quality=layout.jpeg_quality, guard=guard)
    res.timings["write"] = time.perf_counter() - t0
    report.update(output=str(out), output_size=list(photo.size), notes=photo_notes(res, config, item.path) + notes)


def photo_report(
    res: PhotoResult, config: PipelineConfig, *, face_paths: Sequence[dict[str, Path]] | None = None
) -> dict:
    """One photo's report, in memory: the input's properties, the detection settings, the rejected detections,
    the status and per restored face its detection, alignment, file index and control report (with its file paths
    when ``face_paths`` are given). What ``reports/NAME.json`` holds, less the output and its notes; the server
    answers with it (no file is read back)."""
    report: dict = dict(
        input_size=list(res.source.size),
        bit_depth=res.source.bit_depth,
        alpha=res.source.alpha is not None,
        grayscale=res.source.grayscale,
        icc_profile=res.source.icc_profile is not None,
        exif=res.source.exif is not None,
        upscale=config.upscale,
        detection={
            "score_threshold": config.select.score_threshold,
            "min_face_size": config.select.min_face_size,
            "max_face_size": config.select.max_face_size,
            "max_faces": config.select.max_faces,
            "only_center_face": config.select.only_center_face,
            "faces": None if config.options.faces is None else list(config.options.faces),
        },
        faces=[],
        rejected=[
            {"box": [_r(v) for v in r.detection.box], "score": _r(r.detection.score, 4), "reason": r.reason}
            for r in res.rejected
        ],
    )
    if not res.ok:
        report["status"] = "failed"
        return report
    report["status"] = "restored" if res.faces else "no_face"
    paths_of = face_paths if face_paths is not None else [{} for _ in res.faces]
    for f, paths, n in zip(res.faces, paths_of, full_run_indices(res), strict=True):
        d = f.aligned.detection
        entry = {
            "index": f.index,
            "file_index": n,
            "box": [_r(v) for v in d.box],
            "score": _r(d.score, 4),
            "landmarks": [[_r(x), _r(y)] for x, y in d.landmarks],
            "size_px": _r(d.size, 1),
            "fit_error": _r(f.aligned.fit_error, 4),
            **{k: str(v) for k, v in paths.items()},
        }
        if f.detail is not None:
            entry["detail"] = f.detail.report()
        if f.control is not None:
            entry.update({k: v for k, v in f.control.report().items() if k != "notes"})
        elif f.identity is not None:
            entry.update(
                identity_similarity=_r(f.identity.similarity, 4), identity_distance=_r(f.identity.distance, 4)
            )
        report["faces"].append(entry)
    return report


# The reasons (faces.detect.select_faces / pick_faces) of detections a full run would also restore.
_CUT_BY_CHOICE = ("over max faces", "not centre", NOT_PICKED)


def full_run_indices(res: PhotoResult) -> list[int]:
    """Each restored face's index in a run without ``--max-faces``, ``--only-center-face`` and ``--faces`` (left to
    right among the faces the detection thresholds keep): the number in its file names, so a face's files have the
    same name whichever faces a run picks."""
    cut = [r.detection for r in res.rejected if r.reason.startswith(_CUT_BY_CHOICE)]
    everyone = sorted([f.aligned.detection for f in res.faces] + cut, key=lambda d: (d.center[0], d.center[1]))
    position = {id(d): k for k, d in enumerate(everyone)}
    return [position[id(f.aligned.detection)] for f in res.faces]


def photo_notes(res: PhotoResult, config: PipelineConfig, path: Path | str) -> list[str]:
    """The photo's notes, with ``--faces`` indices beyond its faces said as such (also logged as a warning, naming
    ``path``), not as "no face found"."""
    asked, notes = config.options.faces, list(res.notes)
    if asked is None:
        return notes
    n = len(res.faces) + sum(r.reason.startswith(NOT_PICKED) for r in res.rejected)
    missing = sorted(i for i in set(asked) if i >= n)
    if not missing:
        return notes
    have = f"{n} face{'' if n == 1 else 's'}" + (f" (indices 0-{n - 1})" if n > 1 else " (index 0)" if n else "")
    line = (
        f"--faces {','.join(map(str, asked))}: this photo has {have}, there is no face "
        f"{', '.join(map(str, missing))}"
        + ("; none was restored, the photo was upscaled only" if not res.faces else "")
    )
    if n:
        notes = [x for x in notes if not x.startswith("no face found")]
    logger.warning("%s: %s", shown(path), line)
    return notes + [line]


def comparison(crop: np.ndarray, restored: np.ndarray, side: float) -> np.ndarray:
    """The ``cmp/`` image: input crop | restoration, each at the face's size in the output (``side`` px) but at
    least :data:`CMP_MIN` and at most :data:`CMP_MAX` px a side, so a person can judge it."""
    n = int(round(min(max(side, CMP_MIN), CMP_MAX)))
    return np.concatenate([resize(crop, (n, n)), resize(restored, (n, n))], axis=1)


CMP_MIN, CMP_MAX = 256, 1024


def write_report(layout: OutputLayout, item: FileItem, report: dict, guard: InputGuard | None = None) -> None:
    atomic_write_text(layout.report_path(item), json.dumps(report, indent=2) + "\n", guard=guard)


def restore_photo_files(
    photos: Sequence[str | os.PathLike], output: str | os.PathLike, pipeline: Pipeline
) -> RunSummary:
    """Restore photo files into ``output`` with the pipeline and the default layout (what ``make demo`` calls) ->
    the run's summary, with every photo's report (``exit_code`` 0 when every photo succeeded; failures are
    logged)."""
    layout = OutputLayout(Path(output), overwrite=True)
    summary = run_plan(plan_files(photos, layout), pipeline, layout)
    for _, message in summary.failed:
        logger.error(message)
    logger.info("restored %d photos (%d faces) into %s", len(summary.restored), summary.faces, layout.root)
    return summary

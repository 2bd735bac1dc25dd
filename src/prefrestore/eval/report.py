"""Result tables (markdown, CSV, JSON), plots and side-by-side grids for one run or a comparison of runs."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import logging
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .. import __version__
from ..io.image import load_rgb, resize
from ..metrics.suite import METRICS, SET_METRICS, info
from .layouts import Benchmark, Item

logger = logging.getLogger(__name__)

ARROW = {True: "↑", False: "↓"}


def _stats(values: list[float]) -> dict[str, float | int]:
    v = np.asarray(values, dtype=np.float64)
    finite = v[np.isfinite(v)]
    return {
        "mean": float(finite.mean()) if finite.size else float("nan"),
        "std": float(finite.std()) if finite.size else float("nan"),
        "n": int(finite.size),
        "failed": int(np.isnan(v).sum()),
        "inf": int(np.isinf(v).sum()),
    }


def summarise(
    *,
    method: str,
    bench: Benchmark,
    settings: dict,
    per_image: dict[str, dict[str, float]],
    set_metrics: dict[str, float],
    unavailable: dict[str, str],
    notes: dict[str, str],
    timings: dict[str, float],
    device: str,
    wall_seconds: float,
) -> dict:
    names = sorted({m for row in per_image.values() for m in row})
    metrics = {m: _stats([row.get(m, float("nan")) for row in per_image.values()]) for m in names}
    t = list(timings.values())
    return {
        "method": method,
        "benchmark": bench.describe(),
        "settings": settings,
        "metrics": metrics,
        "set_metrics": set_metrics,
        "unavailable": unavailable,
        "notes": notes,
        "timing": {
            "device": device,
            "restore_seconds_per_image": float(np.mean(t)) if t else None,
            "restore_seconds_total": float(np.sum(t)) if t else None,
            "wall_seconds_this_call": wall_seconds,
        },
        "prefrestore_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }


def _fmt(v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    if isinstance(v, float) and math.isinf(v):
        return "inf"
    return f"{v:.4f}" if abs(v) < 10 else f"{v:.2f}"


def _row_values(summary: dict) -> dict[str, float]:
    vals = {m: s["mean"] for m, s in summary["metrics"].items()}
    vals.update(summary.get("set_metrics", {}))
    return vals


def _columns(summaries: list[dict]) -> list[str]:
    cols: list[str] = []
    for s in summaries:
        for m in _row_values(s):
            if m not in cols:
                cols.append(m)
    canonical = [*METRICS, *SET_METRICS]  # the order of metrics.suite's table
    return sorted(cols, key=lambda c: canonical.index(c) if c in canonical else len(canonical))


def markdown_table(summaries: list[dict], *, bold_best: bool = False) -> str:
    """One row per method, one column per metric (with its direction); best per column in bold."""
    cols = _columns(summaries)
    head = "| method | " + " | ".join(f"{info(c).label} {ARROW[info(c).higher_is_better]}" for c in cols) + " |"
    lines = [head, "|---|" + "---|" * len(cols)]
    rows = [_row_values(s) for s in summaries]
    best: dict[str, float] = {}
    if bold_best and len(summaries) > 1:
        for c in cols:
            vals = [r[c] for r in rows if c in r and np.isfinite(r[c])]
            if vals:
                best[c] = max(vals) if info(c).higher_is_better else min(vals)
    for s, r in zip(summaries, rows, strict=True):
        cells = []
        for c in cols:
            cell = _fmt(r.get(c))
            if c in best and c in r and r[c] == best[c]:
                cell = f"**{cell}**"
            cells.append(cell)
        lines.append(f"| {s['method']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def run_markdown(summary: dict) -> str:
    b = summary["benchmark"]
    st = summary["settings"]
    tm = summary["timing"]
    out = [
        f"# {summary['method']} on {b['name']} ({b['count']} images, {b['kind']})",
        "",
        markdown_table([summary]),
        "",
        f"- model: `{st.get('model') or '-'}`, steps: {st.get('steps')}, guidance: {st.get('guidance_scale')}, "
        f"seed: {st.get('seed')}, samples: {st.get('samples')}",
        f"- restore time: {_fmt(tm['restore_seconds_per_image'])} s/image on {tm['device']}",
        "- reference for identity/LMD: " + ("GT" if b["gt_dir"] else "LQ input (no GT)"),
    ]
    fails = {m: s["failed"] for m, s in summary["metrics"].items() if s["failed"]}
    if fails:
        out.append(f"- not scored, excluded from means (LMD: no face found; NIQE: under two 96 px blocks): {fails}")
    for k, v in summary.get("notes", {}).items():
        out.append(f"- {k}: {v}")
    if summary["unavailable"]:
        out += ["", "Unavailable metrics:", ""]
        out += [f"- **{m}**: {reason}" for m, reason in sorted(summary["unavailable"].items())]
    return "\n".join(out) + "\n"


def write_run(run: Path, summary: dict, per_image: dict[str, dict[str, float]]) -> None:
    from ..io.io_safety import atomic_write_text

    atomic_write_text(run / "results.json", json.dumps(summary, indent=2, allow_nan=True) + "\n")
    atomic_write_text(run / "results.md", run_markdown(summary))
    cols = _columns([summary])
    with (run / "results.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["method", *cols])
        vals = _row_values(summary)
        w.writerow([summary["method"], *[vals.get(c, "") for c in cols]])
    metric_cols = sorted({m for row in per_image.values() for m in row})
    with (run / "per_image.csv").open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["name", *metric_cols])
        for name, row in per_image.items():
            w.writerow([name, *[row.get(m, "") for m in metric_cols]])


def _plt():
    """matplotlib.pyplot with the Agg backend, or None (plots skipped, said once) when matplotlib is missing."""
    if importlib.util.find_spec("matplotlib") is None:
        logger.warning("plots and grids skipped: matplotlib is not installed (pip install prefrestore[eval])")
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_run(run: Path, per_image: dict[str, dict[str, float]], summary: dict) -> None:
    """Histograms of the per-image metrics (one panel each) -> RUN/plots/per_image.png."""
    plt = _plt()
    if plt is None:
        return
    metrics = [m for m in summary["metrics"] if summary["metrics"][m]["n"] > 0]
    if not metrics:
        return
    cols = min(4, len(metrics))
    rows = math.ceil(len(metrics) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False)
    for ax, m in zip(axes.flat, metrics, strict=False):
        v = np.asarray([r.get(m, np.nan) for r in per_image.values()], dtype=np.float64)
        ax.hist(v[np.isfinite(v)], bins=min(20, max(3, len(v))))
        ax.set_title(f"{info(m).label} {ARROW[info(m).higher_is_better]}", fontsize=9)
    for ax in list(axes.flat)[len(metrics) :]:
        ax.axis("off")
    fig.suptitle(f"{summary['method']} on {summary['benchmark']['name']}", fontsize=10)
    fig.tight_layout()
    (run / "plots").mkdir(exist_ok=True)
    fig.savefig(run / "plots" / "per_image.png", dpi=100)
    plt.close(fig)


def grid(
    path: Path, bench: Benchmark, columns: list[tuple[str, Callable[[Item], Path]]], n: int, *, cell: int = 160
) -> None:
    """Side-by-side image grid: LQ | each column | GT for the first ``n`` items -> PNG at ``path``."""
    if n <= 0 or not bench.items:
        return
    plt = _plt()
    if plt is None:
        return
    items = bench.items[:n]
    heads = (["LQ"] if items[0].lq else []) + [c[0] for c in columns] + (["GT"] if items[0].gt else [])
    fig, axes = plt.subplots(len(items), len(heads), figsize=(1.6 * len(heads), 1.6 * len(items)), squeeze=False)
    for r, it in enumerate(items):
        paths = ([it.lq] if it.lq else []) + [fn(it) for _, fn in columns] + ([it.gt] if it.gt else [])
        for c, p in enumerate(paths):
            ax = axes[r][c]
            ax.imshow(resize(load_rgb(p), (cell, cell), resample="bicubic"))
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(heads[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(it.name, fontsize=6)
    fig.tight_layout(pad=0.2)
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------------
# Comparison of runs


def load_summary(run: str | Path) -> dict:
    p = Path(run) / "results.json"
    if not p.is_file():
        from ..errors import UserError

        raise UserError(f"{run}: no results.json; run `prefrestore eval ... -o {run}` first")
    return json.loads(p.read_text())


def compare(
    runs: list[str],
    out: str | None,
    *,
    grid_rows: int = 8,
    by: str | None = None,
    bins: int = 3,
    paired: bool = False,
    resamples: int = 10000,
) -> str:
    """Method-comparison table across run folders; writes compare.{md,csv,json} (+ plot, a grid of ``grid_rows``
    images spread evenly over the benchmark) when ``out``. ``by``: also the per-image means grouped by one
    degradation parameter of a ``make-testset`` benchmark (:func:`by_degradation`). ``paired``: also every run's
    per-image difference from the first run with a 95% interval (:func:`paired_differences`, ``resamples``
    bootstrap draws), in compare.md and under "paired" in compare.json."""
    summaries = [load_summary(r) for r in runs]
    benches = {s["benchmark"]["name"] for s in summaries}
    table = markdown_table(summaries, bold_best=True)
    text = f"# Comparison on {', '.join(sorted(benches))}\n\n{table}\n"
    pairs = None
    if paired:
        pairs = paired_differences(runs, summaries, resamples=resamples)
        text += "\n" + paired_markdown(pairs)
    if by:
        text += "\n" + by_degradation(runs, summaries, by, bins=bins)
    for s in summaries:
        if s["unavailable"]:
            text += f"\n{s['method']}: unavailable: " + "; ".join(f"{m}" for m in sorted(s["unavailable"])) + "\n"
    if out:
        from ..io.io_safety import OwnedFolder, atomic_write_text

        # a folder of its own: never a run folder it reads, never a file it did not write replaced
        inputs = [*runs, *(s["benchmark"].get(k) for s in summaries for k in ("restored_dir", "lq_dir", "gt_dir"))]
        owned = OwnedFolder(out, kind="compare", inputs=[i for i in inputs if i], legacy=_legacy_compare)
        owned.claim(*COMPARE_FILES)
        atomic_write_text(owned.path("compare.md"), text)
        cols = _columns(summaries)
        table = io.StringIO()
        w = csv.writer(table)
        w.writerow(["method", *cols])
        for s in summaries:
            v = _row_values(s)
            w.writerow([s["method"], *[v.get(c, "") for c in cols]])
        atomic_write_text(owned.path("compare.csv"), table.getvalue())
        atomic_write_text(
            owned.path("compare.json"),
            json.dumps(
                {"runs": [str(r) for r in runs], "summaries": summaries, **({"paired": pairs} if pairs else {})},
                indent=2,
            )
            + "\n",
        )
        _plot_compare(owned.path("compare.png"), summaries)
        _compare_grid(owned.path("grid.png"), runs, summaries, grid_rows)
    return text


COMPARE_FILES = ("compare.md", "compare.csv", "compare.json", "compare.png", "grid.png")
"""What ``compare`` writes in its folder, claimed before anything is written."""


def _legacy_compare(folder: Path) -> bool:
    """A comparison folder written before ownership records: its compare.json is ours."""
    try:
        data = json.loads((folder / "compare.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and "runs" in data and "summaries" in data


def _per_image(run: str | Path) -> dict[str, dict[str, float]]:
    p = Path(run) / "per_image.csv"
    if not p.is_file():
        return {}
    with p.open(newline="") as f:
        return {r["name"]: {k: float(v) for k, v in r.items() if k != "name" and v != ""} for r in csv.DictReader(f)}


def cluster_bootstrap(
    diffs: np.ndarray, clusters: list[str], *, resamples: int = 10000, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """Mean of per-image ``diffs`` and its ``level`` percentile interval, by resampling whole clusters with
    replacement (``clusters[i]``: the group of image i, e.g. the face it was degraded from; images of one face are not
    independent draws, so resampling images would make the interval too narrow). -> (mean, low, high).
    A resample's mean is over all images of its drawn clusters (a cluster drawn twice counts twice)."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim != 1 or d.size == 0 or len(clusters) != d.size:
        raise ValueError(f"need one cluster per difference and at least one; got {d.shape} and {len(clusters)}")
    keys, index = np.unique(np.asarray(clusters, dtype=str), return_inverse=True)
    sums = np.bincount(index, weights=d, minlength=len(keys))
    counts = np.bincount(index, minlength=len(keys)).astype(np.float64)
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(keys), size=(resamples, len(keys)))
    means = sums[draws].sum(axis=1) / counts[draws].sum(axis=1)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(means, [tail, 100 - tail])
    return float(d.mean()), float(low), float(high)


def _sources(summary: dict) -> dict[str, str]:
    """Image name -> the face it was degraded from (``source`` in the ``params.jsonl`` of a ``make-testset``
    benchmark, found beside its lq/ or gt/); {} for any other benchmark."""
    from .testset import read_records

    for key in ("lq_dir", "gt_dir"):
        folder = summary["benchmark"].get(key)
        if folder and (Path(folder).parent / "params.jsonl").is_file():
            records = read_records(Path(folder).parent)
            return {r.name: str(r.extra["source"]) for r in records if r.extra.get("source")}
    return {}


def paired_differences(runs: list[str], summaries: list[dict], *, resamples: int = 10000, seed: int = 0) -> dict:
    """Every run's per-image metric difference from the first run (the baseline), on the images both scored:
    {"baseline": method, "clusters": "source faces" | "images", "level": 0.95, "rows": [{"method", "metric",
    "n", "clusters", "mean", "low", "high", "verdict"}]}. mean is run minus baseline; low/high the 95% interval of
    :func:`cluster_bootstrap` over the source faces of a ``make-testset`` benchmark (else over images); verdict
    "better" / "worse" when the interval excludes 0 (in the metric's direction), else "tie"."""
    if len(runs) < 2:
        from ..errors import UserError

        raise UserError("--paired compares runs with the first one: give at least two run folders")
    per = [_per_image(r) for r in runs]
    base = per[0]
    cols = [c for c in _columns(summaries) if c in METRICS]
    sources = _sources(summaries[0])
    rows, kind = [], "images"
    for s, p in zip(summaries[1:], per[1:], strict=True):
        for c in cols:
            names = sorted(
                n
                for n in set(base) & set(p)
                if np.isfinite(base[n].get(c, np.nan)) and np.isfinite(p[n].get(c, np.nan))
            )
            if not names:
                continue
            by_face = all(n in sources for n in names)  # else each image is its own group
            clusters = [sources[n] for n in names] if by_face else names
            kind = "source faces" if by_face else "images"
            d = np.array([p[n][c] - base[n][c] for n in names])
            mean, low, high = cluster_bootstrap(d, clusters, resamples=resamples, seed=seed)
            sign = 1 if info(c).higher_is_better else -1
            if sign * low > 0 and sign * high > 0:
                verdict = "better"
            elif sign * low < 0 and sign * high < 0:
                verdict = "worse"
            else:
                verdict = "tie"
            rows.append(
                {
                    "method": s["method"],
                    "metric": c,
                    "n": len(names),
                    "clusters": len(set(clusters)),
                    "mean": mean,
                    "low": low,
                    "high": high,
                    "verdict": verdict,
                }
            )
    return {"baseline": summaries[0]["method"], "clusters": kind, "level": 0.95, "resamples": resamples, "rows": rows}


def paired_markdown(pairs: dict) -> str:
    """The :func:`paired_differences` table: a row per method, a column per metric, each cell "mean [low, high]"
    with the verdict marked (**better**, _worse_, plain for a tie)."""
    rows = pairs["rows"]
    metrics = list(dict.fromkeys(r["metric"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    cell = {(r["method"], r["metric"]): r for r in rows}
    n = {r["method"]: (r["n"], r["clusters"]) for r in rows}
    out = [
        f"## Paired differences from {pairs['baseline']}",
        "",
        f"Each method minus {pairs['baseline']}, per image; 95% interval from {pairs['resamples']} bootstrap draws "
        f"of the {pairs['clusters']}; **better** / _worse_ where the interval excludes 0.",
        "",
        "| method | images (groups) | "
        + " | ".join(f"{info(m).label} {ARROW[info(m).higher_is_better]}" for m in metrics)
        + " |",
        "|---|---|" + "---|" * len(metrics),
    ]
    for method in methods:
        cells = []
        for m in metrics:
            r = cell.get((method, m))
            if r is None:
                cells.append("n/a")
                continue
            text = f"{r['mean']:+.4f} [{r['low']:+.4f}, {r['high']:+.4f}]"
            cells.append({"better": f"**{text}**", "worse": f"_{text}_"}.get(r["verdict"], text))
        out.append(f"| {method} | {n[method][0]} ({n[method][1]}) | " + " | ".join(cells) + " |")
    return "\n".join(out) + "\n"


def by_degradation(runs: list[str], summaries: list[dict], param: str, *, bins: int = 3) -> str:
    """Markdown: for each per-image metric, its mean per method over the images grouped by ``param`` of their
    degradation record (``params.jsonl`` beside the benchmark's lq/, written by ``make-testset``). A numeric
    parameter (``scale``, ``noise_sigma``, ``jpeg_quality``, ``sigma_x``, ...) is cut into ``bins`` equal-width
    bins between its smallest and largest value; any other (``kernel``, ``gray``) groups by value. Images without a
    record, and records without the parameter, are left out. Raises UserError when the benchmark has no records or
    no image has ``param``."""
    from ..errors import UserError
    from .testset import read_records

    if bins < 1:
        raise UserError(f"--bins {bins}: must be >= 1")
    lq = summaries[0]["benchmark"].get("lq_dir")
    root = Path(lq).parent if lq else None
    if root is None or not (root / "params.jsonl").is_file():
        raise UserError(
            f"--by {param}: {summaries[0]['benchmark']['name']} has no params.jsonl beside its lq/ "
            "(only benchmarks made by `prefrestore make-testset` record their degradations)"
        )
    drawn = {rec.name: rec.params.to_dict() for rec in read_records(root)}
    known = sorted({k for p in drawn.values() for k in p})
    values = {n: p[param] for n, p in drawn.items() if p.get(param) is not None}
    if not values:
        raise UserError(f"--by {param}: no degradation record has it; choose from {', '.join(known)}")
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values.values())
    if numeric:
        lo, hi = min(values.values()), max(values.values())
        if lo == hi:  # one value: one group, not bins - 1 empty ones
            bins = 1
        edges = np.linspace(lo, hi, bins + 1)
        labels = [f"{edges[i]:.3g}-{edges[i + 1]:.3g}" for i in range(bins)]
        # equal-width bin index; the top edge belongs to the last bin
        index = {n: min(int(np.searchsorted(edges, v, side="right")) - 1, bins - 1) for n, v in values.items()}
    else:
        labels = sorted({str(v) for v in values.values()})
        index = {n: labels.index(str(v)) for n, v in values.items()}
    groups = [[n for n, g in index.items() if g == i] for i in range(len(labels))]

    per = [_per_image(r) for r in runs]
    cols = [c for c in _columns(summaries) if c in METRICS and any(c in row for p in per for row in p.values())]
    out = [f"## By {param}", ""]
    for c in cols:
        out += [
            f"{info(c).label} {ARROW[info(c).higher_is_better]}",
            "",
            f"| {param} | images | " + " | ".join(s["method"] for s in summaries) + " |",
            "|---|---|" + "---|" * len(summaries),
        ]
        for label, names in zip(labels, groups, strict=True):
            cells = []
            for p in per:
                vals = [p[n][c] for n in names if n in p and c in p[n] and np.isfinite(p[n][c])]
                cells.append(_fmt(float(np.mean(vals))) if vals else "n/a")
            out.append(f"| {label} | {len(names)} | " + " | ".join(cells) + " |")
        out.append("")
    return "\n".join(out)


def _plot_compare(path: Path, summaries: list[dict]) -> None:
    plt = _plt()
    if plt is None:
        return
    cols = [c for c in _columns(summaries) if any(np.isfinite(_row_values(s).get(c, np.nan)) for s in summaries)]
    if not cols:
        return
    fig, axes = plt.subplots(1, len(cols), figsize=(2.4 * len(cols), 2.8), squeeze=False)
    for ax, c in zip(axes[0], cols, strict=True):
        vals = [_row_values(s).get(c, np.nan) for s in summaries]
        vals = [v if np.isfinite(v) else 0.0 for v in vals]
        ax.bar(range(len(vals)), vals, color=[f"C{i}" for i in range(len(vals))])
        ax.set_xticks(range(len(vals)), [s["method"] for s in summaries], rotation=45, ha="right", fontsize=7)
        ax.set_title(f"{info(c).label} {ARROW[info(c).higher_is_better]}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _compare_grid(path: Path, runs: list[str], summaries: list[dict], n: int = 8) -> None:
    """LQ | method 1 | method 2 | ... | GT for images present in every run."""
    from .layouts import discover

    b = summaries[0]["benchmark"]
    if not b.get("lq_dir") and not b.get("gt_dir"):
        return
    bench = discover(None, lq=b.get("lq_dir"), gt=b.get("gt_dir"))
    folders = []
    for r, s in zip(runs, summaries, strict=True):
        rd = s["benchmark"].get("restored_dir")
        folders.append((s["method"], Path(rd) if rd else Path(r) / "restored"))
    keep = tuple(it for it in bench.items if all((f / f"{it.name}.png").exists() for _, f in folders))
    if not keep:
        return
    keep = keep[:: max(1, len(keep) // n)][:n]  # spread over the set (copies of one face are neighbours by name)
    sub = Benchmark(bench.name, bench.kind, keep, bench.lq_dir, bench.gt_dir, None)
    cols = [(m, (lambda it, f=f: f / f"{it.name}.png")) for m, f in folders]
    grid(path, sub, cols, n)

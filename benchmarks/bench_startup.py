"""Start-up cost of the command line, next to the floors it cannot go below, in one run.

    .venv/bin/python benchmarks/bench_startup.py [--variant before=/path/to/old/src] [--variant after=src]
        [--repeats 7] [--restore-repeats 2] [--photo PATH] [--skip-restore]

Each row is the wall time of a fresh process (median of the repeats), started the way a user starts it:

* ``python_bare``: ``python -c pass`` (the interpreter and site start-up; the floor of any command);
* ``import_torch``: ``python -c "import torch"``;
* ``load_model``: ``python -c "import prefrestore.restore.api; load_restorer('default')"`` (torch, the model code and the
  bundled model's weights: the floor of any restore);
* ``version``, ``help``, ``bad_flag`` (``--no-such-flag``), ``restore_help``, ``restore_bad_flag`` (``restore
  PHOTO --no-such-flag``): the ``prefrestore`` console script (the venv's, else ``python -m prefrestore``);
* ``restore_one_photo``: ``prefrestore restore PHOTO -o TMP --overwrite`` with the bundled model (default photo:
  the bundled example ``grace_hopper.jpg``, 200x234, one face): the time to a restored photo on disk.

``--variant NAME=SRC`` runs every row with ``PYTHONPATH=SRC`` (repeatable; e.g. ``before=/checkout/of/main/src``
and ``after=src``). Rows and variants are interleaved (one run of each in turn, repeated), so a machine whose load
changes slows them alike. Every row runs once untimed first (a warm file cache, and the ``.pyc`` files written, as
an installed package has them: ``PYTHONDONTWRITEBYTECODE`` is dropped for the runs). Prints one JSON object:
seconds per row per variant (medians), and the ratios the start-up targets are stated in (``version``, ``help``,
``bad_flag`` over ``python_bare``; ``restore_one_photo`` over ``load_model``, a process that imports torch and loads
the model). Compare rows of one run, not machines.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "src" / "prefrestore" / "assets" / "examples" / "grace_hopper.jpg"


def _cli() -> list[str]:
    script = Path(sys.executable).with_name("prefrestore")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "prefrestore"]


def rows(photo: Path, out: Path, *, restore: bool) -> dict[str, tuple[list[str], int]]:
    """name -> (command, the exit status it must end with)."""
    py, cli = sys.executable, _cli()
    table = {
        "python_bare": ([py, "-c", "pass"], 0),
        "import_torch": ([py, "-c", "import torch"], 0),
        "version": ([*cli, "--version"], 0),
        "help": ([*cli, "--help"], 0),
        "restore_help": ([*cli, "restore", "--help"], 0),
        "bad_flag": ([*cli, "--no-such-flag"], 2),
        "restore_bad_flag": ([*cli, "restore", str(photo), "--no-such-flag"], 2),
    }
    if restore:
        table["load_model"] = (
            [py, "-c", "from prefrestore.restore.api import load_restorer; load_restorer('default')"],
            0,
        )
        table["restore_one_photo"] = ([*cli, "restore", str(photo), "-o", str(out), "--overwrite"], 0)
    return table


def timed(cmd: list[str], code: int, env: dict) -> float:
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.perf_counter() - t0
    if done.returncode != code:
        raise SystemExit(f"{' '.join(cmd)} exited {done.returncode}, expected {code}:\n{done.stderr[-2000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--variant",
        action="append",
        metavar="NAME=SRC",
        help="a source folder to run against (repeatable; default: after=this checkout's src)",
    )
    parser.add_argument("--repeats", type=int, default=7, help="runs of each fast row (default 7)")
    parser.add_argument("--restore-repeats", type=int, default=2, help="runs of load_model and the restore (2)")
    parser.add_argument("--photo", type=Path, default=PHOTO)
    parser.add_argument("--skip-restore", action="store_true", help="only the rows that load no model")
    args = parser.parse_args()
    variants = dict(v.split("=", 1) for v in (args.variant or [f"after={ROOT / 'src'}"]))
    work = Path(tempfile.mkdtemp(prefix="bench_startup_"))
    times: dict[str, dict[str, list[float]]] = {v: {} for v in variants}
    try:
        table = rows(args.photo.resolve(), work / "out", restore=not args.skip_restore)
        for k in range(max(args.repeats, args.restore_repeats) + 1):  # rows and variants interleaved
            for name, (cmd, code) in table.items():
                repeats = args.restore_repeats if name in ("load_model", "restore_one_photo") else args.repeats
                if k > repeats:
                    continue
                for variant, src in variants.items():
                    env = {**os.environ, "PYTHONPATH": str(Path(src).resolve()), "OMP_NUM_THREADS": "1"}
                    env.pop("PYTHONDONTWRITEBYTECODE", None)
                    run_cmd = [c.replace(str(work / "out"), str(work / variant)) for c in cmd]
                    seconds = timed(run_cmd, code, env)
                    if k:  # the first run warms up
                        times[variant].setdefault(name, []).append(seconds)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    result = {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "photo": str(args.photo),
        "repeats": args.repeats,
        "restore_repeats": args.restore_repeats,
        "variants": {},
    }
    for variant, rows_ in times.items():
        median = {name: round(statistics.median(v), 3) for name, v in rows_.items()}
        bare = median["python_bare"]
        ratios = {
            f"{k}_over_python_bare": round(median[k] / bare, 2)
            for k in ("version", "help", "bad_flag", "restore_help", "restore_bad_flag")
        }
        if "restore_one_photo" in median:
            ratios["restore_over_load_model"] = round(median["restore_one_photo"] / median["load_model"], 2)
        result["variants"][variant] = {"src": str(variants[variant]), "seconds": median, "ratios": ratios}
    json.dump(result, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()

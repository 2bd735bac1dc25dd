"""Plot the loss curves of SFT runs (their log.jsonl) into one PNG, one panel per run.

    .venv/bin/python tools/plot_losses.py runs/tiny-stage0 runs/tiny-stage1 runs/tiny-stage2 runs/tiny-stage3 \\
        -o runs/tiny-loss-curves.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

SERIES = ("loss", "l1", "mse", "ce", "diff")


def main(argv: list[str] | None = None) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("runs", nargs="+", help="run directories holding log.jsonl")
    ap.add_argument("-o", "--out", required=True)
    args = ap.parse_args(argv)
    fig, axes = plt.subplots(1, len(args.runs), figsize=(4.2 * len(args.runs), 3.4), squeeze=False)
    for ax, run in zip(axes[0], args.runs, strict=True):
        recs = [json.loads(ln) for ln in (Path(run) / "log.jsonl").read_text().splitlines() if ln.strip()]
        steps = [r["step"] for r in recs]
        for key in SERIES:
            if key in recs[0]:
                ax.plot(steps, [r[key] for r in recs], label=key, lw=1.6 if key == "loss" else 1.0)
        ax.set_title(Path(run).name)
        ax.set_xlabel("optimizer step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(args.out, dpi=110)
    return 0


if __name__ == "__main__":
    sys.exit(main())

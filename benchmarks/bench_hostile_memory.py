"""Peak memory (RSS) of `prefrestore restore` on hostile-size inputs; prints JSON.

    python benchmarks/bench_hostile_memory.py [--model default] [--cases bomb,bomb_under_limit,big_s1,big_s2]

Cases (each one fresh `python -m prefrestore restore` process; its peak RSS from wait4):
* bomb: a ~160 KB PNG with a valid header that inflates to 13000x13000 (a real zlib bomb, issue 18 P8).
* bomb_under_limit: the same bomb at 12200x12200 (148.8 M pixels, just under the 150 M pixel limit), -s 1.
* big_s1 / big_s2: a 12000x9000 JPEG photo (one face) at -s 1 and -s 2.
* baseline: a 512x512 photo (the process, torch and the model alone).
Every case records exit status, wall seconds, peak RSS (GiB) and the last stderr line (the refusal, if any).
"""

from __future__ import annotations

import argparse
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
import zlib
from pathlib import Path

import numpy as np


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def zlib_bomb(path: Path, side: int) -> None:
    """An 8-bit RGB PNG of side x side black pixels, streamed through zlib (never held in memory)."""
    comp = zlib.compressobj(9)
    row = b"\x00" + b"\x00" * (3 * side)  # filter byte + black row
    parts = []
    for _ in range(side):
        parts.append(comp.compress(row))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")
    )


def big_photo(path: Path, size: tuple[int, int]) -> None:
    """A size=(w, h) JPEG: a textured background with the astronaut's face pasted at min(w, h) / 7.5 px
    (1200 px in a 12000x9000 photo)."""
    import cv2
    from skimage import data

    w, h = size
    rng = np.random.default_rng(0)
    small = rng.integers(60, 200, (h // 64 + 1, w // 64 + 1, 3), dtype=np.uint8)
    img = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)
    side = int(min(w, h) / 7.5)
    face = cv2.resize(data.astronaut()[:300, 100:400], (side, side), interpolation=cv2.INTER_CUBIC)
    y, x = int(h * 0.22), int(w * 0.42)
    img[y : y + side, x : x + side] = face
    cv2.imwrite(str(path), cv2.cvtColor(img, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 90])


def run_case(args: list[str]) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefrestore", "restore", *args],
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        env=env,
        text=True,
    )
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("WARNING")]
    return {
        "exit": proc.returncode,
        "seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_gib": round(usage.ru_maxrss / 2**20, 3),
        "last_line": lines[-1] if lines else "",
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="default")
    ap.add_argument("--cases", default="baseline,bomb,bomb_under_limit,big_s1,big_s2")
    opts = ap.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        common = ["--model", opts.model, "--identity", "off", "--overwrite"]
        for case in opts.cases.split(","):
            if case == "baseline":
                big_photo(root / "small.jpg", (512, 512))
                args = [str(root / "small.jpg"), "-o", str(root / "out"), "-s", "2"]
            elif case == "bomb":
                zlib_bomb(root / "bomb.png", 13000)
                args = [str(root / "bomb.png"), "-o", str(root / "out"), "-s", "2"]
            elif case == "bomb_under_limit":
                zlib_bomb(root / "bomb122.png", 12200)
                args = [str(root / "bomb122.png"), "-o", str(root / "out"), "-s", "1"]
            elif case in ("big_s1", "big_s2"):
                if not (root / "big.jpg").exists():
                    big_photo(root / "big.jpg", (12000, 9000))
                args = [str(root / "big.jpg"), "-o", str(root / "out"), "-s", case[-1]]
            else:
                raise SystemExit(f"unknown case {case}")
            size = max(p.stat().st_size for p in root.glob("*.*") if p.name == Path(args[0]).name)
            results[case] = {"input_bytes": size, **run_case(args + common)}
            print(json.dumps({case: results[case]}), file=sys.stderr)
    print(json.dumps({"model": opts.model, "cases": results}, indent=2))


if __name__ == "__main__":
    main()

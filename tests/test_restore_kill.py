"""`prefrestore restore` killed (SIGKILL) at random points, photo and --aligned mode (issue 18 P2, m4).

After each kill no file under its real name is torn (every image decodes, every report parses, none is empty),
and rerunning the same command gives exactly the outputs of an uninterrupted run: same files, same bytes, same
reports (timings aside), no temporary files left. Every run (the uninterrupted reference, the killed one and the
rerun) is the same subprocess, in the same environment (one thread), with an identity stand-in restorer (a few ms
per face, so kills land in detection, restoration and writing alike). The same environment matters: detection's
float results, and so the bytes of a pasted-back photo, may differ in the last bit between thread counts, as any
torch/OpenCV program's may; a resumed run on the same machine and settings must match exactly.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prefrestore.io.photo_io import read_photo

RUNNER = """
import sys, time, types
import prefrestore.restore
from prefrestore import cli

class Identity:
    resolution = 128
    capabilities = frozenset()
    def restore(self, faces, *, seed=0):
        time.sleep(0.01 * len(faces))
        return [f.copy() for f in faces]

def load_restorer(model="tiny", **kwargs):
    open(sys.argv[1], "w").close()  # the marker: planning is over, the work starts now
    return Identity()

fake = types.ModuleType("prefrestore.restore.api")
fake.load_restorer = load_restorer
sys.modules["prefrestore.restore.api"] = fake
prefrestore.restore.api = fake
sys.exit(cli.main(sys.argv[2:]))
"""


def _inputs(folder: Path, aligned: bool) -> None:
    folder.mkdir()
    astronaut = pytest.importorskip("skimage.data").astronaut()
    if aligned:  # FFHQ-aligned crops (a loose crop is refused by --aligned), each a little brighter than the last
        from prefrestore.faces.align import align
        from prefrestore.faces.detect import build_detector

        (face,) = build_detector("mtcnn").detect(astronaut)
        aligned_crop = align(astronaut, face, 256).crop
        for k in range(16):
            side = (128, 160, 256)[k % 3]
            crop = np.asarray(Image.fromarray(aligned_crop).resize((side, side))).astype(np.int16)
            Image.fromarray(np.clip(crop + 2 * k, 0, 255).astype(np.uint8)).save(folder / f"crop{k:02d}.png")
        return
    for k in range(6):
        photo = np.asarray(Image.fromarray(astronaut).resize((288, 288)))
        photo = photo[:, ::-1] if k % 2 else photo
        Image.fromarray(np.roll(photo, 5 * k, axis=0)).save(folder / f"photo{k}.{'jpg' if k % 3 == 0 else 'png'}")


def _command(tmp: Path, inputs: Path, out: Path, aligned: bool, marker: Path) -> list[str]:
    script = tmp / "runner.py"
    script.write_text(RUNNER)
    args = [
        sys.executable,
        str(script),
        str(marker),
        "restore",
        str(inputs),
        "-o",
        str(out),
        "--identity",
        "off",
        "--batch-size",
        "4",
    ]  # a rerun puts the photos left into other groups than the first run did
    return args + (["--aligned"] if aligned else ["-s", "2"])


def _env() -> dict:
    src = str(Path(__file__).resolve().parents[1] / "src")
    return dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))


def _snapshot(out: Path) -> dict[str, object]:
    """Every file under out -> its bytes (images) or its report without timings and with out's path removed."""
    snap: dict[str, object] = {}
    for p in sorted(out.rglob("*")):
        if not p.is_file():
            continue
        rel = str(p.relative_to(out))
        if p.suffix == ".json":
            report = json.loads(p.read_text().replace(str(out), "OUT"))
            report.pop("timings", None)
            snap[rel] = report
        else:
            snap[rel] = p.read_bytes()
    return snap


def _assert_nothing_torn(out: Path) -> None:
    for p in out.rglob("*"):
        if not p.is_file() or p.name.startswith(".prefrestore-"):  # temporaries are allowed to be cut short
            continue
        assert p.stat().st_size > 0, f"empty file under its real name: {p}"
        if p.suffix == ".json":
            json.loads(p.read_text())
        else:
            read_photo(p)


def _run(cmd: list[str]) -> tuple[int, str]:
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stderr


@pytest.fixture(scope="module", params=[pytest.param(False, id="photo"), pytest.param(True, id="aligned")])
def reference(request, tmp_path_factory):
    """An uninterrupted run: (mode, tmp, inputs, its snapshot, seconds it worked after planning)."""
    aligned = request.param
    tmp = tmp_path_factory.mktemp("aligned" if aligned else "photo")
    inputs = tmp / "in"
    _inputs(inputs, aligned)
    marker = tmp / "ref.started"
    proc = subprocess.Popen(
        _command(tmp, inputs, tmp / "ref", aligned, marker), env=_env(), stderr=subprocess.PIPE, text=True
    )
    while proc.poll() is None and not marker.exists():
        time.sleep(0.01)
    t0 = time.perf_counter()
    _, err = proc.communicate(timeout=300)
    work = time.perf_counter() - t0
    assert proc.returncode == 0, err
    snap = _snapshot(tmp / "ref")
    folder = "restored_faces" if aligned else "restored_imgs"
    assert sum(1 for k in snap if k.startswith(folder)) == (16 if aligned else 6)
    return aligned, tmp, inputs, snap, work


@pytest.mark.parametrize("kill", range(3))
def test_kill_then_rerun_equals_an_uninterrupted_run(reference, kill):
    aligned, tmp, inputs, ref, work = reference
    rng = np.random.default_rng(1000 * int(aligned) + kill)
    out = tmp / f"kill{kill}"
    marker = tmp / f"kill{kill}.started"
    cmd = _command(tmp, inputs, out, aligned, marker)
    proc = subprocess.Popen(cmd, env=_env(), stderr=subprocess.DEVNULL)
    while proc.poll() is None and not marker.exists():
        time.sleep(0.01)
    time.sleep(float(rng.uniform(0.05, 0.9)) * work)  # somewhere in the work: detection, restoring, writing
    finished = proc.poll() is not None
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    if out.exists():
        _assert_nothing_torn(out)
    code, err = _run(cmd)  # the same command again, to completion
    assert code == 0 and "Traceback" not in err, err
    got = _snapshot(out)
    assert not [k for k in got if Path(k).name.startswith(".prefrestore-")], "temporary files left behind"
    assert sorted(got) == sorted(ref)
    for key, value in ref.items():
        assert got[key] == value, key
    print(
        f"{'aligned' if aligned else 'photo'} kill #{kill}{' (after the end)' if finished else ''}: "
        f"rerun {err.strip().splitlines()[-1]}"
    )

"""The bundled `make demo` photos: present, readable as uint8 RGB, licensed, and with faces MTCNN finds; the demo
builds its page from the run's results."""

import numpy as np
import pytest

from prefrestore.demo import EXAMPLES, example_photos
from prefrestore.io.image import load_rgb

NAMES = ["astronaut.jpg", "grace_hopper.jpg", "group.jpg", "portrait_sharp.jpg"]


def test_examples_are_bundled_with_licences():
    assert [p.name for p in example_photos()] == NAMES
    licences = (EXAMPLES / "LICENSES.md").read_text()
    for source in ("astronaut", "grace_hopper", "kodim04"):
        assert f"## {source}" in licences
    for p in example_photos():
        assert p.stat().st_size < 120_000, f"{p.name} is too big to bundle"


@pytest.mark.parametrize(
    "name, faces", [("astronaut.jpg", 1), ("grace_hopper.jpg", 1), ("group.jpg", 3), ("portrait_sharp.jpg", 1)]
)
def test_examples_load_and_have_faces(name, faces, one_thread, detector):
    img = load_rgb(EXAMPLES / name)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    found = detector.detect(img)
    assert len(found) >= 1
    # the examples are built so the pipeline (min face size 20 px) restores every face in them
    assert len(found) == faces
    assert all(d.size >= 20 for d in found)


def test_demo_page_is_built_from_the_run_not_from_the_report_files(tmp_path, monkeypatch, fake_api):
    """The run's reports are kept in memory but not written: the page must still show every photo and face."""
    import prefrestore.restore.file_run
    from prefrestore import demo

    kept = []
    monkeypatch.setattr(
        prefrestore.restore.file_run, "write_report", lambda layout, item, report, guard=None: kept.append(report)
    )
    monkeypatch.chdir(tmp_path)
    assert demo.main() == 0
    assert [r["status"] for r in kept] == ["restored"] * 4
    assert not list((tmp_path / "demo_output" / "reports").glob("*"))  # nothing to read back
    page = (tmp_path / "demo_output" / "index.html").read_text()
    assert "4 photos restored" in page
    assert page.count("<h2>") == 4 and page.count('alt="face ') == sum(len(r["faces"]) for r in kept) == 6
    # the sharp portrait's face is larger than the stand-in's 128 px crop: the no-loss rule's caption says so
    assert "finer detail kept (no-loss rule)" in page
    assert (tmp_path / "demo_output" / "side_by_side.png").stat().st_size > 0

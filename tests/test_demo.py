"""The bundled `make demo` photos: present, readable as uint8 RGB, licensed, and with faces MTCNN finds."""

import numpy as np
import pytest

from prefrestore.demo import EXAMPLES, example_photos
from prefrestore.image import load_rgb

NAMES = ["astronaut.jpg", "grace_hopper.jpg", "group.jpg"]


def test_examples_are_bundled_with_licences():
    assert [p.name for p in example_photos()] == NAMES
    licences = (EXAMPLES / "LICENSES.md").read_text()
    for source in ("astronaut", "grace_hopper", "kodim04"):
        assert f"## {source}" in licences
    for p in example_photos():
        assert p.stat().st_size < 120_000, f"{p.name} is too big to bundle"


@pytest.mark.parametrize("name, faces", [("astronaut.jpg", 1), ("grace_hopper.jpg", 1), ("group.jpg", 3)])
def test_examples_load_and_have_faces(name, faces, one_thread, detector):
    img = load_rgb(EXAMPLES / name)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    found = detector.detect(img)
    assert len(found) >= 1
    # the examples are built so the pipeline (min face size 20 px) restores every face in them
    assert len(found) == faces
    assert all(d.size >= 20 for d in found)

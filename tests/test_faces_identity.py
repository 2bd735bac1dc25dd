"""dlib identity similarity on aligned crops: same person close, different people far (optional extra)."""

import numpy as np
import pytest
from PIL import Image

from prefrestore.faces.align import align
from prefrestore.faces.detect import build_detector
from prefrestore.faces.identity import identity_available, load_identity_scorer

pytestmark = pytest.mark.skipif(not identity_available(), reason="dlib / face_recognition_models not installed")


@pytest.fixture(scope="module")
def crops():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    astronaut = pytest.importorskip("skimage.data").astronaut()
    with Image.open(pytest.importorskip("matplotlib.cbook").get_sample_data("grace_hopper.jpg")) as im:
        grace = np.asarray(im.convert("RGB"))
    detector = build_detector("mtcnn")
    out = {
        name: align(img, detector.detect(img)[0], 256).crop
        for name, img in (("astronaut", astronaut), ("grace", grace))
    }
    torch.set_num_threads(before)
    return out


def test_identity_separates_people(crops):
    scorer = load_identity_scorer()
    same, mirrored, other = scorer.compare(
        [crops["astronaut"], crops["grace"], crops["astronaut"]],
        [crops["astronaut"], np.ascontiguousarray(crops["grace"][:, ::-1]), crops["grace"]],
    )
    assert same.distance < 1e-6 and same.similarity == pytest.approx(1.0)
    assert mirrored.distance < 0.6  # dlib's same-person threshold
    assert other.distance > 0.6 and other.similarity < mirrored.similarity

"""MTCNN with the bundled weights finds real faces where facenet-pytorch does; suppression and selection.

Reference numbers: facenet-pytorch 2.6.0 ``MTCNN(keep_all=True).detect(img, landmarks=True)`` with the same
weights (run once with a torchvision shim, ../shared/docs/OFFLINE.md §1). Our cascade uses exact window
geometry and zero padding, so boxes differ by a few pixels; landmarks by ~2 px.
"""

import hashlib
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from prefrestore.faces.detect import SelectConfig, deduplicate, select_faces
from prefrestore.faces.mtcnn import nms
from prefrestore.faces.types import FaceDetection

ASTRONAUT_BOX = [181.1, 62.2, 267.7, 172.1]
ASTRONAUT_LANDMARKS = [[205.0, 101.7], [246.8, 103.7], [224.7, 129.0], [201.7, 139.2], [245.3, 141.9]]
GRACE_BOX = [174.4, 119.6, 355.6, 340.5]
T1_BOXES = [  # facenet-pytorch's six faces with p > 0.97 (it also returns two false positives at p ~0.87)
    [54.6, 262.8, 165.3, 397.3],
    [268.2, 149.7, 375.1, 272.4],
    [465.0, 261.8, 570.4, 405.2],
    [743.0, 346.0, 843.5, 473.8],
    [908.2, 62.0, 1013.6, 201.5],
    [1134.5, 276.3, 1227.7, 395.4],
]
T1_SHA256 = "47f682e945b659f93a9e490b9c9c4a2a864abe64dace9e1a2893845ddfd69489"
MTCNN_SHA256 = "fa501e6c0aada024f41d188c9526ee3c2ed37a2c23a13a65299ee0e0a40742ad"


def iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module", autouse=True)
def _one_thread(one_thread):
    """Every test here runs MTCNN; see conftest.one_thread."""


@pytest.fixture(scope="session")
def t1_path(request) -> Path:
    """insightface 2.1's t1.jpg (six people; copyright unclear, so not committed): taken from the wheel with
    ``pip download --no-deps insightface==2.1`` once, cached in .pytest_cache, checked by SHA-256."""
    cache = Path(request.config.cache.mkdir("insightface-2.1"))
    path = cache / "t1.jpg"
    if not path.exists() or hashlib.sha256(path.read_bytes()).hexdigest() != T1_SHA256:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "insightface==2.1", "-d", str(cache)]
        if subprocess.run(cmd, capture_output=True, timeout=300).returncode != 0:
            pytest.skip("insightface==2.1 could not be downloaded (offline?); t1.jpg unavailable")
        (wheel,) = cache.glob("insightface-2.1-*.whl")
        with zipfile.ZipFile(wheel) as z:
            path.write_bytes(z.read("insightface/data/images/t1.jpg"))
        wheel.unlink()
    assert hashlib.sha256(path.read_bytes()).hexdigest() == T1_SHA256
    return path


def test_bundled_weights_are_the_converted_ones():
    from importlib import resources

    data = resources.files("prefrestore").joinpath("assets/mtcnn.safetensors").read_bytes()
    assert hashlib.sha256(data).hexdigest() == MTCNN_SHA256
    assert "MIT" in resources.files("prefrestore").joinpath("assets/LICENSE-mtcnn.txt").read_text()


def test_astronaut(detector, astronaut):
    (face,) = detector.detect(astronaut)
    assert face.score > 0.99
    assert iou(face.box, ASTRONAUT_BOX) > 0.9
    assert np.abs(face.landmarks_array() - ASTRONAUT_LANDMARKS).max() < 3.0


def test_grace_hopper(detector, grace):
    (face,) = detector.detect(grace)
    assert face.score > 0.99 and iou(face.box, GRACE_BOX) > 0.9


def test_all_six_faces_in_t1(detector, t1_path):
    with Image.open(t1_path) as im:
        img = np.asarray(im.convert("RGB"))
    faces, _ = select_faces(detector.detect(img), (img.shape[1], img.shape[0]), SelectConfig())
    assert len(faces) == 6
    for ref in T1_BOXES:
        assert max(iou(f.box, ref) for f in faces) > 0.75, ref


def test_batched_detection_equals_one_by_one(detector, astronaut, grace):
    blank = np.full((100, 140, 3), 128, np.uint8)
    together = detector.detect_many([astronaut, blank, grace])
    alone = [detector.detect(x) for x in (astronaut, blank, grace)]
    assert [len(x) for x in together] == [1, 0, 1]
    for a, b in zip(together, alone, strict=True):
        for fa, fb in zip(a, b, strict=True):
            assert np.allclose(fa.box, fb.box, atol=1e-3) and abs(fa.score - fb.score) < 1e-5


def test_no_torchvision_or_facenet_at_run_time(detector, astronaut):
    detector.detect(astronaut)
    assert "facenet_pytorch" not in sys.modules and "torchvision" not in sys.modules


def test_face_at_the_border_and_tiny_images(detector, astronaut):
    cut = np.ascontiguousarray(astronaut[70:, 200:])  # the face cut by the top and left edges
    faces = detector.detect(cut)
    assert len(faces) == 1 and faces[0].box[1] < 10
    assert detector.detect(np.zeros((5, 7, 3), np.uint8)) == []


# ----------------------------------------------------------------------------------------------------------------
# Suppression, de-duplication and selection (pure)


def det(box, score=0.99, eyes=None) -> FaceDetection:
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    le, re = eyes or ((x1 + 0.3 * w, y1 + 0.4 * h), (x1 + 0.7 * w, y1 + 0.4 * h))
    lm = (le, re, (x1 + 0.5 * w, y1 + 0.6 * h), (x1 + 0.35 * w, y1 + 0.8 * h), (x1 + 0.65 * w, y1 + 0.8 * h))
    return FaceDetection(box=tuple(map(float, box)), score=score, landmarks=lm)


def test_nms_union_and_min():
    boxes = np.array([[0, 0, 10, 10], [1, 1, 11, 11], [2, 2, 6, 6], [50, 50, 60, 60]], float)
    scores = np.array([0.9, 0.8, 0.95, 0.7])
    assert nms(boxes, scores, 0.5).tolist() == [2, 0, 3]  # the nested small box survives IoU ...
    assert nms(boxes, scores, 0.5, mode="min").tolist() == [2, 3]  # ... but not intersection / smaller area


def test_deduplicate_three_detections_of_one_face():
    face = det((100, 100, 200, 220), 0.99)
    shifted = det((110, 105, 212, 228), 0.97)  # IoU ~0.7
    nested = det((120, 130, 180, 200), 0.98)  # inside the first
    same_eyes = det((90, 60, 215, 240), 0.96, eyes=face.landmarks[:2])  # a much larger box on the same eyes
    other = det((300, 100, 400, 220), 0.9)
    kept, dropped = deduplicate([shifted, other, face, nested, same_eyes])
    assert kept == [face, other]
    assert len(dropped) == 3


def test_select_faces_threshold_size_max_and_centre():
    faces = [
        det((0, 0, 100, 100), 0.99),
        det((400, 400, 460, 460), 0.99),
        det((800, 0, 830, 30), 0.99),
        det((200, 0, 300, 100), 0.80),
    ]
    kept, rejected = select_faces(faces, (1000, 1000), SelectConfig(score_threshold=0.9, min_face_size=40))
    assert [f.box[0] for f in kept] == [0.0, 400.0]
    assert sorted(r.reason.split()[0] for r in rejected) == ["low", "too"]
    kept, _ = select_faces(faces, (1000, 1000), SelectConfig(score_threshold=0.5, max_faces=2))
    assert [f.box[0] for f in kept] == [0.0, 200.0]  # the two largest, left to right
    kept, _ = select_faces(faces, (1000, 1000), SelectConfig(only_center_face=True))
    assert [f.box[0] for f in kept] == [400.0]
    with pytest.raises(ValueError, match="max_faces"):
        SelectConfig(max_faces=0)

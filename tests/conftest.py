import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    """A test that changes torch's thread count (a trainer's ``threads``, a benchmark) does not change it for the
    tests after it: results that compare against a fresh process depend on the count."""
    before = torch.get_num_threads()
    yield
    if torch.get_num_threads() != before:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_model():
    from prefrestore.restore.api import random_model

    return random_model("tiny", seed=0)


# ---------------------------------------------------------------------------------------------------------------
# Real photos and the detector, shared by the face and pipeline tests


@pytest.fixture(scope="module")
def one_thread():
    """MTCNN's small convolutions gain nothing from threads, and lose 10x when other jobs share the 2 cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def detector():
    from prefrestore.faces.detect import build_detector

    return build_detector("mtcnn")


@pytest.fixture(scope="module")
def astronaut():
    return pytest.importorskip("skimage.data").astronaut()


@pytest.fixture(scope="module")
def grace():
    import numpy as np
    from PIL import Image

    with Image.open(pytest.importorskip("matplotlib.cbook").get_sample_data("grace_hopper.jpg")) as im:
        return np.asarray(im.convert("RGB"))


# ---------------------------------------------------------------------------------------------------------------
# `prefrestore restore` with a stand-in model (the CLI tests: the model is tested elsewhere, importing it costs seconds)


class IdentityRestorer:
    """Returns each aligned crop unchanged: paste-back must then reproduce the photo. ``calls``: (faces, seed) of
    every call."""

    resolution = 128

    def __init__(self):
        self.calls: list[tuple[int, int]] = []

    capabilities = frozenset()

    def restore(self, faces, *, seed=0):
        self.calls.append((len(faces), seed))
        return [f.copy() for f in faces]


@pytest.fixture
def fake_api(monkeypatch):
    """Stand in for prefrestore.restore.api with an identity restorer; yields the (model, kwargs) of every load_restorer
    call. test_pipeline.py's slow test runs the real API through the pipeline."""
    import sys
    import types

    import prefrestore.restore

    calls = []

    def load_restorer(model="tiny", **kwargs):
        calls.append((model, kwargs))
        return IdentityRestorer()

    fake = types.ModuleType("prefrestore.restore.api")
    fake.load_restorer = load_restorer
    monkeypatch.setitem(sys.modules, "prefrestore.restore.api", fake)
    monkeypatch.setattr(prefrestore.restore, "api", fake, raising=False)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield calls
    torch.set_num_threads(before)


def run_restore_cli(argv: list[str], cwd=None) -> tuple[int, str]:
    """``prefrestore.cli.main(argv)`` in-process with the identity stand-in of prefrestore.restore.api (in ``cwd`` if
    given) -> (exit status, what it wrote to stderr). For tests that cannot use the function-scoped fixture."""
    import io
    import sys
    import types

    import prefrestore.restore
    from prefrestore import cli

    fake = types.ModuleType("prefrestore.restore.api")
    fake.load_restorer = lambda model="tiny", **kwargs: IdentityRestorer()
    mp = pytest.MonkeyPatch()
    mp.setitem(sys.modules, "prefrestore.restore.api", fake)
    mp.setattr(prefrestore.restore, "api", fake, raising=False)
    if cwd is not None:
        mp.chdir(cwd)
    capture = io.StringIO()
    mp.setattr(sys, "stderr", capture)
    try:
        code = cli.main(argv)
    finally:
        mp.undo()
    return code, capture.getvalue()

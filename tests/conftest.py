import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny_model():
    from prefrestore.api import random_model

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

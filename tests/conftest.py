import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture(scope="session")
def tiny_model():
    from prefrestore.api import random_model

    return random_model("tiny", seed=0)


@pytest.fixture
def device():
    return torch.device("cpu")

"""Model references resolve offline-first with one-line, actionable errors."""

import pytest

from prefrestore import hub
from prefrestore.checkpoints import save_pretrained
from prefrestore.errors import CheckpointError, UserError


def test_folder_and_errors(tmp_path, tiny_model):
    d = save_pretrained(tiny_model, tmp_path / "m")
    assert hub.resolve(str(d)) == d
    with pytest.raises(CheckpointError, match="no config.json"):
        hub.resolve(str(tmp_path))
    with pytest.raises(UserError, match="not a model folder, preset or Hugging Face repo id"):
        hub.resolve("no/such/thing/here")


def test_hub_id_missing_from_cache_says_what_to_download(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UserError, match="huggingface-cli download org/model --local-dir DIR") as e:
        hub.resolve("org/model")
    assert "\n" not in str(e.value)


def test_default_prefers_an_installed_paper_model(tmp_path, monkeypatch, tiny_model):
    paper = save_pretrained(tiny_model, tmp_path / "paper")
    monkeypatch.setenv("PREFRESTORE_PAPER_MODEL", str(paper))
    assert hub.resolve("default") == paper
    monkeypatch.setenv("PREFRESTORE_PAPER_MODEL", str(tmp_path / "nothing"))
    with pytest.raises(UserError, match="PREFRESTORE_PAPER_MODEL"):
        hub.resolve("default")
    monkeypatch.delenv("PREFRESTORE_PAPER_MODEL")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    bundled = hub.bundled_model_dir()
    if bundled is None:
        with pytest.raises(UserError, match="no bundled default model"):
            hub.resolve("default")
    else:
        assert hub.resolve("default") == bundled

"""The pipeline object (prefrestore.restore.loaded): built once, used by every driver; capabilities declared, not
probed; the server restores in memory, with no CLI report written and read back."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from prefrestore.io.image import load_rgb
from prefrestore.restore.control import FIDELITY_DIAL, PER_FACE_SEEDS, SetupError, sample_candidates
from prefrestore.restore.loaded import Pipeline, on_rank
from prefrestore.restore.options import RestoreOptions, RestoreSettings
from prefrestore.restore.pipeline import PipelineConfig

EXAMPLES = Path(__file__).resolve().parents[1] / "src" / "prefrestore" / "assets" / "examples"


class UndeclaredDial:
    """Takes ``fidelity`` and ``seeds`` in its signature but declares neither: the pipeline must not find them."""

    resolution = 16
    capabilities = frozenset()

    def __init__(self) -> None:
        self.calls: list[dict] = []

    def restore(self, faces, *, seed=0, seeds=None, fidelity=None):
        self.calls.append({"n": len(faces), "seed": seed, "seeds": seeds, "fidelity": fidelity})
        return [f.copy() for f in faces]


class DeclaredSeeds(UndeclaredDial):
    capabilities = frozenset({PER_FACE_SEEDS})


def _crops(n: int) -> list[np.ndarray]:
    return [np.full((16, 16, 3), 10 * k, np.uint8) for k in range(n)]


def test_a_restorer_without_the_dial_is_refused_in_one_line_whatever_its_signature():
    config = PipelineConfig(options=RestoreOptions(fidelity=0.5))
    with pytest.raises(SetupError) as err:
        Pipeline(UndeclaredDial(), config=config)
    assert str(err.value) == "--fidelity: this restorer has no fidelity dial (use a prefrestore model)"
    with pytest.raises(SetupError, match="no fidelity dial"):  # the stage function refuses it the same way
        sample_candidates(UndeclaredDial(), _crops(1), n=1, seed=0, batch_size=4, fidelity=0.5)
    Pipeline(UndeclaredDial())  # without --fidelity the same restorer is fine


def test_per_face_seeds_are_used_only_when_declared():
    """Best-of-3 over 2 faces: a restorer declaring per-face seeds gets the 6 jobs in batches of 4 with their seeds;
    one that does not (though its signature takes ``seeds``) gets one call per candidate seed."""
    opts = RestoreOptions(candidates=3, rerank_weights={"ssim": 1.0})
    declared, undeclared = DeclaredSeeds(), UndeclaredDial()
    for r in (declared, undeclared):
        Pipeline(r, config=PipelineConfig(batch_size=4, seed=7, options=opts)).restore_faces(_crops(2))
    assert [(c["n"], c["seeds"]) for c in declared.calls] == [(4, [7, 8, 9, 7]), (2, [8, 9])]
    assert [(c["n"], c["seed"], c["seeds"]) for c in undeclared.calls] == [(2, 7, None), (2, 8, None), (2, 9, None)]


def test_the_built_in_restorers_declare_their_capabilities():
    from prefrestore.eval.restorers import BicubicRestorer, ClassicalRestorer, RealESRGANRestorer
    from prefrestore.restore.api import FaceRestorer

    assert FaceRestorer.capabilities == {FIDELITY_DIAL, PER_FACE_SEEDS}
    for cls in (BicubicRestorer, ClassicalRestorer, RealESRGANRestorer):
        assert cls.capabilities == frozenset()


def test_load_pipeline_puts_cuda_on_the_ranks_gpu(monkeypatch):
    """The settings' device under torchrun (WORLD_SIZE=2, LOCAL_RANK=1) and accelerate's MPI variables: cuda is
    this rank's GPU; an explicit index stays."""
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    for env in ({"WORLD_SIZE": "2", "RANK": "1", "LOCAL_RANK": "1"}, {"PMI_SIZE": "2", "PMI_RANK": "1"}):
        for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK", "PMI_SIZE", "PMI_RANK", "MPI_LOCALRANKID"):
            monkeypatch.delenv(name, raising=False)
        for k, v in env.items():
            monkeypatch.setenv(k, v)
        assert on_rank(RestoreSettings.from_flat({"device": "cuda"})).sampling.device == "cuda:1"
        assert on_rank(RestoreSettings.from_flat({"device": "cuda:0"})).sampling.device == "cuda:0"


def test_cli_settings_device_goes_through_the_rank(monkeypatch):
    """`prefrestore restore IN -o OUT --device cuda` on rank 1 of 2: the pipeline's settings name cuda:1."""
    import argparse

    import torch

    from prefrestore.commands import restore
    from prefrestore.restore.ranks import Ranks

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    parser = argparse.ArgumentParser()
    restore.add_arguments(parser)
    args = parser.parse_args(["x.jpg", "--device", "cuda"])
    restore.check_arguments(args)
    settings, _ = restore._configs(args, Ranks(1, 2, 1))
    assert settings.sampling.device == "cuda:1" == args.device == args.settings.sampling.device


@pytest.mark.usefixtures("one_thread")
def test_the_docs_example_restores_a_photo_in_memory():
    """docs/python-api.md's example, as written there (tiny random weights: the pipeline runs end to end)."""
    from prefrestore.restore import RestoreSettings, load_pipeline

    settings = RestoreSettings.from_flat({"model": "tiny", "identity": "off"})  # any setting by name
    pipe = load_pipeline(settings)  # restorer, detector, scorers, upsampler: loaded once
    photo = load_rgb(EXAMPLES / "grace_hopper.jpg")  # uint8 (H, W, 3) RGB
    result = pipe.restore_photo(photo)  # the restored photo and a per-face report
    assert result.ok and result.photo.color.shape == (468, 400, 3)
    assert len(result.faces) == 1 and result.faces[0].restored.shape == (128, 128, 3)
    assert np.array_equal(pipe.restore_image(photo), result.photo.color)  # same seed, same pixels
    assert pipe.batch_size == 8 and pipe.device == "cpu" and pipe.restorer.batch_size is None  # one owner
    same = Pipeline.from_pretrained("tiny", identity="off", upscale=1)  # the diffusers spelling, settings by name
    assert same.restore_photo(photo).photo.color.shape == photo.shape


def test_server_restores_without_a_cli_report_round_trip(tmp_path, monkeypatch, one_thread):
    """The real app over HTTP with the tiny model: a photo restores (200, a valid image, a per-face result) while
    everything of the CLI's file run that writes or reads a report raises."""
    pytest.importorskip("fastapi")
    pytest.importorskip("uvicorn")
    requests = pytest.importorskip("requests")
    from prefrestore.restore import file_run
    from prefrestore.serving.app import create_app
    from prefrestore.serving.runner import load_runner
    from prefrestore.serving.schemas import ServerSettings
    from serve_helpers import decode, post, result_of, running_server

    def forbidden(*args, **kwargs):
        raise AssertionError("the server went through the CLI's report files")

    for name in ("run_plan", "write_report", "_write_outputs", "restore_photo_files"):
        monkeypatch.setattr(file_run, name, forbidden)
    monkeypatch.setattr(file_run.OutputLayout, "report_path", forbidden)
    real_loads = json.loads

    def loads(text, *args, **kwargs):  # a report read back from disk would be parsed here
        value = real_loads(text, *args, **kwargs)
        assert not (isinstance(value, dict) and "input_size" in value), "a photo report was read back"
        return value

    monkeypatch.setattr(json, "loads", loads)
    workdir = tmp_path / "work"
    settings = RestoreSettings.from_flat({"model": "tiny", "identity": "off"})
    app = create_app(ServerSettings(workdir=workdir, restore=settings), lambda: load_runner(settings))
    with running_server(app, timeout=120) as url:
        r = post(url, (EXAMPLES / "grace_hopper.jpg").read_bytes(), "g.jpg", {"upscale": 1})
        assert r.status_code == 200, r.text
        assert decode(r.content).shape == (234, 200, 3)
        result = result_of(url, r)
        assert result["status"] == "restored" and len(result["faces"]) == 1 and result["faces_found"] == 1
        assert result["model"]["name"] == "tiny" and result["output_size"] == [200, 234]
        assert set(result["timings"]) >= {"read", "detect", "align", "restore", "paste", "write"}
        assert requests.get(f"{url}/readyz").status_code == 200
    assert not list(workdir.rglob("*.json")) and not (workdir / "batches").exists()  # no report files anywhere


def test_file_run_report_equals_the_in_memory_report(tmp_path, detector):
    """reports/NAME.json of a file run is the in-memory report (photo_report) plus the file paths and output."""
    from prefrestore.io.photo_io import read_photo
    from prefrestore.restore.file_run import OutputLayout, photo_report, plan_files, run_plan
    from test_pipeline import IdentityRestorer

    pipe = Pipeline(IdentityRestorer(), detector, PipelineConfig(upscale=1))
    src = EXAMPLES / "grace_hopper.jpg"
    layout = OutputLayout(tmp_path / "out")
    (report,) = run_plan(plan_files([src], layout), pipe, layout).reports
    memory = photo_report(pipe.restore_photo(read_photo(src)), pipe.config)
    paths = ("cropped_faces", "restored_faces", "cmp")
    assert [{k: v for k, v in f.items() if k not in paths} for f in report["faces"]] == memory.pop("faces")
    assert {k: report[k] for k in memory} == memory


def test_flip_ensemble_setting_reaches_the_restorer(monkeypatch):
    """--flip-ensemble model|on|off -> FaceRestorer.flip_ensemble None|True|False -> model.restore's argument."""
    from prefrestore.models.restorer import PrefRestoreModel
    from prefrestore.restore import load_pipeline

    seen = []
    real = PrefRestoreModel.restore

    def spy(self, lq, **kw):
        seen.append(kw["flip_ensemble"])
        return real(self, lq, **kw)

    monkeypatch.setattr(PrefRestoreModel, "restore", spy)
    face = np.full((128, 128, 3), 128, np.uint8)
    for value, expected in (("model", None), ("on", True), ("off", False)):
        settings = RestoreSettings.from_flat({"model": "tiny", "identity": "off", "flip_ensemble": value})
        pipe = load_pipeline(settings, detector=False)
        assert pipe.restorer.flip_ensemble is expected
        pipe.restorer.restore([face])
        assert seen[-1] is expected

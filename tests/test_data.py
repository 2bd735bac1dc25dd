"""Training data: sources (folder + captions.jsonl, webdataset tar, parquet, manifest), bad items skipped and
counted, deterministic replayable items, the instruction mix, and a resumable batch stream."""

import io
import json
import logging
import tarfile
from collections import Counter

import numpy as np
import pytest
import torch
from PIL import Image

from prefrestore.data import BatchStream, DataConfig, FaceDataset, Skip, epoch_order, gather_records
from prefrestore.data.dataset import draw_choices
from prefrestore.degradations import DegradationConfig, DegradationParams, apply
from prefrestore.io.image import to_unit
from prefrestore.models.integrator import CAPTION_INSTRUCTION, RESTORE_INSTRUCTION, SIDE_MISSION_INSTRUCTION

S = 32  # tiny crops keep the tests fast
SMALL_DEG = DegradationConfig(kernel_size=5, blur_sigma=(0.2, 1.0), downsample=(1.0, 3.0))


def _face(seed: int, size=(48, 40)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = np.zeros((*size, 3), np.uint8)
    img[..., 0] = rng.integers(0, 255)
    img[..., 1] = np.linspace(0, 255, size[1], dtype=np.uint8)[None]
    img[..., 2] = rng.integers(0, 255, size, dtype=np.uint8)
    return img


def _png(img: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture()
def folder(tmp_path):
    """6 good faces; plus corrupt, truncated, grayscale, tiny, caption-less images and a bad caption line."""
    d = tmp_path / "faces"
    d.mkdir()
    lines = []
    for i in range(6):
        Image.fromarray(_face(i)).save(d / f"good{i}.png")
        lines.append(json.dumps({"file": f"good{i}.png", "caption": f"a photography of person {i}"}))
    (d / "corrupt.png").write_bytes(b"not an image at all")
    (d / "truncated.png").write_bytes(_png(_face(9))[:100])
    Image.fromarray(np.full((48, 48, 3), 120, np.uint8)).save(d / "gray.png")
    Image.fromarray(_face(7, (12, 12))).save(d / "tiny.png")
    Image.fromarray(_face(8)).save(d / "nocaption.png")
    for name in ("corrupt.png", "truncated.png", "gray.png", "tiny.png"):
        lines.append(json.dumps({"file": name, "caption": "x"}))
    lines.append("{this is not json")
    (d / "captions.jsonl").write_text("\n".join(lines) + "\n")
    return d


def _cfg(**kw) -> DataConfig:
    return DataConfig(min_size=24, degradation=SMALL_DEG, batch_size=2, **kw)


def test_bad_data_is_skipped_and_counted_and_warned(folder, caplog):
    cfg = _cfg(folders=[str(folder)])
    records, problems = gather_records(cfg)
    assert len(records) == 11 and problems == Counter(bad_caption_line=1)
    ds = FaceDataset(records, cfg, S, seed=0)
    expected = Counter(corrupt=2, grayscale=1, too_small=1, no_caption=1)
    assert Counter(it.reason for it in (ds.item(i, 0) for i in range(len(ds))) if isinstance(it, Skip)) == expected
    stream = BatchStream(ds, batch_size=7, seed=0)  # 6 good items an epoch: a batch must cross into epoch 1
    with caplog.at_level(logging.WARNING):
        batch = stream.next_batch()
    assert stream.epoch == 1 and len(batch["key"]) == 7
    assert sorted(set(batch["key"])) == [f"good{i}.png" for i in range(6)]
    assert not expected - stream.skipped  # every bad item of epoch 0 was counted (and maybe some of epoch 1)
    warned = [r for r in caplog.records if r.name == "prefrestore.data.stream"]
    assert len(warned) == sum(stream.skipped.values())
    assert batch["hq"].shape == (7, 3, S, S) and batch["lq"].shape == (7, 3, S, S)
    # with missing_caption="no_text" the caption-less image is used, with the plain instruction
    ds2 = FaceDataset(records, _cfg(folders=[str(folder)], missing_caption="no_text", recon_prob=0.0), S)
    item = ds2.item([r.key for r in records].index("nocaption.png"), 0)
    assert item["instruction"] == RESTORE_INSTRUCTION


def test_all_bad_data_raises_clear_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"junk")
    cfg = _cfg(folders=[str(tmp_path)])
    stream = BatchStream(FaceDataset(gather_records(cfg)[0], cfg, S), batch_size=1, seed=0)
    with pytest.raises(ValueError, match="no usable training item"):
        stream.next_batch()


def test_manifest_with_tar_shard_and_missing_directory(tmp_path, folder):
    shard_dir = tmp_path / "shards"
    shard_dir.mkdir()
    with tarfile.open(shard_dir / "000.tar", "w") as tf:
        for i in range(3):
            for name, data in ((f"s{i}.png", _png(_face(20 + i))), (f"s{i}.txt", f"caption {i}".encode())):
                info = tarfile.TarInfo(name)
                info.size = len(data)
                tf.addfile(info, io.BytesIO(data))
    (shard_dir / "bad.tar").write_bytes(b"\x00garbage" * 10)
    manifest = tmp_path / "manifest.txt"
    manifest.write_text(f"# shards\n{shard_dir}\n\n/does/not/exist\n{folder}\n")
    cfg = _cfg(manifests=[str(manifest), str(tmp_path / "missing-manifest.txt")])
    records, problems = gather_records(cfg)
    assert problems == Counter(manifest_missing_dir=1, unreadable_shard=1, missing_source=1, bad_caption_line=1)
    tar_records = [r for r in records if r.kind == "tar"]
    assert [r.caption for r in tar_records] == ["caption 0", "caption 1", "caption 2"]
    ds = FaceDataset(records, cfg, S)
    item = ds.item(0, 0)
    assert item["key"] == "000.tar#s0" and item["hq"].shape == (3, S, S)


def test_parquet_shard(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    table = pa.table({"image": [_png(_face(i)) for i in range(4)] + [b"junk"], "txt": ["a", "b", "", "d", "e"]})
    pq.write_table(table, tmp_path / "part-0.parquet", row_group_size=2)
    manifest = tmp_path / "m.txt"
    manifest.write_text(str(tmp_path) + "\n")
    cfg = _cfg(manifests=[str(manifest)])
    records, _ = gather_records(cfg)
    assert [r.caption for r in records] == ["a", "b", None, "d", "e"]
    ds = FaceDataset(records, cfg, S)
    assert isinstance(ds.item(3, 0), dict)
    assert ds.item(2, 0) == Skip("no_caption", "part-0.parquet#2")
    assert ds.item(4, 0).reason == "corrupt"


def test_items_are_deterministic_and_degradations_replay(folder):
    cfg = _cfg(folders=[str(folder)], recon_prob=0.0)
    records = gather_records(cfg)[0]
    ds = FaceDataset(records, cfg, S, seed=3)
    i = [r.key for r in records].index("good0.png")
    a, b = ds.item(i, 5), ds.item(i, 5)
    assert torch.equal(a["lq"], b["lq"]) and a["params"] == b["params"] and a["seed"] == b["seed"]
    assert not torch.equal(ds.item(i, 6)["lq"], a["lq"])  # another epoch, another degradation
    replay = apply(to_unit(a["hq"]), DegradationParams.from_dict(a["params"]))
    assert torch.allclose(replay, to_unit(a["lq"]), atol=1e-6)  # the recorded params reproduce the LQ
    assert a["instruction"] in (CAPTION_INSTRUCTION.format(caption="a photography of person 0"), RESTORE_INSTRUCTION)


def test_side_mission_input_is_the_hq_image(folder):
    cfg = _cfg(folders=[str(folder)], recon_prob=1.0)
    records = gather_records(cfg)[0]
    item = FaceDataset(records, cfg, S).item([r.key for r in records].index("good1.png"), 0)
    assert item["task"] == "recon" and item["instruction"] == SIDE_MISSION_INSTRUCTION
    assert torch.equal(item["lq"], item["hq"]) and item["params"] is None


def test_instruction_mix_matches_the_paper():
    cfg = DataConfig()
    counts = Counter(draw_choices(torch.Generator().manual_seed(s), cfg)[1] for s in range(20000))
    frac = {k: v / 20000 for k, v in counts.items()}
    assert frac["recon"] == pytest.approx(0.20, abs=0.012)
    assert frac["caption"] == pytest.approx(0.72, abs=0.012)
    assert frac["plain"] == pytest.approx(0.08, abs=0.008)


def test_epoch_order_is_seeded_and_partitions_ranks():
    assert epoch_order(50, 1, 0) == epoch_order(50, 1, 0) != epoch_order(50, 1, 1)
    parts = [epoch_order(50, 1, 0, r, 4) for r in range(4)]
    assert sorted(i for p in parts for i in p) == list(range(50))


def test_stream_resumes_exactly_across_skips_and_epochs(folder):
    cfg = _cfg(folders=[str(folder)])
    ds = FaceDataset(gather_records(cfg)[0], cfg, S, seed=1)
    ref = BatchStream(ds, 4, seed=1, num_workers=2)  # workers keep the order
    ref_keys = [ref.next_batch()["key"] for _ in range(5)]  # 20 items: crosses 3 epochs of 6 good items
    assert ref.epoch == 3
    a = BatchStream(ds, 4, seed=1)
    first = [a.next_batch()["key"] for _ in range(2)]
    b = BatchStream(ds, 4, seed=1, epoch=a.epoch, position=a.position, skipped=dict(a.skipped))
    rest = [b.next_batch()["key"] for _ in range(3)]
    assert first + rest == ref_keys
    assert b.skipped == ref.skipped


def test_on_the_fly_alignment_finds_a_real_face_or_skips(tmp_path):
    pytest.importorskip("prefrestore.faces.detect")
    skimage_data = pytest.importorskip("skimage.data")
    Image.fromarray(skimage_data.astronaut()).save(tmp_path / "astronaut.png")
    Image.fromarray(_face(3, (96, 96))).save(tmp_path / "noface.png")
    cfg = _cfg(folders=[str(tmp_path)], align=True, missing_caption="no_text")
    records = gather_records(cfg)[0]
    ds = FaceDataset(records, cfg, 64)
    face = ds.item([r.key for r in records].index("astronaut.png"), 0)
    assert isinstance(face, dict) and face["hq"].shape == (3, 64, 64)
    assert ds.item([r.key for r in records].index("noface.png"), 0) == Skip("no_face", "noface.png")

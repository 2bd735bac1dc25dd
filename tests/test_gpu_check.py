"""benchmarks/gpu_check.py at tiny size on the CPU: every section runs and reports its fields (the paper-size run
is for a GPU; see README "Paper model on a GPU")."""

import importlib.util
import json
from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def gpu_check():
    path = Path(__file__).parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tiny_run_reports_every_section(gpu_check, tmp_path):
    out = tmp_path / "check.json"
    before = torch.are_deterministic_algorithms_enabled()
    report = gpu_check.main(
        [
            "--preset",
            "tiny",
            "--device",
            "cpu",
            "--dtype",
            "bfloat16",
            "--batch-sizes",
            "1",
            "2",
            "--steps",
            "1",
            "--tokens",
            "3",
            "--check-faces",
            "1",
            "--metric-size",
            "32",
            "--metric-repeats",
            "1",
            "--out",
            str(out),
        ]
    )
    assert torch.are_deterministic_algorithms_enabled() == before  # the global flag is restored
    assert json.loads(out.read_text()) == json.loads(json.dumps(report))
    assert report["skipped"] == [] and report["vae_dtype"] == "float32" and report["ar_tokens"] == 3
    assert report["attention"]["lm"] == "sdpa" and "SanaAttnProcessor2_0" in report["attention"]["sana_processors"]
    # the tiny LM's weights, counted once (tied embedding = LM head), in bf16
    assert report["lm_weight_bytes"] == 2 * 735_424
    assert [b["batch"] for b in report["batches"]] == [1, 2]
    for b in report["batches"]:
        assert set(b["stages_s"]) == {"tokenize", "ar_prefill", "ar_decode", "lq_encode", "diffusion", "vae_decode"}
        assert all(v >= 0 for v in b["stages_s"].values()) and b["faces_per_s"] > 0
        assert b["faces_per_s"] == pytest.approx(b["batch"] / b["total_s"], rel=0.01)
        assert b["ar_bandwidth"]["peak_gbs"] is None  # no GPU: no nominal bandwidth
    check = report["bf16_vs_fp32"]
    assert 0 <= check["token_agreement"] <= 1 and check["vae_decode_in_low_precision_finite"]
    assert 30 < check["diffusion_and_decode_same_condition_psnr_db"]  # bf16 is close to fp32, not equal
    assert check["vae_decode_in_low_precision_psnr_db"] < float("inf")
    assert report["determinism"] == {"faces": 1, "bit_identical": True, "max_abs_diff": 0.0}
    nets = report["metric_networks"]
    assert set(nets) == {"lpips_alex", "lpips_vgg", "fid_inception", "id_dlib", "id_mobileface"}
    assert all(r["forward"] > 0 and r["weights"] in ("fetched", "random") for r in nets.values())
    assert all(r["forward_backward"] > 0 for n, r in nets.items() if n != "fid_inception")


def test_budget_skips_and_lists_sections(gpu_check):
    report = gpu_check.main(
        [
            "--preset",
            "tiny",
            "--device",
            "cpu",
            "--dtype",
            "float32",
            "--batch-sizes",
            "1",
            "--steps",
            "1",
            "--tokens",
            "2",
            "--budget-s",
            "0",
        ]
    )
    assert report["batches"] == [] and "bf16_vs_fp32" not in report and "determinism" not in report
    assert report["skipped"] == [
        "batch 1: past --budget-s 0",
        "determinism: past --budget-s 0",
        "metric_networks: past --budget-s 0",
    ]
    assert "metric_networks" not in report

"""Distributed restore: 2 gloo CPU ranks under torchrun write exactly the files and bytes of one process, rank 0
prints the same summary, and a rank killed mid-run resumes by re-running the command."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from prefrestore.io.image import resize, save_rgb
from prefrestore.restore.distributed import Ranks, merge_summaries, plan_from_json, plan_to_json, shard
from prefrestore.restore.file_run import FileItem, Plan, RunSummary

WORKER = Path(__file__).with_name("dist_restore_worker.py")


@pytest.fixture(scope="module")
def photos(tmp_path_factory, astronaut, grace) -> Path:
    """Six inputs: four with a face (two JPEG), one without, one broken."""
    d = tmp_path_factory.mktemp("photos")
    save_rgb(d / "a.png", resize(astronaut, (160, 160)))
    save_rgb(d / "b.jpg", resize(grace, (120, 140)))
    save_rgb(d / "c.png", resize(astronaut[:, ::-1].copy(), (128, 128)))
    save_rgb(d / "d.png", np.full((48, 64, 3), 120, np.uint8))
    (d / "e.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    save_rgb(d / "f.jpg", resize(grace[:, ::-1].copy(), (110, 128)))
    return d


def _env(**extra) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(Path(__file__).parents[1] / "src"), env.get("PYTHONPATH", "")])
    return env


def _run(args: list[str], *, nproc: int, launcher: str = "torchrun", **env) -> subprocess.CompletedProcess:
    if launcher == "accelerate":  # accelerate's multi-process launcher; it runs on a CPU-only machine too
        launcher = [
            sys.executable,
            "-m",
            "accelerate.commands.launch",
            "--multi_gpu",
            f"--num_processes={nproc}",
            "--num_machines=1",
            "--mixed_precision=no",
            "--dynamo_backend=no",
            "--main_process_port=0",
        ]
    else:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    cmd = (launcher if nproc > 1 else [sys.executable]) + [str(WORKER), "restore", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(**env), timeout=300)


def _tree(root: Path) -> dict[str, bytes]:
    """Every file under root -> its bytes; reports without their timings (those differ run to run) and with the
    output folder's name replaced."""
    out = {}
    for p in sorted(root.rglob("*")):
        if p.is_file():
            data = p.read_bytes()
            if p.suffix == ".json":
                report = json.loads(data.decode().replace(str(root), "OUT"))
                report.pop("timings", None)
                data = json.dumps(report, sort_keys=True).encode()
            out[str(p.relative_to(root))] = data
    return out


def _summary_line(stderr: str, out: Path) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.startswith("restored ")]
    assert len(lines) == 1, stderr  # one merged summary, from rank 0 only
    return lines[0].replace(str(out), "OUT")


@pytest.fixture(scope="module")
def reference(photos, tmp_path_factory):
    out = tmp_path_factory.mktemp("one") / "out"
    done = _run([str(photos), "-o", str(out)], nproc=1)
    assert done.returncode == 1, done.stderr  # e.png fails
    return out, done


@pytest.mark.parametrize("launcher", ["torchrun", pytest.param("accelerate", marks=pytest.mark.slow)])
def test_two_ranks_write_the_files_of_one_process(photos, reference, tmp_path, launcher):
    ref_out, ref = reference
    out = tmp_path / "out"
    done = _run([str(photos), "-o", str(out)], nproc=2, launcher=launcher)
    assert done.returncode == 1, done.stderr
    assert "worker rank 0/2" in done.stderr and "worker rank 1/2" in done.stderr
    tree, ref_tree = _tree(out), _tree(ref_out)
    assert len([k for k in ref_tree if k.startswith("restored_imgs/")]) == 5  # 4 faces + 1 without a face
    assert tree.keys() == ref_tree.keys()
    assert all(tree[k] == ref_tree[k] for k in tree), [k for k in tree if tree[k] != ref_tree[k]]
    assert _summary_line(done.stderr, out) == _summary_line(ref.stderr, ref_out)
    assert "1 failed" in _summary_line(done.stderr, out)


@pytest.mark.slow  # two more 2-rank launches (~50 s on 2 shared cores)
def test_a_killed_rank_resumes_by_rerunning(photos, reference, tmp_path):
    ref_out, _ = reference
    out = tmp_path / "out"
    args = [str(photos), "-o", str(out), "--batch-size", "1"]
    killed = _run(args, nproc=2, PREFRESTORE_TEST_KILL_RANK="1")
    assert killed.returncode != 0
    # rank 1 (b, d, f) restored b and d, then died in f's restoration
    assert (out / "restored_imgs" / "b.jpg").is_file() and not (out / "restored_imgs" / "f.jpg").exists()
    again = _run(args, nproc=2)
    assert again.returncode == 1, again.stderr
    assert "skipped (outputs exist" in _summary_line(again.stderr, out)
    tree, ref_tree = _tree(out), _tree(ref_out)
    assert tree.keys() == ref_tree.keys()
    assert all(tree[k] == ref_tree[k] for k in tree), [k for k in tree if tree[k] != ref_tree[k]]


@pytest.mark.parametrize("launcher", ["torchrun", pytest.param("accelerate-mpi", marks=pytest.mark.slow)])
def test_device_cuda_puts_each_rank_on_its_own_gpu(photos, tmp_path, launcher):
    """``--device cuda`` through the real command under a launch of 2 ranks (torch told there are 2 GPUs): the
    restorer and the detector of rank r get ``cuda:r``. torchrun's variables, and the MPI names accelerate launch
    reads for its multi-CPU launches (no RANK/WORLD_SIZE/LOCAL_RANK at all)."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a.png", "c.png"):
        (inputs / name).write_bytes((photos / name).read_bytes())
    args = [
        str(inputs),
        "-o",
        str(tmp_path / "out"),
        "--device",
        "cuda",
        "--identity",
        "off",
        "--identity-guard",
        "off",
    ]
    if launcher == "torchrun":
        done = _run(args, nproc=2, PREFRESTORE_TEST_FAKE_CUDA="2")
        codes, stderr = [done.returncode], done.stderr
    else:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = {
            k: v
            for k, v in _env(PREFRESTORE_TEST_FAKE_CUDA="2", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)).items()
            if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")
        }
        procs = [
            subprocess.Popen(
                [sys.executable, str(WORKER), "restore", *args],
                stderr=subprocess.PIPE,
                text=True,
                env=dict(
                    env, OMPI_COMM_WORLD_SIZE="2", OMPI_COMM_WORLD_RANK=str(r), OMPI_COMM_WORLD_LOCAL_RANK=str(r)
                ),
            )
            for r in range(2)
        ]
        outs = [p.communicate(timeout=300)[1] for p in procs]
        codes, stderr = [p.returncode for p in procs], "".join(outs)
    assert codes == [0] * len(codes), stderr
    for r in range(2):
        assert f"rank {r} restorer device cuda:{r}" in stderr and f"rank {r} detector device cuda:{r}" in stderr, (
            stderr
        )
    assert "restorer device cuda:0" in stderr and stderr.count("restorer device") == 2


# ----------------------------------------------------------------------------------------------------------------
# The pieces, in one process


def test_ranks_from_the_launcher_environment():
    assert Ranks.from_env({}) == Ranks(0, 1, 0)
    r = Ranks.from_env({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"})
    assert (r.rank, r.world_size, r.local_rank, r.is_main) == (3, 4, 1, False)
    assert r.device("cuda") == "cuda:1" and r.device("cuda:0") == "cuda:0" and r.device("cpu") == "cpu"
    assert Ranks(0, 1, 0).device("cuda") == "cuda"
    # accelerate launch's multi-CPU (MPI) launches: its names, its order
    assert Ranks.from_env(
        {"OMPI_COMM_WORLD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_LOCAL_RANK": "1"}
    ) == Ranks(1, 2, 1)
    assert Ranks.from_env({"PMI_SIZE": "4", "PMI_RANK": "3", "MPI_LOCALRANKID": "0"}) == Ranks(3, 4, 0)
    assert Ranks.from_env({"WORLD_SIZE": "2", "RANK": "1", "PMI_SIZE": "8", "PMI_RANK": "5"}) == Ranks(1, 2, 1)


def test_device_check_runs_after_the_launch_mapping(monkeypatch):
    """``cuda`` under a 2-rank launch is checked as ``cuda:1`` (which must exist), not as ``cuda:0``."""
    import torch

    from prefrestore.errors import UserError
    from prefrestore.restore.distributed import rank_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert rank_device("cuda", Ranks(1, 2, 1)) == "cuda:1" and rank_device("cuda", Ranks(0, 1, 0)) == "cuda:0"
    assert rank_device("cuda:0", Ranks(1, 2, 1)) == "cuda:0" and rank_device("cpu", Ranks(1, 2, 1)) == "cpu"
    with pytest.raises(UserError, match="cuda:2"):
        rank_device("cuda", Ranks(2, 4, 2))


def test_shards_cover_the_plan_once_and_merge_in_input_order():
    items = tuple(FileItem(Path(f"/in/{i}.png"), str(i)) for i in range(7))
    plan = Plan(items, (FileItem(Path("/in/s.png"), "s"),), (("/in/x", "x: not an image"),))
    assert plan_from_json(json.loads(json.dumps(plan_to_json(plan)))) == plan
    parts = [shard(plan, Ranks(r, 3, r)) for r in range(3)]
    assert sorted((i for p in parts for i in p.todo), key=str) == sorted(items, key=str)
    assert parts[0].failed == plan.failed and parts[1].failed == () and parts[2].skipped == ()
    summaries = [
        RunSummary(
            restored=tuple(str(i.path) for i in p.todo if i.name != "4"),
            failed=p.failed + tuple((str(i.path), "bad") for i in p.todo if i.name == "4"),
            faces=len(p.todo),
        )
        for p in parts
    ]
    merged = merge_summaries(plan, summaries)
    assert merged.restored == tuple(f"/in/{i}.png" for i in (0, 1, 2, 3, 5, 6))
    assert merged.failed == (("/in/x", "x: not an image"), ("/in/4.png", "bad"))
    assert merged.skipped == ("/in/s.png",) and merged.faces == 7

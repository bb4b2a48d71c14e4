"""A 2-process DDP run through torchrun (gloo on the CPU) trains, on one subset for both ranks."""

import json
import os
import socket
import subprocess
import sys


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_torchrun_two_processes_train_on_one_subset(tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
        f"--master_port={free_port()}", "-m", "trilevel.train",
        "--model", "fmnist-tiny", "--dataset", "synthetic", "--synthetic-size", "512", "--batch-size", "32",
        "--epochs", "3", "--token-keep", "0.7", "--example-keep", "0.75", "--example-updates", "2",
        "--example-first-update", "1", "--example-update-every", "1", "--output", str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["world_size"] == 2
    log = json.loads((out / "log.json").read_text())
    assert len(log) == 3
    for row in log:
        assert len(row["subset_hash"]) == 2 and row["subset_hash"][0] == row["subset_hash"][1]
        assert row["stats_hash"][0] == row["stats_hash"][1]
    assert "example_update" in log[0] and log[0]["subset_hash"] != log[2]["subset_hash"]


def torchrun(args: list[str], out) -> subprocess.CompletedProcess:
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_addr=127.0.0.1",
        f"--master_port={free_port()}", "-m", "trilevel.train", *args, "--output", str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def test_ranks_draw_their_own_randomness_and_resume_it(tmp_path):
    """Per-rank streams differ (seed + rank) and each rank resumes its own; the resumed run
    equals the uninterrupted one. Evaluation split over the ranks equals one process's."""
    import torch

    from trilevel.checkpoint import load_checkpoint, load_model
    from trilevel.distributed import DistInfo
    from trilevel.train import Trainer

    # 516 examples: a test split of 129, which two ranks cannot split evenly.
    args = ["--model", "fmnist-tiny", "--dataset", "synthetic", "--synthetic-size", "516", "--batch-size", "32",
            "--epochs", "2", "--drop-path", "0.2", "--mixup", "0.8", "--workers", "0"]  # fmt: skip
    torchrun(args, tmp_path / "full")
    torchrun([*args, "--stop-after", "1"], tmp_path / "cut")
    cut = load_checkpoint(tmp_path / "cut" / "last.pt")
    r0, r1 = cut["rng_by_rank"]
    assert not torch.equal(r0["torch"], r1["torch"]) and r0["python"] != r1["python"]
    torchrun(args, tmp_path / "cut")
    full, cut = load_checkpoint(tmp_path / "full" / "last.pt"), load_checkpoint(tmp_path / "cut" / "last.pt")
    for k, v in full["model"].items():
        torch.testing.assert_close(cut["model"][k], v, rtol=0, atol=0, msg=k)

    _, cfg, ckpt = load_model(tmp_path / "full" / "last.pt")
    cfg.output = str(tmp_path / "single")
    single = Trainer(cfg, DistInfo())
    single.model.load_state_dict(ckpt["model"])
    assert single.data.test_size == 129
    single.data.info = DistInfo(rank=1, world_size=2)  # rank 1 of 2 reads every other image: 64 of 129
    assert sum(len(y) for _, y in single.data.test_batches()) == 64
    single.data.info = DistInfo()
    assert single.evaluate() == json.loads((tmp_path / "full" / "metrics.json").read_text())["top1"]

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

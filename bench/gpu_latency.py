"""GPU baselines for the latency comparison (the paper's Table 3): the project's patched timm models.

    python bench/gpu_latency.py                         # DeiT-T and DeiT-S, dense and Tri-Level/0.9/0.8/0.7
    python bench/gpu_latency.py --models deit_tiny_patch16_224 --keeps 1.0 0.7

Per model and keep ratio (token keep r, attention keep 0.3 as the trilevel-r presets; 1.0 is
dense), on random weights and images already on the GPU, bf16 autocast:

- batch-1 inference latency: the forward captured in a CUDA graph, the median of many graph
  replays after a warm-up, each timed with CUDA events;
- per-sample training latency: forward, backward and a plain SGD step (the engine's optimizer)
  at batch 1, captured in one CUDA graph, median of many replays;
- best-batch throughput: inference (CUDA graph) and training (eager, fused AdamW) over a few
  batch sizes, the best kept;
- energy per image of the batch-1 and best-batch inference from NVML's energy counter, where
  the GPU reports one.

Every figure is a measurement on the GPU named in the output. Results are merged into
bench/results/gpu_latency.json after each model (an interrupted run keeps what it measured).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import timm
import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import trilevel  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results" / "gpu_latency.json"
ATTN_KEEP = 0.3  # the trilevel-r presets' attention keep ratio


def energy_counter():
    """A function returning the GPU's energy counter in joules, or None when NVML has none."""
    try:
        import pynvml

        pynvml.nvmlInit()
        h = pynvml.nvmlDeviceGetHandleByIndex(torch.cuda.current_device())
        pynvml.nvmlDeviceGetTotalEnergyConsumption(h)
        return lambda: pynvml.nvmlDeviceGetTotalEnergyConsumption(h) / 1000.0
    except Exception:
        return None


def build(name: str, keep: float) -> torch.nn.Module:
    model = timm.create_model(name, pretrained=False)
    if keep < 1.0:
        trilevel.patch(model, token_keep=keep, attn_keep=ATTN_KEEP)
    return model.cuda()


def graph_replay_ms(fn, warmup: int, reps: int) -> list[float]:
    """Capture fn() in a CUDA graph and time each of ``reps`` replays (ms)."""
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        fn()
    for _ in range(warmup):
        g.replay()
    times = []
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    for _ in range(reps):
        start.record()
        g.replay()
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end))
    return times, g


def infer_latency(model, img: int, reps: int, energy) -> dict:
    model.eval()
    x = torch.randn(1, 3, img, img, device="cuda")

    def fwd():
        with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
            return model(x)

    times, g = graph_replay_ms(fwd, 20, reps)
    out = {"infer_ms_median": statistics.median(times), "infer_ms_p10": sorted(times)[len(times) // 10]}
    if energy:
        torch.cuda.synchronize()
        e0, t0 = energy(), time.perf_counter()
        n = 0
        while time.perf_counter() - t0 < 2.0:  # the counter updates slowly: integrate over seconds
            for _ in range(50):
                g.replay()
            n += 50
        torch.cuda.synchronize()
        out["infer_j_per_image_b1"] = (energy() - e0) / n
    return out


def train_latency(model, img: int, reps: int) -> dict:
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    x = torch.randn(1, 3, img, img, device="cuda")
    y = torch.randint(0, model.num_classes, (1,), device="cuda")

    def step():
        opt.zero_grad(set_to_none=False)
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    times, _ = graph_replay_ms(step, 10, reps)
    return {"train_ms_median": statistics.median(times), "train_ms_p10": sorted(times)[len(times) // 10]}


def best_batch(model, img: int, batches: list[int], energy) -> dict:
    best = {"infer_img_per_s": 0.0, "train_img_per_s": 0.0}
    for b in batches:
        model.eval()
        x = torch.randn(b, 3, img, img, device="cuda")

        def fwd(x=x):
            with torch.no_grad(), torch.autocast("cuda", dtype=torch.bfloat16):
                return model(x)

        times, g = graph_replay_ms(fwd, 5, 20)
        ips = b / (statistics.median(times) / 1000)
        if ips > best["infer_img_per_s"]:
            best.update(infer_img_per_s=ips, infer_batch=b)
            if energy:
                torch.cuda.synchronize()
                e0, n, t0 = energy(), 0, time.perf_counter()
                while time.perf_counter() - t0 < 2.0:
                    g.replay()
                    n += b
                torch.cuda.synchronize()
                best["infer_j_per_image_best"] = (energy() - e0) / n
        del g
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=5e-4, fused=True)
        y = torch.randint(0, model.num_classes, (b,), device="cuda")
        for i in range(13):
            if i == 3:
                torch.cuda.synchronize()
                t0 = time.perf_counter()
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        torch.cuda.synchronize()
        tps = 10 * b / (time.perf_counter() - t0)
        if tps > best["train_img_per_s"]:
            best.update(train_img_per_s=tps, train_batch=b)
    return best


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models", nargs="+", default=["deit_tiny_patch16_224", "deit_small_patch16_224"])
    p.add_argument("--keeps", nargs="+", type=float, default=[1.0, 0.9, 0.8, 0.7])
    p.add_argument("--reps", type=int, default=200, help="timed CUDA-graph replays per latency")
    p.add_argument("--batches", nargs="+", type=int, default=[64, 256])
    p.add_argument("--output", type=Path, default=RESULTS)
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("error: bench/gpu_latency.py measures a GPU and none is available", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = True
    energy = energy_counter()
    data = json.loads(args.output.read_text()) if args.output.is_file() else {"rows": []}
    data.update(gpu_name=torch.cuda.get_device_name(), torch=torch.__version__, timm=timm.__version__,
                dtype="bfloat16 autocast", attn_keep=ATTN_KEEP, energy="nvml" if energy else None)  # fmt: skip
    for name in args.models:
        for keep in args.keeps:
            torch.manual_seed(0)
            model = build(name, keep)
            img = model.patch_embed.img_size[0]
            row = {"model": name, "keep": keep, "macs_per_image": trilevel.macs_per_image(model)}
            row.update(infer_latency(model, img, args.reps, energy))
            row.update(train_latency(model, img, args.reps // 2))
            row.update(best_batch(model, img, args.batches, energy))
            data["rows"] = [r for r in data["rows"] if (r["model"], r["keep"]) != (name, keep)] + [row]
            args.output.parent.mkdir(parents=True, exist_ok=True)
            args.output.write_text(json.dumps(data, indent=1) + "\n")
            print(f"{name} keep {keep}: infer {row['infer_ms_median']:.3f} ms, train {row['train_ms_median']:.3f} ms, "
                  f"best {row['infer_img_per_s']:.0f} / {row['train_img_per_s']:.0f} img/s", flush=True)  # fmt: skip
            del model
            torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Attention under a connection mask: which computation, at DeiT-T's shapes on the GPU.

    python bench/attention_kernels.py

At R_T 0.7, R_A 0.3 the blocks after DeiT-T's selectors attend over M = 139, 98, 69
tokens (batch 256, 3 heads of 64), each patch row to [CLS] and 42, 30, 21 patch keys. Times
forward + backward (median, CUDA events) of:

- no mask: SDPA without a mask, the kernel PyTorch picks (the same blocks at R_A = 1);
- sdpa-bool: SDPA with the boolean mask (B, 1, M, M) (the code before the bias);
- sdpa: SDPA with the additive bias, the kernel PyTorch picks (what trilevel.attention runs);
- cudnn, efficient: the same restricted to one SDPA kernel;
- math: the product written out, softmax in float32, for inductor to fuse bias and softmax;
- gather: attention over each row's gathered keys (index lists, the FPGA's formulation),
  K and V gathered to (B, H, M, n_conn + 1, D) under torch.compile;

each checked first against float32 attention on the same inputs (relative error of the
output and of the three gradients), and the selector's own cost (token scores alone, and
with the attention level's map, ranking and bias). Writes bench/results/attention_kernels.json.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from trilevel import selection as sel  # noqa: E402

STAGES = [(138, 42), (97, 30), (68, 21)]  # (n_keep, n_conn) after each selector at 0.7 / 0.3


_ONE_KERNEL = {"cudnn": SDPBackend.CUDNN_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION}


def masked_attention(q, k, v, bias, how: str):
    """softmax(q k^T / sqrt(D) + bias) v, computed the way ``how`` names."""
    if how == "math":
        scores = (q * q.shape[-1] ** -0.5) @ k.transpose(-2, -1) + bias  # (B, H, M, M)
        return scores.softmax(dim=-1, dtype=torch.float32).to(q.dtype) @ v
    if how in _ONE_KERNEL:
        with sdpa_kernel([_ONE_KERNEL[how]]):
            return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)
    return F.scaled_dot_product_attention(q, k, v, attn_mask=bias)


def gather_attention(q, k, v, conn, prefix: int):
    """Prefix rows densely; patch row r over the prefix keys and its n_conn listed keys."""
    B, H, M, D = q.shape
    n = conn.shape[-1]
    keys = torch.cat([torch.arange(prefix, device=q.device).expand(B, M - prefix, prefix), conn + prefix], -1)
    idx = keys[:, None, :, :, None].expand(B, H, M - prefix, prefix + n, D)  # (B, H, Np, prefix + n, D)
    kg = k[:, :, None].expand(B, H, M - prefix, M, D).gather(3, idx)
    vg = v[:, :, None].expand(B, H, M - prefix, M, D).gather(3, idx)
    qp = q[:, :, prefix:]
    p = (torch.einsum("bhmd,bhmkd->bhmk", qp, kg) * D**-0.5).softmax(-1, dtype=torch.float32).to(q.dtype)
    rows = torch.einsum("bhmk,bhmkd->bhmd", p, vg)
    head = F.scaled_dot_product_attention(q[:, :, :prefix], k, v)
    return torch.cat([head, rows], dim=2)


def timed(fn, reps: int) -> float:
    """Median milliseconds of fn() over reps runs after warm-up, CUDA events around each."""
    for _ in range(5):
        fn()
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        torch.cuda.synchronize()
        times.append(a.elapsed_time(b))
    return sorted(times)[len(times) // 2]


def rel_err(got, ref) -> float:
    return float((got.float() - ref.float()).norm() / ref.float().norm())


def variants(conn, prefix: int, dtype):
    bias = sel.connection_bias(conn, prefix, dtype)
    mask = sel.connection_mask(conn, prefix)
    math_c = torch.compile(lambda q, k, v: masked_attention(q, k, v, bias, "math"), dynamic=False)
    gather_c = torch.compile(lambda q, k, v: gather_attention(q, k, v, conn, prefix), dynamic=False)
    return (
        {
            "no mask": lambda q, k, v: F.scaled_dot_product_attention(q, k, v),
            "sdpa-bool": lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=mask),
            "sdpa": lambda q, k, v: masked_attention(q, k, v, bias, "sdpa"),
            "cudnn": lambda q, k, v: masked_attention(q, k, v, bias, "cudnn"),
            "efficient": lambda q, k, v: masked_attention(q, k, v, bias, "efficient"),
            "math (compiled)": math_c,
            "gather (compiled)": gather_c,
        },
        mask,
        bias,
    )


def measure_stage(B, H, D, n_keep, n_conn, reps, with_gather: bool) -> dict:
    prefix, M = 1, 1 + n_keep
    dev, dtype = "cuda", torch.bfloat16
    conn = torch.rand(B, n_keep, n_keep, device=dev).argsort(-1)[..., :n_conn].sort(-1).values
    q, k, v = (torch.randn(B, H, M, D, device=dev, dtype=dtype, requires_grad=True) for _ in range(3))
    dout = torch.randn(B, H, M, D, device=dev, dtype=dtype)
    fns, mask, bias = variants(conn, prefix, dtype)
    qf, kf, vf = (t.detach().float().requires_grad_() for t in (q, k, v))
    ref_out = F.scaled_dot_product_attention(qf, kf, vf, attn_mask=mask)  # float32 reference
    ref = (ref_out, *torch.autograd.grad(ref_out, (qf, kf, vf), dout.float()))
    dense_out = F.scaled_dot_product_attention(qf, kf, vf)
    dense = (dense_out, *torch.autograd.grad(dense_out, (qf, kf, vf), dout.float()))
    choice = {}
    for name, m in (("bool mask", mask), ("bias", bias)):
        try:
            choice[name] = str(torch.nn.attention.SDPBackend(torch._fused_sdp_choice(q, k, v, attn_mask=m)))
        except Exception as e:  # noqa: BLE001 - a private helper; report, do not fail
            choice[name] = f"unknown ({type(e).__name__})"
    out = {"M": M, "n_conn": n_conn, "default_sdpa_choice": choice, "variants": {}}
    for name, fn in fns.items():
        if name.startswith("gather") and not with_gather:
            continue
        row: dict = {}
        try:
            got = fn(q, k, v)
            grads = torch.autograd.grad(got, (q, k, v), dout)
            against = dense if name == "no mask" else ref
            row["rel_err"] = [round(rel_err(g, r), 5) for g, r in zip((got, *grads), against)]

            def step(fn=fn):
                o = fn(q, k, v)
                torch.autograd.grad(o, (q, k, v), dout)

            def forward(fn=fn):
                with torch.no_grad():
                    fn(q, k, v)

            row["fwd_bwd_ms"] = round(timed(step, reps), 4)
            row["fwd_ms"] = round(timed(forward, reps), 4)
        except Exception as e:  # noqa: BLE001 - a backend may refuse these shapes: record it
            row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0][:200]}"
        out["variants"][name] = row
        print(json.dumps({"M": M, name: row}), flush=True)
    return out


def measure_selector(B, H, D, n_patch, n_keep, n_conn, reps) -> dict:
    """The selector at block 3 (N = 197 -> 139): token scores alone, and with the attention
    level's map over the kept rows, the connection ranking and the bias."""
    dev, dtype, prefix = "cuda", torch.bfloat16, 1
    N = prefix + n_patch
    q, k = (torch.randn(B, H, N, D, device=dev, dtype=dtype) for _ in range(2))
    x = torch.randn(B, N, H * D, device=dev, dtype=dtype)

    def token(q, k, x):
        scores = sel.head_avg_cls_attention(q, k, D**-0.5)[:, prefix:]
        idx = sel.select_tokens(scores, n_keep)
        return sel.gather_tokens(x, idx, prefix), idx

    def token_and_attention(q, k, x):
        x, idx = token(q, k, x)
        kept = sel.kept_attention(q, k, idx, prefix, D**-0.5, None)
        conn = sel.select_connections(kept, prefix, n_conn)
        return x, sel.connection_bias(conn, prefix, dtype)

    res = {}
    for name, fn in (
        ("token scores + gather", token),
        ("+ attention map, ranking, bias", token_and_attention),
    ):
        compiled = torch.compile(fn, dynamic=False)
        res[name] = round(timed(lambda c=compiled: c(q, k, x), reps), 4)
        print(json.dumps({"selector": name, "ms": res[name]}), flush=True)
    return res


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--reps", type=int, default=50)
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "attention_kernels.json"))
    args = p.parse_args()
    if not torch.cuda.is_available():
        print("error: this benchmark needs a CUDA GPU", file=sys.stderr)
        return 2
    torch.manual_seed(0)
    B, H, D = args.batch_size, 3, 64
    result = {
        "gpu": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "cudnn": torch.backends.cudnn.version(),
        "shape": f"batch {B}, {H} heads of {D}, bf16; forward + backward, median of {args.reps}",
        "stages": [],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for j, (n_keep, n_conn) in enumerate(STAGES):
        result["stages"].append(measure_stage(B, H, D, n_keep, n_conn, args.reps, with_gather=j == 0))
        out.write_text(json.dumps(result, indent=2) + "\n")
    result["selector_ms"] = measure_selector(B, H, D, 196, 138, 42, args.reps)
    out.write_text(json.dumps(result, indent=2) + "\n")
    names = list(result["stages"][0]["variants"])
    print("\nfwd+bwd ms  " + "  ".join(f"M={s['M']}" for s in result["stages"]))
    for n in names:
        cells = [str(s["variants"].get(n, {}).get("fwd_bwd_ms", "-")) for s in result["stages"]]
        print(f"{n:20s} " + "  ".join(cells))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""C-sim cost of the engine's backward ops: wall time and loop trip counts, and what the
run-time gradient formats add (the _MAXP counters: the max passes, hls/README.md "Backward ops").

    .venv/bin/python bench/engine_backward_csim.py [--package pkg/] [--output bench/results/engine_backward_csim.json]

Part 1 runs each backward op once at DeiT-S sizes (197 tokens, width 384, 6 heads, MLP 1536;
attention dense and over lists at R_A 0.3) on random data. Part 2 (with --package) runs one
whole training step of that package on the C-sim. Times are C-sim wall times on this
machine's CPU, not hardware latencies; trip counts are loop iterations (the cycle model's
input), not cycles.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "host"), str(ROOT / "tests")]

from engine_harness import Program, engine  # noqa: E402
from trilevel_host.engine.abi import abi, split64  # noqa: E402
from trilevel_host.reference import ops_forward as F  # noqa: E402

M, C, H, HID, CLASSES = 197, 384, 6, 1536, 1000


def slots(*ids):
    return sum(i << (8 * k) for k, i in enumerate(ids))


def rand(rng, shape, bits=15):
    return rng.integers(-(1 << bits), 1 << bits, size=shape).clip(-32768, 32767)


def op_cases(rng):
    """(name, builder) pairs: builder(p, fmt) adds one descriptor to Program p."""

    def linear_dx(n, k):
        def b(p, fmt):
            dy, w = p.tensor("dy", rand(rng, (M, n))), p.tensor("w", rand(rng, (n, k)))
            dx = p.tensor("dx", rows=M, cols=k)
            p.op("LINEAR_BWD_DX", X=dy.addr, W=w.addr, Y=dx.addr, AUX3=fmt.addr, M=M, N=n, K=k, XS=dy.stride,
                 WS=w.stride, YS=dx.stride, SH0=12, P3=slots(0, 1))  # fmt: skip

        return b

    def linear_dw(n, k, rows=M):
        def b(p, fmt):
            dy, x = p.tensor("dy", rand(rng, (rows, n))), p.tensor("x", rand(rng, (rows, k)))
            dw, db = p.tensor("dw", rows=n, cols=k), p.tensor("db", rows=1, cols=n)
            p.op("LINEAR_BWD_DW", ("BIAS",), X=dy.addr, W=x.addr, Y=dw.addr, B=db.addr, AUX3=fmt.addr, M=rows,
                 N=n, K=k, XS=dy.stride, WS=x.stride, YS=dw.stride, SH0=10, P3=slots(0, 1, 2))  # fmt: skip

        return b

    def layernorm(p, fmt):
        x = rand(rng, (M, C), 13)
        _, (n, r, sh) = F.layernorm(x, 10, rand(rng, (C,), 14), 14, rand(rng, (C,)), 12, 10, 1e-6)
        dy, g = p.tensor("dy", rand(rng, (M, C))), p.tensor("g", rand(rng, (1, C), 14))
        tn, trs = p.tensor("n", n, dtype=np.int32), p.tensor("rs", np.concatenate([r, sh], 1), dtype=np.int32)
        dx, dg, db = (
            p.tensor("dx", rows=M, cols=C),
            p.tensor("dg", rows=1, cols=C),
            p.tensor("db", rows=1, cols=C),
        )
        p.op("LAYERNORM_BWD", X=dy.addr, W=g.addr, AUX0=tn.addr, AUX1=trs.addr, Y=dx.addr, AUX2=dg.addr, B=db.addr,
             AUX3=fmt.addr, M=M, K=C, XS=dy.stride, AS=tn.stride, YS=dx.stride, SH0=14, SH1=10,
             P3=slots(0, 1, 2, 3))  # fmt: skip

    def gelu(p, fmt):
        dy, x, dx = (
            p.tensor("dy", rand(rng, (M, HID))),
            p.tensor("x", rand(rng, (M, HID))),
            p.tensor("dx", rows=M, cols=HID),
        )
        p.op("GELU_BWD", X=dy.addr, W=x.addr, Y=dx.addr, AUX3=fmt.addr, M=M, N=HID, XS=dy.stride, WS=x.stride,
             YS=dx.stride, SH0=12, P3=slots(0, 1))  # fmt: skip

    def attention(attn_keep):
        def b(p, fmt):
            qkv = rand(rng, (M, 3 * C), 11)
            conn = mask = None
            if attn_keep is not None:
                n_conn = int(np.ceil(attn_keep * (M - 1)))
                conn = np.stack([np.sort(rng.choice(M - 1, n_conn, replace=False)) for _ in range(M - 1)])
                mask = F.connection_mask(conn[None], 1)
            _, probs, _ = F.attention(qkv[None], 12, H, 10, mask)
            rows = np.zeros((H * M, M), np.int64)
            for i in range(M):
                keys = np.arange(M) if conn is None or i == 0 else np.r_[0, conn[i - 1] + 1]
                rows[np.arange(H) * M + i, : len(keys)] = probs[0][:, i, keys]
            do, tq, tp = p.tensor("dctx", rand(rng, (M, C))), p.tensor("qkv", qkv), p.tensor("probs", rows)
            y = p.tensor("dqkv", rows=M, cols=3 * C)
            f = dict(X=do.addr, W=tq.addr, AUX2=tp.addr, Y=y.addr, AUX3=fmt.addr, M=M, N=C, XS=do.stride,
                     WS=tq.stride, YS=y.stride, SH0=12, P0=H, P1=1, P3=slots(0, 1))  # fmt: skip
            if conn is None:
                p.op("ATTENTION_BWD", **f)
            else:
                tl = p.tensor("lists", conn, dtype=np.int32)
                p.op("ATTENTION_BWD", ("SPARSE",), AUX0=tl.addr, AS=tl.stride, P2=conn.shape[1], **f)

        return b

    def grad_add(p, fmt):
        a, b, y = (
            p.tensor("a", rand(rng, (M, C))),
            p.tensor("b", rand(rng, (M, C))),
            p.tensor("y", rows=M, cols=C),
        )
        p.op("GRAD_ADD", X=a.addr, W=b.addr, Y=y.addr, AUX3=fmt.addr, M=M, N=C, XS=a.stride, WS=b.stride,
             YS=y.stride, P3=slots(0, 1, 2))  # fmt: skip

    def sgd(p, fmt):
        g, w = p.tensor("g", rand(rng, (HID, C))), p.tensor("w", rand(rng, (HID, C)))
        m = p.tensor("master", rand(rng, (HID, C)) << 16, dtype=np.int32)
        p.op("SGD", X=g.addr, Y=w.addr, AUX0=m.addr, AUX3=fmt.addr, M=HID, N=C, XS=g.stride, YS=w.stride,
             AS=m.stride, SH0=12, P3=slots(0), **split64(167772))  # fmt: skip

    return [
        ("LINEAR_BWD_DX fc1 (197x1536 . 1536x384)", linear_dx(HID, C)),
        ("LINEAR_BWD_DX fc2 (197x384 . 384x1536)", linear_dx(C, HID)),
        ("LINEAR_BWD_DW fc1 (1536x384 over 197 tokens)", linear_dw(HID, C)),
        ("LINEAR_BWD_DW qkv (1152x384 over 197 tokens)", linear_dw(3 * C, C)),
        ("LINEAR_BWD_DW head (1000x384, one row)", linear_dw(CLASSES, C, rows=1)),
        ("LAYERNORM_BWD (197x384)", layernorm),
        ("GELU_BWD (197x1536)", gelu),
        ("ATTENTION_BWD dense (197 tokens, 6 heads of 64)", attention(None)),
        ("ATTENTION_BWD lists R_A 0.3 (197 tokens, 59 keys per patch row)", attention(0.3)),
        ("GRAD_ADD (197x384)", grad_add),
        ("SGD (1536x384)", sgd),
    ]


def maxp_share(counters: dict) -> dict:
    """Iterations of the backward loops (counter ids 40-95): all, and those of the max passes."""
    ids = abi()["counters"]
    bwd = {k: v[0] for k, v in counters.items() if ids[k] >= 40}
    maxp = sum(v for k, v in bwd.items() if k.endswith("_MAXP") or k == "ATB_DP_MAX")
    return dict(loop_iterations=sum(bwd.values()), max_pass_iterations=maxp)


def run_ops(seed: int) -> list[dict]:
    e = engine()
    out = []
    for name, build in op_cases(np.random.default_rng(seed)):
        p = Program(with_luts=name.startswith(("GELU", "ATTENTION")))
        fmt = p.tensor("fmt", np.full((1, 256), 10), dtype=np.int32)
        build(p, fmt)
        e.reset_counters()
        t0 = time.perf_counter()
        r = p.run()
        seconds = time.perf_counter() - t0
        if not r.ok:
            raise RuntimeError(f"{name}: {r.status_name}")
        c = e.counters()
        out.append(dict(op=name, csim_seconds=round(seconds, 2), mem_read_beats=c["MEM_READ"][0],
                        mem_write_beats=c["MEM_WRITE"][0], **maxp_share(c)))  # fmt: skip
        print(f"{name:66s} {seconds:6.2f} s  {maxp_share(c)}")
    return out


def run_step(package: str) -> dict:
    from trilevel_host.device.csim import CSimDevice
    from trilevel_host.package import load_package
    from trilevel_host.trainer import EngineTrainer

    pkg = load_package(package)
    t = EngineTrainer.from_package(pkg, CSimDevice(), lr=0.01)
    x, _ = pkg.golden("forward/input")
    labels, _ = pkg.golden("labels")
    e = engine()
    e.reset_counters()
    seconds = t.train_step(x[0], int(labels[0]))
    c = e.counters()
    res = dict(model=f"{pkg.manifest['model']['embed_dim']} wide, {pkg.manifest['model']['depth']} blocks, "
               f"{pkg.manifest['model']['num_patches'] + 1} tokens", descriptors=dict(forward=len(t.program.forward), backward_and_update=len(t.program.backward)),
               csim_seconds=round(seconds, 2), **maxp_share(c))  # fmt: skip
    print("training step:", res)
    return res


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--package", default=None, help="also time one training step of this package")
    ap.add_argument("--output", default=str(ROOT / "bench" / "results" / "engine_backward_csim.json"))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    result = dict(
        what="C-sim wall time (not hardware latency) and loop trip counts of the backward ops",
        date=dt.date.today().isoformat(),
        machine=platform.processor() or platform.machine(),
        ops=run_ops(args.seed),
    )
    if args.package:
        result["training_step"] = run_step(args.package)
    Path(args.output).write_text(json.dumps(result, indent=1) + "\n")
    print("wrote", args.output)
    return 0


if __name__ == "__main__":
    sys.exit(main())

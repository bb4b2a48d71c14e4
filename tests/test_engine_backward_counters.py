"""What the run-time gradient formats cost, read off the C-sim loop counters: every two-pass
op repeats its loops once for the maximum (the _MAXP counters), and every pass of the attention
backward, its first (dP's maximum) included, follows the connection lists."""

from __future__ import annotations

import numpy as np
from backward_harness import attention_case, format_table, grad, run_attn, slots
from engine_harness import Program, engine
from trilevel_host.engine.abi import config


def beats(n: int, per_beat: int = 8) -> int:
    return -(-n // per_beat)


def counted(run):
    e = engine()
    e.reset_counters()
    out = run()
    return out, {k: v for k, v in e.counters().items() if v != (0, 0)}


def test_linear_dx_max_pass_repeats_the_tiles_and_the_weight_stream():
    M, N, K = 40, 24, 100
    rng = np.random.default_rng(0)
    p = Program(with_luts=False)
    fmt = format_table(p, {0: 10})
    tdy, tw, ty = (
        p.tensor("dy", grad(rng, (M, N))),
        p.tensor("w", grad(rng, (N, K))),
        p.tensor("dx", rows=M, cols=K),
    )
    p.op("LINEAR_BWD_DX", X=tdy.addr, W=tw.addr, Y=ty.addr, AUX3=fmt.addr, M=M, N=N, K=K, XS=tdy.stride,
         WS=tw.stride, YS=ty.stride, SH0=12, P3=slots(0, 1))  # fmt: skip
    r, c = counted(p.run)
    assert r.ok
    tiles = beats(K, config()["MC_COLS"]) * beats(M, config()["MC_ROWS"])
    assert c["LBX_MAC"] == c["LBX_MAC_MAXP"] == (tiles * N, tiles)
    assert c["LBX_DRAIN"] == c["LBX_DRAIN_MAXP"] == (beats(K, 64) * M, tiles)
    w_stream = N * (beats(64) + beats(K - 64))  # two column panels of W per pass
    table = 2  # the format read, and the read of the read-modify-write that writes dx's format
    assert c["MEM_READ"][0] == M * beats(N) + 2 * w_stream + table
    assert c["MEM_WRITE"][0] == M * (beats(64) + beats(K - 64)) + 1


def test_every_attention_pass_follows_the_lists():
    M, C, H = 17, 32, 2
    rng = np.random.default_rng(1)
    qkv, conn, probs = attention_case(rng, M, C, H, attn_keep=0.3)
    (p, r), c = counted(lambda: run_attn(grad(rng, (M, C)), 12, qkv, 12, H, probs, conn))
    assert r.ok
    keys = M + (M - 1) * (1 + conn.shape[1])  # [CLS] row dense, patch rows over their lists
    assert c["ATB_DP_MAX"] == (keys, M)
    assert c["ATB_DP"] == c["ATB_DS"] == (keys, M)
    assert c["ATB_DP_MAXP"] == c["ATB_DS_MAXP"] == (2 * keys, 2 * M)

"""C-sim OP_ATTENTION_BWD against reference ops_backward.attention_backward, dense and over
connection lists (R_A 0.3). The probabilities come from the numpy forward, written in the
forward's PROBS layout: row (h, i) holds p over row i's key list (hls/README.md, ATTENTION).
Over lists, dP's format comes from the computed (row, key) pairs only: the reference gets the
forward's connection mask."""

from __future__ import annotations

import numpy as np
import pytest
from backward_harness import GARBAGE, attention_case, format_table, garbage, grad, probs_rows, run_attn, slots
from engine_harness import Program
from trilevel_host.engine.abi import config
from trilevel_host.reference import ops_backward as B
from trilevel_host.reference import ops_forward as F


def reference(dctx, fdctx, qkv, fqkv, probs, H, conn, prefix=1):
    mask = None if conn is None else F.connection_mask(conn[None], prefix)
    dqkv, f = B.attention_backward(dctx[None], fdctx, qkv[None], fqkv, probs[None], H, mask)
    return dqkv[0], f


def check(rng, M, C, H, attn_keep=None, bits=15, fdctx=14, qkv_bits=11, fqkv=12):
    qkv, conn, probs = attention_case(rng, M, C, H, attn_keep=attn_keep, qkv_bits=qkv_bits, fqkv=fqkv)
    dctx = grad(rng, (M, C), bits)
    p, r = run_attn(dctx, fdctx, qkv, fqkv, H, probs, conn)
    assert r.ok, r.status_name
    dqkv, f = reference(dctx, fdctx, qkv, fqkv, probs, H, conn)
    np.testing.assert_array_equal(p.read("dqkv"), dqkv)
    assert p.read("fmt")[0, 3] == f
    return p


@pytest.mark.parametrize("M,C,H", [(1, 8, 2), (7, 32, 2), (17, 64, 4), (50, 64, 1), (33, 384, 6)])
@pytest.mark.parametrize("bits", [15, 5])
def test_dense_matches_reference(M, C, H, bits):
    check(np.random.default_rng(M * C + H + bits), M, C, H, bits=bits, fdctx=int(10 + bits))


@pytest.mark.parametrize("M,C,H", [(17, 32, 2), (50, 64, 4), (26, 48, 3)])
@pytest.mark.parametrize("attn_keep", [0.3, 0.7])
def test_sparse_matches_reference(M, C, H, attn_keep):
    check(np.random.default_rng(M + C + H), M, C, H, attn_keep=attn_keep, fdctx=20)


@pytest.mark.parametrize("fqkv,qkv_bits", [(8, 15), (14, 15), (12, 6)])
def test_peaked_and_flat_attention(fqkv, qkv_bits):
    """Large scores (p close to one-hot, probabilities saturating at 32767) and tiny ones (flat p)."""
    check(np.random.default_rng(fqkv + qkv_bits), 17, 32, 2, attn_keep=0.3, qkv_bits=qkv_bits, fqkv=fqkv)


def test_many_tokens_sparse():
    """197 tokens (DeiT at 224x224), one head of 64, lists at R_A 0.3."""
    check(np.random.default_rng(197), 197, 64, 1, attn_keep=0.3, fdctx=18)


def test_dp_format_ignores_pruned_pairs():
    """A pruned (row, key) pair with by far the largest |dP|: the engine never computes it, and
    the format of dP (so every gradient bit after it) follows the computed pairs alone."""
    M, C, H, fdctx, fqkv = 17, 32, 2, 14, 12
    rng = np.random.default_rng(4)
    qkv, conn, probs = attention_case(rng, M, C, H, attn_keep=0.3, qkv_bits=6, fqkv=fqkv)
    row = 5  # a patch row, and a patch key its list does not hold
    key = 1 + int(np.setdiff1d(np.arange(M - 1), conn[row - 1])[0])
    qkv[key, 2 * C :] = 30000  # v of that key: huge
    _, probs, _ = F.attention(qkv[None], fqkv, H, 10, F.connection_mask(conn[None], 1))
    probs = probs[0]
    dctx = grad(rng, (M, C), 4)
    dctx[row] = 30000  # so dP[row, key] is the largest |dP| by far, and pruned
    dense_rule, f_dense = B.attention_backward(dctx[None], fdctx, qkv[None], fqkv, probs[None], H)
    sparse_rule, f_sparse = reference(dctx, fdctx, qkv, fqkv, probs, H, conn)
    assert (f_sparse, sparse_rule.tolist()) != (f_dense, dense_rule[0].tolist())  # the rule matters here
    p, r = run_attn(dctx, fdctx, qkv, fqkv, H, probs, conn)
    assert r.ok
    np.testing.assert_array_equal(p.read("dqkv"), sparse_rule)
    assert p.read("fmt")[0, 3] == f_sparse


def test_zero_gradient():
    rng = np.random.default_rng(1)
    qkv, conn, probs = attention_case(rng, 9, 16, 1, attn_keep=0.3)
    p, r = run_attn(np.zeros((9, 16), np.int64), 12, qkv, 12, 1, probs, conn)
    assert r.ok and (p.read("dqkv") == 0).all() and p.read("fmt")[0, 3] == 40


@pytest.mark.parametrize(
    "lists,status",
    [
        (lambda c: c.__setitem__((3, 0), 16), "BAD_INDEX"),  # beyond the 16 patches
        (lambda c: c.__setitem__((3, 0), -1), "BAD_INDEX"),
        (lambda c: c.__setitem__((2, 1), c[2, 0]), "BAD_INDEX"),  # a repeated key
    ],
)
def test_bad_lists_write_nothing(lists, status):
    rng = np.random.default_rng(2)
    qkv, conn, probs = attention_case(rng, 17, 32, 2, attn_keep=0.3)
    bad = conn.copy()
    lists(bad)
    bad[2] = np.sort(bad[2])
    dctx = grad(rng, (17, 32))
    p = Program()
    fmt = format_table(p, {2: 12})
    tdo, tq = p.tensor("dctx", dctx), p.tensor("qkv", qkv)
    tp, tl = p.tensor("probs", probs_rows(probs, conn, 1)), p.tensor("lists", bad, dtype=np.int32)
    ty = p.tensor("dqkv", garbage(17, 96))
    p.op("ATTENTION_BWD", ("SPARSE",), X=tdo.addr, W=tq.addr, AUX2=tp.addr, Y=ty.addr, AUX3=fmt.addr, AUX0=tl.addr,
         M=17, N=32, XS=tdo.stride, WS=tq.stride, YS=ty.stride, AS=tl.stride, SH0=12, P0=2, P1=1, P2=bad.shape[1],
         P3=slots(2, 3))  # fmt: skip
    assert p.run().status_name == status
    assert (p.read("dqkv") == GARBAGE).all() and p.read("fmt")[0, 3] == -99


@pytest.mark.parametrize(
    "over,status",
    [
        (dict(P0=3), "BAD_SIZE"),  # 32 channels do not split into 3 heads
        (dict(N=24, P0=3), "BAD_SIZE"),  # head dim 8 is not a power of 4
        (dict(M=config()["MAX_TOKENS"] + 1), "BAD_SIZE"),
        (dict(P1=2), "BAD_SIZE"),
        (dict(AUX2=1 << 26), "BAD_ADDRESS"),
        (dict(SH0=41), "BAD_PARAM"),
    ],
)
def test_bad_descriptor_writes_nothing(over, status):
    rng = np.random.default_rng(3)
    qkv, _, probs = attention_case(rng, 9, 32, 2)
    p, r = run_attn(grad(rng, (9, 32)), 12, qkv, 12, 2, probs, **over)
    assert r.status_name == status and (p.read("dqkv") == GARBAGE).all()

"""The fixed-point primitives and forward ops against float math, fxpmath and trilevel.selection."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from fxpmath import Fxp
from trilevel_host import fixedpoint as fp
from trilevel_host import luts
from trilevel_host.reference import ops_forward as F

from trilevel import selection

RNG = np.random.default_rng(0)


def test_quantize_matches_fxpmath_round_half_up_and_saturation():
    x = np.concatenate([RNG.normal(0, 3, 5000), [7.99, 8.0, -8.0, -9.5, 100.0, 0.5 / 4096, -0.5 / 4096]])
    f = 12
    ours = fp.quantize(x, f)
    # floor(x 2^f + 1/2) == floor((x + 2^-(f+1)) 2^f): fxpmath's floor rounding with saturation
    ref = Fxp(x + 2.0 ** -(f + 1), signed=True, n_word=16, n_frac=f, rounding="floor", overflow="saturate")
    np.testing.assert_array_equal(ours, ref.val.astype(np.int64))
    assert fp.quantize(np.array([0.5 / 4096]), 12)[0] == 1  # half rounds up
    assert fp.quantize(np.array([-0.5 / 4096]), 12)[0] == 0


def test_saturation_is_counted():
    st = fp.SatStats()
    fp.quantize(np.array([0.0, 9.0, -9.0, 1.0]), 12, st, "t")
    assert st.counts["t"] == [2, 4]


def test_rshift_round_is_round_half_up():
    a = RNG.integers(-(2**40), 2**40, 10000)
    for s in (1, 5, 17):
        want = np.array([math.floor(v / 2**s + 0.5) for v in a.tolist()])
        np.testing.assert_array_equal(fp.rshift_round(a, s), want)
    np.testing.assert_array_equal(fp.rshift_round(np.array([-3, -1, 1, 3]), 1), [-1, 0, 1, 2])
    np.testing.assert_array_equal(fp.rshift_round(a[:3], -3), a[:3] * 8)


@pytest.mark.parametrize("max_abs,f", [(1.0, 14), (0.99, 15), (3.2, 13), (0.001, 24), (40000.0, -1)])
def test_choose_frac_bits(max_abs, f):
    assert fp.choose_frac_bits(max_abs) == f
    assert np.floor(max_abs * 2.0**f + 0.5) <= fp.QMAX


def test_dynamic_frac_fills_16_bits():
    acc = np.array([123456789, -5, 7])
    f = fp.dynamic_frac(acc, 20)
    q = fp.requantize(acc, 20, f)
    assert 2**14 <= np.abs(q).max() <= fp.QMAX


def test_matmul_exact_both_paths():
    a = RNG.integers(-(2**15), 2**15, (7, 64))
    b = RNG.integers(-(2**15), 2**15, (64, 5))
    want = a.astype(object) @ b.astype(object)
    np.testing.assert_array_equal(fp.matmul(a, b), want.astype(np.int64))


@pytest.mark.parametrize(
    "name,fn,lo,hi,tol",
    [
        ("exp", np.exp, -16, 0, 2e-4),
        ("gelu", lambda x: 0.5 * x * (1 + np.vectorize(math.erf)(x / math.sqrt(2))), -8, 8, 4e-4),
        ("recip", lambda m: 1 / m, 1, 2, 1e-4),
        ("rsqrt", lambda m: 1 / np.sqrt(m), 1, 4, 1e-4),
    ],
)
def test_tables_approximate_their_functions(name, fn, lo, hi, tol):
    spec = luts.SPECS[name]
    x = np.arange(lo << spec.in_frac, (hi << spec.in_frac) + 1, 7)
    y = luts.pwl(name, x) * 2.0**-spec.out_frac
    assert np.abs(y - fn(x * 2.0**-spec.in_frac)).max() < tol
    assert luts.table(name).dtype == np.int32 and len(luts.table(name)) == spec.n_knots


def test_recip_and_rsqrt_of_integers():
    v = RNG.integers(1, 2**40, 2000)
    y, sh = luts.recip(v)
    np.testing.assert_allclose(y * 2.0**-sh, 1 / v, rtol=1e-4)
    y, sh = luts.rsqrt(v)
    np.testing.assert_allclose(y * 2.0**-sh, 1 / np.sqrt(v), rtol=1e-4)


def _q(x, f):
    return fp.quantize(x, f)


def test_linear_layernorm_gelu_softmax_close_to_float():
    x = RNG.normal(0, 1, (4, 10, 32))
    w = RNG.normal(0, 0.2, (24, 32))
    b = RNG.normal(0, 0.1, 24)
    y = F.linear(_q(x, 12), 12, _q(w, 15), 15, _q(b, 15), 15, 12) / 2**12
    np.testing.assert_allclose(y, x @ w.T + b, atol=3e-3)

    g, beta = RNG.normal(1, 0.1, 32), RNG.normal(0, 0.1, 32)
    yq, _ = F.layernorm(_q(x, 12), 12, _q(g, 14), 14, _q(beta, 15), 15, 12, 1e-6)
    ref = (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-6) * g + beta
    np.testing.assert_allclose(yq / 2**12, ref, atol=3e-3)

    xg = RNG.normal(0, 3, (1000,))
    ref = 0.5 * xg * (1 + np.vectorize(math.erf)(xg / math.sqrt(2)))
    np.testing.assert_allclose(F.gelu(_q(xg, 11), 11, 11) / 2**11, ref, atol=2e-3)

    s = RNG.normal(0, 3, (8, 20))
    p = F.softmax(_q(s, 11), 11) / 2**15
    ref = np.exp(s - s.max(-1, keepdims=True))
    np.testing.assert_allclose(p, ref / ref.sum(-1, keepdims=True), atol=1e-3)


def test_sparse_attention_equals_masked_dense_bit_for_bit():
    B, N, C, H, prefix = 3, 9, 32, 2, 1
    qkv = _q(RNG.normal(0, 1, (B, N, 3 * C)), 12)
    conn = np.sort(
        np.stack([np.stack([RNG.choice(N - 1, 3, replace=False) for _ in range(N - 1)]) for _ in range(B)]),
        -1,
    )
    mask = F.connection_mask(conn, prefix)
    dense, p, _ = F.attention(qkv, 12, H, 12, mask)
    sparse = F.attention_sparse(qkv, 12, H, 12, conn, prefix)
    np.testing.assert_array_equal(dense, sparse)
    assert (p[np.broadcast_to(~mask, p.shape)] == 0).all()
    torch_mask = selection.connection_mask(torch.from_numpy(conn), prefix).numpy()
    np.testing.assert_array_equal(mask, torch_mask)


def test_selection_matches_trilevel_selection():
    B, H, N, prefix = 4, 3, 17, 1
    logits = RNG.normal(0, 2, (B, H, N, N))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    pq = _q(probs, 15)
    idx = F.select_tokens(pq, prefix, 11)
    t_idx = selection.select_tokens(torch.from_numpy(pq[:, :, 0, prefix:].sum(1)).double(), 11).numpy()
    np.testing.assert_array_equal(idx, t_idx)
    conn = F.select_connections(pq, idx, prefix, 4)
    avg = torch.from_numpy(pq.sum(1)).double()
    t_conn = selection.select_connections(
        selection.restrict_attention(avg, torch.from_numpy(idx), prefix), prefix, 4
    )
    np.testing.assert_array_equal(conn, t_conn.numpy())


def test_topk_ties_take_the_lower_index():
    np.testing.assert_array_equal(F.topk_ascending(np.array([[5, 7, 7, 7, 1]]), 2), [[1, 2]])

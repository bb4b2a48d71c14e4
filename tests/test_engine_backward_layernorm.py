"""C-sim OP_LAYERNORM_BWD against reference ops_backward.layernorm_backward.

The forward's cache (n at 14 fractional bits, and r, sh per row) comes from the numpy
reference layernorm, written into the arena in the layout of hls/README.md's LAYERNORM row.
"""

from __future__ import annotations

import numpy as np
import pytest
from backward_harness import GARBAGE, format_table, garbage, grad, slots
from engine_harness import Program
from trilevel_host.engine.abi import config
from trilevel_host.reference import ops_backward as B
from trilevel_host.reference import ops_forward as F


def forward_cache(rng, M, K, fx, fg, scale_bits=13):
    x = grad(rng, (M, K), scale_bits)
    g = grad(rng, (K,), 14)
    b = grad(rng, (K,), 12)
    _, (n, r, sh) = F.layernorm(x, fx, g, fg, b, 12, 10, 1e-6)
    return g, (n, r, sh)


def run_ln(dy, fdy, cache, g, fg, fx, **over):
    n, r, sh = cache
    M, K = dy.shape
    p = Program(with_luts=False)
    fmt = format_table(p, {0: fdy})
    tdy, tg = p.tensor("dy", dy), p.tensor("g", g.reshape(1, -1))
    tn = p.tensor("n", n, dtype=np.int32)
    trs = p.tensor("rs", np.concatenate([r, sh], axis=1), dtype=np.int32)
    tdx, tdg, tdb = (
        p.tensor("dx", garbage(M, K)),
        p.tensor("dg", garbage(1, K)),
        p.tensor("db", garbage(1, K)),
    )
    fields = dict(X=tdy.addr, W=tg.addr, AUX0=tn.addr, AUX1=trs.addr, Y=tdx.addr, AUX2=tdg.addr, B=tdb.addr,
                  AUX3=fmt.addr, M=M, K=K, XS=tdy.stride, AS=tn.stride, YS=tdx.stride, SH0=fg, SH1=fx,
                  P3=slots(0, 1, 2, 3))  # fmt: skip
    fields.update(over)
    p.op("LAYERNORM_BWD", **fields)
    return p, p.run()


@pytest.mark.parametrize("M,K", [(1, 32), (7, 16), (17, 64), (50, 100), (197, 192)])
@pytest.mark.parametrize("bits", [15, 4])
def test_matches_reference(M, K, bits):
    rng = np.random.default_rng(M * K + bits)
    fx, fg, fdy = int(rng.integers(2, 14)), int(rng.integers(10, 15)), int(rng.integers(-5, 36))
    g, cache = forward_cache(rng, M, K, fx, fg)
    dy = grad(rng, (M, K), bits)
    p, r = run_ln(dy, fdy, cache, g, fg, fx)
    assert r.ok, r.status_name
    (dx, fdx), (dg, fdg), (db, fdb) = B.layernorm_backward(dy, fdy, cache, g, fg, fx)
    np.testing.assert_array_equal(p.read("dx"), dx)
    np.testing.assert_array_equal(p.read("dg")[0], dg)
    np.testing.assert_array_equal(p.read("db")[0], db)
    assert list(p.read("fmt")[0, :4]) == [fdy, fdx, fdg, fdb]


def test_widest_rows_and_constant_rows():
    """K = 384 (DeiT-S); a constant input row has var = 0 (only eps), the largest 1/std."""
    rng = np.random.default_rng(7)
    M, K, fx, fg = 9, config()["MAX_DIM"], 10, 13
    x = grad(rng, (M, K), 12)
    x[3] = 77
    g = grad(rng, (K,), 14)
    _, cache = F.layernorm(x, fx, g, fg, g, 12, 10, 1e-6)
    dy = grad(rng, (M, K))
    p, r = run_ln(dy, 12, cache, g, fg, fx)
    assert r.ok, r.status_name
    (dx, fdx), (dg, _), (db, _) = B.layernorm_backward(dy, 12, cache, g, fg, fx)
    np.testing.assert_array_equal(p.read("dx"), dx)
    np.testing.assert_array_equal(p.read("dg")[0], dg)
    np.testing.assert_array_equal(p.read("db")[0], db)


def test_zero_gradient():
    rng = np.random.default_rng(8)
    g, cache = forward_cache(rng, 4, 24, 8, 12)
    p, r = run_ln(np.zeros((4, 24), np.int64), 9, cache, g, 12, 8)
    assert r.ok
    assert (p.read("dx") == 0).all() and (p.read("dg") == 0).all() and (p.read("db") == 0).all()
    assert list(p.read("fmt")[0, 1:4]) == [40, 40, 40]


@pytest.mark.parametrize("field,value", [("sh", 10), ("sh", 100), ("r", 0), ("r", -5)])
def test_bad_cache_row_is_refused(field, value):
    rng = np.random.default_rng(9)
    g, (n, r, sh) = forward_cache(rng, 5, 16, 8, 12)
    r, sh = r.copy(), sh.copy()
    (sh if field == "sh" else r)[2, 0] = value
    p, res = run_ln(grad(rng, (5, 16)), 9, (n, r, sh), g, 12, 8)
    assert res.status_name == "BAD_PARAM"
    assert (p.read("dx") == GARBAGE).all() and (p.read("dg") == GARBAGE).all()


@pytest.mark.parametrize(
    "over,status",
    [
        (dict(K=config()["MAX_DIM"] + 1), "BAD_SIZE"),
        (dict(M=0), "BAD_SIZE"),
        (dict(AUX1=1 << 26), "BAD_ADDRESS"),
        (dict(AS=8), "BAD_ADDRESS"),  # the cache rows overlap: stride below the row
        (dict(SH1=50), "BAD_PARAM"),
    ],
)
def test_bad_descriptor_writes_nothing(over, status):
    rng = np.random.default_rng(10)
    g, cache = forward_cache(rng, 5, 16, 8, 12)
    p, r = run_ln(grad(rng, (5, 16)), 9, cache, g, 12, 8, **over)
    assert r.status_name == status
    assert (p.read("dx") == GARBAGE).all() and (p.read("db") == GARBAGE).all()

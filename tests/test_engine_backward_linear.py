"""C-sim OP_LINEAR_BWD_DX / OP_LINEAR_BWD_DW against reference ops_backward.linear_backward."""

from __future__ import annotations

import numpy as np
import pytest
from backward_harness import GARBAGE, format_table, garbage, grad, slots
from engine_harness import Program
from trilevel_host.engine.abi import config
from trilevel_host.reference import ops_backward as B

SHAPES = [(1, 10, 32), (7, 40, 24), (17, 64, 130), (50, 33, 70), (197, 24, 40)]  # (M tokens, N out, K in)


def run_dx(dy, fdy, w, fw, **over):
    M, N = dy.shape
    K = w.shape[1]
    p = Program(with_luts=False)
    fmt = format_table(p, {3: fdy})
    tdy, tw = p.tensor("dy", dy), p.tensor("w", w)
    ty = p.tensor("dx", garbage(M, K))
    fields = dict(X=tdy.addr, W=tw.addr, Y=ty.addr, AUX3=fmt.addr, M=M, N=N, K=K, XS=tdy.stride,
                  WS=tw.stride, YS=ty.stride, SH0=fw, P3=slots(3, 7))  # fmt: skip
    fields.update(over)
    p.op("LINEAR_BWD_DX", **fields)
    return p, p.run()


def run_dw(dy, fdy, x, fx, bias=True, **over):
    M, N = dy.shape
    K = x.shape[1]
    p = Program(with_luts=False)
    fmt = format_table(p, {0: fdy})
    tdy, tx = p.tensor("dy", dy), p.tensor("x", x)
    tw, tb = p.tensor("dw", garbage(N, K)), p.tensor("db", garbage(1, N))
    fields = dict(X=tdy.addr, W=tx.addr, Y=tw.addr, B=tb.addr, AUX3=fmt.addr, M=M, N=N, K=K, XS=tdy.stride,
                  WS=tx.stride, YS=tw.stride, SH0=fx, P3=slots(0, 1, 2))  # fmt: skip
    fields.update(over)
    p.op("LINEAR_BWD_DW", ("BIAS",) if bias else (), **fields)
    return p, p.run()


@pytest.mark.parametrize("M,N,K", SHAPES)
@pytest.mark.parametrize("bits", [15, 6])
def test_dx_matches_reference(M, N, K, bits):
    rng = np.random.default_rng(M * 1000 + N + bits)
    dy, w = grad(rng, (M, N), bits), grad(rng, (N, K))
    fdy, fw = int(rng.integers(-4, 30)), int(rng.integers(4, 16))
    p, r = run_dx(dy, fdy, w, fw)
    assert r.ok, r.status_name
    (dx, fdx), _, _ = B.linear_backward(dy, fdy, np.zeros((M, K)), 0, w, fw)
    np.testing.assert_array_equal(p.read("dx"), dx)
    assert p.read("fmt")[0, 7] == fdx


@pytest.mark.parametrize("M,N,K", SHAPES)
@pytest.mark.parametrize("bits", [15, 3])
def test_dw_db_match_reference(M, N, K, bits):
    rng = np.random.default_rng(M * 7 + N * 3 + K + bits)
    dy, x = grad(rng, (M, N), bits), grad(rng, (M, K))
    fdy, fx = int(rng.integers(-8, 38)), int(rng.integers(-3, 14))
    p, r = run_dw(dy, fdy, x, fx)
    assert r.ok, r.status_name
    _, (dw, fdw), (db, fdb) = B.linear_backward(dy, fdy, x, fx, np.zeros((N, K)), 0)
    np.testing.assert_array_equal(p.read("dw"), dw)
    np.testing.assert_array_equal(p.read("db")[0], db)
    assert list(p.read("fmt")[0, :3]) == [fdy, fdw, fdb]


def test_dw_without_bias_leaves_db_alone():
    rng = np.random.default_rng(5)
    dy, x = grad(rng, (9, 20)), grad(rng, (9, 16))
    p, r = run_dw(dy, 3, x, 7, bias=False)
    assert r.ok
    assert (p.read("db") == GARBAGE).all() and p.read("fmt")[0, 2] == -99
    _, (dw, fdw), _ = B.linear_backward(dy, 3, x, 7, np.zeros((20, 16)), 0, has_bias=False)
    np.testing.assert_array_equal(p.read("dw"), dw)


def test_largest_dx_and_dw():
    """DeiT-T fc2 sizes in both directions: 197 tokens, 192 <-> 768 features."""
    rng = np.random.default_rng(11)
    M, N, K = 197, 192, 768
    dy, w, x = grad(rng, (M, N)), grad(rng, (N, K)), grad(rng, (M, K))
    p, r = run_dx(dy, 20, w, 12)
    assert r.ok, r.status_name
    (dx, fdx), _, _ = B.linear_backward(dy, 20, x, 0, w, 12, has_bias=False)
    np.testing.assert_array_equal(p.read("dx"), dx)
    p, r = run_dw(dy, 20, x, 9)
    assert r.ok, r.status_name
    _, (dw, fdw), (db, fdb) = B.linear_backward(dy, 20, x, 9, w, 12)
    np.testing.assert_array_equal(p.read("dw"), dw)
    np.testing.assert_array_equal(p.read("db")[0], db)


def test_zero_gradient_gives_frac_max_and_zeros():
    dy, w = np.zeros((5, 12), np.int64), grad(np.random.default_rng(1), (12, 8))
    p, r = run_dx(dy, 10, w, 10)
    assert r.ok and (p.read("dx") == 0).all() and p.read("fmt")[0, 7] == 40
    p, r = run_dw(dy, 10, grad(np.random.default_rng(2), (5, 8)), 10)
    assert r.ok and (p.read("dw") == 0).all() and (p.read("db") == 0).all()
    assert list(p.read("fmt")[0, 1:3]) == [40, 40]


def test_clamped_format_saturates_like_the_reference():
    """dy at f = -16 against f = -16 weights: the exact format would be below FRAC_MIN."""
    rng = np.random.default_rng(3)
    dy, w = np.full((4, 64), 32767, np.int64), np.full((64, 16), 32767, np.int64)
    dy[1] = -32768
    p, r = run_dx(dy, -16, w, -16)
    assert r.ok
    (dx, fdx), _, _ = B.linear_backward(dy, -16, np.zeros((4, 16)), 0, w, -16)
    assert fdx == -16 and np.abs(dx).max() >= 32767
    np.testing.assert_array_equal(p.read("dx"), dx)
    del rng


@pytest.mark.parametrize(
    "over,status",
    [
        (dict(M=0), "BAD_SIZE"),
        (dict(M=config()["MAX_TOKENS"] + 1), "BAD_SIZE"),
        (dict(K=config()["MAX_K"] + 1), "BAD_SIZE"),
        (dict(Y=1 << 26), "BAD_ADDRESS"),
        (dict(YS=4), "BAD_ADDRESS"),
        (dict(AUX3=1 << 26), "BAD_ADDRESS"),
        (dict(SH0=41), "BAD_PARAM"),
        (dict(P3=slots(9, 7)), "BAD_PARAM"),  # slot 9 holds no format (-99)
    ],
)
def test_dx_errors_write_nothing(over, status):
    rng = np.random.default_rng(0)
    p, r = run_dx(grad(rng, (6, 16)), 5, grad(rng, (16, 24)), 8, **over)
    assert r.status_name == status
    assert (p.read("dx") == GARBAGE).all() and p.read("fmt")[0, 7] == -99


@pytest.mark.parametrize(
    "over,status",
    [
        (dict(N=config()["MAX_OUT"] + 1), "BAD_SIZE"),
        (dict(B=1 << 26), "BAD_ADDRESS"),
        (dict(SH0=-17), "BAD_PARAM"),
    ],
)
def test_dw_errors_write_nothing(over, status):
    rng = np.random.default_rng(0)
    p, r = run_dw(grad(rng, (6, 16)), 5, grad(rng, (6, 24)), 8, **over)
    assert r.status_name == status
    assert (p.read("dw") == GARBAGE).all() and (p.read("db") == GARBAGE).all()

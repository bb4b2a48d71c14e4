"""C-sim OP_GELU_BWD against reference ops_backward.gelu_backward."""

from __future__ import annotations

import numpy as np
import pytest
from backward_harness import GARBAGE, format_table, garbage, grad, slots
from engine_harness import Program
from trilevel_host.engine.abi import config
from trilevel_host.reference import ops_backward as B


def run_gelu(dy, fdy, x, fx, **over):
    M, N = dy.shape
    p = Program()
    fmt = format_table(p, {5: fdy})
    tdy, tx = p.tensor("dy", dy), p.tensor("x", x)
    ty = p.tensor("dx", garbage(M, N))
    fields = dict(X=tdy.addr, W=tx.addr, Y=ty.addr, AUX3=fmt.addr, M=M, N=N, XS=tdy.stride, WS=tx.stride,
                  YS=ty.stride, SH0=fx, P3=slots(5, 6))  # fmt: skip
    fields.update(over)
    p.op("GELU_BWD", **fields)
    return p, p.run()


@pytest.mark.parametrize("M,N", [(1, 8), (7, 64), (17, 130), (50, 256), (197, 128)])
@pytest.mark.parametrize("fx", [8, 11, 13, 17])
def test_matches_reference(M, N, fx):
    """fx = 8 and 11 put x beyond [-8, 8] (gelu' is 1 or 0 there) and shift x left to the table's
    14 input bits; fx = 17 shifts it right (rounded)."""
    rng = np.random.default_rng(M * N + fx)
    dy, x = grad(rng, (M, N), 15 if M % 2 else 7), grad(rng, (M, N))
    fdy = int(rng.integers(-6, 34))
    p, r = run_gelu(dy, fdy, x, fx)
    assert r.ok, r.status_name
    dx, fdx = B.gelu_backward(dy, fdy, x, fx)
    np.testing.assert_array_equal(p.read("dx"), dx)
    assert p.read("fmt")[0, 6] == fdx


def test_widest_rows_and_small_formats():
    rng = np.random.default_rng(3)
    N = config()["MAX_HIDDEN"]
    dy, x = grad(rng, (3, N)), grad(rng, (3, N))
    for fx in (-16, 2, 40):
        p, r = run_gelu(dy, -16, x, fx)
        assert r.ok
        dx, fdx = B.gelu_backward(dy, -16, x, fx)
        np.testing.assert_array_equal(p.read("dx"), dx)
        assert p.read("fmt")[0, 6] == fdx


def test_zero_gradient():
    rng = np.random.default_rng(4)
    p, r = run_gelu(np.zeros((3, 40), np.int64), 7, grad(rng, (3, 40)), 12)
    assert r.ok and (p.read("dx") == 0).all() and p.read("fmt")[0, 6] == 40


@pytest.mark.parametrize(
    "over,status",
    [
        (dict(N=config()["MAX_HIDDEN"] + 1), "BAD_SIZE"),
        (dict(W=1 << 26), "BAD_ADDRESS"),
        (dict(SH0=-20), "BAD_PARAM"),
        (dict(P3=slots(7, 6)), "BAD_PARAM"),
    ],
)
def test_bad_descriptor_writes_nothing(over, status):
    rng = np.random.default_rng(5)
    p, r = run_gelu(grad(rng, (3, 40)), 7, grad(rng, (3, 40)), 12, **over)
    assert r.status_name == status and (p.read("dx") == GARBAGE).all()

"""Vector-unit ops on the C-sim engine (ADD, GELU, LAYERNORM, PATCHIFY), bit-exact against
reference ``ops_forward``."""

from __future__ import annotations

import numpy as np
import pytest
from engine_harness import Program
from trilevel_host.engine.abi import config, split64
from trilevel_host.reference import ops_forward as F

SENTINEL = 0x1234


def ints(rng, shape, lim=32767):
    return rng.integers(-lim - 1 if lim == 32767 else -lim, lim + 1, shape)


# ---------------------------------------------------------------- ADD


def add_program(a, b, fa, fb, fy, in_place=False, **overrides) -> Program:
    m, n = a.shape
    p = Program(with_luts=False)
    ta, tb = p.tensor("a", a), p.tensor("b", b)
    ty = ta if in_place else p.tensor("y", np.full((m, n), SENTINEL))
    f = max(fa, fb)
    fields = dict(X=ta.addr, W=tb.addr, Y=ty.addr, M=m, N=n, XS=ta.stride, WS=tb.stride, YS=ty.stride)
    fields.update(SH0=fa - f, SH1=fb - f, SH2=f - fy)
    fields.update(overrides)
    p.op("ADD", **fields)
    return p


ADD_FORMATS = [(8, 8, 8), (10, 6, 7), (3, 12, 12), (12, 12, 14), (-3, 20, 4)]
ADD_CASES = [(m, n, *f) for m, n in [(1, 8), (7, 20), (50, 64)] for f in ADD_FORMATS] + [(197, 384, 10, 6, 7)]


@pytest.mark.parametrize("m,n,fa,fb,fy", ADD_CASES)
def test_add_matches_reference(m, n, fa, fb, fy):
    rng = np.random.default_rng(m + n + fa)
    a, b = ints(rng, (m, n)), ints(rng, (m, n))
    p = add_program(a, b, fa, fb, fy)
    assert p.run().ok
    np.testing.assert_array_equal(p.read("y"), F.add(a, fa, b, fb, fy))


def test_add_saturates_and_works_in_place():
    rng = np.random.default_rng(5)
    a, b = ints(rng, (17, 40)), ints(rng, (17, 40))
    ref = F.add(a, 12, b, 12, 14)
    assert np.count_nonzero(np.abs(ref) >= 32767) > 0
    p = add_program(a, b, 12, 12, 14, in_place=True)
    assert p.run().ok
    np.testing.assert_array_equal(p.read("a"), ref)


@pytest.mark.parametrize(
    "expected,overrides",
    [
        ("BAD_PARAM", dict(SH0=1)),
        ("BAD_PARAM", dict(SH1=2)),
        ("BAD_SIZE", dict(M=config()["MAX_TOKENS"] + 1)),
        ("BAD_SIZE", dict(N=0)),
        ("BAD_ADDRESS", dict(W=1 << 30)),
        ("BAD_ADDRESS", dict(X=8)),
        ("BAD_ADDRESS", dict(N=17)),  # rows longer than the strides
    ],
)
def test_add_errors_leave_the_output_untouched(expected, overrides):
    rng = np.random.default_rng(0)
    p = add_program(ints(rng, (5, 16)), ints(rng, (5, 16)), 8, 8, 8, **overrides)
    assert p.run().status_name == expected
    assert np.all(p.read("y") == SENTINEL)


# ---------------------------------------------------------------- GELU


def gelu_program(x, fx, fy, **overrides) -> Program:
    m, n = x.shape
    p = Program()
    tx, ty = p.tensor("x", x), p.tensor("y", np.full((m, n), SENTINEL))
    fields = dict(
        X=tx.addr, Y=ty.addr, M=m, N=n, XS=tx.stride, YS=ty.stride, SH0=fx - 14, SH1=16 - fy, SH2=fx - fy
    )
    fields.update(overrides)
    p.op("GELU", **fields)
    return p


@pytest.mark.parametrize(
    "fx,fy",
    [
        (11, 11),  # [-10, 10]: table, both pass-through regions
        (11, 14),  # outputs above 2 saturate
        (4, 8),  # coarse input up to +-2048: pass-through saturates
        (16, 16),  # SH0 > 0: the table input is rounded
        (12, 9),
    ],
)
@pytest.mark.parametrize("m,n", [(1, 16), (7, 100), (17, 1536)])
def test_gelu_matches_reference(fx, fy, m, n):
    rng = np.random.default_rng(fx * 7 + m)
    lim = min(32767, int(10 * 2**fx))
    x = ints(rng, (m, n), lim)
    x[0, :8] = [-lim, lim, int(8 * 2**fx) if fx < 12 else 0, -int(8 * 2**fx) if fx < 12 else 0, 0, 1, -1, 5]
    p = gelu_program(x, fx, fy)
    assert p.run().ok
    y = p.read("y")
    ref = F.gelu(x, fx, fy)
    np.testing.assert_array_equal(y, ref)


def test_gelu_covers_both_pass_through_regions():
    fx, fy = 11, 11
    x = np.linspace(-10 * 2**fx, 10 * 2**fx, 2 * 1536).round().astype(np.int64).reshape(2, 1536)
    p = gelu_program(x, fx, fy)
    assert p.run().ok
    y, real = p.read("y"), x / 2**fx
    np.testing.assert_array_equal(y, F.gelu(x, fx, fy))
    assert np.all(y[real < -8.01] == 0) and np.any(real < -8.01)
    np.testing.assert_array_equal(y[real > 8.01], x[real > 8.01])
    assert np.any(real > 8.01)


def test_gelu_errors():
    rng = np.random.default_rng(0)
    x = ints(rng, (5, 16), 2000)
    for expected, overrides in [
        ("BAD_SIZE", dict(N=config()["MAX_HIDDEN"] + 1)),
        ("BAD_SIZE", dict(M=0)),
        ("BAD_ADDRESS", dict(Y=1 << 30)),
        ("BAD_ADDRESS", dict(XS=4)),
    ]:
        p = gelu_program(x, 11, 11, **overrides)
        assert p.run().status_name == expected
        assert np.all(p.read("y") == SENTINEL)


# ---------------------------------------------------------------- LAYERNORM


def eps_int(eps: float, fx: int) -> int:
    """The descriptor's eps_i, as reference ``layernorm`` computes it."""
    return max(1, int(np.floor(eps * 2.0 ** (2 * (fx + F.LN_EXTRA_FRAC)) + 0.5)))


def layernorm_program(x, fx, g, fg, b, fb, fy, eps, cache=False, **overrides) -> Program:
    m, k = x.shape
    p = Program()
    tx, tg, tb = p.tensor("x", x), p.tensor("g", g.reshape(1, -1)), p.tensor("b", b.reshape(1, -1))
    ty = p.tensor("y", np.full((m, k), SENTINEL))
    fields = dict(X=tx.addr, W=tg.addr, B=tb.addr, Y=ty.addr, M=m, K=k, XS=tx.stride, YS=ty.stride)
    fields.update(SH0=fb - (F.NORM_FRAC + fg), SH1=F.NORM_FRAC + fg - fy, **split64(eps_int(eps, fx)))
    if cache:
        tn = p.tensor("n", np.full((m, k), SENTINEL, np.int32), dtype=np.int32)
        trs = p.tensor("rs", np.full((m, 2), SENTINEL, np.int32), dtype=np.int32)
        fields.update(AUX0=tn.addr, AS=tn.stride, AUX1=trs.addr)
    fields.update(overrides)
    p.op("LAYERNORM", ("CACHE",) if cache else (), **fields)
    return p


def ln_case(rng, m, k, lim=20000):
    x = ints(rng, (m, k), lim)
    g = rng.integers(4000, 20000, k) * rng.choice([-1, 1], k)
    b = ints(rng, (k,), 8000)
    return x, g, b


LN_FORMATS = [(1e-6, 12, 13, 14, 11), (1e-5, 8, 14, 10, 12), (1e-3, 14, 12, 16, 13)]
LN_CASES = [(m, k, *f) for m, k in [(1, 192), (7, 5), (17, 33), (50, 192), (3, 1)] for f in LN_FORMATS]
LN_CASES += [(197, 384, *LN_FORMATS[0])]


@pytest.mark.parametrize("m,k,eps,fx,fg,fb,fy", LN_CASES)
def test_layernorm_matches_reference(m, k, eps, fx, fg, fb, fy):
    rng = np.random.default_rng(m * k + fx)
    x, g, b = ln_case(rng, m, k)
    x[0] = x[0, 0]  # a constant row: var = 0, only eps
    p = layernorm_program(x, fx, g, fg, b, fb, fy, eps)
    assert p.run().ok
    y, _ = F.layernorm(x, fx, g, fg, b, fb, fy, eps)
    np.testing.assert_array_equal(p.read("y"), y)


@pytest.mark.parametrize("m,k", [(1, 384), (17, 192), (50, 64), (4, 7)])
def test_layernorm_cache_outputs(m, k):
    rng = np.random.default_rng(k)
    x, g, b = ln_case(rng, m, k, lim=32767)
    x[-1] = rng.integers(-3, 4, k)  # a row with tiny variance: eps dominates, n stays small
    x[0] = rng.integers(-100, 101, k)
    x[0, k // 2] = 30000  # one outlier: its n is about sqrt(K) 2^14
    fx, fg, fb, fy = 10, 14, 12, 12
    p = layernorm_program(x, fx, g, fg, b, fb, fy, 1e-6, cache=True)
    assert p.run().ok
    y, (n, r, sh) = F.layernorm(x, fx, g, fg, b, fb, fy, 1e-6)
    np.testing.assert_array_equal(p.read("y"), y)
    np.testing.assert_array_equal(p.read("n"), n)
    np.testing.assert_array_equal(p.read("rs"), np.concatenate([r, sh], axis=1))
    if k >= 64:
        assert np.abs(n).max() > 32767  # n is wider than 16 bits and kept so


def test_layernorm_saturates_outputs():
    rng = np.random.default_rng(9)
    x, g, b = ln_case(rng, 9, 48)
    p = layernorm_program(x, 12, g, 14, b, 10, 14, 1e-6)
    assert p.run().ok
    y, _ = F.layernorm(x, 12, g, 14, b, 10, 14, 1e-6)
    np.testing.assert_array_equal(p.read("y"), y)
    assert np.count_nonzero(np.abs(y) >= 32767) > 0


@pytest.mark.parametrize(
    "expected,overrides",
    [
        ("BAD_SIZE", dict(M=config()["MAX_TOKENS"] + 1)),
        ("BAD_SIZE", dict(K=config()["MAX_DIM"] + 1)),
        ("BAD_PARAM", dict(E0=0, E1=0)),  # eps_i must be >= 1
        ("BAD_PARAM", dict(E0=0, E1=1 << 20)),  # eps_i >= 2^52
        ("BAD_ADDRESS", dict(B=1 << 30)),
        ("BAD_ADDRESS", dict(X=4)),
        ("BAD_ADDRESS", dict(AUX1=1 << 30)),
        ("BAD_ADDRESS", dict(AS=4)),
    ],
)
def test_layernorm_errors_leave_outputs_untouched(expected, overrides):
    rng = np.random.default_rng(0)
    x, g, b = ln_case(rng, 6, 24)
    p = layernorm_program(x, 10, g, 14, b, 12, 12, 1e-6, cache=True, **overrides)
    assert p.run().status_name == expected
    assert np.all(p.read("y") == SENTINEL)
    assert np.all(p.read("n") == SENTINEL) and np.all(p.read("rs") == SENTINEL)


# ---------------------------------------------------------------- PATCHIFY


def patchify_program(img, patch, **overrides) -> Program:
    cin, size, _ = img.shape
    grid = size // patch
    p = Program(with_luts=False)
    tx = p.tensor("img", img.reshape(cin * size, size))
    ty = p.tensor("y", np.full((max(grid * grid, 1), cin * patch * patch), SENTINEL))
    fields = dict(X=tx.addr, Y=ty.addr, XS=tx.stride, YS=ty.stride, P0=cin, P1=size, P2=patch)
    fields.update(overrides)
    p.op("PATCHIFY", **fields)
    return p


@pytest.mark.parametrize(
    "cin,size,patch", [(1, 28, 7), (1, 28, 4), (3, 32, 16), (2, 24, 8), (3, 20, 5), (3, 224, 16)]
)
def test_patchify_matches_reference(cin, size, patch):
    rng = np.random.default_rng(size + patch)
    img = ints(rng, (cin, size, size))
    p = patchify_program(img, patch)
    assert p.run().ok
    np.testing.assert_array_equal(p.read("y"), F.patchify(img[None], patch)[0])


@pytest.mark.parametrize(
    "expected,overrides",
    [
        ("BAD_PARAM", dict(P2=5)),  # does not divide 28
        ("BAD_SIZE", dict(P2=1)),  # 784 patches > MAX_TOKENS
        ("BAD_SIZE", dict(P0=config()["MAX_CIN"] + 1)),
        ("BAD_SIZE", dict(P1=0)),
        ("BAD_ADDRESS", dict(Y=1 << 30)),
        ("BAD_ADDRESS", dict(X=6)),
        ("BAD_ADDRESS", dict(P0=2)),  # two channels read past the image
    ],
)
def test_patchify_errors_leave_the_output_untouched(expected, overrides):
    rng = np.random.default_rng(0)
    p = patchify_program(ints(rng, (1, 28, 28)), 7, **overrides)
    assert p.run().status_name == expected
    assert np.all(p.read("y") == SENTINEL)
